"""Mix cleaned sources into one training set by count or weight, then split off validation; all sampling is seeded.
The rules (count, weight, train_rows): docs/data.md#mixing-and-the-validation-split."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from medsft.config import DataSource
from medsft.data.records import Example


@dataclass
class Allocation:
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
    """How many rows to take from each source (docs/data.md#mixing-and-the-validation-split)."""
    counts = [
        0 if s.weight is not None else min(s.count if s.count is not None else n, n)
        for s, n in zip(specs, available, strict=True)
    ]
    weighted = [i for i, spec in enumerate(specs) if spec.weight is not None]
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
    """Hold out `fraction` of the rows (at least one of two or more), stratified by source, both parts in the order
    of `rows`; `fold` k of K = 1/`fraction` takes each source's shuffled rows k, k+K, ... (disjoint folds)."""
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
