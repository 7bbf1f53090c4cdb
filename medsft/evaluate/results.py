"""`eval_<task>_<model>.json`: one model on one task with every prediction, so any number recomputes from the file."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medsft import DISCLAIMER, runs


@dataclass
class TaskResult:
    """Per-question records are dicts with at least `id`, `pred`, `gold`, `correct` (see each evaluator)."""

    task: str
    model: str
    mode: str  # "loglikelihood" | "generate" | "synthetic" | "dialogue"
    n: int
    metrics: dict[str, Any]
    questions: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    model_spec: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)
    disclaimer: str | None = None  # set when the file holds model-written text

    @property
    def ids(self) -> list[str]:
        return [q["id"] for q in self.questions]

    def outcomes(self, key: str = "correct") -> list[bool]:
        """Per-question 0/1 outcomes in question order (an unparseable answer has `correct` False)."""
        return [bool(q[key]) for q in self.questions]

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "disclaimer" or value is not None}


Scored = tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]  # records, metrics, breakdown


def group_breakdown(results: Sequence[TaskResult], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Subject/domain/group -> model -> the `keys` of each result's breakdown block (those it has)."""
    breakdown: dict[str, dict[str, Any]] = {}
    for result in results:
        for group, block in result.breakdown.items():
            breakdown.setdefault(group, {})[result.model] = {key: block[key] for key in keys if key in block}
    return breakdown


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "unnamed"


def write_result(result: TaskResult, run_dir: str | Path, overwrite: bool = False) -> Path:
    """Write `eval_<task>_<model>.json` atomically; raise FileExistsError rather than replace a result."""
    data = result.to_dict()
    if result.mode != "loglikelihood" and "disclaimer" not in data:
        data["disclaimer"] = DISCLAIMER  # generated text is in the file
    path = Path(run_dir) / f"eval_{slug(result.task)}_{slug(result.model)}.json"
    return runs.write_json(path, data, overwrite, strict=True)


def read_result(path: str | Path) -> TaskResult:
    return TaskResult(**json.loads(Path(path).read_text(encoding="utf-8")))
