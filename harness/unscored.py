"""The unscored share of each metric of a run, and the ``--max_unscored`` gate on the exit code.

A turn is unscored for a metric when no judge sample could be parsed (``turns_no_verdict``, even where the
official semantics count it as 0), when its judge call failed (``turns_api_error``) or never ran
(``turns_pending``, which includes turns without a reply). A run above the limit still writes its
results; ``results.json`` then carries ``unscored_exceeded`` and the command exits 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_MAX_UNSCORED = 0.1
MAX_UNSCORED_ENV = "DITTO_BENCH_MAX_UNSCORED"  # the default of --max_unscored, when set
_UNSCORED_KEYS = ("turns_no_verdict", "turns_api_error", "turns_pending")


def unscored_shares(results: Mapping[str, Any]) -> dict[str, float]:
    """``{"task/metric": share}`` for every metric of every task in a ``results.json`` object."""
    out: dict[str, float] = {}
    for name, res in (results.get("tasks") or {}).items():
        fails = res.get("failures") or {}
        n_turns = int(res.get("n_turns") or 0)
        if not n_turns:
            continue
        nested = {k: v for k, v in fails.items() if isinstance(v, Mapping)}
        if nested:
            for metric, counts in nested.items():
                missing = sum(int(counts.get(k) or 0) for k in _UNSCORED_KEYS)
                out[f"{name}/{metric}"] = missing / n_turns
        elif "not_scored" in fails:
            out[f"{name}/score"] = int(fails["not_scored"]) / n_turns
    return out


def exceeded(results: Mapping[str, Any], limit: float) -> dict[str, float]:
    """The metrics whose unscored share is above ``limit``, worst first."""
    over = {k: v for k, v in unscored_shares(results).items() if v > limit}
    return dict(sorted(over.items(), key=lambda kv: -kv[1]))


def default_max_unscored() -> str:
    """The ``--max_unscored`` default: ``$DITTO_BENCH_MAX_UNSCORED`` when set, else 0.1 (a string, so that
    argparse checks it like a value on the command line)."""
    import os

    return os.environ.get(MAX_UNSCORED_ENV) or str(DEFAULT_MAX_UNSCORED)
