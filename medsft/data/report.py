"""What the data pipeline did: rows per source, what each cleaning step removed and why, contamination hits,
and tokens per row, as a dict for the run's JSON, a DataFrame for the notebook table and a histogram."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medsft.data.clean import Removed
from medsft.data.decontaminate import Contamination

REMOVAL_STEPS = ("held_out_dialogue", "exact_duplicate", "near_duplicate", "contaminated", "too_long")
PERCENTILES = (50, 90, 95, 99, 100)


@dataclass
class SourceReport:
    name: str
    origin: str
    loaded: int
    skipped: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    available: int = 0  # rows left after cleaning, before mixing
    requested: int | None = None
    train: int = 0
    validation: int = 0


@dataclass
class DatasetReport:
    """Everything the notebook shows about a built dataset; `token_lengths` are per final row (train first)."""

    sources: list[SourceReport]
    removed_rows: list[Removed] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pii: dict[str, int] = field(default_factory=dict)
    pii_rows: int = 0
    contamination_hits: list[Contamination] = field(default_factory=list)
    eval_tasks: list[str] = field(default_factory=list)
    eval_items: dict[str, int] = field(default_factory=dict)  # evaluation items indexed per task
    token_lengths: list[int] = field(default_factory=list)
    max_seq_length: int | None = None
    train_rows: int = 0
    validation_rows: int = 0
    # The held-out ChatDoctor split (file, sha256, seed, size, rule) and rows each dialogue source lost to it, or {}
    held_out: dict[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> dict[str, int]:
        """Rows removed by each step (every step listed, zeros included)."""
        counts = Counter(row.step for row in self.removed_rows)
        return {step: counts.get(step, 0) for step in (*REMOVAL_STEPS, *sorted(set(counts) - set(REMOVAL_STEPS)))}

    @property
    def contamination(self) -> dict[str, int]:
        """Training rows dropped per evaluation task (a row overlapping two tasks counts in both)."""
        rows: dict[str, set[str]] = {task: set() for task in self.eval_tasks}
        for hit in self.contamination_hits:
            rows.setdefault(hit.task, set()).add(hit.train_id)
        return {task: len(ids) for task, ids in rows.items()}

    @property
    def contamination_reasons(self) -> dict[str, dict[str, int]]:
        """Training rows dropped per evaluation task and the part they overlapped (question, context, ...)."""
        rows: dict[str, dict[str, set[str]]] = {task: {} for task in self.eval_tasks}
        for hit in self.contamination_hits:
            rows.setdefault(hit.task, {}).setdefault(hit.part, set()).add(hit.train_id)
        return {task: {part: len(ids) for part, ids in sorted(parts.items())} for task, parts in rows.items()}

    def token_percentiles(self) -> dict[str, float]:
        if not self.token_lengths:
            return {}
        values = np.percentile(np.array(self.token_lengths), PERCENTILES)
        return {("max" if q == 100 else f"p{q}"): float(v) for q, v in zip(PERCENTILES, values, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, percentiles, and every removed row and contamination hit with its reason."""
        return {
            "train_rows": self.train_rows,
            "validation_rows": self.validation_rows,
            "max_seq_length": self.max_seq_length,
            "sources": [asdict(source) for source in self.sources],
            "removed": self.removed,
            "removed_rows": [asdict(row) for row in self.removed_rows],
            "skipped": list(self.skipped),
            "pii": dict(self.pii),
            "pii_rows": self.pii_rows,
            "contamination": self.contamination,
            "contamination_reasons": self.contamination_reasons,
            "eval_items_indexed": dict(self.eval_items),
            "contamination_hits": [asdict(hit) for hit in self.contamination_hits],
            "held_out_dialogues": dict(self.held_out),
            "tokens": self.token_percentiles(),
            "token_lengths": list(self.token_lengths),
        }

    def to_frame(self) -> Any:
        """One row per source (and a total): loaded, skipped, removed by step, left, train, validation."""
        import pandas as pd

        records = [
            {"source": source.name, "origin": source.origin, "loaded": source.loaded, "skipped": source.skipped}
            | {step: source.removed.get(step, 0) for step in REMOVAL_STEPS}
            | {"available": source.available, "train": source.train, "validation": source.validation}
            for source in self.sources
        ]
        frame = pd.DataFrame.from_records(records)
        if records:
            total = frame.drop(columns=["source", "origin"]).sum()
            frame.loc[len(frame)] = {"source": "total", "origin": "", **total.to_dict()}
        return frame

    def removed_frame(self) -> Any:
        """Removed rows grouped by step and source, with one example reason each."""
        import pandas as pd

        groups: dict[tuple[str, str], list[Removed]] = {}
        for row in self.removed_rows:
            groups.setdefault((row.step, row.source), []).append(row)
        records = [
            {"step": step, "source": source, "rows": len(rows), "example": f"{rows[0].id}: {rows[0].reason}"}
            for (step, source), rows in groups.items()
        ]
        return pd.DataFrame.from_records(records, columns=["step", "source", "rows", "example"])

    def summary(self) -> str:
        removed = ", ".join(f"{count} {step.replace('_', ' ')}" for step, count in self.removed.items() if count)
        by_task = ", ".join(f"{task} {n}" for task, n in self.contamination.items() if n)
        if by_task:
            removed += f" (overlapping {by_task})"
        if self.held_out:
            removed += (
                f"; held-out ChatDoctor test split: {self.held_out['test']} dialogues (seed {self.held_out['seed']}), "
                f"{self.removed.get('held_out_dialogue', 0)} training rows repeating them left out"
            )
        return (
            f"{self.train_rows} train / {self.validation_rows} validation rows from {len(self.sources)} source(s); "
            f"removed: {removed or 'none'}; skipped: {len(self.skipped)}; PII replacements: {sum(self.pii.values())}"
        )
