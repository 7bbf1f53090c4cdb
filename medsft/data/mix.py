"""Mix several cleaned sources into one training set by count or weight, then split off validation by seed.

Rules, per `DataSource`: `count` takes that many rows (all of them if fewer are left after cleaning);
neither count nor weight takes every row; `weight`ed sources share a budget in proportion to their weights:
`train_rows` minus the rows the other sources take, or, with no `train_rows`, the largest budget the
weighted sources can fill without running out. `train_rows` then caps the total. All sampling is seeded, so
the same data and seed give the same mix.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from medsft.config import DataSource
from medsft.data.records import Example


@dataclass
class Allocation:
    """What one source was asked for and what it gave."""

    available: int
    requested: int | None
    taken: int


def largest_remainder(total: int, shares: Sequence[float]) -> list[int]:
    """Split `total` into integers proportional to `shares` that sum to `total` exactly (ties to the first)."""
    if total <= 0 or not shares or sum(shares) <= 0:
        return [0] * len(shares)
    exact = [total * share / sum(shares) for share in shares]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def allocate(specs: Sequence[DataSource], available: Sequence[int], train_rows: int | None) -> list[int]:
    """How many rows to take from each source (see the module docstring for the rules)."""
    counts = [0] * len(specs)
    weighted = [i for i, spec in enumerate(specs) if spec.weight is not None]
    for i, spec in enumerate(specs):
        if spec.weight is None:
            counts[i] = available[i] if spec.count is None else min(spec.count, available[i])
    if weighted:
        weights = [specs[i].weight or 0.0 for i in weighted]
        if train_rows is not None:
            budget = max(train_rows - sum(counts), 0)
        else:
            budget = min(math.floor(available[i] * sum(weights) / w) for i, w in zip(weighted, weights, strict=True))
        # Sources that run short give their unfilled share to the others, in proportion to their weights.
        remaining = list(weighted)
        while remaining and budget > 0:
            shares = largest_remainder(budget, [specs[i].weight or 0.0 for i in remaining])
            short = [i for i, share in zip(remaining, shares, strict=True) if share > available[i] - counts[i]]
            if not short:
                for i, share in zip(remaining, shares, strict=True):
                    counts[i] += share
                break
            for i in short:
                budget -= available[i] - counts[i]
                counts[i] = available[i]
                remaining.remove(i)
    return counts


def mix_sources(
    pools: Sequence[tuple[DataSource, list[Example]]], train_rows: int | None = None, seed: int = 0
) -> tuple[list[Example], list[Allocation]]:
    """One shuffled list drawn from every pool, and what each pool contributed."""
    specs = [spec for spec, _ in pools]
    counts = allocate(specs, [len(rows) for _, rows in pools], train_rows)
    tagged: list[tuple[int, Example]] = []
    for i, ((spec, rows), count) in enumerate(zip(pools, counts, strict=True)):
        # Each pool gets its own stream, so changing one source's count does not reshuffle the others.
        picked = random.Random(f"medsft-mix:{seed}:{i}:{spec.name}").sample(range(len(rows)), count)
        tagged.extend((i, rows[j]) for j in sorted(picked))
    random.Random(f"medsft-mix:{seed}:shuffle").shuffle(tagged)
    if train_rows is not None:
        tagged = tagged[:train_rows]
    taken = [sum(1 for pool, _ in tagged if pool == i) for i in range(len(pools))]
    allocations = [
        Allocation(len(rows), spec.count if spec.weight is None else count, n)
        for (spec, rows), count, n in zip(pools, counts, taken, strict=True)
    ]
    return [row for _, row in tagged], allocations


def split_train_validation(
    rows: Sequence[Example], fraction: float, seed: int = 0, fold: int | None = None
) -> tuple[list[Example], list[Example]]:
    """Hold out `fraction` of the rows for validation, stratified by source so validation mirrors the mix.

    At least one row is held out when `fraction` > 0 and there are two or more rows. With `fold` k and
    `fraction` 1/K, the held-out rows of each source are those at positions k, k+K, k+2K, ... of one seeded
    shuffle, so folds 0..K-1 are disjoint and cover every row (K-fold cross-validation). Both parts keep the
    order of `rows`.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    wanted = max(round(len(rows) * fraction), 1 if fraction > 0 and len(rows) >= 2 else 0)
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row["source"], []).append(index)
    quotas = largest_remainder(wanted, [len(indices) for indices in groups.values()])
    held_out: set[int] = set()
    for (name, indices), quota in zip(groups.items(), quotas, strict=True):
        draw = random.Random(f"medsft-split:{seed}:{name}")
        if fold is None:
            held_out.update(draw.sample(indices, quota))
        else:
            draw.shuffle(indices)
            held_out.update(indices[fold :: round(1 / fraction)])
    train = [row for i, row in enumerate(rows) if i not in held_out]
    return train, [row for i, row in enumerate(rows) if i in held_out]
