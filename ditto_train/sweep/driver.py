"""The sweep driver: launch stages as their inputs complete, record everything in ``OUT/sweep.json``.

The driver holds no state a re-run needs: what is done is read back from the stage directories and stamps
(:mod:`.state`), so it can be killed at any moment and started again. A stage whose input failed (or was
blocked) is ``blocked`` with that cause; every stage that does not depend on it still runs. The driver is
the only writer of ``sweep.json``, ``grid.*`` and ``figures/`` (an exclusive lock on ``OUT/.sweep``).
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ditto_train.sweep.executors import Executor, make_executor
from ditto_train.sweep.plan import Stage, build_plan, select
from ditto_train.sweep.spec import Profile, SweepSpec
from ditto_train.sweep.stage_exec import StageJob
from ditto_train.sweep.state import SWEEP_DIR, is_done, read_json, stamp_path
from harness.errors import ConfigError
from harness.jsonl import atomic_write_json
from harness.progress import console

SCHEMA_VERSION = 1
StageTransform = Callable[[Stage], Stage]
"""Replaces a planned stage (benchmarks and tests swap in no-op commands; the driver is unchanged)."""
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SweepOptions:
    out: Path
    executor: str = "local"
    dry_run: bool = False
    only: str | None = None
    max_parallel: int | None = None


@contextmanager
def driver_lock(out: Path) -> Iterator[None]:
    """One driver per sweep directory: an exclusive ``flock`` on ``OUT/.sweep/driver.lock``."""
    path = out / SWEEP_DIR / "driver.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise ConfigError(f"{out}: another sweep driver ({holder}) is running on this directory") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        fh.close()


class _Stop(Exception):
    """SIGTERM received: stop launching, stop running attempts, record, exit."""


class Sweep:
    """One invocation of the driver over a plan."""

    def __init__(
        self, spec: SweepSpec, profile: Profile, opts: SweepOptions, transform: StageTransform | None = None
    ) -> None:
        self.spec, self.profile, self.opts = spec, profile, opts
        self.out = opts.out.resolve()
        self.plan = build_plan(spec)
        if transform is not None:
            self.plan = {name: transform(st) for name, st in self.plan.items()}
        self.chosen = select(self.plan, opts.only)
        self.status: dict[str, str] = {}
        self.cause: dict[str, str | None] = {}
        self.attempt: dict[str, dict[str, Any]] = {}
        self.launched: list[str] = []
        self.timing: dict[str, float] = {}
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name, st in self.plan.items():
            done = is_done(self.out, name, st.kind, st.fingerprint)
            self.status[name] = "done" if done else ("pending" if name in self.chosen else "not_selected")
            self.cause[name] = None
            if done:
                self.attempt[name] = read_json(stamp_path(self.out, name)) or {}

    # ------------------------------------------------------------------ record
    def record(self, state: str) -> dict[str, Any]:
        doc = {
            "kind": "sweep",
            "schema_version": SCHEMA_VERSION,
            "sweep_file": str(self.spec.path.resolve()),
            "executor": self.opts.executor,
            "only": self.opts.only,
            "status": state,
            "started": self.started,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seeds": list(dict.fromkeys(s for s, _ in self.spec.pairs)),
            "supervisors": list(dict.fromkeys(v for _, v in self.spec.pairs)),
            "pairs": [list(p) for p in self.spec.pairs],
            "tasks": list(self.spec.tasks),
            "launched": list(self.launched),
            "timing": dict(self.timing),
            "counts": _counts(self.status),
            "stages": {
                name: {
                    "kind": st.kind,
                    "seed": st.seed,
                    "supervisor": st.supervisor,
                    "dir": st.name,
                    "deps": list(st.deps),
                    "gpus": st.gpus,
                    "cpus": st.cpus,
                    "plan_fingerprint": st.fingerprint,
                    "status": self.status[name],
                    "cause": self.cause[name],
                    "attempt": _attempt_summary(self.attempt.get(name)),
                }
                for name, st in self.plan.items()
            },
        }
        atomic_write_json(self.out / "sweep.json", doc)
        return doc

    def job(self, st: Stage) -> StageJob:
        return StageJob(
            name=st.name,
            kind=st.kind,
            args=st.args,
            launcher=st.launcher,
            out=str(self.out),
            plan_fingerprint=st.fingerprint,
            cwd=str(REPO_ROOT),
            env=dict(self.profile.env),
        )

    # ------------------------------------------------------------------ scheduling
    def _settle_blocked(self) -> None:
        changed = True
        while changed:
            changed = False
            for name, st in self.plan.items():
                if self.status[name] != "pending":
                    continue
                for dep in st.deps:
                    ds = self.status[dep]
                    if ds in ("failed", "blocked"):
                        why = self.cause[dep] if ds == "failed" else f"{dep} is blocked"
                        self.status[name], self.cause[name] = "blocked", f"needs {dep} ({ds}: {why})"
                    elif ds == "not_selected":
                        self.status[name] = "blocked"
                        self.cause[name] = f"needs {dep}, which is not done and not selected by --only"
                    else:
                        continue
                    changed = True
                    break

    def _ready(self) -> list[Stage]:
        return [
            st
            for name, st in self.plan.items()
            if self.status[name] == "pending" and all(self.status[d] in ("done", "complete") for d in st.deps)
        ]

    def run(self, executor: Executor) -> None:
        for name, st in self.plan.items():
            if self.status[name] == "pending" and (why := executor.never_fits(st)):
                self.status[name], self.cause[name] = "failed", why
        self._settle_blocked()
        self.record("running")
        total = sum(1 for s in self.status.values() if s == "pending")
        finished = 0
        while True:
            for st in self._ready():
                if not executor.can_start(st):
                    continue
                self.status[st.name] = "running"
                self.launched.append(st.name)
                executor.start(st, self.job(st))
                console.print(f"[bold]start[/] {st.name} (gpus {st.gpus})", highlight=False)
                self.record("running")
            if executor.running() == 0:
                break
            for name, result in executor.poll(timeout=1.0):
                finished += 1
                self.attempt[name] = result
                if result.get("rc") == 0:
                    self.status[name] = "complete"
                    console.print(
                        f"[green]done[/]  {name} [{finished}/{total}] ({result.get('wall_s', '?')} s)",
                        highlight=False,
                    )
                else:
                    self.status[name], self.cause[name] = "failed", str(result.get("cause"))
                    console.print(f"[red]failed[/] {name}: {result.get('cause')}", highlight=False)
                self._settle_blocked()
                self.record("running")

    def final_state(self) -> str:
        bad = any(s in ("failed", "blocked") for s in self.status.values())
        return "failed" if bad else "complete"


def _counts(status: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in status.values():
        out[s] = out.get(s, 0) + 1
    return out


def _attempt_summary(a: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not a:
        return None
    keys = ("rc", "started", "finished", "wall_s", "host", "cuda_visible_devices", "stage_fingerprint")
    return {k: a.get(k) for k in keys if k in a}


def _print_failures(sweep: Sweep) -> None:
    from rich.table import Table

    table = Table(title="stages not finished")
    for col in ("stage", "status", "cause"):
        table.add_column(col, overflow="fold")
    for name in sweep.plan:
        if sweep.status[name] in ("failed", "blocked"):
            table.add_row(name, sweep.status[name], sweep.cause[name] or "")
    console.print(table)
    logs = sweep.out / "logs"
    console.print(f"logs: {logs}; re-run the same command to retry only these stages", highlight=False)


def _sigterm_to_stop(signum: int, frame: object) -> None:
    raise _Stop()


def run_sweep(
    spec: SweepSpec, profile: Profile, opts: SweepOptions, *, transform: StageTransform | None = None
) -> int:
    """Run (or resume) a sweep; returns the exit code (0 all done, 1 some stage failed or blocked)."""
    if opts.dry_run:
        from ditto_train.sweep.dryrun import print_dry_run

        sweep = Sweep(spec, profile, opts, transform)
        print_dry_run(sweep)
        return 0
    opts.out.mkdir(parents=True, exist_ok=True)
    with driver_lock(opts.out):
        sweep = Sweep(spec, profile, opts, transform)
        executor = make_executor(opts.executor, profile, sweep.out, opts.max_parallel)
        previous = signal.signal(signal.SIGTERM, _sigterm_to_stop)
        try:
            sweep.run(executor)
        except (KeyboardInterrupt, _Stop):
            executor.close()
            for name, s in sweep.status.items():
                if s == "running":
                    sweep.status[name], sweep.cause[name] = "interrupted", "the driver was stopped"
            sweep.record("interrupted")
            console.print("sweep interrupted; re-run the same command to resume", highlight=False)
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        executor.close()
        from ditto_train.sweep.grid import write_outputs

        t0 = time.perf_counter()
        write_outputs(sweep.out, spec, sweep.plan)
        sweep.timing["outputs_s"] = round(time.perf_counter() - t0, 3)
        state = sweep.final_state()
        sweep.record(state)
        counts = _counts(sweep.status)
        console.print(
            f"sweep {state}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            + f"; launched {len(sweep.launched)} this run; results in {sweep.out}",
            highlight=False,
        )
        if state != "complete":
            _print_failures(sweep)
            return 1
        return 0
