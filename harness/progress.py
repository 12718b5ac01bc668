"""Progress for every long command, and the consoles used for all user-facing output.

On a terminal: a rich progress bar (done/total, elapsed, ETA, failures). Without one (nohup, Slurm, CI
logs): one plain status line per task every ``DITTO_BENCH_PROGRESS_INTERVAL`` seconds (default 30) and a
last line when the task ends: ``rollout (turns): 120/400 (30.0%), 2.1/s, ETA 2m13s, 3 failed``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, soft_wrap=True)  # a message stays one line in logs
out_console = Console()

INTERVAL_ENV = "DITTO_BENCH_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def interval() -> float:
    """Seconds between status lines when stderr is not a terminal."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass
class _Line:
    description: str
    total: float | None
    completed: float
    start_completed: float
    started: float
    failed: int = 0
    finished: bool = False


def status_line(t: _Line, now: float) -> str:
    """``desc: done/total (pct), rate/s, ETA, failures``: the rate counts this invocation's work only."""
    done = int(t.completed)
    rate = (t.completed - t.start_completed) / max(now - t.started, 1e-9)
    parts = [f"{t.description}: {done}/{int(t.total)}" if t.total else f"{t.description}: {done}"]
    if t.total:
        parts[0] += f" ({100.0 * t.completed / t.total:.1f}%)"
    parts.append(f"{rate:.2f}/s")
    if t.total and rate > 0:
        parts.append(f"ETA {_duration((t.total - t.completed) / rate)}")
    elif t.total and t.completed < t.total:
        parts.append("ETA unknown")
    parts.append(f"{t.failed} failed")
    return ", ".join(parts)


_WRITE_LOCK = threading.Lock()  # status lines from every LineProgress and thread, one at a time


class LineProgress:
    """The subset of :class:`rich.progress.Progress` the commands use, printing status lines to a stream."""

    disable = False  # callers that print their own lines when the bar is disabled leave it to us

    def __init__(self, stream: TextIO | None = None, every: float | None = None) -> None:
        self._stream = stream
        self._every = interval() if every is None else every
        self._tasks: dict[TaskID, _Line] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write(self, text: str) -> None:
        # One write per line, under one lock for every instance: the timer thread and the phases' own
        # threads print at once, and print() writes the text and its newline separately (two lines could
        # run together in a log).
        stream = self._stream or sys.stderr
        with _WRITE_LOCK:
            stream.write(text + "\n")
            stream.flush()

    def add_task(
        self, description: str, total: float | None = None, completed: float = 0, **_: Any
    ) -> TaskID:
        with self._lock:
            task_id = TaskID(len(self._tasks))
            self._tasks[task_id] = _Line(description, total, completed, completed, time.monotonic())
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="ditto-progress", daemon=True)
            self._thread.start()
        return task_id

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        with self._lock:
            t = self._tasks[task_id]
            t.completed += advance
            done = t.total is not None and t.completed >= t.total and not t.finished
            if done:
                t.finished = True
        if done:
            self._write(status_line(t, time.monotonic()))

    def update(self, task_id: TaskID, *, completed: float | None = None, total: float | None = None,
               **_: Any) -> None:
        with self._lock:
            t = self._tasks[task_id]
            if completed is not None:
                t.completed = completed
            if total is not None:
                t.total = total

    def note_failure(self, task_id: TaskID, count: int = 1) -> None:
        """Count ``count`` failed items of the task (shown in its status line)."""
        with self._lock:
            self._tasks[task_id].failed += count

    def _tick(self) -> None:
        while not self._stop.wait(self._every):
            now = time.monotonic()
            with self._lock:
                lines = [status_line(t, now) for t in self._tasks.values() if not t.finished]
                all_done = all(t.finished for t in self._tasks.values())
            for line in lines:
                self._write(line)
            if all_done:
                return

    def stop(self) -> None:
        """Stop the timer and print the last line of every task still running."""
        self._stop.set()
        now = time.monotonic()
        with self._lock:
            lines = [status_line(t, now) for t in self._tasks.values() if not t.finished]
            for t in self._tasks.values():
                t.finished = True
        for line in lines:
            self._write(line)


class BarProgress(Progress):
    """rich's progress bar with a failure count per task."""

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0,
                 completed: int = 0, visible: bool = True, **fields: Any) -> TaskID:
        fields.setdefault("failed", 0)
        return super().add_task(description, start=start, total=total, completed=completed,
                                visible=visible, **fields)

    def note_failure(self, task_id: TaskID, count: int = 1) -> None:
        with self._lock:
            task = self._tasks[task_id]
            task.fields["failed"] = int(task.fields.get("failed", 0)) + count


def make_progress() -> BarProgress | LineProgress:
    """A progress bar on a terminal; otherwise periodic status lines on stderr (logs of nohup, Slurm, CI)."""
    if not sys.stderr.isatty():
        return LineProgress()
    return BarProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=console,
        transient=False,
    )


def trainer_status_callback() -> Any | None:
    """A transformers ``TrainerCallback`` printing status lines of the training steps when stderr is not a
    terminal (on a terminal the Trainer's own bar shows); ``None`` on a terminal."""
    if sys.stderr.isatty():
        return None
    from transformers import TrainerCallback

    class _StatusLines(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.progress: LineProgress | None = None
            self.task = TaskID(0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.progress = LineProgress()
            self.task = self.progress.add_task(
                "train (steps)", total=state.max_steps or None, completed=state.global_step
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
                if state.max_steps and state.global_step >= state.max_steps:
                    self.progress.advance(self.task, 0)  # prints the last line

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return _StatusLines()
