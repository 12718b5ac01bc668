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


def _sessions(n: int, seed: int) -> tuple[list[float], list[float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, n).astype(float)
    return list(rng.random(n) * counts), list(counts)


def test_batched_ci_is_bit_for_bit_the_one_drawn_at_once() -> None:
    import numpy as np
    from scipy import stats

    from harness import stats as hstats

    def ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(num.sum(axis=axis) / den.sum(axis=axis))

    for n, resamples in ((4001, 300), (7, 2000)):
        sums, counts = _sessions(n, n)
        assert max(1, hstats.BOOTSTRAP_BATCH_CELLS // n) < resamples or n == 7
        at_once = stats.bootstrap(
            (np.asarray(sums), np.asarray(counts)), ratio, paired=True, vectorized=True,
            n_resamples=resamples, confidence_level=0.95, method="percentile", rng=np.random.default_rng(3),
        ).confidence_interval
        expected = [float(at_once.low), float(at_once.high)]
        assert session_bootstrap_ci(sums, counts, seed=3, n_resamples=resamples) == expected


def test_ci_memory_does_not_grow_with_resamples_times_sessions() -> None:
    # 2,000 resamples of 4,000 sessions drawn at once hold four 64 MB arrays; in batches, a few MB.
    import tracemalloc

    sums, counts = _sessions(4000, 1)
    tracemalloc.start()
    try:
        session_bootstrap_ci(sums, counts, seed=0, n_resamples=2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16_000_000, peak
