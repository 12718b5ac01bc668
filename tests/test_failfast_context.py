"""Issue 10, "defaults that work": the default max_gen_toks=2048 on a model with a 2,048-token context used to
fail every turn ("re-run to retry"); for hf it is now clamped to what the context leaves after the prompt, and
the turn's record says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

pytestmark = pytest.mark.slow


def test_default_max_gen_toks_fits_a_2048_context(
    tiny_model_dir: Path, tmp_path: Path, one_torch_thread: None, capfd: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["max_position_embeddings"] == 2048
    out = tmp_path / "run"
    argv = [
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_model_dir},dtype=float32",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        "sample",
        "--limit",
        "1",
        "--output_path",
        str(out),
        "--judge_model",
        "mock",
        "--bootstrap_resamples",
        "20",
    ]
    assert main(argv) == 0, capfd.readouterr().err
    rec = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    for turn in rec["turns"]:
        gen = turn["generation"]
        assert gen["status"] == "ok", gen.get("error")
        assert gen["gen_kwargs"]["max_gen_toks"] == 2048  # what was asked, kept in the record
        clamped = gen["max_gen_toks_clamped"]
        assert 16 <= clamped < 2048  # what the context left after the prompt
        assert gen["truncated"] is False


def test_max_gen_toks_that_fits_is_not_clamped(
    tiny_model_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    out = tmp_path / "run"
    argv = [
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_model_dir},dtype=float32",
        "--gen_kwargs",
        "max_gen_toks=8",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        "sample",
        "--limit",
        "1",
        "--output_path",
        str(out),
        "--judge_model",
        "mock",
        "--bootstrap_resamples",
        "20",
    ]
    assert main(argv) == 0
    rec = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert all("max_gen_toks_clamped" not in t["generation"] for t in rec["turns"])
