"""Where stage attempts run: a local subprocess pool, Ray core tasks, or Slurm jobs through submitit.

All three run :func:`~ditto_train.sweep.stage_exec.run_job` (the local pool through its ``-m`` entry), so
stage directories, logs, attempt records and stamps are the same whichever executor ran them. The driver
asks :meth:`Executor.can_start` before each :meth:`~Executor.start` and collects finished attempts with
:meth:`~Executor.poll`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ditto_train.sweep.plan import Stage
from ditto_train.sweep.spec import Profile
from ditto_train.sweep.stage_exec import StageJob, write_job
from ditto_train.sweep.state import SWEEP_DIR, attempt_path, read_json
from harness.errors import ConfigError

POLL_S = 0.05


class Executor(Protocol):
    name: str

    def never_fits(self, stage: Stage) -> str | None: ...

    def can_start(self, stage: Stage) -> bool: ...

    def start(self, stage: Stage, job: StageJob) -> None: ...

    def running(self) -> int: ...

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]: ...

    def close(self) -> None: ...


def _lost(name: str, why: str) -> dict[str, Any]:
    return {"stage": name, "rc": -1, "cause": why}


def detect_gpus() -> int:
    """GPUs of this machine: ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([x for x in visible.split(",") if x.strip() and x.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass
class _Proc:
    proc: subprocess.Popen[bytes]
    slots: list[str]
    out: Path


class LocalExecutor:
    """A pool of stage subprocesses; GPU slots handed out through ``CUDA_VISIBLE_DEVICES``.

    With no GPU on the machine, ``gpus`` requests are not enforced (CPU runs of GPU-sized stages, as the
    tiny sweep does) and stages run one at a time unless ``max_parallel`` says otherwise. With GPUs, a stage
    waits until enough slots are free; ``max_parallel`` (default: unlimited) caps the stages in flight.
    """

    name = "local"

    def __init__(self, profile: Profile, max_parallel: int | None) -> None:
        self.total = profile.gpus if profile.gpus is not None else detect_gpus()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [x.strip() for x in visible.split(",") if x.strip()] if visible else []
        self.free = ids[: self.total] if len(ids) >= self.total else [str(i) for i in range(self.total)]
        cap = max_parallel or profile.max_parallel
        self.max_parallel = cap if cap else (1 if self.total == 0 else 1 << 30)
        self.procs: dict[str, _Proc] = {}

    def never_fits(self, stage: Stage) -> str | None:
        if self.total and stage.gpus > self.total:
            return f"needs {stage.gpus} GPUs; this machine has {self.total}"
        return None

    def _gpus(self, stage: Stage) -> int:
        return stage.gpus if self.total else 0

    def can_start(self, stage: Stage) -> bool:
        return len(self.procs) < self.max_parallel and self._gpus(stage) <= len(self.free)

    def start(self, stage: Stage, job: StageJob) -> None:
        out = Path(job.out)
        n = self._gpus(stage)
        slots, self.free = self.free[:n], self.free[n:]
        job_file = out / SWEEP_DIR / "jobs" / f"{stage.name}.json"
        write_job(job, job_file)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(slots)}
        attempt_path(out, stage.name).unlink(missing_ok=True)
        proc = subprocess.Popen(
            [job.python, "-m", "ditto_train.sweep.stage_exec", str(job_file)],
            cwd=job.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs[stage.name] = _Proc(proc, slots, out)

    def running(self) -> int:
        return len(self.procs)

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            done: list[tuple[str, dict[str, Any]]] = []
            for name, p in list(self.procs.items()):
                rc = p.proc.poll()
                if rc is None:
                    continue
                del self.procs[name]
                self.free += p.slots
                rec = read_json(attempt_path(p.out, name))
                done.append((name, rec if rec is not None else _lost(name, f"stage wrapper exited {rc}")))
            if done or not self.procs or time.monotonic() >= deadline:
                return done
            time.sleep(POLL_S)

    def close(self) -> None:
        """Stop attempts still running (the driver is exiting): SIGTERM, then SIGKILL after 30 s."""
        for p in self.procs.values():
            if p.proc.poll() is None:
                p.proc.terminate()
        end = time.monotonic() + 30
        for p in self.procs.values():
            try:
                p.proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()
        self.procs.clear()


class RayExecutor:
    """Each attempt is a Ray core task with the stage's ``num_gpus``/``num_cpus`` that runs the command as a
    subprocess (so vLLM tensor parallelism and ``accelerate launch`` never run inside the task itself).

    Connects to ``ray.address`` from the profile, or starts a local cluster (``ray.num_cpus``/``num_gpus``
    from the profile); a Ray already initialised in this process is used as it is.
    """

    name = "ray"

    def __init__(self, profile: Profile, max_parallel: int | None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray: Ray is not installed (pip install 'ditto-bench[ray]')"
            ) from None
        self.ray = ray
        self.owns = False
        if not ray.is_initialized():
            opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            cfg = profile.ray
            if cfg.get("address"):
                opts["address"] = cfg["address"]
            else:
                for key in ("num_cpus", "num_gpus"):
                    if cfg.get(key) is not None:
                        opts[key] = int(cfg[key])
            if cfg.get("runtime_env"):
                opts["runtime_env"] = cfg["runtime_env"]
            ray.init(**opts)
            self.owns = True
        resources = ray.cluster_resources()
        self.total_gpus = int(resources.get("GPU", 0))
        self.total_cpus = int(resources.get("CPU", 1))
        self.max_parallel = max_parallel or profile.max_parallel or (1 << 30)
        from ditto_train.sweep.stage_exec import run_job

        self.remote = ray.remote(run_job)
        self.refs: dict[Any, str] = {}

    def never_fits(self, stage: Stage) -> str | None:
        if stage.gpus > self.total_gpus and self.total_gpus:
            return f"needs {stage.gpus} GPUs; the Ray cluster has {self.total_gpus}"
        if stage.cpus > self.total_cpus:
            return f"needs {stage.cpus} CPUs; the Ray cluster has {self.total_cpus}"
        return None

    def can_start(self, stage: Stage) -> bool:
        return len(self.refs) < self.max_parallel  # Ray queues tasks until their resources are free

    def start(self, stage: Stage, job: StageJob) -> None:
        gpus = stage.gpus if self.total_gpus else 0
        if gpus == 0:  # Ray leaves CUDA_VISIBLE_DEVICES alone for a task without GPUs: hide them
            job = dataclasses.replace(job, env={**job.env, "CUDA_VISIBLE_DEVICES": ""})
        ref = self.remote.options(num_gpus=gpus, num_cpus=stage.cpus, max_retries=0, name=stage.name).remote(
            job
        )
        self.refs[ref] = stage.name

    def running(self) -> int:
        return len(self.refs)

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        done = []
        for ref in ready:
            name = self.refs.pop(ref)
            try:
                done.append((name, self.ray.get(ref)))
            except Exception as exc:  # a worker that died: the attempt is lost, the stage failed
                done.append((name, _lost(name, f"Ray task failed: {type(exc).__name__}: {exc}"[:400])))
        return done

    def close(self) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.owns:
            self.ray.shutdown()


class SlurmExecutor:
    """Each attempt is a Slurm job submitted through submitit, with partition, account, time limit and GPUs
    from the profile (``slurm.*``) and the stage. ``slurm.cluster: local`` (submitit's local executor) or
    ``debug`` (inline) run the same path without Slurm.
    """

    name = "slurm"

    def __init__(self, profile: Profile, out: Path, max_parallel: int | None) -> None:
        try:
            import submitit
        except ImportError:
            raise ConfigError(
                "--executor slurm: submitit is not installed (pip install 'ditto-bench[slurm]')"
            ) from None
        cfg = profile.slurm
        self.cluster = cfg.get("cluster", "slurm")
        folder = Path(cfg["folder"]) if cfg.get("folder") else out / SWEEP_DIR / "submitit"
        self.executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=self.cluster)
        self.cfg = cfg
        self.max_parallel = max_parallel or profile.max_parallel or (1 << 30)
        self.poll_s = float(cfg.get("poll_s", 5.0 if self.cluster == "slurm" else POLL_S))
        self.jobs: dict[str, Any] = {}

    def never_fits(self, stage: Stage) -> str | None:
        limit = self.cfg.get("gpus_per_node")
        if limit is not None and stage.gpus > int(limit):
            return f"needs {stage.gpus} GPUs; the profile's nodes have {limit}"
        return None

    def can_start(self, stage: Stage) -> bool:
        return len(self.jobs) < self.max_parallel

    def _parameters(self, stage: Stage) -> dict[str, Any]:
        cfg = self.cfg
        params: dict[str, Any] = {
            "name": stage.name.replace("/", "-"),
            "timeout_min": stage.time_min or int(cfg.get("time_min", 240)),
            "cpus_per_task": max(stage.cpus, stage.gpus * int(cfg.get("cpus_per_gpu", 0) or 0), 1),
            "nodes": 1,
            "tasks_per_node": 1,
        }
        if self.cluster == "slurm":
            params["gpus_per_node"] = stage.gpus
            for key in ("partition", "account", "qos", "constraint", "setup", "additional_parameters"):
                if cfg.get(key):
                    params[f"slurm_{key}"] = cfg[key]
            if cfg.get("mem_gb"):
                params["mem_gb"] = int(cfg["mem_gb"])
        return params

    def start(self, stage: Stage, job: StageJob) -> None:
        from ditto_train.sweep.stage_exec import run_job

        self.executor.update_parameters(**self._parameters(stage))
        self.jobs[stage.name] = self.executor.submit(run_job, job)

    def running(self) -> int:
        return len(self.jobs)

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            done = []
            for name, j in list(self.jobs.items()):
                if self.cluster != "debug" and not j.done():
                    continue
                del self.jobs[name]
                try:
                    done.append((name, j.result()))
                except Exception as exc:  # the job died (time limit, node failure, preemption)
                    done.append((name, _lost(name, f"Slurm job {j.job_id} failed: {str(exc)[-300:]}")))
            if done or not self.jobs or time.monotonic() >= deadline:
                return done
            time.sleep(self.poll_s)

    def close(self) -> None:
        for j in self.jobs.values():
            try:
                j.cancel(check=False)
            except Exception:  # cancelling is best effort; the job's stage reruns next time
                pass
        self.jobs.clear()


def make_executor(name: str, profile: Profile, out: Path, max_parallel: int | None) -> Executor:
    if name == "local":
        return LocalExecutor(profile, max_parallel)
    if name == "ray":
        return RayExecutor(profile, max_parallel)
    if name == "slurm":
        return SlurmExecutor(profile, out, max_parallel)
    raise ConfigError(f"--executor: expected local, ray or slurm, got {name!r}")
