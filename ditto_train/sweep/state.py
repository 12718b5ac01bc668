"""When is a stage done: its own record complete, and the sweep's stamp for the same plan fingerprint.

The stage's own record is ``<dir>/stage.json`` (:mod:`harness.stage`). For a directory written before the
stage contract (no ``stage.json``) the older records are read: ``run.json`` with status ``complete``
(run), ``report.json`` with no pending or failed session (generate), ``training_record.json`` with status
``ok`` (train). The stamp (``OUT/.sweep/stamps/<stage>.json``) is written by the stage wrapper when the
stage command exited 0 with a complete record; it holds the plan fingerprint and the stage record's own
fingerprint, so a directory re-run by hand with other settings is not taken for this stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import DittoError
from harness.stage import read_stage

SWEEP_DIR = ".sweep"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def stamp_path(out: Path, name: str) -> Path:
    return out / SWEEP_DIR / "stamps" / f"{name}.json"


def attempt_path(out: Path, name: str) -> Path:
    return out / SWEEP_DIR / "attempts" / f"{name}.json"


def log_path(out: Path, name: str) -> Path:
    return out / "logs" / f"{name}.log"


def stage_record_fingerprint(stage_dir: Path) -> str | None:
    """The fingerprint of ``<dir>/stage.json`` when the stage contract is present and the file exists."""
    try:
        rec = read_stage(stage_dir)
    except DittoError:
        return None
    return None if rec is None else str(rec.fingerprint)


def own_record_complete(kind: str, stage_dir: Path, fingerprint: str | None = None) -> tuple[bool, str]:
    """Whether the command's own record in ``stage_dir`` says it finished; and if not, why (one line)."""
    try:
        rec = read_stage(stage_dir)
    except DittoError as exc:
        return False, str(exc)
    if rec is not None:
        if fingerprint is not None and not rec.is_complete(fingerprint):
            return False, f"stage.json: status {rec.status}, fingerprint {str(rec.fingerprint)[:12]}"
        if rec.status != "complete":
            return False, f"stage.json: status {rec.status}"
        return True, ""
    return _fallback_complete(kind, stage_dir)


def _fallback_complete(kind: str, stage_dir: Path) -> tuple[bool, str]:
    if kind == "train":
        rec = read_json(stage_dir / "training_record.json")
        if rec is None:
            return False, "no training_record.json"
        return (rec.get("status") == "ok"), f"training_record.json: status {rec.get('status')}"
    if kind == "generate":
        rec = read_json(stage_dir / "report.json")
        if rec is None or read_json(stage_dir / "run.json") is None:
            return False, "no report.json"
        this = rec.get("this_run") or {}
        if this.get("api_error_sessions") or this.get("pending_after_run"):
            return False, (
                f"report.json: {this.get('api_error_sessions')} sessions failed, "
                f"{this.get('pending_after_run')} pending"
            )
        if not rec.get("output_lines"):
            return False, "report.json: no training sessions were written"
        return True, ""
    run = read_json(stage_dir / "run.json")
    if run is None:
        return False, "no run.json"
    if run.get("status") != "complete" or not (stage_dir / "results.json").is_file():
        return False, f"run.json: status {run.get('status')}"
    return True, ""


def read_stamp(out: Path, name: str) -> dict[str, Any] | None:
    return read_json(stamp_path(out, name))


def is_done(out: Path, name: str, kind: str, plan_fingerprint: str) -> bool:
    """A stage is done when its stamp has ``plan_fingerprint`` and its own record is still complete."""
    stamp = read_stamp(out, name)
    if stamp is None or stamp.get("plan_fingerprint") != plan_fingerprint:
        return False
    ok, _ = own_record_complete(kind, out / name, stamp.get("stage_fingerprint"))
    return ok
