"""Turn-level means over sessions and their session-bootstrap CIs (hand-computed values)."""

from __future__ import annotations

import pytest

from harness.stats import clustered_mean, session_bootstrap_ci


def test_mean_is_over_turns_not_over_sessions() -> None:
    # session A: two turns scoring 1 and 0.5 -> (1.5, 2); session B: one turn scoring 0 -> (0, 1);
    # session C: nothing scored. Turn mean = 1.5 / 3 = 0.5 (the mean of session means would be 0.375).
    mean, ci, n = clustered_mean([(1.5, 2), (0.0, 1), (0.0, 0)], seed=0, n_resamples=200)
    assert mean == pytest.approx(0.5) and n == 3
    assert ci is not None and ci[0] <= 0.5 <= ci[1]


def test_nothing_scored_gives_no_mean_and_no_ci() -> None:
    assert clustered_mean([], seed=0) == (None, None, 0)
    assert clustered_mean([(0.0, 0), (0.0, 0)], seed=0) == (None, None, 0)


def test_one_session_has_a_mean_but_no_ci() -> None:
    assert clustered_mean([(14.0, 2)], seed=0) == (7.0, None, 2)


def test_identical_session_means_give_a_degenerate_interval() -> None:
    assert session_bootstrap_ci([2.0, 4.0], [1, 2], seed=0) == [2.0, 2.0]


def test_ci_is_seeded() -> None:
    pairs = [(1.0, 1), (0.0, 1), (1.0, 2), (0.0, 3), (2.0, 2)]
    assert clustered_mean(pairs, seed=7, n_resamples=300) == clustered_mean(pairs, seed=7, n_resamples=300)
