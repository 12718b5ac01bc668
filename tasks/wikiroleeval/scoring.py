"""WikiRoleEval aggregation: the robust numbers (``semantics: robust``) and the ``official`` block.

The robust numbers follow the official reducers (ditto_method.md §2.5) with forgiving parsers and every
failure counted instead of crashing; the ``official`` block (:mod:`tasks.wikiroleeval.official`) is what
the released code itself would print for the same completions. Nothing here modifies a record: verdicts
are derived from it (:func:`derive`), and :func:`annotated` makes the copy written to ``samples.jsonl``.

Per turn: consistency = share of parsed samples naming the gold label (0 when none parsed);
rejection = majority vote of parsed 0/1 samples (tie -> first seen), scored as agreement with the label
on every turn; knowledge = mean of parsed scores. A turn without a value is excluded from its mean and
counted in ``failures``. ``all`` and each language are means over turns (micro-averages), as in
the official ``scoring.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.stats import clustered_mean
from harness.task import parse_judgment
from harness.types import ParseResult
from judges.names import normalize_name
from judges.parsers import parse_consistency, parse_knowledge, parse_rejection
from judges.reducers import TurnVerdict, reduce_consistency, reduce_knowledge, reduce_rejection
from tasks.wikiroleeval.official import official_block

METRICS = ("consistency", "knowledge", "rejection")
SPLITS = ("all", "en", "zh")


def parse_sample(metric: str, text: str | None, lang: str) -> ParseResult:
    if metric == "consistency":
        return parse_consistency(text, lang)
    if metric == "rejection":
        return parse_rejection(text)
    if metric == "knowledge":
        return parse_knowledge(text)
    raise ValueError(f"unknown WikiRoleEval metric {metric!r}")


def judgment_samples(metric: str, judgment: Mapping[str, Any], lang: str) -> list[ParseResult]:
    """Parse a recorded judgment's completions with this metric's parser (see :func:`parse_judgment`)."""
    return parse_judgment(judgment, lambda text: parse_sample(metric, text, lang))


def turn_verdict(metric: str, samples: Sequence[ParseResult], label: str) -> TurnVerdict:
    """One turn's verdict. Consistency compares the chosen names with the label under the one name rule
    (:func:`judges.names.normalize_name`, applied here to both sides; the reducer itself is exact)."""
    if metric == "consistency":
        named = [replace(s, value=normalize_name(s.value)) if s.status == "ok" else s for s in samples]
        return reduce_consistency(named, normalize_name(label))
    if metric == "rejection":
        return reduce_rejection(samples)
    return reduce_knowledge(samples)


@dataclass(frozen=True)
class Derived:
    """What one recorded judgment yields: parsed samples, the turn verdict and the turn score."""

    parsed: list[ParseResult]
    verdict: TurnVerdict
    score: float | int | None

    def as_dict(self) -> dict[str, Any]:
        parsed = [asdict(p) for p in self.parsed]
        return {"parsed": parsed, "verdict": asdict(self.verdict), "score": self.score}


def derive_judgment(rec: Mapping[str, Any], turn: int, metric: str, j: Mapping[str, Any]) -> Derived:
    """Parse and reduce one judgment of ``rec`` (pure: the record is not touched)."""
    samples = judgment_samples(metric, j, rec["lang"])
    v = turn_verdict(metric, samples, rec["label"])
    score: float | int | None = v.value
    if metric == "rejection":
        score = None if v.value is None else int(v.value == rec["rejection_labels"][turn])
    return Derived(samples, v, score)


def derive(rec: Mapping[str, Any]) -> dict[tuple[int, str], Derived]:
    """Every judgment of one session record, derived: ``{(turn, metric): Derived}``."""
    return {
        (t["turn"], metric): derive_judgment(rec, t["turn"], metric, j)
        for t in rec["turns"]
        for metric, j in t["judgments"].items()
    }


def scores(rec: Mapping[str, Any]) -> dict[tuple[int, str], float | int | None]:
    """``{(turn, metric): score}`` of one session record (None: the turn has no score)."""
    return {k: d.score for k, d in derive(rec).items()}


def annotated(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``rec`` whose judgments also carry ``parsed``, ``verdict`` and ``score`` (the samples.jsonl
    view for readers; the record itself is left as it is)."""
    derived = derive(rec)
    out = dict(rec)
    out["turns"] = [
        {
            **t,
            "judgments": {
                m: {**j, **derived[(t["turn"], m)].as_dict()} for m, j in t["judgments"].items()
            },
        }
        for t in rec["turns"]
    ]
    return out


def _empty_failures() -> dict[str, dict[str, int]]:
    keys = (
        "parse_error", "api_error", "turns_no_verdict", "turns_api_error", "turns_pending", "turns_scored"
    )
    return {m: dict.fromkeys(keys, 0) for m in METRICS}


def aggregate(records: Sequence[dict[str, Any]], *, seed: int, n_boot: int) -> dict[str, Any]:
    """Metrics, 95% session-bootstrap CIs, failure counts and the rejection confusion matrix (robust), plus
    the ``official`` block (:mod:`tasks.wikiroleeval.official`). Pure: the records are not modified."""
    failures = _empty_failures()
    # per split and metric: per-session (sum, count) of scored turn values
    sums: dict[str, dict[str, list[tuple[float, float]]]] = {s: {m: [] for m in METRICS} for s in SPLITS}
    confusion = {s: {"tp": 0, "fn": 0, "fp": 0, "tn": 0} for s in SPLITS}
    by_pos: dict[int, list[float]] = {}
    n_turns = 0
    for rec in records:
        lang = rec["lang"]
        per_metric = {m: [0.0, 0] for m in METRICS}
        gold_pos = rec.get("gold_position")
        derived = derive(rec)
        for turn in rec["turns"]:
            n_turns += 1
            for metric in METRICS:
                j = turn["judgments"].get(metric)
                f = failures[metric]
                if j is None:
                    f["turns_pending"] += 1
                    continue
                d = derived[(turn["turn"], metric)]
                verdict = d.verdict
                f["parse_error"] += verdict.n_parse_error
                f["api_error"] += verdict.n_api_error
                if j["status"] == "pending":
                    f["turns_pending"] += 1
                elif verdict.status == "no_verdict":
                    f["turns_no_verdict"] += 1
                elif verdict.status == "api_error":
                    f["turns_api_error"] += 1
                score = d.score
                if score is None:
                    continue
                f["turns_scored"] += 1
                per_metric[metric][0] += float(score)
                per_metric[metric][1] += 1
                if metric == "consistency" and gold_pos is not None:
                    by_pos.setdefault(int(gold_pos), []).append(float(score))
                if metric == "rejection":
                    label = rec["rejection_labels"][turn["turn"]]
                    pred = int(verdict.value or 0)  # scored, so a 0/1 vote
                    cell = {(1, 1): "tp", (1, 0): "fn", (0, 1): "fp", (0, 0): "tn"}[(label, pred)]
                    for split in ("all", lang):
                        confusion[split][cell] += 1
        for metric in METRICS:
            s, c = per_metric[metric]
            for split in ("all", lang):
                sums[split][metric].append((s, c))
    metrics: dict[str, dict[str, float | None]] = {}
    ci95: dict[str, dict[str, list[float] | None]] = {}
    n_scored: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        metrics[split], ci95[split], n_scored[split] = {}, {}, {}
        for metric in METRICS:
            metrics[split][metric], ci95[split][metric], n_scored[split][metric] = clustered_mean(
                sums[split][metric], seed=seed, n_resamples=n_boot
            )
    for cells in confusion.values():
        pos, neg = cells["tp"] + cells["fn"], cells["fp"] + cells["tn"]
        cells_any: dict[str, Any] = cells
        cells_any["under_refusal_rate"] = cells["fn"] / pos if pos else None
        cells_any["over_refusal_rate"] = cells["fp"] / neg if neg else None
    return {
        "metrics": metrics,
        "ci95": ci95,
        "n_sessions": len(records),
        "n_sessions_by_lang": {lang: sum(1 for r in records if r["lang"] == lang) for lang in ("en", "zh")},
        "n_turns": n_turns,
        "n_scored_turns": n_scored,
        "failures": failures,
        "rejection_confusion": confusion,
        "consistency_by_gold_position": {
            str(p): {"mean": sum(v) / len(v), "n": len(v)} for p, v in sorted(by_pos.items())
        },
        "semantics": "robust",
        "official": official_block(records),
    }
