"""Combine the n judge samples of one turn into a per-turn verdict, with official semantics.

WikiRoleEval mixes reducers (ditto_method.md §2.5–2.6): consistency is the share of parsed votes
naming the gold role (an all-unparseable turn scores 0), rejection is a majority vote, knowledge
is a mean. Unlike the official code, a turn whose samples all failed is never dropped silently:
its status says why and the counts travel with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from harness.types import ParseResult

TurnStatus = Literal["ok", "no_verdict", "api_error"]


@dataclass(frozen=True)
class TurnVerdict:
    """One turn's score for one metric.

    ``value`` is ``None`` when the turn is excluded from the mean. ``status`` is ``ok`` when at
    least one sample parsed, ``api_error`` when none parsed and at least one request failed (a
    re-run retries it), ``no_verdict`` when every sample was a parse error.
    """

    value: float | int | None
    status: TurnStatus
    n_ok: int
    n_parse_error: int
    n_api_error: int


def _tally(samples: Sequence[ParseResult]) -> tuple[list[ParseResult], int, int]:
    if not samples:
        raise ValueError("cannot reduce a turn with no judge samples")
    ok = [s for s in samples if s.status == "ok"]
    n_api = sum(1 for s in samples if s.status == "api_error")
    n_parse = sum(1 for s in samples if s.status == "parse_error")
    if len(ok) + n_api + n_parse != len(samples):
        bad = next(s.status for s in samples if s.status not in ("ok", "api_error", "parse_error"))
        raise ValueError(f"unknown ParseResult status {bad!r}")
    return ok, n_parse, n_api


def _failed_status(n_api: int) -> TurnStatus:
    return "api_error" if n_api else "no_verdict"


def reduce_consistency(samples: Sequence[ParseResult], label: str) -> TurnVerdict:
    """Share of parsed samples whose chosen name equals ``label`` exactly (case-sensitive).

    With 3 samples the value is 0, 1/3, 1/2, 2/3 or 1. No parsed sample: ``None`` with status
    ``api_error`` if any request failed; otherwise ``0.0`` with status ``no_verdict``, as the
    official scorer turns the NaN mean into 0.
    """
    ok, n_parse, n_api = _tally(samples)
    if ok:
        hits = sum(1 for s in ok if s.value == label)
        return TurnVerdict(hits / len(ok), "ok", len(ok), n_parse, n_api)
    value = None if n_api else 0.0
    return TurnVerdict(value, _failed_status(n_api), 0, n_parse, n_api)


def reduce_rejection(samples: Sequence[ParseResult]) -> TurnVerdict:
    """Majority vote (0/1) over the parsed samples; a tie goes to the value seen first.

    This is ``Counter(votes).most_common(1)[0][0]``, as in the official code. No parsed sample:
    ``None`` (excluded) with status ``no_verdict`` or ``api_error``.
    """
    ok, n_parse, n_api = _tally(samples)
    if not ok:
        return TurnVerdict(None, _failed_status(n_api), 0, n_parse, n_api)
    # Counter keeps first-seen order and most_common sorts stably, hence "tie -> first seen".
    vote = Counter(int(s.value) for s in ok).most_common(1)[0][0]
    return TurnVerdict(vote, "ok", len(ok), n_parse, n_api)


def reduce_knowledge(samples: Sequence[ParseResult]) -> TurnVerdict:
    """Arithmetic mean (float) of the parsed 1..10 scores; ``None`` when none parsed."""
    ok, n_parse, n_api = _tally(samples)
    if not ok:
        return TurnVerdict(None, _failed_status(n_api), 0, n_parse, n_api)
    mean = sum(float(s.value) for s in ok) / len(ok)
    return TurnVerdict(mean, "ok", len(ok), n_parse, n_api)
