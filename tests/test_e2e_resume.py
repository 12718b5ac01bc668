"""End to end: a run killed with SIGKILL mid-judging resumes without loss or duplication; config changes.

The CLI runs as a real subprocess against the loopback judge (which answers slowly enough that the kill
lands mid-run), is killed once the journal holds a few judge lines, and a torn half line is appended to the
journal as if the process had died mid-write. Re-running the same command must then finish with the golden
numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.test_e2e_wikiroleeval import _check_golden, _judge_args, _two_sessions, _verdicts
from tests.wre_support import scripted_judge

REPO_ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 2
N_JUDGMENTS = 21  # 7 turns x 3 metrics
TORN = '{"k": "judge", "task": "wikiroleeval", "sid": "wre-0001", "turn": 3, "metr'


def _cmd(path: Path, server: FakeOpenAI, out: Path, *extra: str) -> list[str]:
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), *_judge_args(server, out, *extra)]
    # _judge_args sets --judge_concurrency 8; argparse keeps the last occurrence
    return [*args, "--judge_concurrency", str(CONCURRENCY)]


def _judge_lines(journal: Path) -> int:
    if not journal.exists():
        return 0
    complete = journal.read_bytes().split(b"\n")[:-1]  # the part after the last newline may be torn
    return sum(1 for line in complete if b'"k": "judge"' in line)


def _kill_mid_run(cmd: list[str], journal: Path, tmp_path: Path) -> int:
    """Start the CLI, SIGKILL it once the journal holds >= 3 judge lines; return judge lines at the kill."""
    log = (tmp_path / "child.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *cmd], cwd=REPO_ROOT, env=dict(os.environ),
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60.0
        while _judge_lines(journal) < 3:
            if proc.poll() is not None:
                log_text = (tmp_path / "child.log").read_text()
                pytest.fail(f"the CLI ended before it could be killed: {log_text}")
            assert time.monotonic() < deadline, "no judge line in the journal within 60 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    return _judge_lines(journal)


def _entries(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("no_cache", [False, True], ids=["cache", "no_cache"])
def test_kill9_then_resume_loses_and_duplicates_nothing(
    judge_server: FakeOpenAI, tmp_path: Path, no_cache: bool
) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    judge_server.latency = 0.2  # 21 calls two at a time take > 2 s: the kill lands mid-run
    out = tmp_path / "run"
    journal = out / "journal.jsonl"
    cmd = _cmd(path, judge_server, out, *(["--no_cache"] if no_cache else []))

    at_kill = _kill_mid_run(cmd, journal, tmp_path)
    assert 3 <= at_kill < N_JUDGMENTS
    assert not (out / "results.json").exists()
    first = judge_server.count()
    with journal.open("a", encoding="utf-8") as fh:
        fh.write(TORN)  # as if the process had died in the middle of a write

    judge_server.latency = 0.0
    assert main(cmd) == 0
    second = judge_server.count() - first
    assert 0 < second < N_JUDGMENTS  # the journalled judgments were not asked again
    # Each judgment is requested once, except those in flight at the kill (at most --judge_concurrency):
    # sent, but their answers never reached the journal, so the re-run asks again (or, with the cache, may
    # find them there).
    assert first + second <= N_JUDGMENTS + CONCURRENCY
    if no_cache:
        assert second == N_JUDGMENTS - at_kill  # the journal alone carries the resume
        assert not any(Path(os.environ["DITTO_BENCH_CACHE_DIR"]).iterdir())

    entries = _entries(journal)  # every line parses: the torn tail was cut before appending
    keys = [(e["sid"], e["turn"], e["metric"]) for e in entries if e["k"] == "judge"]
    assert len(keys) == len(set(keys)) == N_JUDGMENTS  # nothing lost, nothing duplicated
    assert all(e["status"] == "ok" for e in entries)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["session_id"] for s in samples] == ["wre-0001", "wre-0002"]
    cached = sum(bool(j["cached"]) for s in samples for t in s["turns"] for j in t["judgments"].values())
    assert cached == 0 if no_cache else cached <= CONCURRENCY
    _check_golden(out, judge_calls=N_JUDGMENTS - cached)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["resumed"] is True


def _error_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_changed_config_is_refused_then_overwritten(
    judge_server: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    assert main(_cmd(path, judge_server, out)) == 0
    capfd.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    n = judge_server.count()

    assert main(_cmd(path, judge_server, out, "--seed", "7")) == 2
    line = _error_line(capfd)
    assert "different configuration" in line and "differs in: seed)" in line
    assert main(_cmd(path, judge_server, out, "--judge_model", "other")) == 2
    line = _error_line(capfd)
    assert "different configuration" in line and "--overwrite" in line
    # the nested key, by name
    assert "tasks.wikiroleeval.judge.model" in line.replace(str(out), "<dir>"), line
    assert judge_server.count() == n  # refused before any call
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and nothing touched

    assert main(_cmd(path, judge_server, out, "--judge_model", "other", "--overwrite")) == 0
    assert judge_server.count() == n + N_JUDGMENTS  # a fresh run: the new judge model is asked everything
    assert {r["body"]["model"] for r in judge_server.requests[n:]} == {"other"}
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["resumed"] is False
    assert run["spec"]["tasks"]["wikiroleeval"]["judge"]["model"] == "other"
    _check_golden(out)
