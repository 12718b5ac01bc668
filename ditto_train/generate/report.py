"""The generation report: totals read back from the output files, so they hold across resumed runs.

Streaming: one pass over each per-language file, keeping only counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ditto_train.generate.config import FILTER_KEYS, USAGE_KEYS
from ditto_train.generate.output import LANG_ORDER, part_path
from ditto_train.generate.runner import RunStats
from harness.jsonl import iter_complete_lines


def _empty() -> dict[str, Any]:
    return {
        "roles": 0,
        "sessions": 0,
        "turns": 0,
        "turns_by_type": Counter(),
        "rejected_sessions": 0,
        "rejected_by_reason": Counter(),
        "filtered": Counter(dict.fromkeys(FILTER_KEYS, 0)),
        "usage": Counter(dict.fromkeys(USAGE_KEYS, 0)),
    }


def totals(out: Path, split: str, langs: tuple[str, ...]) -> dict[str, Any]:
    """Per-language and overall counts over everything in ``out`` for ``split``."""
    by_lang: dict[str, dict[str, Any]] = {}
    roles: set[str] = set()
    for lang in langs:
        t = _empty()
        for _, obj in iter_complete_lines(part_path(out, split, lang)):
            meta = obj.get("meta") or {}
            roles.add(str(meta.get("id")))
            t["roles"] += 1
            t["sessions"] += 1
            types = meta.get("query_types") or []
            t["turns"] += len(types)
            t["turns_by_type"].update(types)
            t["filtered"].update(meta.get("filtered") or {})
            t["usage"].update(meta.get("usage") or {})
        for _, obj in iter_complete_lines(part_path(out, split, lang, rejected=True)):
            meta = obj.get("meta") or {}
            t["rejected_sessions"] += 1
            t["rejected_by_reason"][str(obj.get("reason"))] += 1
            t["filtered"].update(meta.get("filtered") or {})
            t["usage"].update(meta.get("usage") or {})
        by_lang[lang] = {k: dict(v) if isinstance(v, Counter) else v for k, v in t.items()}
    overall = _empty()
    for t in by_lang.values():
        for key, value in t.items():
            if isinstance(value, dict):
                overall[key].update(value)
            else:
                overall[key] += value
    overall["roles"] = len(roles)
    return {
        "all": {k: dict(v) if isinstance(v, Counter) else v for k, v in overall.items()},
        "by_lang": by_lang,
    }


def build_report(
    out: Path,
    split: str,
    langs: tuple[str, ...],
    stats: RunStats,
    spec: Mapping[str, Any],
    merged: tuple[Path, int],
) -> dict[str, Any]:
    """The ``report.json`` document."""
    # Languages of earlier runs into the same directory count too: the merged file holds them.
    present = tuple(
        lang
        for lang in LANG_ORDER
        if lang in langs or part_path(out, split, lang).exists() or part_path(out, split, lang, True).exists()
    )
    tot = totals(out, split, present)
    return {
        "split": split,
        "langs": list(present),
        "output": merged[0].name,
        "output_lines": merged[1],
        "totals": tot["all"],
        "by_lang": tot["by_lang"],
        "this_run": {
            "eligible_sessions": stats.eligible,
            "already_done": stats.already_done,
            "written": stats.written,
            "rejected": stats.rejected,
            "rejected_by_reason": dict(stats.reasons),
            "api_error_sessions": stats.api_errors,
            "pending_after_run": stats.eligible - stats.already_done - stats.written - stats.rejected,
            "errors": stats.errors,
            "calls": stats.calls,
            "cached_calls": stats.cached_calls,
            "wall_s": round(stats.wall_s, 3),
            "calls_per_s": round(stats.calls / stats.wall_s, 2) if stats.wall_s > 0 else None,
        },
        "spec": dict(spec),
    }


def print_report(report: Mapping[str, Any]) -> None:
    """A rich table of the report on stderr."""
    from rich.table import Table

    from harness.progress import console

    langs = list(report["by_lang"])
    table = Table(title=f"ditto-bench generate: {report['split']} → {report['output']}")
    table.add_column("")
    for lang in langs:
        table.add_column(lang, justify="right")
    table.add_column("all", justify="right")

    def row(name: str, get: Any) -> None:
        table.add_row(name, *(str(get(report["by_lang"][lg])) for lg in langs), str(get(report["totals"])))

    row("sessions", lambda t: t["sessions"])
    row("turns", lambda t: t["turns"])
    row("  role-specific", lambda t: t["turns_by_type"].get("role_specific", 0))
    row("  contrastive", lambda t: t["turns_by_type"].get("contrastive", 0))
    row("rejected sessions", lambda t: t["rejected_sessions"])
    for key in FILTER_KEYS:
        row(f"filtered: {key}", lambda t, k=key: t["filtered"].get(k, 0))
    row("supervisor calls", lambda t: t["usage"].get("calls", 0))
    row("  from cache", lambda t: t["usage"].get("cached_calls", 0))
    row("prompt tokens", lambda t: t["usage"].get("prompt_tokens", 0))
    row("completion tokens", lambda t: t["usage"].get("completion_tokens", 0))
    console.print(table)
    run = report["this_run"]
    console.print(
        f"this run: {run['written']} written, {run['rejected']} rejected, "
        f"{run['api_error_sessions']} API errors "
        f"(retried next run), {run['already_done']} already done; {run['calls']} calls in {run['wall_s']} s"
    )
    for err in run["errors"][:5]:
        console.print(f"[red]api error[/red] {err}")
