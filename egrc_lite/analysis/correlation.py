"""Correlation of per-token statistics (method.md s7): Pearson, Spearman (ties averaged), and both
over the finite pairs of two series. Pure Python, no torch, no I/O.

>>> round(pearson([1, 2, 3, 4], [2, 4, 6, 9]), 4), spearman([1, 2, 3, 4], [2, 4, 6, 9])
(0.9944, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["correlation", "pearson", "rankdata", "spearman"]


def _finite_pairs(x: Iterable[float], y: Iterable[float]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for a, b in zip(x, y, strict=True):
        if a is None or b is None:
            continue
        a, b = float(a), float(b)
        if math.isfinite(a) and math.isfinite(b):
            xs.append(a)
            ys.append(b)
    return xs, ys


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's ``r = cov(x, y) / (sd(x) sd(y))``; None for fewer than 2 pairs or a constant side.

    >>> pearson([1, 2, 3], [3, 2, 1]), pearson([1, 1, 1], [1, 2, 3]) is None
    (-1.0, True)
    """
    n = len(x)
    if n != len(y):
        raise ValueError(f"pearson: {n} x values for {len(y)} y values")
    if n < 2:
        return None
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def rankdata(values: Sequence[float]) -> list[float]:
    """1-based ranks with ties given their average rank.

    >>> rankdata([10, 30, 20, 20])
    [1.0, 4.0, 2.5, 2.5]
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ``rho``: Pearson's ``r`` of the ranks (ties averaged); None when undefined.

    >>> spearman([1, 2, 3, 4], [1, 4, 9, 100])
    1.0
    """
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} x values for {len(y)} y values")
    return pearson(rankdata(x), rankdata(y))


def correlation(x: Iterable[float], y: Iterable[float]) -> dict[str, float | int | None]:
    """``{"pearson", "spearman", "n"}`` over the pairs where both values are finite (None skipped).

    >>> correlation([1, 2, float("nan"), 4], [2, 4, 5, None])
    {'pearson': 1.0, 'spearman': 1.0, 'n': 2}
    """
    xs, ys = _finite_pairs(x, y)
    return {"pearson": pearson(xs, ys), "spearman": spearman(xs, ys), "n": len(xs)}
