"""Run one stage command, the same way on every executor, and record the attempt.

The local executor starts ``python -m ditto_train.sweep.stage_exec JOB.json`` as a subprocess; a Ray task
and a submitit job call :func:`run_job` directly. Either way the stage's own command runs as a child
process (``python -m harness.cli ...`` or its ``accelerate launch`` form) with the executor's
``CUDA_VISIBLE_DEVICES``, its output appended to ``OUT/logs/<stage>.log``. When the command exits 0 and its
own record says complete, the stamp is written (see :mod:`.state`); every attempt, good or bad, leaves
``OUT/.sweep/attempts/<stage>.json`` with the exit code, the GPUs it saw and, on failure, the cause.

Launch-time resolution (not part of the plan fingerprint): ``{out}``, ``{trained:train/P}`` (the
``eval_model_args`` of that training record) and, for a training directory an earlier attempt left
with checkpoints, ``--resume true``. Everything else about an existing directory is the command's own
decision (its stage record): the same configuration finished is a no-op, unfinished is resumed, another
configuration is refused with what differs, and that refusal is the stage's failure cause.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ditto_train.sweep.state import (
    attempt_path,
    log_path,
    own_record_complete,
    stage_record_fingerprint,
    stamp_path,
)
from harness.jsonl import atomic_write_json

_TRAINED = re.compile(r"\{trained:([^}]+)\}")


def _redact(text: str) -> str:
    try:
        from harness.redact import redact  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return re.sub(r"(api_key|key|token)=[^,\s]+", r"\1=[REDACTED]", text)
    return str(redact(text))


@dataclass(frozen=True)
class StageJob:
    """Everything one attempt needs (picklable: it travels to Ray workers and Slurm jobs)."""

    name: str
    kind: str
    args: tuple[str, ...]
    launcher: tuple[str, ...]
    out: str
    plan_fingerprint: str
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable


class StageInputError(Exception):
    """An input stage's record lacks what this stage needs."""


def _trained_args(out: Path, name: str) -> str:
    path = out / name / "training_record.json"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        return str(rec["output"]["eval_model_args"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageInputError(f"{path}: no output.eval_model_args ({type(exc).__name__})") from None


def resolve_command(job: StageJob) -> list[str]:
    """The command line of the attempt, placeholders resolved."""
    out = Path(job.out)
    args = [
        _TRAINED.sub(lambda m: _trained_args(out, m.group(1)), a.replace("{out}", str(out))) for a in job.args
    ]
    if job.kind == "train":
        stage_dir = out / job.name
        leftovers = [p for p in stage_dir.iterdir()] if stage_dir.is_dir() else []
        if any(p.name.startswith("checkpoint-") for p in leftovers):
            args += ["--resume", "true"]
    if job.launcher:
        return [*job.launcher, *args[1:]]
    return [job.python, "-m", "harness.cli", *args]


def _cause(log: Path, rc: int) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 8192))
            lines = [x.strip() for x in fh.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        lines = []
    picked = next((x for x in reversed(lines) if "error" in x.lower()), lines[-1] if lines else "")
    return _redact(f"exit {rc}: {picked}"[:400])


def run_job(job: StageJob) -> dict[str, Any]:
    """Run one attempt of a stage; returns (and writes) its attempt record."""
    out = Path(job.out)
    log = log_path(out, job.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result: dict[str, Any] = {
        "stage": job.name,
        "plan_fingerprint": job.plan_fingerprint,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cuda_visible_devices": {**os.environ, **job.env}.get("CUDA_VISIBLE_DEVICES"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    try:
        cmd = resolve_command(job)
    except StageInputError as exc:
        return _finish(job, result, started, rc=2, cause=_redact(str(exc)))
    result["command"] = _redact(" ".join(cmd))
    env = {**os.environ, **job.env, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as fh:
        fh.write(f"\n== {result['started']} {result['command']}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(cmd, cwd=job.cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        except OSError as exc:
            return _finish(job, result, started, rc=127, cause=f"cannot start {cmd[0]}: {exc.strerror}")
        stopped = _forward_signals(proc)
        rc = proc.wait()
    if stopped:
        return _finish(job, result, started, rc=128 + stopped[0], cause=f"stopped by signal {stopped[0]}")
    if rc != 0:
        return _finish(job, result, started, rc=rc, cause=_cause(log, rc))
    ok, why = own_record_complete(job.kind, out / job.name)
    if not ok:
        return _finish(job, result, started, rc=1, cause=f"exit 0 but the record is not complete: {why}")
    return _finish(job, result, started, rc=0, cause=None)


def _forward_signals(proc: subprocess.Popen[bytes]) -> list[int]:
    """SIGTERM/SIGINT to this wrapper go on to the stage command, which stops the way it stops on its own
    (a run records itself interrupted); the wrapper then records the attempt. Returns the signals seen.

    The handler only forwards: the main thread is inside ``proc.wait()``, whose lock a handler must not take.
    Main thread only (a Ray worker or a submitit job calls :func:`run_job` from elsewhere, unhandled)."""
    import threading

    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return seen

    def stop(signum: int, frame: object) -> None:
        seen.append(signum)
        try:
            os.kill(proc.pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return seen


def _finish(
    job: StageJob, result: dict[str, Any], started: float, *, rc: int, cause: str | None
) -> dict[str, Any]:
    out = Path(job.out)
    result |= {
        "rc": rc,
        "cause": cause,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.time() - started, 3),
    }
    if rc == 0:
        result["stage_fingerprint"] = stage_record_fingerprint(out / job.name)
        atomic_write_json(stamp_path(out, job.name), result)
    atomic_write_json(attempt_path(out, job.name), result)
    return result


def write_job(job: StageJob, path: Path) -> None:
    atomic_write_json(path, asdict(job))


def main(argv: list[str] | None = None) -> int:
    """``python -m ditto_train.sweep.stage_exec JOB.json``: one attempt; exits with the stage's code."""
    argv = sys.argv[1:] if argv is None else argv
    data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    job = StageJob(**{**data, "args": tuple(data["args"]), "launcher": tuple(data["launcher"])})
    return int(run_job(job)["rc"])


if __name__ == "__main__":
    raise SystemExit(main())
