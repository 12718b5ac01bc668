"""``--wandb_args``: the run's results, its results table and its config, logged to Weights & Biases.

``k=v,...`` are passed to ``wandb.init`` (``project``, ``entity``, ``name``, ``group``, ``job_type``,
``mode``, ``dir``, ``tags`` as ``a|b``); ``WANDB_MODE=offline`` works without an account. The run's
``config`` (secrets redacted, as recorded in run.json) becomes the W&B config; every metric becomes a summary
value ``TASK/SPLIT/METRIC``; one table has a row per (task, split, metric) with value and 95% CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

_INIT_KEYS = frozenset(
    {"project", "entity", "name", "group", "job_type", "mode", "dir", "tags", "notes", "id", "resume"}
)


def _parse(text: str) -> dict[str, Any]:
    from harness.backends.base import parse_kv_args

    args = parse_kv_args(text, "--wandb_args")
    unknown = sorted(set(args) - _INIT_KEYS)
    if unknown:
        known = ", ".join(sorted(_INIT_KEYS))
        raise ConfigError(f"--wandb_args: unknown key(s) {', '.join(unknown)} (known: {known})")
    if "tags" in args:
        args["tags"] = [t for t in str(args["tags"]).split("|") if t]
    return args


def check_wandb(text: str) -> None:
    """Before any work: the arguments parse and ``wandb`` is importable."""
    _parse(text)
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("--wandb_args needs the wandb package: pip install wandb") from None


def metric_rows(summary: Mapping[str, Any]) -> Iterator[tuple[str, str, str, float | None, Any, Any]]:
    """``(task, split, metric, value, ci_low, ci_high)`` for every number in the results."""
    for task, res in (summary.get("tasks") or {}).items():
        metrics, ci = res.get("metrics") or {}, res.get("ci95") or {}
        for key, value in metrics.items():
            if isinstance(value, Mapping):
                for metric, v in value.items():
                    lohi = (ci.get(key) or {}).get(metric) or [None, None]
                    yield task, key, metric, v, lohi[0], lohi[1]
            else:
                lohi = ci.get(key) or [None, None]
                yield task, "all", key, value, lohi[0], lohi[1]


def log_to_wandb(text: str, run_dir: Path, summary: Mapping[str, Any], run_json: Mapping[str, Any]) -> None:
    """Log one finished invocation; a W&B failure is a warning, never a lost run."""
    import wandb

    from harness.progress import console

    args = _parse(text)
    args.setdefault("name", Path(run_dir).name)
    if "dir" not in args and not os.environ.get("WANDB_DIR"):
        args["dir"] = str(run_dir)  # W&B's own files (offline runs) next to the run they describe
    try:
        wb = wandb.init(config={"ditto_bench": dict(run_json.get("config") or {}),
                                "spec": dict(run_json.get("spec") or {})}, **args)
        rows = list(metric_rows(summary))
        for task, split, metric, value, _, _ in rows:
            if isinstance(value, int | float):
                wb.summary[f"{task}/{split}/{metric}"] = value
        wb.summary["complete"] = bool(summary.get("complete"))
        table = wandb.Table(columns=["task", "split", "metric", "value", "ci95_low", "ci95_high"],
                            data=[list(r) for r in rows])
        wb.log({"results": table})
        wb.finish()
    except Exception as exc:  # the results are on disk; W&B is a copy
        console.print(f"[yellow]warning[/]: --wandb_args: logging to W&B failed: {type(exc).__name__}: {exc}")
