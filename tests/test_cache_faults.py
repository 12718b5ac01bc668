"""The response cache never takes a run down: a lock held by another process, or a garbage file.

Before: another process holding a write transaction for longer than the busy timeout crashed the run
(``database is locked``, then ``cannot start a transaction within a transaction``), and a garbage file at
the cache path gave a traceback and left run.json saying ``running``. Now the command goes on without the
cache, with one warning line, and finishes with the right numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cache import ResponseCache
from harness.cli import main
from tests.support.fake_openai import FakeOpenAI
from tests.test_e2e_wikiroleeval import _check_golden, _judge_args, _two_sessions, _verdicts
from tests.wre_support import scripted_judge

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO responses VALUES ('holder', '{}', 0)")
    print("holding", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[Path]:
    """A cache file (WAL, our schema) on which a second process holds a write transaction."""
    path = tmp_path / "held.sqlite"
    ResponseCache(path).close()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield path
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "response cache" in line and "warning" in line]


def test_a_lock_held_past_the_timeout_does_not_stop_the_run(
    judge_server: FakeOpenAI, tmp_path: Path, lock_holder: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(ResponseCache, "BUSY_TIMEOUT", 0.2)
    monkeypatch.setattr(ResponseCache, "FLUSH_EVERY", 4)  # flushes mid-run, where the crash was
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), "--cache_path", str(lock_holder),
            *_judge_args(judge_server, out)]
    assert main(args) == 0
    _check_golden(out)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and "locked" in warned[0]


def test_a_garbage_cache_file_is_left_alone_and_the_run_completes(
    judge_server: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "responses.sqlite"
    garbage.write_bytes(b"this is not a database\x00" * 200)
    before = garbage.read_bytes()
    path, (a, b) = _two_sessions(tmp_path)
    judge_server.set_responder(scripted_judge(_verdicts(a, b)))
    out = tmp_path / "run"
    args = ["judge", "--tasks", "wikiroleeval", "--responses", str(path), "--cache_path", str(garbage),
            *_judge_args(judge_server, out)]
    assert main(args) == 0
    _check_golden(out)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and "not a database" in warned[0]
    assert garbage.read_bytes() == before  # the user's file is never rewritten or deleted


def test_a_failed_flush_disables_the_cache_instead_of_nesting_transactions(
    lock_holder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ResponseCache, "BUSY_TIMEOUT", 0.1)
    cache = ResponseCache(lock_holder)
    assert cache.get("anything") is None  # reads still work under a writer (WAL)
    assert cache.disabled is None
    cache.put_many([("k", {"text": "v"})])
    assert len(cache) == 0 and cache.disabled and "locked" in cache.disabled
    cache.put_many([("k2", {"text": "v"})])  # no "cannot start a transaction within a transaction"
    assert cache.get("k2") is None
    cache.close()
    assert len(_warnings(capsys.readouterr().err)) == 1
