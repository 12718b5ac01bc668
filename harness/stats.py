"""Confidence intervals: percentile bootstrap that resamples sessions (clusters), via scipy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

# Resamples are drawn and reduced this many (resample, session) cells at a time, so the memory of a CI does
# not grow with the number of sessions (scipy's default draws all resamples at once: with 2,000 resamples of
# 4,000 sessions, four arrays of 64 MB). The batches draw the same integers from the same generator in the
# same order and reduce each resample on its own, so the interval is bit-for-bit the one drawn at once.
BOOTSTRAP_BATCH_CELLS = 1 << 18


def session_bootstrap_ci(
    sums: Sequence[float],
    counts: Sequence[float],
    *,
    seed: int,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> list[float] | None:
    """95% CI of the turn-level mean ``sum(sums) / sum(counts)`` resampling whole sessions.

    Each session contributes the sum of its scored turn values and its number of scored turns, so a
    resample keeps turns of one session together (turns of a session are not independent). Returns
    ``None`` with fewer than two sessions.
    """
    s = np.asarray(sums, dtype=float)
    c = np.asarray(counts, dtype=float)
    keep = c > 0
    s, c = s[keep], c[keep]
    if len(s) < 2:
        return None
    if np.allclose(s / c, s[0] / c[0]):
        v = float(s.sum() / c.sum())
        return [v, v]

    def ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(num.sum(axis=axis) / den.sum(axis=axis))

    res = stats.bootstrap(
        (s, c),
        ratio,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        batch=max(1, BOOTSTRAP_BATCH_CELLS // len(s)),
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def clustered_mean(
    pairs: Sequence[tuple[float, float]], *, seed: int, n_resamples: int = 2000
) -> tuple[float | None, list[float] | None, int]:
    """Turn-level mean of per-session ``(sum, count)`` pairs, its session-bootstrap 95% CI, and the count.

    Mean and CI are ``None`` when no turn was scored; sessions without scored turns add nothing.
    """
    total = sum(c for _, c in pairs)
    if not total:
        return None, None, 0
    mean = sum(s for s, _ in pairs) / total
    ci = session_bootstrap_ci(
        [s for s, _ in pairs], [c for _, c in pairs], seed=seed, n_resamples=n_resamples
    )
    return mean, ci, int(total)


def paired_bootstrap_ci(
    diffs_sums: Sequence[float],
    counts: Sequence[float],
    *,
    seed: int,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> list[float] | None:
    """CI of a paired per-session difference (same as :func:`session_bootstrap_ci` on differences)."""
    return session_bootstrap_ci(diffs_sums, counts, seed=seed, n_resamples=n_resamples, level=level)
