"""The checkpoints an analysis script reads from a run folder: saved ones, or those it has cached results of."""

from __future__ import annotations

from pathlib import Path


def saved_or_cached(run: Path, cache: Path) -> list[Path]:
    """`run/checkpoints/checkpoint-N` for every N saved there or cached as `cache/checkpoint-N.json`, by step.

    Committed runs keep a script's cache but not their checkpoints, so its table still prints from a clean checkout;
    a path from the cache alone need not exist, and is only loaded when its cached result is missing."""
    names = {p.name for p in (run / "checkpoints").glob("checkpoint-*")}
    names |= {p.stem for p in cache.glob("checkpoint-*.json")}
    return sorted((run / "checkpoints" / n for n in names), key=lambda p: int(p.name.split("-")[1]))
