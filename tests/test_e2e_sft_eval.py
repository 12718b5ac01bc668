"""Issue 5 acceptance: `ditto-bench train` on the tiny model, then `ditto-bench run --model hf` scores it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.wre_support import FIXTURES, load_items, scripted_judge, write_items

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
REPO = Path(__file__).resolve().parents[1]
JUDGE_FALLBACK = ["Analysis.\nThe most suitable role is [Sherlock Holmes]\n7"]


def _sft_data(tmp_path: Path) -> Path:
    """The fixture conversations in TRL's conversational format (8 sessions, 33 assistant turns), 4 copies."""
    rows = [{"messages": item["messages"]} for item in load_items()] * 4
    return write_items(tmp_path / "sft.jsonl", rows)


def _evaluate(judge_server: Any, model_args: str, out: Path) -> dict[str, Any]:
    judge_server.set_responder(scripted_judge({}, fallback=JUDGE_FALLBACK))
    rc = main([
        "run", "--model", "hf", "--model_args", f"{model_args},batch_size=4",
        "--tasks", "wikiroleeval", "--data_path", str(FIXTURES / "wikiroleeval_mini.jsonl"), "--limit", "2",
        "--gen_kwargs", "max_gen_toks=12", "--output_path", str(out),
        "--judge_base_url", judge_server.base_url, "--judge_model", "judge-x", "--bootstrap_resamples", "100",
    ])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())["tasks"]["wikiroleeval"]
    assert results["n_sessions"] == 2 and results["n_turns"] == 9
    assert results["rollout"]["turns_ok"] == 9
    # The fallback verdict names Sherlock Holmes, the gold label of session 1 only: 4 of 9 turns match.
    assert results["metrics"]["all"]["consistency"] == pytest.approx(4 / 9)
    assert results["metrics"]["all"]["knowledge"] == pytest.approx(7.0)
    return results


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_train_then_evaluate(mode: str, tiny_model_dir: Path, judge_server: Any, tmp_path: Path) -> None:
    out = tmp_path / f"sft-{mode}"
    argv = [
        "train", "--config", str(REPO / "ditto_train/configs/sft_tiny_cpu.yaml"),
        "--model", str(tiny_model_dir), "--data", str(_sft_data(tmp_path)), "--output_dir", str(out),
        "--max_steps", "25",
    ]
    if mode == "lora":
        argv += ["--mode", "lora", "--learning_rate", "1e-2", "--min_lr", "1e-3"]
    assert main(argv) == 0
    record = json.loads((out / "training_record.json").read_text())
    curve = record["loss_curve"]
    assert curve[-1]["loss"] < curve[0]["loss"]
    eval_args = record["output"]["eval_model_args"]
    if mode == "lora":
        assert "peft=" in eval_args and (out / "adapter_config.json").exists()
    else:
        assert eval_args == f"pretrained={out.resolve()}"
    run = tmp_path / f"run-{mode}"
    _evaluate(judge_server, eval_args, run)
    spec = json.loads((run / "run.json").read_text())["spec"]["model"]
    assert spec["model"] == "hf" and str(out.resolve()) in json.dumps(spec["model_args"])
