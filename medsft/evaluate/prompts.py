"""Prompts and answer choices exactly as lm-evaluation-harness builds them, so scores are comparable.

lm-eval 0.4.13, `medqa_4options` (tasks/medqa/preprocess_medqa.py) and `pubmedqa`
(tasks/pubmedqa/preprocess_pubmedqa.py), zero-shot, no description, no chat template:

- the context is `doc_to_text(doc)` verbatim (no few-shot block, no trailing space);
- each continuation is `target_delimiter + choice` with `target_delimiter = " "`: ` A`..` D`, ` yes`/` no`/` maybe`;
- `acc` takes the argmax of the summed log-likelihoods, `acc_norm` divides each by the *character* length of the
  choice without the delimiter (`len("maybe") == 5`), first maximum on ties (numpy's argmax).

`tests/test_eval_prompts.py` pins these strings against lm-eval's own functions when it is installed. The
chain-of-thought prompts (generative mode, not lm-eval's) are here too; `medsft.evaluate.tasks` says which
task uses which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medsft.data.loaders import format_options

if TYPE_CHECKING:
    from medsft.data import MultipleChoiceItem

TARGET_DELIMITER = " "
MEDQA_COT_INSTRUCTION = (
    "Think through the question step by step, then give your answer on the last line as 'Final answer: <letter>'."
)
PUBMEDQA_COT_INSTRUCTION = (
    "Think through the question step by step, then give your answer on the last line as "
    "'Final answer: yes', 'Final answer: no' or 'Final answer: maybe'."
)


def medqa_prompt(item: MultipleChoiceItem) -> str:
    """`Question: {q}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:` (lm-eval's preprocess_medqa.doc_to_text)."""
    return f"Question: {item.question}\n{format_options(item.choices)}\nAnswer:"


def pubmedqa_prompt(item: MultipleChoiceItem) -> str:
    """`Abstract: {contexts joined by \\n}\\nQuestion: {q}\\nAnswer:` (lm-eval's preprocess_pubmedqa)."""
    if item.context is None:
        raise ValueError(f"PubMedQA item {item.id} has no context (the abstract passages)")
    return f"Abstract: {item.context}\nQuestion: {item.question}\nAnswer:"


def medqa_cot_prompt(item: MultipleChoiceItem, instruction: str) -> str:
    """The question, its lettered options and the instruction, for chain-of-thought decoding."""
    return f"{item.question}\n\n{format_options(item.choices)}\n\n{instruction}"


def pubmedqa_cot_prompt(item: MultipleChoiceItem, instruction: str) -> str:
    """The abstract, the question and the instruction, for chain-of-thought decoding."""
    return f"Abstract: {item.context}\n\nQuestion: {item.question}\n\n{instruction}"
