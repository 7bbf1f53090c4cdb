"""Prompts and answer choices exactly as lm-evaluation-harness builds them, so scores are comparable.

lm-eval 0.4.13, `medqa_4options` (tasks/medqa/preprocess_medqa.py) and `pubmedqa`
(tasks/pubmedqa/preprocess_pubmedqa.py), zero-shot, no description, no chat template:

- the context is `doc_to_text(doc)` verbatim (no few-shot block, no trailing space);
- each continuation is `target_delimiter + choice` with `target_delimiter = " "`: ` A`..` D`, ` yes`/` no`/` maybe`;
- `acc` takes the argmax of the summed log-likelihoods, `acc_norm` divides each by the *character* length of the
  choice without the delimiter (`len("maybe") == 5`), first maximum on ties (numpy's argmax).

`tests/test_eval_prompts.py` pins these strings against lm-eval's own functions when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsft.data import MultipleChoiceItem

LETTERS = "ABCDEFGHIJ"
TARGET_DELIMITER = " "
PUBMEDQA_CHOICES = ("yes", "no", "maybe")


def medqa_prompt(item: MultipleChoiceItem) -> str:
    """`Question: {q}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:` (lm-eval's preprocess_medqa.doc_to_text)."""
    options = "".join(f"{LETTERS[i]}. {text}\n" for i, text in enumerate(item.choices))
    return f"Question: {item.question}\n{options}Answer:"


def pubmedqa_prompt(item: MultipleChoiceItem) -> str:
    """`Abstract: {contexts joined by \\n}\\nQuestion: {q}\\nAnswer:` (lm-eval's preprocess_pubmedqa)."""
    if item.context is None:
        raise ValueError(f"PubMedQA item {item.id} has no context (the abstract passages)")
    return f"Abstract: {item.context}\nQuestion: {item.question}\nAnswer:"


@dataclass(frozen=True)
class Task:
    """A multiple-choice task as data: how to build the context and which choice strings to score."""

    name: str
    kind: str  # "letters": choices are the option letters; "fixed": the item's own choice texts

    def context(self, item: MultipleChoiceItem) -> str:
        return medqa_prompt(item) if self.name == "medqa" else pubmedqa_prompt(item)

    def choices(self, item: MultipleChoiceItem) -> list[str]:
        """The choice strings lm-eval scores (and measures for acc_norm), without the delimiter."""
        if self.kind == "letters":
            return list(LETTERS[: len(item.choices)])
        return list(item.choices)

    def continuations(self, item: MultipleChoiceItem) -> list[str]:
        return [TARGET_DELIMITER + choice for choice in self.choices(item)]


TASKS = {"medqa": Task("medqa", "letters"), "pubmedqa": Task("pubmedqa", "fixed")}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown multiple-choice task '{name}'; choose one of {', '.join(TASKS)}")
    return TASKS[name]
