"""Agreement statistics between two judges' values on the same items, and their session-bootstrap CIs.

Every function takes two equally long sequences (the reference judge's values first). Correlations are
``None`` when undefined (fewer than two items, or one side constant), never 0 or NaN.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from scipy import stats

Pair = tuple[float, float]


def _check(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b):
        raise ValueError(f"agreement needs paired values, got {len(a)} and {len(b)}")


def exact_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Share of items where both judges give the same value."""
    _check(a, b)
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None


def within(a: Sequence[float], b: Sequence[float], tol: float = 1.0) -> float | None:
    """Share of items where the two values differ by at most ``tol``."""
    _check(a, b)
    return sum(abs(x - y) <= tol + 1e-12 for x, y in zip(a, b, strict=True)) / len(a) if a else None


def mean_abs_diff(a: Sequence[float], b: Sequence[float]) -> float | None:
    _check(a, b)
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a) if a else None


def mean_diff(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Mean of ``b - a``: how much higher the second judge rates on average."""
    _check(a, b)
    return sum(y - x for x, y in zip(a, b, strict=True)) / len(a) if a else None


def _defined(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) >= 2 and len(set(a)) > 1 and len(set(b)) > 1


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties)."""
    _check(a, b)
    if not _defined(a, b):
        return None
    return float(stats.spearmanr(a, b).statistic)


def kendall(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b (tie-corrected)."""
    _check(a, b)
    if not _defined(a, b):
        return None
    return float(stats.kendalltau(a, b).statistic)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa: agreement beyond what the two judges' label frequencies give by chance.

    ``None`` when chance agreement is 1 (both judges always give the same single label)."""
    _check(a, b)
    if not a:
        return None
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    if math.isclose(pe, 1.0):
        return None
    return (po - pe) / (1 - pe)


def bootstrap_ci(
    groups: Sequence[Sequence[tuple[Any, Any]]],
    stat: Callable[[list[Any], list[Any]], float | None],
    *,
    seed: int,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> list[float] | None:
    """Percentile CI of ``stat`` over the pairs, resampling whole groups (sessions, questions).

    Resamples where the statistic is undefined are skipped; ``None`` with fewer than two groups or when
    fewer than half of the resamples give a value.
    """
    groups = [g for g in groups if g]
    if len(groups) < 2:
        return None
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(groups), len(groups))
        a = [p[0] for i in pick for p in groups[i]]
        b = [p[1] for i in pick for p in groups[i]]
        v = stat(a, b)
        if v is not None and not math.isnan(v):
            values.append(v)
    if len(values) < n_resamples / 2:
        return None
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return [float(lo), float(hi)]
