"""The sweep's results: ``grid.csv``, ``grid.md`` and the figures, read from the evaluation stages' records.

One row per seed × supervisor × language (all, en, zh) × WikiRoleEval metric: ``supervision`` (the
supervisor with the profile injected), ``imitation`` (the seed fine-tuned on that supervisor's data),
``baseline`` (the seed before fine-tuning), ``gain`` = imitation − baseline, each with its 95% bootstrap CI
and the number of scored turns ``n``. A value whose stage has not finished is empty, never 0.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ditto_train.sweep.plan import Stage, pair_name
from ditto_train.sweep.spec import SweepSpec
from harness.jsonl import atomic_write_text

LANGS = ("all", "en", "zh")
METRICS = ("consistency", "knowledge", "rejection")
ROLES = ("supervision", "imitation", "baseline")
COLUMNS = (
    "seed",
    "supervisor",
    "lang",
    "metric",
    *(f"{r}{s}" for r in ROLES for s in ("", "_ci_low", "_ci_high", "_n")),
    "gain",
)


def _cell(results: Mapping[str, Any] | None, lang: str, metric: str) -> tuple[Any, Any, Any, Any]:
    if results is None:
        return None, None, None, None
    wre = results.get("tasks", {}).get("wikiroleeval", {})
    value = (wre.get("metrics", {}).get(lang) or {}).get(metric)
    ci = (wre.get("ci95", {}).get(lang) or {}).get(metric) or [None, None]
    n = (wre.get("n_scored_turns", {}).get(lang) or {}).get(metric)
    return value, ci[0], ci[1], n


def _results(out: Path, stage: str, done: Mapping[str, bool]) -> dict[str, Any] | None:
    if not done.get(stage):
        return None
    try:
        return json.loads((out / stage / "results.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def grid_rows(out: Path, spec: SweepSpec, done: Mapping[str, bool]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for seed, sup in spec.pairs:
        res = {
            "supervision": _results(out, f"supervise/{sup}", done),
            "imitation": _results(out, f"eval/{pair_name(seed, sup)}", done),
            "baseline": _results(out, f"baseline/{seed}", done),
        }
        for lang in LANGS:
            for metric in METRICS:
                row: dict[str, Any] = {"seed": seed, "supervisor": sup, "lang": lang, "metric": metric}
                for role in ROLES:
                    v, lo, hi, n = _cell(res[role], lang, metric)
                    row |= {role: v, f"{role}_ci_low": lo, f"{role}_ci_high": hi, f"{role}_n": n}
                imi, base = row["imitation"], row["baseline"]
                row["gain"] = imi - base if imi is not None and base is not None else None
                rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow(
            {
                k: ("" if row[k] is None else (repr(row[k]) if isinstance(row[k], float) else row[k]))
                for k in COLUMNS
            }
        )
    return buf.getvalue()


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _markdown(rows: list[dict[str, Any]], spec: SweepSpec) -> str:
    seeds = list(dict.fromkeys(s for s, _ in spec.pairs))
    sups = list(dict.fromkeys(v for _, v in spec.pairs))
    lines = [
        "# Cross-supervision grid",
        "",
        "Cells: imitation (gain over the seed's baseline). Row *supervision*: the supervisor answering",
        "with the character's profile in context. Column *baseline*: the seed before fine-tuning.",
        "– = not available.",
    ]
    by = {(r["seed"], r["supervisor"], r["lang"], r["metric"]): r for r in rows}
    for lang in LANGS:
        for metric in METRICS:
            lines += [
                "",
                f"## {metric} ({lang})",
                "",
                "| seed \\ supervisor | baseline | " + " | ".join(sups) + " |",
                "|---|---|" + "---|" * len(sups),
            ]
            sup_row = []
            for sup in sups:
                r = next((by[(s, sup, lang, metric)] for s in seeds if (s, sup, lang, metric) in by), None)
                sup_row.append(_fmt(r["supervision"] if r else None))
            lines.append("| *supervision* | | " + " | ".join(sup_row) + " |")
            for seed in seeds:
                cells = []
                base = None
                for sup in sups:
                    r = by.get((seed, sup, lang, metric))
                    if r is None:
                        cells.append("")
                        continue
                    base = r["baseline"] if r["baseline"] is not None else base
                    gain = "" if r["gain"] is None else f" ({r['gain']:+.2f})"
                    cells.append(_fmt(r["imitation"]) + gain)
                lines.append(f"| {seed} | {_fmt(base)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, spec: SweepSpec, plan: Mapping[str, Stage]) -> list[dict[str, Any]]:
    """Write ``grid.csv``, ``grid.md`` and ``figures/`` from the stages that are done."""
    from ditto_train.sweep.state import is_done

    done = {name: is_done(out, name, st.kind, st.fingerprint) for name, st in plan.items()}
    rows = grid_rows(out, spec, done)
    text = _csv(rows)
    try:
        same = (out / "grid.csv").read_text(encoding="utf-8") == text
    except OSError:
        same = False
    figures = out / "figures"
    if same and (figures / "cross_supervision.svg").is_file():
        return rows  # same numbers as the files already there: nothing to redraw (a re-run of a done sweep)
    atomic_write_text(out / "grid.csv", text)
    atomic_write_text(out / "grid.md", _markdown(rows, spec))
    from ditto_train.sweep.figures import write_figures

    write_figures(figures, rows, spec)
    return rows
