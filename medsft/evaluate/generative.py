"""Chain of thought: the choice read from the reply (the task's `extract`); *unparseable* is a share, never guessed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medsft.data.records import MultipleChoiceItem
from medsft.evaluate.multiple_choice import subject_breakdown
from medsft.evaluate.results import Scored, TaskResult
from medsft.evaluate.stats import accuracy
from medsft.evaluate.transformers_scorer import GenerationSettings, Messages, Scorer, generated_result
from medsft.tasks import TASKS, get_task


def cot_messages(task: str, item: MultipleChoiceItem, instruction: str | None = None) -> Messages:
    """The user turn: the question, the options and how to end the answer."""
    spec = get_task(task)
    if spec.cot_prompt is None:
        with_cot = " or ".join(name for name, t in TASKS.items() if t.cot_prompt is not None)
        raise ValueError(f"no chain-of-thought prompt for task '{task}'; choose {with_cot}")
    return [{"role": "user", "content": spec.cot_prompt(item, instruction or spec.cot_instruction)}]


def score_replies(task: str, items: Sequence[MultipleChoiceItem], replies: Sequence[str]) -> list[dict[str, Any]]:
    """Per-question records: the extracted choice index (None when unparseable), whether it is right, the reply."""
    records = []
    for item, reply in zip(items, replies, strict=True):
        pred = get_task(task).extract(reply, item)
        records.append({"id": item.id, "subject": item.subject, "gold": item.answer, "pred": pred,
                        "parsed": pred is not None, "correct": pred == item.answer, "output": reply})  # fmt: skip
    return records


def summarize_replies(records: list[dict[str, Any]]) -> dict[str, Any]:
    """acc over all questions (unparseable = not correct), shown with the unparseable share and acc_parsed."""
    parsed = [r for r in records if r["parsed"]]
    return {**accuracy([r["correct"] for r in records]), "unparseable": 1 - len(parsed) / len(records),
            "n_unparseable": len(records) - len(parsed),
            "acc_parsed": sum(r["correct"] for r in parsed) / len(parsed) if parsed else None}  # fmt: skip


def evaluate_generative(scorer: Scorer, task: str, items: Sequence[MultipleChoiceItem], max_new_tokens: int = 512,
                        seed: int = 0, instruction: str | None = None) -> TaskResult:  # fmt: skip
    """A greedy reasoned answer per item, scored on the extracted choice (`summarize_replies`)."""

    def score(replies: list[str]) -> Scored:
        records = score_replies(task, items, replies)
        return records, summarize_replies(records), subject_breakdown(records)

    conversations = [cot_messages(task, item, instruction) for item in items]
    generation = GenerationSettings(max_new_tokens, seed=seed)
    # `<task>_cot`: its own file name, since a log-likelihood result for the same task sits beside it
    return generated_result(scorer, f"{task}_cot", "generate", conversations, generation, score,
                            instruction=instruction or get_task(task).cot_instruction)  # fmt: skip
