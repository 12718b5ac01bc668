"""MT-Bench calibration: re-judge FastChat's published answers with FastChat's prompts and compare the new
judge's ratings with the published GPT-4 ratings of the same answers.

Each model's answers are judged by the ``mtbench`` task in judge mode (:func:`harness.engine.execute`), one
run directory per model under ``<out>/runs/`` (cached, resumable, ``--judge_batch`` works), so the prompts
are exactly the ones ``ditto-bench judge`` sends. Only (model, question, turn) rows that both judges rated
are compared; the rest are counted.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.datafetch import RemoteFile, Source, fetch
from harness.errors import ConfigError, DataError
from harness.jsonl import iter_jsonl, read_jsonl
from judges.calibrate import agreement as ag

PUBLISHED_URL = "https://huggingface.co/spaces/lmsys/mt-bench/resolve/main/data/mt_bench/model_judgment/gpt-4_single.jsonl"
# The sha256 of FastChat's published gpt-4_single.jsonl has to be read off a verified download; it is not
# recorded yet (this code was written without network access), so without --reference the command says how
# to get the file instead of downloading something it cannot verify. Set the pin here once known.
PUBLISHED_SHA256: str | None = None
PUBLISHED_SIZE: int | None = None

RefKey = tuple[str, int, int]  # model, question id, turn (1-based)


def published_remote() -> RemoteFile | None:
    if PUBLISHED_SHA256 is None:
        return None
    return RemoteFile(
        name="gpt-4_single.jsonl",
        sha256=PUBLISHED_SHA256,
        size=PUBLISHED_SIZE,
        sources=(Source(PUBLISHED_URL),),
    )


def reference_path(given: Path | None) -> Path:
    """``--reference`` when given, else the sha256-verified download of FastChat's published ratings."""
    if given is not None:
        if not given.is_file():
            raise ConfigError(f"--reference {given}: no such file")
        return given
    remote = published_remote()
    if remote is None:
        raise ConfigError(
            "no --reference given and no verified sha256 pin for FastChat's gpt-4_single.jsonl in this "
            f"install: download {PUBLISHED_URL} and pass --reference FILE"
        )
    return fetch(remote)


@dataclass(frozen=True)
class Reference:
    ratings: dict[RefKey, float]
    duplicates: int
    unparseable: int  # FastChat's -1 rows: no published rating to compare with
    source: str


def load_reference(path: Path) -> Reference:
    """Published ratings from FastChat's ``gpt-4_single.jsonl`` or a TSV ``model, question_id, turn, score``.

    Duplicate (model, question, turn) rows keep the first one, as FastChat's ``clean_judgment.py`` does;
    ``-1`` (unparseable) rows are counted and left out."""
    ratings: dict[RefKey, float] = {}
    dup = bad = 0

    def add(key: RefKey, score: float) -> None:
        nonlocal dup, bad
        if key in ratings:
            dup += 1
        elif score == -1:
            bad += 1
        else:
            ratings[key] = score

    if path.suffix in (".tsv", ".csv"):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ",")
            for line_no, row in enumerate(reader, start=2):
                try:
                    add((row["model"], int(row["question_id"]), int(row["turn"])), float(row["score"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise DataError(f"{path}:{line_no}: bad ratings row: {exc}") from None
    else:
        for line_no, rec in iter_jsonl(path):
            try:
                add((str(rec["model"]), int(rec["question_id"]), int(rec["turn"])), float(rec["score"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{line_no}: bad judgment record: {exc}") from None
    if not ratings:
        raise DataError(f"{path}: no published rating")
    return Reference(ratings, dup, bad, str(path))


@dataclass(frozen=True)
class Row:
    model: str
    question_id: int
    turn: int
    category: str
    published: float
    new: float


def ratings_of_run(run_dir: Path) -> tuple[dict[tuple[int, int], tuple[str, float | None, str]], str]:
    """(question id, turn) -> (category, rating or None, rating status) from a finished judge run."""
    out: dict[tuple[int, int], tuple[str, float | None, str]] = {}
    task = ""
    for rec in read_jsonl(run_dir / "samples.jsonl"):
        task = str(rec["task"])
        for t in rec["turns"]:
            j = t["judgments"].get("rating")
            status = "pending" if j is None else str(j.get("rating_status"))
            score = None if j is None or j.get("score") is None else float(j["score"])
            out[(int(rec["question_id"]), int(t["turn"]) + 1)] = (str(rec["category"]), score, status)
    return out, task


def _block(rows: Sequence[Row], *, seed: int, n_boot: int) -> dict[str, Any]:
    a = [r.published for r in rows]
    b = [r.new for r in rows]
    by_q: dict[tuple[str, int], list[ag.Pair]] = {}
    for r in rows:
        by_q.setdefault((r.model, r.question_id), []).append((r.published, r.new))
    groups = list(by_q.values())
    out: dict[str, Any] = {
        "n": len(rows),
        "spearman": ag.spearman(a, b),
        "kendall": ag.kendall(a, b),
        "mean_abs_diff": ag.mean_abs_diff(a, b),
        "exact_agreement": ag.exact_agreement(a, b),
        "within_1": ag.within(a, b, 1.0),
        "mean_published": sum(a) / len(a) if a else None,
        "mean_new": sum(b) / len(b) if b else None,
        "mean_diff_new_minus_published": ag.mean_diff(a, b),
    }
    out["ci95"] = {
        name: ag.bootstrap_ci(groups, fn, seed=seed, n_resamples=n_boot)
        for name, fn in (
            ("spearman", ag.spearman),
            ("kendall", ag.kendall),
            ("mean_abs_diff", ag.mean_abs_diff),
            ("exact_agreement", ag.exact_agreement),
            ("within_1", lambda x, y: ag.within(x, y)),
        )
    }
    return out


def model_level(rows: Sequence[Row]) -> dict[str, Any]:
    """Per-model means of the paired rows under both judges, and the rank correlation of the models."""
    per: dict[str, list[Row]] = {}
    for r in rows:
        per.setdefault(r.model, []).append(r)
    means = {
        m: {
            "published": sum(r.published for r in rs) / len(rs),
            "new": sum(r.new for r in rs) / len(rs),
            "n": len(rs),
        }
        for m, rs in sorted(per.items())
    }
    a = [v["published"] for v in means.values()]
    b = [v["new"] for v in means.values()]
    return {"models": means, "spearman": ag.spearman(a, b), "kendall": ag.kendall(a, b)}


def confusion(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts of (published, new) ratings rounded half up to whole points 1..10 (rows: published)."""
    grid = [[0] * 10 for _ in range(10)]
    for r in rows:
        i = min(10, max(1, int(r.published + 0.5))) - 1
        j = min(10, max(1, int(r.new + 0.5))) - 1
        grid[i][j] += 1
    return {"labels": list(range(1, 11)), "rows": "published", "columns": "new", "counts": grid}


def compare(
    reference: Reference, runs: Mapping[str, Path], *, seed: int, n_boot: int
) -> tuple[dict[str, Any], list[Row]]:
    """calibration.json content for the judge runs of several models."""
    rows: list[Row] = []
    unpaired = {"new_not_scored": 0, "no_published_rating": 0}
    new_status: dict[str, int] = {}
    for model, run_dir in runs.items():
        got, _ = ratings_of_run(run_dir)
        for (qid, turn), (cat, score, status) in sorted(got.items()):
            pub = reference.ratings.get((model, qid, turn))
            if pub is None:
                unpaired["no_published_rating"] += 1
                continue
            if score is None:
                unpaired["new_not_scored"] += 1
                new_status[status] = new_status.get(status, 0) + 1
                continue
            rows.append(Row(model, qid, turn, cat, pub, score))
    if not rows:
        raise DataError("no (model, question, turn) was rated by both judges: nothing to compare")
    cats = sorted({r.category for r in rows})
    result: dict[str, Any] = {
        "set": "mtbench",
        "reference": {
            "source": reference.source,
            "duplicates_ignored": reference.duplicates,
            "unparseable_published": reference.unparseable,
        },
        "n_paired": len(rows),
        "unpaired": {**unpaired, "new_not_scored_by_status": new_status},
        "overall": _block(rows, seed=seed, n_boot=n_boot),
        "by_turn": {
            f"turn{t}": _block([r for r in rows if r.turn == t], seed=seed, n_boot=n_boot)
            for t in sorted({r.turn for r in rows})
        },
        "by_category": {
            c: _block([r for r in rows if r.category == c], seed=seed, n_boot=n_boot) for c in cats
        },
        "model_level": model_level(rows),
        "confusion": confusion(rows),
    }
    return result, rows


def models_in(reference: Reference) -> list[str]:
    return sorted({m for m, _, _ in reference.ratings})


def question_ids(reference: Reference, model: str) -> set[int]:
    return {q for m, q, _ in reference.ratings if m == model}


def rows_json(rows: Iterable[Row]) -> list[dict[str, Any]]:
    return [r.__dict__ for r in rows]
