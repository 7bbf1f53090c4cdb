"""ROUGE through the `evaluate` library, offline.

`evaluate.load("rouge")` downloads the metric script from the Hugging Face hub, which medsft never reaches at
run time. `evaluate.load` also takes a local folder holding `<name>.py`, so the package carries its own ROUGE
metric module (`medsft/evaluate/metrics/rouge/rouge.py`: an `evaluate.Metric` over Google Research's
`rouge_score`, the package the hub script wraps) and loads it from there. `evaluate` copies it into its
modules cache (`HF_MODULES_CACHE`) and imports it; nothing goes over the network.

Scores are per reply (`use_aggregator=False`): F-measures, no stemming (the hub metric's default).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

ROUGE_DIR = Path(__file__).resolve().parent / "metrics" / "rouge"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@functools.cache
def load_rouge() -> Any:
    """The ROUGE `evaluate.EvaluationModule`, from the carried metric folder."""
    import evaluate

    return evaluate.load(str(ROUGE_DIR))


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F-measure of each prediction against its reference."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {name: [] for name in ROUGE_TYPES}
    scores = load_rouge().compute(
        predictions=predictions, references=references, rouge_types=list(ROUGE_TYPES), use_aggregator=False
    )
    return {name: [float(v) for v in scores[name]] for name in ROUGE_TYPES}
