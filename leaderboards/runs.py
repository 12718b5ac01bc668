"""Reading run records for leaderboards and comparisons (``run.json`` and the typed ``results.json``).

The model's name comes from the run record: ``run --model_name``, else the ``model=`` / ``pretrained=``
argument of a ``run`` (``<base>+<adapter dir>`` with a LoRA ``peft=``), or the responses file recorded by a
``judge`` run (FastChat names a model after its answer file, and the record keeps that path). Directory names
are never read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import ConfigError
from harness.schema import read_run_file, results_from


@dataclass(frozen=True)
class TaskRun:
    """One task's part of a run record."""

    task: str
    version: int | None
    judge: dict[str, Any]
    templates: dict[str, str]
    n_sessions: int | None
    limit: int | None
    judge_base_url: str
    results: dict[str, Any]

    def signature(self) -> dict[str, Any]:
        """What must be equal for two runs to share a column: task version, judge settings, judge templates,
        and the item set (number of sessions, ``--limit``)."""
        return {
            "version": self.version,
            "judge": self.judge,
            "templates": self.templates,
            "n_sessions": self.n_sessions,
            "limit": self.limit,
        }

    @property
    def templates_id(self) -> str:
        """Short hash of all judge-template hashes, for labels."""
        blob = json.dumps(self.templates, sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:12]

    def judge_label(self) -> str:
        """e.g. ``gpt-4 (t=0, 1 sample) via OpenAI API``."""
        j = self.judge
        samples = j.get("samples")
        where = endpoint_label(self.judge_base_url)
        plural = "" if samples == 1 else "s"
        return (
            f"{j.get('model')} (temperature {j.get('temperature')}, {samples} sample{plural}, "
            f"max_tokens {j.get('max_tokens')}) via {where}"
        )


@dataclass(frozen=True)
class RunInfo:
    """A run directory as the leaderboard sees it."""

    path: Path
    model: str
    mode: str
    complete: bool
    tasks: dict[str, TaskRun]
    mock: tuple[str, ...] = ()  # "target" and/or "judge" when the run used the scripted mock model


def endpoint_label(base_url: str) -> str:
    """Where the judge was called, without port or path (a local replay server says so)."""
    host = urlsplit(base_url).hostname or base_url
    if host == "api.openai.com":
        return "OpenAI API"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "a local endpoint (127.0.0.1)"
    return host


def model_label(spec: dict[str, Any]) -> str:
    """The model's name as recorded in a run's spec."""
    model = spec.get("model") or {}
    if spec.get("mode") == "judge" or "responses" in model:
        name = Path(str(model.get("responses", "responses"))).name
        return name[: -len(".jsonl")] if name.endswith(".jsonl") else Path(name).stem
    args = model.get("model_args") or {}
    for key in ("model", "pretrained"):
        value = args.get(key)
        if isinstance(value, str) and value:
            name = value.rstrip("/").split("/")[-1] if key == "pretrained" else value
            peft = args.get("peft")
            if isinstance(peft, str) and peft:  # a LoRA evaluation: <base>+<adapter dir name>
                name = f"{name}+{peft.rstrip('/').split('/')[-1]}"
            return name
    return str(model.get("model") or "unknown")


def read_run(run_dir: Path, label: str | None = None) -> RunInfo:
    """Read ``run.json`` and ``results.json`` of a run directory (results validated by
    :class:`harness.schema.RunResults`; any schema version up to the current one)."""
    run_dir = Path(run_dir)
    run = read_run_file(run_dir / "run.json")
    typed = results_from(read_run_file(run_dir / "results.json"), str(run_dir / "results.json"))
    results = typed.model_dump(mode="json", exclude_unset=True)
    spec = run.get("spec")
    if not isinstance(spec, dict) or "tasks" not in spec:
        raise ConfigError(f"{run_dir / 'run.json'}: no 'spec.tasks' (not a ditto-bench run record)")
    tasks: dict[str, TaskRun] = {}
    for name, res in (results.get("tasks") or {}).items():
        tspec = spec["tasks"].get(name) or {}
        tasks[name] = TaskRun(
            task=name,
            version=tspec.get("version", res.get("version")),
            judge=dict(tspec.get("judge") or {}),
            templates=dict(tspec.get("templates") or {}),
            n_sessions=tspec.get("n_sessions"),
            limit=spec.get("limit"),
            judge_base_url=str(spec.get("judge_base_url", "")),
            results=res,
        )
    return RunInfo(
        path=run_dir,
        model=label or run.get("model_name") or model_label(spec),
        mode=str(spec.get("mode", "run")),
        complete=bool(results.get("complete")),
        tasks=tasks,
        mock=tuple(run.get("mock") or ()),
    )


def dig(obj: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` through nested dicts; None when any key is missing."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj
