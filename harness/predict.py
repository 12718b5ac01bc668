"""``run --predict_only`` then ``ditto-bench judge DIR``: judge a rolled-out run in place.

The run directory keeps everything the rollout needs to be resumed, so ``judge DIR`` re-creates the run's
configuration from its ``run.json`` and runs it with judging on; the journalled replies are reused (zero
model calls). Judge flags given to ``judge DIR`` replace the recorded ones: while no judge call has been
made, the judge part of the recorded spec is updated to match (the rollout part must be unchanged).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.jsonl import atomic_write_json, iter_complete_lines

_JUDGE_FLAGS = (
    "judge_model", "judge_base_url", "judge_concurrency", "judge_samples", "judge_temperature",
    "judge_max_tokens", "judge_max_retries", "judge_timeout", "judge_split_samples", "no_preflight",
    "max_unscored", "wandb_args", "bootstrap_resamples", "cache_path", "no_cache",
)
# Parts of the spec that the judge settings alone determine.
_JUDGE_SPEC_KEYS = ("judge_base_url", "judge_split_samples")


def _read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"judge {run_dir}: not a run directory (run.json is missing)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"judge {run_dir}: run.json unreadable: {exc}") from None
    if not isinstance(run, dict) or (run.get("config") or {}).get("mode") != "run":
        raise ConfigError(f"judge {run_dir}: not a directory made by `ditto-bench run`")
    return run


def _model_args_text(args: Any) -> str | None:
    if not args:
        return None
    if isinstance(args, str):
        return args
    return ",".join(f"{k}={v}" for k, v in dict(args).items())


def judge_run_dir(
    run_dir: Path, args: argparse.Namespace, make_config: Callable[[argparse.Namespace, str], object]
) -> int:
    """Judge the run in ``run_dir`` (made by ``run``, typically with ``--predict_only``)."""
    from harness.cli import build_parser
    from harness.engine import execute

    if args.responses is not None:
        raise ConfigError("judge DIR judges the run's own replies; --responses cannot be given with it")
    run = _read_run(run_dir)
    stored: dict[str, Any] = run["config"]
    defaults = vars(build_parser().parse_args(["judge", str(run_dir)]))
    ns = argparse.Namespace(**defaults)
    ns.tasks = ",".join(stored["tasks"])
    ns.output_path = run_dir
    ns.shuffle_candidates = bool(stored.get("shuffle_candidates"))
    ns.seed = int(stored.get("seed", 1234))
    ns.limit = stored.get("limit")
    ns.data_path = None
    ns.predict_only = False
    ns.model = stored.get("model")
    ns.model_args = _model_args_text(stored.get("model_args"))
    ns.gen_kwargs = None
    ns.batch_size = ns.device = None
    ns.model_name = stored.get("model_name")
    ns.include_path = [Path(p) for p in stored.get("include_paths") or []] + list(args.include_path or [])
    ns.overwrite = False
    ns.dry_run = bool(args.dry_run)
    for key in _JUDGE_FLAGS:  # recorded value, unless this command gives another one
        given = getattr(args, key)
        recorded = stored.get("n_boot" if key == "bootstrap_resamples" else key, defaults.get(key))
        if key == "no_preflight":
            recorded = not stored.get("preflight", True)
        setattr(ns, key, given if given != defaults.get(key) else recorded)
    cfg = make_config(ns, "run")
    cfg.gen_kwargs = dict(stored.get("gen_kwargs") or {})  # type: ignore[attr-defined]
    cfg.data_paths = {k: Path(v) for k, v in (stored.get("data_paths") or {}).items()}  # type: ignore[attr-defined]
    cfg.judge_existing = True  # type: ignore[attr-defined]
    return execute(cfg)  # type: ignore[arg-type]


def _strip_judge(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in _JUDGE_SPEC_KEYS}
    out["tasks"] = {name: {k: v for k, v in t.items() if k != "judge"} for name, t in spec["tasks"].items()}
    return out


def adopt_judge_settings(run_dir: Path, spec: Mapping[str, Any]) -> None:
    """Let ``spec``'s judge settings replace the recorded ones (run.json and stage.json) while the run has no
    judge call yet; anything else that differs is left for the stage check to refuse."""
    from harness.stage import STAGE_FILE, read_stage_file, stage_fingerprint

    path = run_dir / "run.json"
    run = json.loads(path.read_text(encoding="utf-8"))
    old = run.get("spec") or {}
    if old == spec or "tasks" not in old:
        return
    if _strip_judge(old) != _strip_judge(spec):
        return  # not only the judge changed
    journal = run_dir / "journal.jsonl"
    if journal.exists() and any(e.get("k") == "judge" for _, e in iter_complete_lines(journal)):
        return  # judgments exist under the old settings: changing them needs --overwrite
    stage = read_stage_file(run_dir / STAGE_FILE)
    if stage is not None:
        stage.spec = dict(spec)
        stage.fingerprint = stage_fingerprint(stage.kind, spec, stage.inputs)
        atomic_write_json(run_dir / STAGE_FILE, stage.to_dict())
        run["fingerprint"] = stage.fingerprint
    run["spec"] = dict(spec)
    atomic_write_json(path, run)
