"""Multiple choice by log-likelihood, as lm-eval, views `raw` and `chat` (docs/evaluation.md#two-scoring-views)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from medsft.config import EVAL_VIEWS
from medsft.data.records import MultipleChoiceItem
from medsft.evaluate.results import TaskResult
from medsft.evaluate.stats import accuracy
from medsft.evaluate.transformers_scorer import ChoiceRequest, Scorer, encode_pair
from medsft.tasks import Task, get_task
from medsft.templates import render_chat


def first_argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first one on ties (numpy.argmax's rule, which lm-eval uses)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def predictions(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(pred, pred_norm): argmax of the log-likelihoods, and of them divided by each choice's length."""
    normalized = [ll / len(choice) for ll, choice in zip(loglikelihoods, choices, strict=True)]
    return first_argmax(loglikelihoods), first_argmax(normalized)


def build_requests(
    scorer: Scorer, task: Task, items: Sequence[MultipleChoiceItem], num_fewshot: int = 0, view: str = "raw"
) -> list[ChoiceRequest]:
    """Token requests for each item, split like lm-eval; the chat view needs a scorer with a transformers tokenizer."""
    if view not in EVAL_VIEWS:
        raise ValueError(f"unknown scoring view '{view}'; choose one of {', '.join(EVAL_VIEWS)}")
    tokenizer = getattr(scorer, "tokenizer", None)
    if view == "chat" and tokenizer is None:
        raise ValueError(f"{scorer.name}: the chat view needs a scorer with a transformers tokenizer")
    requests = []
    for item in items:
        if view == "raw":
            context = task.context(item, num_fewshot)
        else:
            context = render_chat(tokenizer, task.messages(item, num_fewshot), add_generation_prompt=True)
        continuations = task.continuations(item, chat=view == "chat")
        pairs = [encode_pair(scorer.tokenize, context, c) for c in continuations]
        for continuation, (_, tokens) in zip(continuations, pairs, strict=True):
            if not tokens:
                raise ValueError(f"{item.id}: continuation {continuation!r} encodes to no tokens after the context")
        requests.append(ChoiceRequest(pairs[0][0], [tokens for _, tokens in pairs]))
    return requests


def score_items(
    scorer: Scorer, task: str | Task, items: Sequence[MultipleChoiceItem], num_fewshot: int = 0, view: str = "raw"
) -> list[dict[str, Any]]:
    """Per-question records: id, subject, gold, scores, pred / correct and pred_norm / correct_norm."""
    task = get_task(task) if isinstance(task, str) else task
    scores = scorer.loglikelihood(build_requests(scorer, task, items, num_fewshot, view))
    records = []
    for item, lls in zip(items, scores, strict=True):
        pred, pred_norm = predictions(lls, task.choices(item))
        records.append({"id": item.id, "subject": item.subject, "gold": item.answer, "pred": pred,
                        "correct": pred == item.answer, "pred_norm": pred_norm,
                        "correct_norm": pred_norm == item.answer, "scores": lls})  # fmt: skip
    return records


def evaluate_multiple_choice(scorer: Scorer, task: str, items: Sequence[MultipleChoiceItem], seed: int = 0,
                             num_fewshot: int = 0, view: str = "raw") -> TaskResult:  # fmt: skip
    """Score every item, then acc and acc_norm with Wilson 95% intervals and a subject breakdown."""
    if not items:
        raise ValueError(f"{task}: no items to evaluate")
    started = time.perf_counter()
    records = score_items(scorer, task, items, num_fewshot, view)
    elapsed = time.perf_counter() - started
    settings = {
        "prompt": "lm-eval 0.4.13 template" + (" through the chat template" if view == "chat" else ""),
        "view": view, "num_fewshot": num_fewshot, "seed": seed, "seconds": round(elapsed, 3),
        "questions_per_second": round(len(records) / elapsed, 4) if elapsed > 0 else None,
    }  # fmt: skip
    return TaskResult(task=task if view == "raw" else f"{task}_chat", model=scorer.name, mode="loglikelihood",
                      n=len(records), metrics=summarize(records), questions=records, settings=settings,
                      model_spec={"name": scorer.name}, breakdown=subject_breakdown(records))  # fmt: skip


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    norm = accuracy([r["correct_norm"] for r in records])
    return {**accuracy([r["correct"] for r in records]), "acc_norm": norm["acc"], "acc_norm_ci": norm["acc_ci"]}


def subject_breakdown(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, n and the Wilson 95% interval per subject (or discipline), when the items carry one."""
    groups: dict[str, list[bool]] = {}
    for record in records:
        if record.get("subject"):
            groups.setdefault(str(record["subject"]), []).append(bool(record["correct"]))
    return {name: {"n": len(values), **accuracy(values)} for name, values in sorted(groups.items())}
