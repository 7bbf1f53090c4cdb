"""The `Task` record each task module fills in, with lm-eval 0.4.13's multiple-choice prompt rules (plain and
chat-template views, acc and acc_norm: docs/evaluation.md#exactly-like-lm-eval)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.data.loaders import format_options
from medsft.data.records import LETTERS, MultipleChoiceItem
from medsft.data.synthetic import SyntheticCase
from medsft.tasks.extraction import extract_letter

Row = dict[str, Any]
TaskText = tuple[str, str, str]  # (item id, part, text): what decontamination indexes
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
MAX_FEWSHOT = 5  # MMLU's dev split: 5 rows per subject

LETTER_COT_INSTRUCTION = (
    "Think through the question step by step, then give your answer on the last line as 'Final answer: <letter>'."
)


@dataclass(frozen=True)
class Task:
    """One evaluation task. `kind`: "letters" (` A`..` D`), "fixed" (the item's own words: ` yes`/` no`/` maybe`),
    "generated" (only `generate`: `medsft.evaluate.synthetic`) or "dialogue" (`medsft.evaluate.dialogue`)."""

    name: str
    kind: str
    # Multiple choice: (path, split, limit) -> items; the default source of each split.
    read: Callable[[str | None, str, int | None], list[MultipleChoiceItem]] | None = None
    sources: dict[str, str] | None = None
    files: Callable[[str | None, str], list[Path]] | None = None  # the local files that make one split
    prompt: Callable[[MultipleChoiceItem], str] | None = None  # lm-eval's doc_to_text
    description: str = ""  # lm-eval's `description` (MMLU's line)
    cot_prompt: Callable[[MultipleChoiceItem, str], str] | None = None  # generative mode's user turn
    cot_instruction: str = ""
    extract: Callable[[str, MultipleChoiceItem], int | None] | None = None  # a reply's choice, generative mode
    lm_eval_yaml: str | None = None  # the task's YAML under lm_eval/tasks
    lm_eval_version: str = "Yaml"  # lm-eval's `Version` column: metadata.version, or "Yaml" when the YAML has none
    lm_eval_row: Callable[[MultipleChoiceItem], Row] | None = None  # an item in the layout lm-eval reads
    raw_rows: Callable[[str | None, Sequence[MultipleChoiceItem]], list[Row]] | None = None  # the file's own rows
    eval_texts: Callable[[], list[TaskText]] | None = None  # the whole test split, for decontamination
    fewshot: Callable[[], list[MultipleChoiceItem]] | None = None  # the few-shot split, in order (first_n)
    discipline: str | None = None  # what `item.subject` means in the per-discipline table ("subject")
    generate: Callable[[int, int], list[SyntheticCase]] | None = None  # generated sets: (count, seed) -> cases

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sources or ())

    @property
    def multiple_choice(self) -> bool:
        return self.kind in ("letters", "fixed")

    def choices(self, item: MultipleChoiceItem) -> list[str]:
        """The choice strings lm-eval scores (and measures for acc_norm), without the delimiter."""
        return list(LETTERS[: len(item.choices)] if self.kind == "letters" else item.choices)

    def shots(self, item: MultipleChoiceItem, num_fewshot: int) -> list[MultipleChoiceItem]:
        """The `num_fewshot` examples put before `item` (lm-eval's sampler for this task)."""
        if num_fewshot == 0:
            return []
        if self.fewshot is None:
            raise ValueError(f"{self.name}: no few-shot split; it is scored zero-shot only")
        if not 0 < num_fewshot <= MAX_FEWSHOT:
            raise ValueError(f"{self.name}: num_fewshot must be 0-{MAX_FEWSHOT}, got {num_fewshot}")
        return self.fewshot()[:num_fewshot]  # lm-eval's first_n sampler (the split differs from the test's)

    def turns(self, item: MultipleChoiceItem, num_fewshot: int = 0) -> tuple[str, str]:
        """(description, the rest of the context): the system and user parts of lm-eval's prompt."""
        assert self.prompt is not None, f"{self.name} is not a multiple-choice task"
        block = "".join(
            f"{self.prompt(shot)}{TARGET_DELIMITER}{self.choices(shot)[shot.answer]}{FEWSHOT_DELIMITER}"
            for shot in self.shots(item, num_fewshot)
        )
        return self.description, block + self.prompt(item)

    def context(self, item: MultipleChoiceItem, num_fewshot: int = 0) -> str:
        return "".join(self.turns(item, num_fewshot))

    def messages(self, item: MultipleChoiceItem, num_fewshot: int = 0) -> list[dict[str, str]]:
        """lm-eval's chat-template context before rendering (`fewshot_as_multiturn` off)."""
        system, user = self.turns(item, num_fewshot)
        return [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": user}]

    def continuations(self, item: MultipleChoiceItem, chat: bool = False) -> list[str]:
        return [("" if chat else TARGET_DELIMITER) + choice for choice in self.choices(item)]


def letters_task(name: str, read: Callable[..., list[MultipleChoiceItem]], **fields: Any) -> Task:
    """A task with options ` A`..` D`: letter chain of thought and extraction, its default split's questions indexed
    for decontamination; `fields` fill in the rest (or override these)."""
    defaults: dict[str, Any] = {
        "cot_prompt": lambda item, instruction: f"{item.question}\n\n{format_options(item.choices)}\n\n{instruction}",
        "cot_instruction": LETTER_COT_INSTRUCTION,
        "extract": lambda reply, item: extract_letter(reply, item.choices),
        "eval_texts": lambda: [(item.id, "question", item.question) for item in read()],
    }
    return Task(name, "letters", read=read, **{**defaults, **fields})
