"""The training record: a self-describing `training_record.json` written last into the output directory.

Its presence marks a finished run: a crash leaves `training_failed.json` (or nothing) instead, never a
directory that looks complete.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from harness.jsonl import atomic_write_text

RECORD_NAME = "training_record.json"
FAILED_NAME = "training_failed.json"
RECORD_SCHEMA = "ditto-bench/sft-training-record"
RECORD_VERSION = 1

def package_versions() -> dict[str, str | None]:
    """Python and package versions, from the one environment capture of every record (harness.runrecord)."""
    from harness.runrecord import package_versions as versions

    return {"python": platform.python_version(), **versions()}


def git_state(start: Path | None = None) -> dict[str, Any]:
    """Commit and dirty state of the checkout: the one capture of every record (harness.runrecord.git_info),
    so untracked files count as dirty here too."""
    from harness.runrecord import git_info

    return git_info(start)


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-logging-step loss and learning rate from `trainer.state.log_history` (summary rows left out)."""
    curve = []
    for entry in log_history:
        if "loss" in entry:
            curve.append(
                {
                    "step": entry.get("step"),
                    "epoch": entry.get("epoch"),
                    "loss": entry.get("loss"),
                    "learning_rate": entry.get("learning_rate"),
                    "grad_norm": entry.get("grad_norm"),
                }
            )
    return curve


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write the record atomically; ``default=str`` and NaN allowed, as a training loss may be NaN."""
    atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")


def base_record(status: str) -> dict[str, Any]:
    """Fields every record carries: schema, status, versions, git state, command line."""
    return {
        "schema": RECORD_SCHEMA,
        "schema_version": RECORD_VERSION,
        "status": status,
        "argv": sys.argv,
        "packages": package_versions(),
        "git": git_state(),
        "platform": platform.platform(),
    }


def read_record(output_dir: str | Path) -> dict[str, Any]:
    """Load the training record of a finished run."""
    with (Path(output_dir) / RECORD_NAME).open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data
