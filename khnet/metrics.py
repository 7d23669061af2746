"""Rank correlations and overlaps between predicted and true accuracies, without scipy.

All functions take two equally long sequences of numbers (e.g. supernet accuracy and benchmark accuracy per
arch); ties are handled as scipy does (Kendall's tau-b, Spearman's rho on average ranks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["average_ranks", "kendall_tau", "spearman_rho", "top_k_overlap"]


def _check(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(f"sequences differ in length: {len(x)} and {len(y)}")


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their positions."""
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


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks); nan when undefined."""
    _check(x, y)
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else math.nan


def _tied_pairs(values: Sequence[float]) -> int:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return sum(c * (c - 1) // 2 for c in counts.values())


def _inversions(values: list[float]) -> int:
    """Pairs i < j with values[i] > values[j], by merge sort (O(n log n))."""
    if len(values) < 2:
        return 0
    mid = len(values) // 2
    left, right = values[:mid], values[mid:]
    count = _inversions(left) + _inversions(right)
    i = j = k = 0
    while i < len(left) and j < len(right):
        if right[j] < left[i]:
            values[k] = right[j]
            count += len(left) - i
            j += 1
        else:
            values[k] = left[i]
            i += 1
        k += 1
    values[k:] = left[i:] + right[j:]
    return count


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence accounted for), O(n log n); nan when undefined."""
    _check(x, y)
    n = len(x)
    if n < 2:
        return math.nan
    pairs = sorted(zip(x, y, strict=True))
    total = n * (n - 1) // 2
    x_ties = _tied_pairs([p[0] for p in pairs])
    y_ties = _tied_pairs(y)
    joint_ties = _tied_pairs(pairs)
    discordant = _inversions([p[1] for p in pairs])
    denom = math.sqrt((total - x_ties) * (total - y_ties))
    return (total - x_ties - y_ties + joint_ties - 2 * discordant) / denom if denom > 0 else math.nan


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """Share (0..1) of the k best items by ``x`` that are also among the k best by ``y``."""
    _check(x, y)
    k = min(k, len(x))
    if k <= 0:
        return math.nan
    best_x = set(sorted(range(len(x)), key=lambda i: -x[i])[:k])
    best_y = set(sorted(range(len(y)), key=lambda i: -y[i])[:k])
    return len(best_x & best_y) / k
