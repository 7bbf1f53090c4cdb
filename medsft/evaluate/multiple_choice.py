"""MedQA / PubMedQA scored by log-likelihood, with lm-eval's prompts, token split, acc and acc_norm.

The prediction is the choice with the highest summed log-probability (`acc`); `acc_norm` divides each by the
choice's length in characters first. Both take the first maximum on ties, like numpy's argmax in lm-eval.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medsft.evaluate.results import TaskResult
from medsft.evaluate.stats import wilson_interval
from medsft.evaluate.tasks import Task, get_task
from medsft.evaluate.transformers_scorer import ChoiceRequest, Scorer, encode_pair

if TYPE_CHECKING:
    from medsft.data import MultipleChoiceItem


def first_argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first one on ties (numpy.argmax's rule, which lm-eval uses)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def predictions(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(pred, pred_norm): argmax of the log-likelihoods, and of them divided by each choice's length."""
    normalized = [ll / len(choice) for ll, choice in zip(loglikelihoods, choices, strict=True)]
    return first_argmax(loglikelihoods), first_argmax(normalized)


def build_requests(scorer: Scorer, task: Task, items: Sequence[MultipleChoiceItem]) -> list[ChoiceRequest]:
    """Token requests for each item, split like lm-eval; the context tokens are shared by all choices."""
    requests = []
    for item in items:
        context = task.context(item)
        pairs = [encode_pair(scorer.tokenize, context, c) for c in task.continuations(item)]
        for continuation, (_, tokens) in zip(task.continuations(item), pairs, strict=True):
            if not tokens:
                raise ValueError(f"{item.id}: continuation {continuation!r} encodes to no tokens after the context")
        requests.append(ChoiceRequest(pairs[0][0], [tokens for _, tokens in pairs]))
    return requests


def score_items(scorer: Scorer, task: str | Task, items: Sequence[MultipleChoiceItem]) -> list[dict[str, Any]]:
    """Per-question records: id, subject, gold, scores, pred / correct and pred_norm / correct_norm."""
    task = get_task(task) if isinstance(task, str) else task
    scores = scorer.loglikelihood(build_requests(scorer, task, items))
    records = []
    for item, lls in zip(items, scores, strict=True):
        pred, pred_norm = predictions(lls, task.choices(item))
        records.append(
            {
                "id": item.id,
                "subject": item.subject,
                "gold": item.answer,
                "pred": pred,
                "correct": pred == item.answer,
                "pred_norm": pred_norm,
                "correct_norm": pred_norm == item.answer,
                "scores": lls,
            }
        )
    return records


def evaluate_multiple_choice(
    scorer: Scorer,
    task: str,
    items: Sequence[MultipleChoiceItem],
    seed: int = 0,
    model_spec: dict[str, Any] | None = None,
) -> TaskResult:
    """Score every item, then acc and acc_norm with Wilson 95% intervals and a subject breakdown."""
    if not items:
        raise ValueError(f"{task}: no items to evaluate")
    started = time.perf_counter()
    records = score_items(scorer, task, items)
    elapsed = time.perf_counter() - started
    metrics = summarize(records, seed)
    return TaskResult(
        task=task,
        model=scorer.name,
        mode="loglikelihood",
        n=len(records),
        metrics=metrics,
        questions=records,
        settings={
            "prompt": "lm-eval 0.4.13 zero-shot template",
            "seed": seed,
            "seconds": round(elapsed, 3),
            "questions_per_second": round(len(records) / elapsed, 4) if elapsed > 0 else None,
        },
        model_spec=model_spec or {"name": scorer.name},
        breakdown=subject_breakdown(records),
    )


def summarize(records: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    acc = wilson_interval([r["correct"] for r in records])
    acc_norm = wilson_interval([r["correct_norm"] for r in records])
    return {
        "acc": acc.value,
        "acc_ci": [acc.low, acc.high],
        "acc_norm": acc_norm.value,
        "acc_norm_ci": [acc_norm.low, acc_norm.high],
    }


def subject_breakdown(records: list[dict[str, Any]], key: str = "subject") -> dict[str, Any]:
    """Accuracy and n per subject (or discipline), when the items carry one."""
    groups: dict[str, list[bool]] = {}
    for record in records:
        if record.get(key):
            groups.setdefault(str(record[key]), []).append(bool(record["correct"]))
    return {name: {"n": len(v), "acc": sum(v) / len(v)} for name, v in sorted(groups.items())}
