"""Golden tests for the per-turn reducers (judges/reducers.py), values computed by hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from harness.types import ParseResult
from judges.reducers import TurnVerdict, reduce_consistency, reduce_knowledge, reduce_rejection

PE = ParseResult(status="parse_error", reason="no_verdict")
AE = ParseResult(status="api_error", reason="timeout")


def ok(value: object) -> ParseResult:
    return ParseResult(status="ok", value=value)


GOLD = "Edward III of England"
OTHER = "Zhang Ziyi"

CONSISTENCY_CASES = [
    ("all_right", [ok(GOLD)] * 3, TurnVerdict(1.0, "ok", 3, 0, 0)),
    ("all_wrong", [ok(OTHER)] * 3, TurnVerdict(0.0, "ok", 3, 0, 0)),
    ("two_of_three", [ok(GOLD), ok(OTHER), ok(GOLD)], TurnVerdict(2 / 3, "ok", 3, 0, 0)),
    ("one_of_three", [ok(OTHER), ok(GOLD), ok(OTHER)], TurnVerdict(1 / 3, "ok", 3, 0, 0)),
    ("half_with_parse_error", [ok(GOLD), PE, ok(OTHER)], TurnVerdict(0.5, "ok", 2, 1, 0)),
    ("single_ok_among_errors", [PE, AE, ok(GOLD)], TurnVerdict(1.0, "ok", 1, 1, 1)),
    ("case_sensitive", [ok(GOLD.lower()), ok(GOLD.upper()), ok(GOLD)], TurnVerdict(1 / 3, "ok", 3, 0, 0)),
    ("no_trimming_in_reducer", [ok(GOLD + " "), ok(GOLD)], TurnVerdict(0.5, "ok", 2, 0, 0)),
    ("all_parse_errors_score_zero", [PE, PE, PE], TurnVerdict(0.0, "no_verdict", 0, 3, 0)),
    ("api_error_not_scored", [PE, AE, PE], TurnVerdict(None, "api_error", 0, 2, 1)),
    ("all_api_errors", [AE, AE, AE], TurnVerdict(None, "api_error", 0, 0, 3)),
]


@pytest.mark.parametrize(("samples", "expected"), [c[1:] for c in CONSISTENCY_CASES],
                         ids=[c[0] for c in CONSISTENCY_CASES])
def test_reduce_consistency(samples: list[ParseResult], expected: TurnVerdict) -> None:
    got = reduce_consistency(samples, GOLD)
    assert got.status == expected.status
    assert (got.n_ok, got.n_parse_error, got.n_api_error) == (
        expected.n_ok, expected.n_parse_error, expected.n_api_error)
    if expected.value is None:
        assert got.value is None
    else:
        assert got.value == pytest.approx(expected.value)
        assert isinstance(got.value, float)


REJECTION_CASES = [
    ("unanimous_one", [ok(1), ok(1), ok(1)], TurnVerdict(1, "ok", 3, 0, 0)),
    ("majority_zero", [ok(1), ok(0), ok(0)], TurnVerdict(0, "ok", 3, 0, 0)),
    ("majority_one", [ok(0), ok(1), ok(1)], TurnVerdict(1, "ok", 3, 0, 0)),
    ("tie_first_seen_one", [ok(1), ok(0)], TurnVerdict(1, "ok", 2, 0, 0)),
    ("tie_first_seen_zero", [ok(0), ok(1)], TurnVerdict(0, "ok", 2, 0, 0)),
    ("tie_around_parse_error", [ok(1), PE, ok(0)], TurnVerdict(1, "ok", 2, 1, 0)),
    ("tie_after_api_error", [AE, ok(0), ok(1)], TurnVerdict(0, "ok", 2, 0, 1)),
    ("single_ok", [PE, PE, ok(0)], TurnVerdict(0, "ok", 1, 2, 0)),
    ("no_verdict", [PE, PE, PE], TurnVerdict(None, "no_verdict", 0, 3, 0)),
    ("api_error", [AE, PE, PE], TurnVerdict(None, "api_error", 0, 2, 1)),
]


@pytest.mark.parametrize(("samples", "expected"), [c[1:] for c in REJECTION_CASES],
                         ids=[c[0] for c in REJECTION_CASES])
def test_reduce_rejection(samples: list[ParseResult], expected: TurnVerdict) -> None:
    got = reduce_rejection(samples)
    assert got == expected
    if got.value is not None:
        assert type(got.value) is int


KNOWLEDGE_CASES = [
    ("mean_of_three", [ok(7), ok(8), ok(9)], TurnVerdict(8.0, "ok", 3, 0, 0)),
    ("fractional_mean", [ok(7), ok(8), ok(8)], TurnVerdict(23 / 3, "ok", 3, 0, 0)),
    ("skip_parse_error", [ok(10), PE, ok(5)], TurnVerdict(7.5, "ok", 2, 1, 0)),
    ("skip_api_error", [AE, ok(1), AE], TurnVerdict(1.0, "ok", 1, 0, 2)),
    ("no_verdict", [PE, PE, PE], TurnVerdict(None, "no_verdict", 0, 3, 0)),
    ("api_error", [PE, AE, AE], TurnVerdict(None, "api_error", 0, 1, 2)),
]


@pytest.mark.parametrize(("samples", "expected"), [c[1:] for c in KNOWLEDGE_CASES],
                         ids=[c[0] for c in KNOWLEDGE_CASES])
def test_reduce_knowledge(samples: list[ParseResult], expected: TurnVerdict) -> None:
    got = reduce_knowledge(samples)
    assert got.status == expected.status
    assert (got.n_ok, got.n_parse_error, got.n_api_error) == (
        expected.n_ok, expected.n_parse_error, expected.n_api_error)
    if expected.value is None:
        assert got.value is None
    else:
        assert got.value == pytest.approx(expected.value)
        assert isinstance(got.value, float)


@pytest.mark.parametrize(
    "reduce", [reduce_rejection, reduce_knowledge, lambda s: reduce_consistency(s, GOLD)]
)
def test_empty_sample_list_is_a_caller_bug(reduce: Callable[[list[ParseResult]], TurnVerdict]) -> None:
    with pytest.raises(ValueError, match="no judge samples"):
        reduce([])


def test_unknown_status_rejected() -> None:
    bogus = ParseResult(status="refused")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refused"):
        reduce_knowledge([ok(5), bogus])


def test_turn_verdict_is_frozen() -> None:
    verdict = reduce_knowledge([ok(5)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.value = 6  # type: ignore[misc]
