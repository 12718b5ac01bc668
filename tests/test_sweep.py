"""``ditto-bench sweep``: the file, the plan, and the driver on no-op stages (fast; no model is loaded).

The no-op stages (tests/sweep_support.py) write a complete record of their kind and nothing else, so these
tests exercise the real driver, executors, stage wrapper, stamps and outputs without the stages' own work.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ditto_train.sweep.driver import SweepOptions, run_sweep
from ditto_train.sweep.plan import build_plan, dependants, select
from ditto_train.sweep.spec import load_profile, load_sweep
from ditto_train.sweep.state import read_stamp
from harness.cli import main
from harness.errors import ConfigError
from tests.sweep_support import noop_stage, noop_sweep_file

REPO = Path(__file__).resolve().parents[1]


def _sweep(tmp_path: Path, seeds: int = 2, sups: int = 2, gpus: int = 0) -> Path:
    return noop_sweep_file(tmp_path / "sweep.yaml", seeds, sups, gpus=gpus)


def _profile(tmp_path: Path, **doc: Any) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _run(sweep: Path, out: Path, profile: Path | None = None, **opts: Any) -> int:
    return run_sweep(
        load_sweep(sweep), load_profile(profile), SweepOptions(out=out, **opts), transform=noop_stage
    )


def _doc(out: Path) -> dict[str, Any]:
    return json.loads((out / "sweep.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------ the file


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"supervisors": {"a": {"model": "hf", "gpu": 1}}},
            "sweep.yaml: supervisors.a.gpu: unknown key (did you mean gpus?)",
        ),
        (
            {"seeds": {"s": {"pretrained": "x", "gpus": "four"}}},
            "sweep.yaml: seeds.s.gpus: expected an integer >= 0, got 'four'",
        ),
        ({"pairs": [["seed0", "nobody"]]}, "sweep.yaml: pairs[0]: 'nobody' is not one of supervisors"),
        ({"tasks": ["wikiroleval"]}, "sweep.yaml: tasks: unknown task 'wikiroleval'"),
        (
            {"eval": {"output_path": "x"}},
            "sweep.yaml: eval.output_path: set by the sweep for each evaluation",
        ),
        ({"knowledge": "missing.jsonl"}, "sweep.yaml: knowledge:"),
        ({"seed": {}}, "sweep.yaml: seed: unknown key (did you mean seeds?)"),
    ],
)
def test_bad_sweep_file_is_one_line_naming_the_key(
    tmp_path: Path, edit: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sweep(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc.update(edit)
    path.write_text(yaml.safe_dump(doc))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_plan_stages_commands_and_fingerprints(tmp_path: Path) -> None:
    spec = load_sweep(_sweep(tmp_path))
    plan = build_plan(spec)
    kinds = [st.kind for st in plan.values()]
    assert kinds.count("generate") == kinds.count("supervise") == kinds.count("baseline") == 2
    assert kinds.count("train") == kinds.count("eval") == 4 and len(plan) == 14
    assert plan["train/seed1+sup0"].deps == ("generate/sup0",)
    assert plan["eval/seed1+sup0"].deps == ("train/seed1+sup0",)
    sup = plan["supervise/sup0"].args
    assert sup[0] == "run" and "--inject_profile" in sup
    assert sup[sup.index("--model_args") + 1] == "model=s0,base_url=http://127.0.0.1:9/v1/chat/completions"
    gen = plan["generate/sup0"].args
    assert gen[gen.index("--out") + 1] == "{out}/generate/sup0" and gen[gen.index("--split") + 1] == "train"
    train = plan["train/seed0+sup1"].args
    assert train[train.index("--data") + 1] == "{out}/generate/sup1/train.jsonl"
    ev = plan["eval/seed0+sup1"].args
    assert ev[ev.index("--model_args") + 1] == "{trained:train/seed0+sup1}"
    assert "--judge_model" in ev and "--judge_base_url" in ev
    # a change upstream re-plans exactly the stages downstream of it
    path = tmp_path / "sweep.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["generate"] = {"langs": "en"}
    path.write_text(yaml.safe_dump(doc))
    plan2 = build_plan(load_sweep(path))
    changed = {n for n in plan if plan[n].fingerprint != plan2[n].fingerprint}
    assert changed == {"generate/sup0", "generate/sup1"} | {
        n for n in plan if n.split("/")[0] in ("train", "eval")
    }
    assert dependants(plan, "generate/sup0") == {
        f"{k}/seed{i}+sup0" for k in ("train", "eval") for i in (0, 1)
    }
    assert select(plan, "eval/seed0+*,supervise") == {
        "eval/seed0+sup0",
        "eval/seed0+sup1",
        "supervise/sup0",
        "supervise/sup1",
    }
    with pytest.raises(ConfigError, match="matches no stage"):
        select(plan, "nothing*")


def test_multi_gpu_training_is_launched_with_accelerate(tmp_path: Path) -> None:
    plan = build_plan(load_sweep(_sweep(tmp_path, 1, 1, gpus=8)))
    st = plan["train/seed0+sup0"]
    assert st.launcher[:4] == ("accelerate", "launch", "--num_processes", "8") and st.gpus == 8


# ------------------------------------------------------------------------------------------------ the driver


def test_gpu_slots_and_outputs_on_the_local_executor(tmp_path: Path) -> None:
    out = tmp_path / "out"
    profile = _profile(tmp_path, gpus=2, env={"NOOP_SLEEP": "0.2"})
    assert _run(_sweep(tmp_path, gpus=1), out, profile) == 0
    doc = _doc(out)
    assert doc["status"] == "complete" and doc["counts"] == {"complete": 14} and len(doc["launched"]) == 14
    seen = {}
    for name, st in doc["stages"].items():
        seen[name] = st["attempt"]["cuda_visible_devices"]
    assert {seen[n] for n in seen if n.startswith(("baseline", "train", "eval"))} == {"0", "1"}
    assert {seen[n] for n in seen if n.startswith(("generate", "supervise"))} == {""}
    # the stage saw what the wrapper saw
    rec = json.loads((out / "eval/seed0+sup1/run.json").read_text())
    assert rec["cuda_visible_devices"] == seen["eval/seed0+sup1"]
    assert f"pretrained={out.resolve()}/train/seed0+sup1" in rec["args"]
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert len(rows) == 2 * 2 * 3 * 3
    row = next(
        r
        for r in rows
        if (r["seed"], r["supervisor"], r["lang"], r["metric"]) == ("seed0", "sup1", "all", "knowledge")
    )
    assert float(row["gain"]) == pytest.approx(float(row["imitation"]) - float(row["baseline"]))
    for name in ("cross_supervision.png", "cross_supervision.svg", "imitation_knowledge.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    # a finished sweep re-run launches no stage
    assert _run(_sweep(tmp_path, gpus=1), out, profile) == 0
    assert _doc(out)["launched"] == [] and _doc(out)["counts"] == {"done": 14}


def test_gpu_request_larger_than_the_machine_fails_that_stage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(_sweep(tmp_path, 1, 1, gpus=4), out, _profile(tmp_path, gpus=2)) == 1
    st = _doc(out)["stages"]
    assert st["train/seed0+sup0"]["cause"] == "needs 4 GPUs; this machine has 2"
    assert st["baseline/seed0"]["status"] == "failed"  # evaluations take the seed's GPUs unless eval_gpus
    assert st["supervise/sup0"]["status"] == st["generate/sup0"]["status"] == "complete"


def test_failed_stage_blocks_only_its_dependants_and_rerun_retries_only_those(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    sweep = _sweep(tmp_path)
    assert _run(sweep, out, _profile(tmp_path, env={"NOOP_FAIL": "generate/sup0"})) == 1
    st = _doc(out)["stages"]
    assert st["generate/sup0"]["status"] == "failed"
    assert "exit 3" in st["generate/sup0"]["cause"] and "was made to fail" in st["generate/sup0"]["cause"]
    blocked = {n for n, s in st.items() if s["status"] == "blocked"}
    assert blocked == {f"{k}/seed{i}+sup0" for k in ("train", "eval") for i in (0, 1)}
    assert st["eval/seed0+sup0"]["cause"].startswith("needs train/seed0+sup0 (blocked")
    assert all(s["status"] == "complete" for n, s in st.items() if n not in blocked | {"generate/sup0"})
    err = capsys.readouterr().err
    assert "stages not finished" in err and "generate/sup0" in err and "train/seed1+sup0" in err
    rows = {
        (r["seed"], r["supervisor"], r["lang"], r["metric"]): r
        for r in csv.DictReader((out / "grid.csv").open())
    }
    assert rows[("seed0", "sup0", "all", "knowledge")]["imitation"] == ""  # not available, never 0
    assert rows[("seed0", "sup0", "all", "knowledge")]["supervision"] != ""
    first = {n: read_stamp(out, n)["started"] for n in st if read_stamp(out, n)}
    assert _run(sweep, out, _profile(tmp_path)) == 0
    assert sorted(_doc(out)["launched"]) == sorted(blocked | {"generate/sup0"})
    assert all(read_stamp(out, n)["started"] == t for n, t in first.items())


def test_only_runs_the_selected_stages_and_blocks_on_missing_inputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(_sweep(tmp_path), out, only="supervise,eval/seed0+sup0") == 1
    st = _doc(out)["stages"]
    assert {n for n, s in st.items() if s["status"] == "complete"} == {"supervise/sup0", "supervise/sup1"}
    assert st["eval/seed0+sup0"]["status"] == "blocked" and "not selected" in st["eval/seed0+sup0"]["cause"]
    assert st["baseline/seed0"]["status"] == "not_selected"


def test_dry_run_lists_done_stages_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _run(_sweep(tmp_path), out, only="generate") == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert _run(_sweep(tmp_path), out, dry_run=True) == 0
    text = capsys.readouterr().out
    assert "14 stages" in text and text.count("│ done") == 2 and text.count("│ to run") == 12
    # one evaluation of the 8-session fixture: 33 turns × 3 metrics; 8 evaluation stages to run
    assert "judge calls" in text and "│ 99 " in text and "│ 792 " in text
    assert sorted(p.name for p in out.iterdir()) == before


def test_second_driver_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    from ditto_train.sweep.driver import driver_lock

    out = tmp_path / "out"
    with driver_lock(out), pytest.raises(ConfigError, match="another sweep driver"):
        _run(_sweep(tmp_path), out)


KILL_DRIVER = """
import sys
from pathlib import Path
from ditto_train.sweep.driver import SweepOptions, run_sweep
from ditto_train.sweep.spec import load_profile, load_sweep
from tests.sweep_support import noop_stage
sys.exit(run_sweep(load_sweep(Path(sys.argv[1])), load_profile(Path(sys.argv[2])),
                   SweepOptions(out=Path(sys.argv[3])), transform=noop_stage))
"""


def test_killed_driver_rerun_finishes_without_redoing_finished_stages(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep, profile = _sweep(tmp_path), _profile(tmp_path, env={"NOOP_SLEEP": "0.5"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_DRIVER, str(sweep), str(profile), str(out)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stamps = out / ".sweep" / "stamps"
    try:
        deadline = time.monotonic() + 120
        while len(list(stamps.rglob("*.json"))) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the stage it was running, mid-sweep
        proc.wait()
    finished = {p.relative_to(stamps).with_suffix("").as_posix() for p in stamps.rglob("*.json")}
    assert 4 <= len(finished) < 14
    started = {n: read_stamp(out, n)["started"] for n in finished}
    assert _run(sweep, out, _profile(tmp_path)) == 0
    doc = _doc(out)
    assert doc["status"] == "complete" and not (set(doc["launched"]) & finished)
    assert len(doc["launched"]) == 14 - len(finished)
    assert all(read_stamp(out, n)["started"] == t for n, t in started.items())


def test_sigterm_stops_the_running_stages_and_records_them_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep, profile = _sweep(tmp_path, 1, 1), _profile(tmp_path, env={"NOOP_SLEEP": "30"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_DRIVER, str(sweep), str(profile), str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / ".sweep" / "jobs").is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # the driver only; it stops what it started
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = _doc(out)
    assert doc["status"] == "interrupted"
    running = [n for n, s in doc["stages"].items() if s["status"] == "interrupted"]
    assert running == ["generate/sup0"]  # one at a time without GPUs
    # the stage command was stopped, not left running: its wrapper saw it end on the signal
    attempt = json.loads((out / ".sweep/attempts/generate/sup0.json").read_text())
    assert attempt["rc"] == 128 + signal.SIGTERM and attempt["cause"] == "stopped by signal 15"
    assert read_stamp(out, "generate/sup0") is None
