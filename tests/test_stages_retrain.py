"""Issue 11 acceptance on the tiny model: knowledge → generate → train → run, with identities and lineage.

* Retraining other weights into the same model folder and re-running the same ``ditto-bench run`` never
  returns the old transcripts: the model's identity (by content) is in the run's fingerprint, so the run is
  refused naming ``inputs.model``, and with ``--overwrite`` it generates new ones.
* ``train`` on a finished directory with the same config exits 0 without training.
* ``ditto-bench lineage`` leads from the evaluation back to the knowledge base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ditto_train.generate.scripted import scripted_reply
from harness.cli import main
from harness.stage import read_stage
from tests.fixtures.knowledge.e2e import api_supervisor_args, build_fixture_kb
from tests.support.fake_openai import FakeOpenAI
from tests.wre_support import FIXTURES, scripted_judge

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
REPO = Path(__file__).resolve().parents[1]
JUDGE = ["Analysis.\nThe most suitable role is [Sherlock Holmes]\n7"]


def _train_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--config", str(REPO / "ditto_train/configs/sft_tiny_cpu.yaml"), "--model", str(model),
        "--data", str(data), "--output_dir", str(out), "--max_steps", "2", "--global_batch_size", "2",
        "--per_device_train_batch_size", "2", "--max_length", "1024", *extra,
    ]


def _run_argv(server: FakeOpenAI, model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", "--model", "hf", "--model_args", f"pretrained={model_dir},batch_size=4",
        "--tasks", "wikiroleeval", "--data_path", str(FIXTURES / "wikiroleeval_mini.jsonl"), "--limit", "1",
        "--gen_kwargs", "max_gen_toks=12", "--output_path", str(out), "--judge_base_url", server.base_url,
        "--judge_model", "judge-x", "--bootstrap_resamples", "20", *extra,
    ]


def _replies(out: Path) -> list[Any]:
    rec = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    return [m["content"] for m in rec["messages"] if m["role"] == "assistant"]


def test_retrain_into_the_same_folder_regenerates_and_lineage_reaches_the_kb(
    tiny_model_dir: Path, fake_openai: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    kb = build_fixture_kb(tmp_path / "kb")
    fake_openai.set_responder(scripted_reply)
    gen = tmp_path / "gen"
    assert main([
        "generate", *api_supervisor_args(fake_openai.base_url), "--knowledge", str(kb), "--out", str(gen),
        "--holdout_rate", "0", "--langs", "en", "--limit", "4", "--profile_tokens", "60",
    ]) == 0
    data = gen / "train.jsonl"
    model = tmp_path / "sft"
    assert main(_train_argv(tiny_model_dir, data, model)) == 0
    record_bytes = (model / "training_record.json").read_bytes()
    weights = (model / "model.safetensors").stat().st_mtime_ns
    capfd.readouterr()

    # the same training again: exit 0, nothing trained, nothing rewritten
    assert main(_train_argv(tiny_model_dir, data, model)) == 0
    assert "nothing to do" in capfd.readouterr().out
    assert (model / "training_record.json").read_bytes() == record_bytes
    assert (model / "model.safetensors").stat().st_mtime_ns == weights
    train_stage = read_stage(model)
    assert train_stage is not None and train_stage.kind == "train" and train_stage.status == "complete"
    assert train_stage.lineage["seed"] == 0 and train_stage.lineage["supervisor"]["model"] == "scripted-sup"
    assert train_stage.outputs["model.safetensors"] is not None

    fake_openai.set_responder(scripted_judge({}, fallback=JUDGE))
    run = tmp_path / "run"
    assert main(_run_argv(fake_openai, model, run)) == 0
    first = _replies(run)
    run_stage = read_stage(run)
    assert run_stage is not None
    trained = run_stage.lineage["trained"]
    assert trained["train_fingerprint"] == train_stage.fingerprint
    assert trained["data"]["sha256"] == train_stage.inputs["data"]["sha256"]
    assert trained["supervisor"]["model"] == "scripted-sup" and trained["seed"] == 0
    assert json.loads((run / "run.json").read_text())["lineage"] == run_stage.lineage

    capfd.readouterr()
    assert main(["lineage", str(run), "--json"]) == 0
    chain = json.loads(capfd.readouterr().out)
    assert [e["kind"] for e in chain if "kind" in e] == ["run", "train", "generate", "knowledge"]

    # other weights into the same folder (another seed and learning rate); the user's notes stay
    (model / "notes.json").write_text('{"mine": true}')
    retrain = ("--seed", "5", "--learning_rate", "0.5", "--overwrite_output_dir", "true")
    # without --overwrite_output_dir: refused, before the tokenizer is loaded
    assert main(_train_argv(tiny_model_dir, data, model, "--seed", "5", "--learning_rate", "0.5")) == 2
    capfd.readouterr()
    assert main(_train_argv(tiny_model_dir, data, model, *retrain)) == 0
    removed = next(x for x in capfd.readouterr().err.splitlines() if "removed from" in x)
    assert "model.safetensors" in removed and "training_record.json" in removed
    assert "notes.json" not in removed
    assert (model / "notes.json").read_text() == '{"mine": true}'
    assert read_stage(model).fingerprint != train_stage.fingerprint  # type: ignore[union-attr]
    capfd.readouterr()
    # the same run command: refused, naming the model, instead of returning the old transcripts
    assert main(_run_argv(fake_openai, model, run)) == 2
    assert "inputs.model" in capfd.readouterr().err
    assert _replies(run) == first
    assert main(_run_argv(fake_openai, model, run, "--overwrite")) == 0
    second = _replies(run)
    assert second != first  # new weights, new transcripts
    new_stage = read_stage(run)
    assert new_stage is not None and new_stage.inputs["model"]["id"] != run_stage.inputs["model"]["id"]
    assert new_stage.lineage["trained"]["seed"] == 5


def test_local_supervisor_cache_key_follows_the_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from ditto_train.generate.supervisor import LocalSupervisor
    from tests.support.tiny_model import build_tiny_model

    folder = tmp_path / "sup"
    shutil.copytree(tiny_model_dir, folder)
    msgs = [{"role": "user", "content": "Who are you?"}]

    def keys() -> list[str]:
        sup = LocalSupervisor(
            "hf", f"pretrained={folder},device=cpu", {"max_gen_toks": 4}, seed=1, cache=None
        )
        return sup.cache_scope.keys(msgs, sup.gen, 2)

    before = keys()
    assert keys() == before  # same weights: the cache answers
    other = build_tiny_model(tmp_path / "other", seed=3)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")  # retrained into the same folder
    after = keys()
    assert set(after).isdisjoint(before)  # other weights: asked again, never the old answers
