"""Issue 10: without a terminal, long commands print one status line at a fixed interval (done/total, rate,
ETA, failures so far) instead of staying silent."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.progress import LineProgress, make_progress


def test_status_lines_at_an_interval() -> None:
    stream = io.StringIO()
    with LineProgress(stream=stream, every=0.05) as progress:
        task = progress.add_task("rollout (turns)", total=10, completed=2)
        progress.advance(task, 3)
        progress.note_failure(task, 1)
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2, lines
    assert re.fullmatch(r"rollout \(turns\): 5/10 \(50\.0%\), [0-9.]+/s, ETA \S+, 1 failed", lines[0]), lines[
        0
    ]
    # the rate counts this invocation's work only (3 items), not the resumed ones (2)
    rate = float(re.search(r", ([0-9.]+)/s", lines[0]).group(1))  # type: ignore[union-attr]
    assert rate > 0


def test_last_line_when_done_and_none_after() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream=stream, every=60)
    task = progress.add_task("judging (calls)", total=2)
    progress.advance(task, 2)
    progress.stop()
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[0]]
    assert stream.getvalue().startswith("judging (calls): 2/2 (100.0%)")


def test_make_progress_without_a_terminal_prints_lines() -> None:
    assert isinstance(make_progress(), LineProgress)  # pytest's stderr is not a TTY


def test_run_prints_status_lines_to_a_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DITTO_BENCH_PROGRESS_INTERVAL", "0.01")
    out = tmp_path / "run"
    argv = [
        "run",
        "--model",
        "mock",
        "--judge_model",
        "mock",
        "--tasks",
        "wikiroleeval",
        "--data_path",
        "sample",
        "--output_path",
        str(out),
        "--bootstrap_resamples",
        "20",
    ]
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert re.search(r"^rollout \(turns\): 12/12 \(100\.0%\), .*0 failed$", err, re.M), err
    assert re.search(r"^judging \(calls\): 36/36 \(100\.0%\), .*0 failed$", err, re.M), err


def test_train_gets_status_lines_too(capfd: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from harness.progress import trainer_status_callback

    cb = trainer_status_callback()
    assert cb is not None
    state = SimpleNamespace(max_steps=3, global_step=0)
    cb.on_train_begin(None, state, None)
    for step in (1, 2, 3):
        state.global_step = step
        cb.on_step_end(None, state, None)
    cb.on_train_end(None, state, None)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("train (steps)")]
    assert len(lines) == 1 and lines[0].startswith("train (steps): 3/3 (100.0%)"), lines


def test_a_logged_command_has_status_lines_and_no_tqdm_noise(judge_server: object, tmp_path: Path) -> None:
    """The real process with stderr in a file (as under nohup/Slurm): our status lines, no tqdm bars."""
    import os
    import subprocess
    import sys

    from tests.wre_support import FIXTURES

    server = judge_server
    out = tmp_path / "run"
    log = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("TQDM_DISABLE", None)
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "run",
                "--model",
                "local-chat-completions",
                "--model_args",
                f"model=roleplayer,base_url={server.base_url}",  # type: ignore[attr-defined]
                "--tasks",
                "wikiroleeval",
                "--data_path",
                str(FIXTURES / "wikiroleeval_mini.jsonl"),
                "--limit",
                "1",
                "--output_path",
                str(out),
                "--judge_base_url",
                server.base_url,  # type: ignore[attr-defined]
                "--judge_model",
                "judge-x",
                "--max_unscored",
                "1",
                "--bootstrap_resamples",
                "20",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            timeout=240,
            check=False,
        )
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text
    assert "rollout (turns): 4/4 (100.0%)" in text and "judging (calls): 12/12 (100.0%)" in text
    assert "Requesting API" not in text and "\r" not in text, text


def test_status_lines_from_several_threads_never_run_together() -> None:
    """The timer thread and the pipelined phases print at once; each status line must stay one line
    (print() wrote the text and its newline separately, and two lines once ran together in a log)."""
    import io
    import threading
    import time

    from harness.progress import LineProgress

    class SlowStream(io.StringIO):
        def write(self, s: str) -> int:
            time.sleep(0.0005)  # give the other threads the chance to come in between
            return super().write(s)

    stream = SlowStream()
    progress = LineProgress(stream=stream, every=3600)

    def burst(k: int) -> None:
        for i in range(40):
            progress._write(f"phase {k}: {i}/40 (0 failed)")

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 160
    assert all(re.fullmatch(r"phase \d: \d+/40 \(0 failed\)", line) for line in lines), lines
