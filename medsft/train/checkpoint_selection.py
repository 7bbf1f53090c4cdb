"""Benchmark accuracy on the validation rows, scored as the test split is, to pick the checkpoint (docs/training.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medsft.config import selection_task as selection_task  # the task a `select_checkpoint_by` value scores
from medsft.data.records import MultipleChoiceItem
from medsft.train.cpu_step.attention import own_attention


def metric_name(task: str) -> str:
    """The key the trainer logs and selects on (`eval_pubmedqa_accuracy`), beside its `eval_loss`."""
    return f"eval_{task}_accuracy"


def validation_items(rows: Sequence[dict[str, Any]], task: str) -> list[MultipleChoiceItem]:
    """The multiple-choice items (`meta["item"]`, `medsft.data.loaders`) behind one source's validation rows."""
    kept = [(row.get("meta") or {}).get("item") for row in rows if row.get("source") == task]
    return [MultipleChoiceItem(**item) for item in kept if item]


def accuracy(model: Any, tokenizer: Any, task: str, items: Sequence[MultipleChoiceItem], batch_size: int) -> float:
    """Plain accuracy (lm-eval `acc`) of the model as it is now on the items."""
    from medsft.evaluate.multiple_choice import score_items
    from medsft.evaluate.transformers_scorer import HFScorer

    was_training = model.training
    try:  # eval mode, no gradients and the model's own attention (not the packed training one), then back
        with own_attention(model), torch.no_grad():
            scorer = HFScorer(model.eval(), tokenizer, name="validation", batch_size=batch_size, progress=False)
            records = score_items(scorer, task, items)
    finally:
        model.train(was_training)
    return sum(bool(r["correct"]) for r in records) / len(records)
