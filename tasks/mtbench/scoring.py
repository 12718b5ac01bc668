"""MT-Bench aggregation with ``show_result.py`` semantics (single mode).

Per turn: the mean rating over that turn's valid judgments. ``all``: the mean over *all* valid judgments of
the model (not the mean of the two turn means; they differ when the turns have different numbers of valid
rows). FastChat's ``-1`` rows (unparseable rating, ``$ERROR$`` after failed retries) are excluded; here they
are ``parse_error`` / ``api_error`` results, excluded from the means and counted in ``failures``. The same
means per category. 95% CIs resample questions (both turns of a question stay together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from harness.stats import clustered_mean
from harness.task import parse_judgment
from harness.types import ParseResult
from tasks.mtbench.judge import parse_rating

METRIC = "rating"
FAILURE_KEYS = ("parse_error", "api_error", "judge_pending", "generation_missing")


def judgment_samples(judgment: Mapping[str, Any]) -> list[ParseResult]:
    """Parse a recorded judgment's completions as ratings (see :func:`parse_judgment`)."""
    return parse_judgment(judgment, parse_rating)


def rating_of(samples: Sequence[ParseResult]) -> tuple[str, float | int | None]:
    """Turn status and rating. FastChat asks for one sample; with more, the mean of the parsed ones."""
    ok = [s.value for s in samples if s.status == "ok"]
    if ok:
        return "ok", ok[0] if len(ok) == 1 else sum(ok) / len(ok)
    if any(s.status == "parse_error" for s in samples):
        return "parse_error", None
    return "api_error", None


def derive_judgment(j: Mapping[str, Any]) -> tuple[list[ParseResult], str, float | int | None]:
    """Parsed samples, turn status (``ok``, ``parse_error``, ``api_error``, ``pending``) and rating of one
    recorded judgment (pure)."""
    samples = judgment_samples(j)
    status, value = rating_of(samples)
    if j.get("status") == "pending":
        status = "pending"
    return samples, status, value


def scores(rec: Mapping[str, Any]) -> dict[tuple[int, str], float | int | None]:
    """``{(turn, "rating"): rating}`` of one session record (None: not rated)."""
    out: dict[tuple[int, str], float | int | None] = {}
    for turn in rec["turns"]:
        j = turn["judgments"].get(METRIC)
        if j is not None:
            out[(turn["turn"], METRIC)] = derive_judgment(j)[2]
    return out


def annotated(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``rec`` whose judgments also carry ``parsed``, ``rating_status`` and ``score`` (the
    samples.jsonl view; the record itself is left as it is)."""
    out = dict(rec)
    turns = []
    for turn in rec["turns"]:
        js = dict(turn["judgments"])
        if METRIC in js:
            samples, status, value = derive_judgment(js[METRIC])
            js[METRIC] = {
                **js[METRIC], "parsed": [asdict(s) for s in samples], "rating_status": status, "score": value
            }
        turns.append({**turn, "judgments": js})
    out["turns"] = turns
    return out


def _turn_key(turn: int) -> str:
    return f"turn{turn + 1}"


class _Acc:
    """Per-question sums and counts for one group of rows (overall or one category)."""

    def __init__(self) -> None:
        self.per_question: dict[str, dict[str, tuple[float, int]]] = {}

    def add(self, qid: str, key: str, value: float) -> None:
        bucket = self.per_question.setdefault(qid, {})
        s, c = bucket.get(key, (0.0, 0))
        bucket[key] = (s + float(value), c + 1)

    def summarise(
        self, qids: Sequence[str], keys: Sequence[str], *, seed: int, n_boot: int
    ) -> dict[str, Any]:
        means: dict[str, float | None] = {}
        cis: dict[str, list[float] | None] = {}
        ns: dict[str, int] = {}
        for key in keys:
            pairs = [self.per_question.get(q, {}).get(key, (0.0, 0)) for q in qids]
            means[key], cis[key], ns[key] = clustered_mean(pairs, seed=seed, n_resamples=n_boot)
        return {"metrics": means, "ci95": cis, "n": ns}


def aggregate(records: Sequence[dict[str, Any]], *, seed: int, n_boot: int) -> dict[str, Any]:
    """Metrics per turn and over both turns, per category, with CIs and failure counts (pure)."""
    overall = _Acc()
    by_cat: dict[str, _Acc] = {}
    cat_qids: dict[str, list[str]] = {}
    failures = dict.fromkeys(FAILURE_KEYS, 0)
    failures["duplicate_answers"] = 0
    n_turns = 0
    qids: list[str] = []
    for rec in records:
        qid = rec["session_id"]
        qids.append(qid)
        cat = str(rec.get("category"))
        cat_qids.setdefault(cat, []).append(qid)
        acc = by_cat.setdefault(cat, _Acc())
        failures["duplicate_answers"] += int(rec.get("answer_duplicates") or 0)
        for turn in rec["turns"]:
            n_turns += 1
            j = turn["judgments"].get(METRIC)
            if j is None:
                failures["generation_missing"] += 1
                continue
            _, status, value = derive_judgment(j)
            if status != "ok":
                failures["judge_pending" if status == "pending" else status] += 1
                continue
            assert value is not None
            for a in (overall, acc):
                a.add(qid, _turn_key(turn["turn"]), value)
                a.add(qid, "all", value)
    max_turns = max((len(r["turns"]) for r in records), default=2)
    keys = [*(_turn_key(t) for t in range(max_turns)), "all"]
    summary = overall.summarise(qids, keys, seed=seed, n_boot=n_boot)
    by_category = {
        cat: by_cat[cat].summarise(cat_qids[cat], keys, seed=seed, n_boot=n_boot) for cat in cat_qids
    }
    n_valid = summary["n"].get("all", 0)
    failures["not_scored"] = n_turns - n_valid
    return {
        "metrics": summary["metrics"],
        "ci95": summary["ci95"],
        "n_valid": n_valid,
        "n_valid_by_turn": {k: v for k, v in summary["n"].items() if k != "all"},
        "n_questions": len(records),
        "n_turns": n_turns,
        "failures": failures,
        "by_category": {cat: s["metrics"] for cat, s in by_category.items()},
        "ci95_by_category": {cat: s["ci95"] for cat, s in by_category.items()},
        "n_valid_by_category": {cat: s["n"].get("all", 0) for cat, s in by_category.items()},
        "semantics": "fastchat-show_result-single",
    }
