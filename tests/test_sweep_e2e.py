"""Issue 12 acceptance: the 2 × 2 cross-supervision sweep end to end on CPU, on every executor.

Two tiny local seeds, two scripted API supervisors and a scripted judge on one loopback server
(tests/sweep_support.py). The local run is the reference; the same sweep file on a local Ray cluster (fake
GPUs) and on submitit's local executor must give a byte-identical ``grid.csv``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from tests.fixtures.knowledge.e2e import make_generated_testset
from tests.support.fake_openai import FakeOpenAI
from tests.sweep_support import respond, write_sweep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Any:
    """One local Ray cluster for the session, with two fake GPUs (slot assignment is testable on CPU)."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_sweep(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI, tiny_model_dir: Path
) -> dict[str, Any]:
    """The sweep file and the local executor's finished run (the reference for the other executors)."""
    from tests.support.tiny_model import build_tiny_model

    work = tmp_path_factory.mktemp("sweep")
    fake_openai.reset()
    test = make_generated_testset(work / "gen", fake_openai)
    seed1 = build_tiny_model(work / "seed1", seed=1, arch="llama")
    fake_openai.set_responder(respond)
    sweep = write_sweep(
        work / "sweep.yaml",
        base_url=fake_openai.base_url,
        kb=work / "gen" / "kb.jsonl",
        test_data=test,
        seeds={"tiny0": tiny_model_dir, "tiny1": seed1},
    )
    profile = work / "profile.yaml"
    profile.write_text(yaml.safe_dump({"env": THREADS}), encoding="utf-8")
    out = work / "local"
    rc = main(["sweep", str(sweep), "--out", str(out), "--profile", str(profile), "--max_parallel", "2"])
    return {"work": work, "sweep": sweep, "profile": profile, "out": out, "rc": rc, "server": fake_openai}


@pytest.fixture
def server(tiny_sweep: dict[str, Any]) -> FakeOpenAI:
    srv: FakeOpenAI = tiny_sweep["server"]
    srv.reset()
    srv.set_responder(respond)
    return srv


def _doc(out: Path) -> dict[str, Any]:
    return json.loads((out / "sweep.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_local_sweep_end_to_end(tiny_sweep: dict[str, Any], server: FakeOpenAI, capsys: Any) -> None:
    out = tiny_sweep["out"]
    assert tiny_sweep["rc"] == 0
    doc = _doc(out)
    assert doc["status"] == "complete" and doc["counts"] == {"complete": 14}
    # each stage is the standalone command's own directory and record
    sup = json.loads((out / "supervise/sup-b/run.json").read_text())
    assert (
        sup["status"] == "complete"
        and sup["spec"]["inject_profile"]["sessions"]["wikiroleeval"]["injected"] == 2
    )
    base = json.loads((out / "baseline/tiny1/run.json").read_text())
    assert "inject_profile" not in base["spec"]
    rec = json.loads((out / "train/tiny1+sup-a/training_record.json").read_text())
    assert rec["status"] == "ok" and rec["global_step"] == 12
    ev = json.loads((out / "eval/tiny1+sup-a/run.json").read_text())
    assert str((out / "train/tiny1+sup-a").resolve()) in json.dumps(ev["spec"]["model"])
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert len(rows) == 2 * 2 * 3 * 3
    for r in rows:
        if r["lang"] != "zh":  # the limit keeps two en sessions, no zh one
            assert r["supervision"] and r["imitation"] and r["baseline"] and int(r["imitation_n"]) > 0
            assert float(r["gain"]) == pytest.approx(float(r["imitation"]) - float(r["baseline"]))
    knowledge = {
        r["supervisor"]: r["supervision"] for r in rows if r["lang"] == "all" and r["metric"] == "knowledge"
    }
    assert knowledge["sup-a"] != knowledge["sup-b"]  # the supervisors' answers differ, and so do their scores
    assert "## knowledge (all)" in (out / "grid.md").read_text()
    for name in ("cross_supervision.png", "cross_supervision.svg", "imitation_rejection.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    assert "tiny0 ← sup-b" in (out / "figures/cross_supervision.svg").read_text()
    # the leaderboard reads the sweep directory: baselines and fine-tuned models
    capsys.readouterr()
    assert main(["leaderboard", str(out), "--format", "csv"]) == 0
    board = capsys.readouterr().out
    for name in ("tiny0", "tiny1", "tiny0+ditto(sup-a)", "tiny1+ditto(sup-b)"):
        assert name in board
    # a finished sweep re-run launches no stage and calls nothing
    assert (
        main(["sweep", str(tiny_sweep["sweep"]), "--out", str(out), "--profile", str(tiny_sweep["profile"])])
        == 0
    )
    assert _doc(out)["launched"] == [] and server.requests == []


def test_ray_executor_gives_the_same_grid(
    tiny_sweep: dict[str, Any], server: FakeOpenAI, ray_cluster: Any
) -> None:
    out = tiny_sweep["work"] / "ray"
    argv = [
        "sweep",
        str(tiny_sweep["sweep"]),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--profile",
        str(tiny_sweep["profile"]),
    ]
    assert main(argv) == 0
    assert (out / "grid.csv").read_text() == (tiny_sweep["out"] / "grid.csv").read_text()
    stages = _doc(out)["stages"]
    # fake GPUs: every seed stage asked for one and got one of the two; API stages got none
    gpus = {n: s["attempt"]["cuda_visible_devices"] for n, s in stages.items()}
    assert {gpus[n] for n in gpus if n.startswith(("baseline", "train", "eval"))} <= {"0", "1"}
    assert {gpus[n] for n in gpus if n.startswith(("generate", "supervise"))} == {""}


def test_slurm_executor_gives_the_same_grid(tiny_sweep: dict[str, Any], server: FakeOpenAI) -> None:
    pytest.importorskip("submitit")
    profile = tiny_sweep["work"] / "slurm.yaml"
    profile.write_text(yaml.safe_dump({"env": THREADS, "slurm": {"cluster": "local", "partition": "gpu"}}))
    out = tiny_sweep["work"] / "slurm"
    argv = [
        "sweep",
        str(tiny_sweep["sweep"]),
        "--out",
        str(out),
        "--executor",
        "slurm",
        "--profile",
        str(profile),
        "--max_parallel",
        "2",
    ]
    assert main(argv) == 0
    assert (out / "grid.csv").read_text() == (tiny_sweep["out"] / "grid.csv").read_text()
    assert any((out / ".sweep" / "submitit").iterdir())


def test_failing_supervisor_blocks_only_its_pairs(
    tiny_sweep: dict[str, Any], server: FakeOpenAI, tmp_path: Path, capsys: Any
) -> None:
    doc = yaml.safe_load(tiny_sweep["sweep"].read_text())
    doc["supervisors"]["sup-bad"] = {"model": "hf", "model_args": f"pretrained={tmp_path / 'no-such-model'}"}
    doc["pairs"] = [["tiny0", "sup-bad"]]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--profile", str(tiny_sweep["profile"])]) == 1
    st = _doc(out)["stages"]
    assert st["generate/sup-bad"]["status"] == st["supervise/sup-bad"]["status"] == "failed"
    assert "no-such-model" in st["generate/sup-bad"]["cause"]
    assert st["train/tiny0+sup-bad"]["status"] == st["eval/tiny0+sup-bad"]["status"] == "blocked"
    assert st["baseline/tiny0"]["status"] == "complete"  # independent of the failure, so it ran
    err = capsys.readouterr().err
    assert "stages not finished" in err and "eval/tiny0+sup-bad" in err
    # a re-run retries only the failed and blocked stages
    assert main(["sweep", str(path), "--out", str(out), "--profile", str(tiny_sweep["profile"])]) == 1
    assert sorted(_doc(out)["launched"]) == ["generate/sup-bad", "supervise/sup-bad"]
