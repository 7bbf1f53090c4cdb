"""Seeded intervals for accuracy and paired differences: ±4 points at n=500, so a gain comes with its interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95
PERCENTILES = [(1 - LEVEL) / 2 * 100, 100 - (1 - LEVEL) / 2 * 100]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class McNemar:
    """Discordant counts (`only_first`: first right, second wrong) and the exact two-sided p-value."""

    only_first: int
    only_second: int
    p_value: float


def wilson_bounds(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score interval for `successes` of `n` (Wilson, 1927), clipped to [0, 1]."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = NormalDist().inv_cdf(1 - (1 - LEVEL) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def wilson_interval(outcomes: Sequence[float | bool]) -> Interval:
    """Accuracy of 0/1 `outcomes` with its Wilson 95% interval: unlike a bootstrap, [0, 0.32] at 0 of 8, not [0, 0]."""
    (values,) = _arrays(outcomes)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("wilson_interval needs 0/1 outcomes; use bootstrap_ci for other per-item scores")
    successes = int(values.sum())
    return Interval(successes / values.size, *wilson_bounds(successes, values.size))


def accuracy(outcomes: Sequence[float | bool]) -> dict[str, Any]:
    """`acc` and its Wilson 95% interval `acc_ci`, as result metrics and breakdown blocks hold them."""
    interval = wilson_interval(outcomes)
    return {"acc": interval.value, "acc_ci": [interval.low, interval.high]}


def _arrays(*sequences: Sequence[float | bool]) -> list[np.ndarray]:
    """Non-empty 1-D float arrays, all of one length (paired outcomes cover the same questions)."""
    arrays = [np.asarray(values, dtype=float) for values in sequences]
    for array in arrays:
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"need a non-empty 1-D sequence of per-question outcomes, got shape {array.shape}")
    if len({a.size for a in arrays}) > 1:
        raise ValueError(f"paired outcomes must cover the same questions: {arrays[0].size} vs {arrays[1].size}")
    return arrays


def _resampled_means(arrays: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """Means of each array over the same `N_BOOT` resamples of indices (drawn in chunks to bound memory)."""
    rng = np.random.default_rng(seed)
    size = arrays[0].size
    means: list[list[np.ndarray]] = [[] for _ in arrays]
    chunk = max(1, 4_000_000 // size)
    for start in range(0, N_BOOT, chunk):
        indices = rng.integers(0, size, size=(min(chunk, N_BOOT - start), size))
        for out, array in zip(means, arrays, strict=True):
            out.append(array[indices].mean(axis=1))
    return [np.concatenate(parts) for parts in means]


def bootstrap_ci(outcomes: Sequence[float | bool], seed: int = 0) -> Interval:
    """Mean of per-item scores that are not 0/1 (ROUGE, key points) with a seeded percentile-bootstrap interval."""
    (values,) = _arrays(outcomes)
    (means,) = _resampled_means([values], seed)
    return Interval(float(values.mean()), *map(float, np.percentile(means, PERCENTILES)))


def paired_bootstrap(first: Sequence[float | bool], second: Sequence[float | bool], seed: int = 0) -> Interval:
    """`mean(second) - mean(first)`, both resampled on the same questions: difficulty cancels, so it is tighter."""
    a, b = _arrays(first, second)
    means_a, means_b = _resampled_means([a, b], seed)
    return Interval(float(b.mean() - a.mean()), *map(float, np.percentile(means_b - means_a, PERCENTILES)))


def mcnemar_exact(first: Sequence[bool], second: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test: under no difference each discordant question is a fair coin flip."""
    a, b = (array.astype(bool) for array in _arrays(first, second))
    only_first, only_second = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_first + only_second  # no discordant question: p = 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return McNemar(only_first, only_second, min(1.0, 2 * tail))
