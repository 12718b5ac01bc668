"""Paired comparison of two runs on the same items (``ditto-bench compare RUN_A RUN_B``).

Pairs are (task, session, turn, metric) judged with a score in both runs. Scores are derived from the typed
records of ``samples.jsonl`` (:mod:`harness.schema`) by the task's own scoring (``Task.scores``), never read
from the file, so a run needs no ``score`` step first and a hand-edited ``score`` cannot leak in. Per task,
split and metric: the two means over the paired turns, the difference B - A, a 95% paired bootstrap CI
resampling sessions (turns of a session stay together; :func:`harness.stats.paired_bootstrap_ci`), and a
Wilcoxon signed-rank test (scipy) on the per-session mean differences. Turns scored in only one run are
counted, not paired.

Splits: ``all``; the language for WikiRoleEval (``en``/``zh``); the turn for MT-Bench (``turn1``/``turn2``)
and the category when a task has several.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from harness.errors import ConfigError
from harness.schema import iter_records, read_run_file
from harness.stats import paired_bootstrap_ci
from harness.task import Task, get_task


@dataclass
class PairedResult:
    """One (task, split, metric) comparison."""

    task: str
    split: str
    metric: str
    n_sessions: int
    n_pairs: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci95: list[float] | None
    p_wilcoxon: float | None
    unpaired_a: int
    unpaired_b: int
    # per-session mean differences B - A behind the test (for plots; not part of the JSON document)
    session_diffs: list[float] = field(default_factory=list, repr=False)


@dataclass
class _Acc:
    sum_a: float = 0.0
    sum_b: float = 0.0
    count: int = 0


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, Any]]]]:
    """``run.json`` and the records of a run (validated, as plain dicts), by task and session id."""
    run = read_run_file(Path(run_dir) / "run.json")
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in iter_records(Path(run_dir) / "samples.jsonl"):
        records.setdefault(rec.task, {})[rec.session_id] = rec.raw()
    return run, records


def _task_for(name: str, run: dict[str, Any]) -> Task:
    cfg = run.get("config") or {}
    return get_task(
        name, shuffle_candidates=bool(cfg.get("shuffle_candidates")), seed=int(cfg.get("seed", 1234))
    )


def _splits(task_records: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Session id -> its splits (besides per-turn ones, added later)."""
    categories = {r.get("category") for r in task_records.values() if r.get("category") is not None}
    out: dict[str, list[str]] = {}
    for sid, rec in task_records.items():
        splits = ["all"]
        if rec.get("lang"):
            splits.append(str(rec["lang"]))
        if len(categories) > 1:
            splits.append(str(rec["category"]))
        out[sid] = splits
    return out


def _float(s: float | int | None) -> float | None:
    return None if s is None else float(s)


def compare_task(
    task: str,
    recs_a: dict[str, dict[str, Any]],
    recs_b: dict[str, dict[str, Any]],
    *,
    seed: int,
    n_boot: int,
    scorer: Task | None = None,
) -> list[PairedResult]:
    """All (split, metric) comparisons of one task (``scorer``: the task deriving scores; default: the
    registered task of that name)."""
    scorer = scorer or get_task(task)
    common = [sid for sid in recs_a if sid in recs_b]
    for sid in common:
        if recs_a[sid].get("prompts") != recs_b[sid].get("prompts"):
            raise ConfigError(
                f"{task}: session {sid} has different prompts in the two runs (not the same items)"
            )
    splits = _splits({sid: recs_a[sid] for sid in common})
    per: dict[tuple[str, str], dict[str, _Acc]] = {}
    unpaired: dict[tuple[str, str], list[int]] = {}
    by_turn = any(recs_a[sid].get("category") is not None for sid in common)
    for sid in common:
        turns_b = {t["turn"]: t for t in recs_b[sid]["turns"]}
        scores_a, scores_b = scorer.scores(recs_a[sid]), scorer.scores(recs_b[sid])
        for ta in recs_a[sid]["turns"]:
            tb = turns_b.get(ta["turn"])
            keys = [*splits[sid], *([f"turn{ta['turn'] + 1}"] if by_turn else [])]
            metrics = set(ta["judgments"]) | set((tb or {}).get("judgments", {}))
            for metric in sorted(metrics):
                a = _float(scores_a.get((ta["turn"], metric)))
                b = _float(scores_b.get((ta["turn"], metric)))
                for split in keys:
                    key = (split, metric)
                    if a is None or b is None:
                        miss = unpaired.setdefault(key, [0, 0])
                        miss[0] += a is not None
                        miss[1] += b is not None
                        continue
                    acc = per.setdefault(key, {}).setdefault(sid, _Acc())
                    acc.sum_a += a
                    acc.sum_b += b
                    acc.count += 1
    out: list[PairedResult] = []
    for key in sorted(set(per) | set(unpaired), key=lambda k: (k[1], _split_order(k[0]))):
        sessions = per.get(key, {})
        n = sum(a.count for a in sessions.values())
        sa = sum(a.sum_a for a in sessions.values())
        sb = sum(a.sum_b for a in sessions.values())
        diffs = [a.sum_b - a.sum_a for a in sessions.values()]
        counts = [a.count for a in sessions.values()]
        miss = unpaired.get(key, [0, 0])
        out.append(
            PairedResult(
                task=task,
                split=key[0],
                metric=key[1],
                n_sessions=len(sessions),
                n_pairs=n,
                mean_a=sa / n if n else None,
                mean_b=sb / n if n else None,
                diff=(sb - sa) / n if n else None,
                ci95=paired_bootstrap_ci(diffs, counts, seed=seed, n_resamples=n_boot) if n else None,
                p_wilcoxon=_wilcoxon([d / c for d, c in zip(diffs, counts, strict=True)]),
                unpaired_a=miss[0],
                unpaired_b=miss[1],
                session_diffs=[d / c for d, c in zip(diffs, counts, strict=True)],
            )
        )
    return out


def _split_order(split: str) -> tuple[int, str]:
    order = {"all": 0, "en": 1, "zh": 2, "turn1": 3, "turn2": 4}
    return (order.get(split, 9), split)


def _wilcoxon(per_session_diffs: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero, None without data."""
    if not per_session_diffs:
        return None
    if all(d == 0 for d in per_session_diffs):
        return 1.0
    return float(stats.wilcoxon(per_session_diffs, zero_method="wilcox").pvalue)


def compare_runs(
    run_a: Path, run_b: Path, *, tasks: Sequence[str] | None = None, seed: int = 1234, n_boot: int = 2000
) -> tuple[list[PairedResult], list[str]]:
    """Compare two run directories; returns the results and notes (judge differences, unmatched sessions)."""
    ja, recs_a = load_run(run_a)
    jb, recs_b = load_run(run_b)
    shared = [t for t in recs_a if t in recs_b]
    chosen = list(tasks) if tasks else shared
    missing = [t for t in chosen if t not in shared]
    if missing:
        raise ConfigError(
            f"--tasks: {', '.join(missing)} not in both runs (both have: {', '.join(shared) or 'none'})"
        )
    if not chosen:
        raise ConfigError(f"{run_a} and {run_b} have no task in common")
    notes: list[str] = []
    results: list[PairedResult] = []
    for t in chosen:
        sa = ja.get("spec", {}).get("tasks", {}).get(t, {})
        sb = jb.get("spec", {}).get("tasks", {}).get(t, {})
        if sa.get("version") != sb.get("version"):
            raise ConfigError(
                f"{t}: task versions differ ({sa.get('version')} vs {sb.get('version')}); not comparable"
            )
        for what in ("judge", "templates", "data_sha256"):
            if sa.get(what) != sb.get(what):
                notes.append(f"{t}: the runs differ in {what} (A: {sa.get(what)}; B: {sb.get(what)})")
        only_a = len(set(recs_a[t]) - set(recs_b[t]))
        only_b = len(set(recs_b[t]) - set(recs_a[t]))
        if only_a or only_b:
            notes.append(f"{t}: {only_a} session(s) only in A and {only_b} only in B are left out")
        results += compare_task(t, recs_a[t], recs_b[t], seed=seed, n_boot=n_boot, scorer=_task_for(t, ja))
    return results, notes


def as_json(results: Sequence[PairedResult], notes: Sequence[str], run_a: Path, run_b: Path) -> str:
    """JSON document of a comparison."""
    doc = {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "difference": "B - A",
        "results": [{k: v for k, v in asdict(r).items() if k != "session_diffs"} for r in results],
        "notes": list(notes),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
