"""The evaluation tasks as data: one `Task` per name in `TASKS`, read by loading, prompts, scoring, extraction,
lm-eval parity and decontamination. Adding a task is adding an entry here.

Three kinds of task:

- `letters`: multiple choice scored on the option letters (` A`..` D`), MedQA;
- `fixed`: multiple choice scored on the item's own choice words (` yes`/` no`/` maybe`), PubMedQA;
- `generated`: cases generated from a seed with labels computed from fact tables, always scored by
  generation (`medsft.evaluate.synthetic`): `synthetic` (in distribution) and `synthetic_ood` (held out);
- `dialogue`: free-text replies to the 500 held-out ChatDoctor dialogues, scored by ROUGE and key-point hit
  rate against the doctor's reply (`medsft.evaluate.dialogue`, split in `medsft.data.dialogue_split`).

`load_eval_items` is the one reader of a task's items: the evaluate stage, `compare`, `medsft eval`, the export
checks and decontamination (so training is cleaned against what is scored) all go through it.

- `medqa`: the carried MedQA US test split (1,273; `split="dev"`: dev, 1,272), or `path`;
- `pubmedqa`: the official 500-PMID PubMedQA test split read from the carried `ori_pqal.json`, or `path`;
- each `generated` task: `limit` (default 200) generated test cases for `seed`;
- `dialogue`: the fixed 500-dialogue ChatDoctor test split (the first `limit`), whatever the seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.data.loaders import (
    DEFAULT_SOURCES,
    MEDQA_EVAL_FILES,
    PUBMEDQA_TEST_FILE,
    load_medqa_eval,
    load_pubmedqa_eval,
    pubmedqa_test_records,
    resolve_file,
)
from medsft.data.records import LETTERS, DataError, OnError
from medsft.data.synthetic import SYNTHETIC_EVAL_SIZE, SyntheticCase, synthetic_eval_cases, synthetic_ood_cases
from medsft.evaluate.extraction import extract_decision, extract_option_letter
from medsft.evaluate.prompts import (
    MEDQA_COT_INSTRUCTION,
    PUBMEDQA_COT_INSTRUCTION,
    TARGET_DELIMITER,
    medqa_cot_prompt,
    medqa_prompt,
    pubmedqa_cot_prompt,
    pubmedqa_prompt,
)

if TYPE_CHECKING:
    from medsft.data import MultipleChoiceItem

Row = dict[str, Any]
TaskText = tuple[str, str, str]  # (item id, part, text): what decontamination indexes


@dataclass(frozen=True)
class Task:
    """One evaluation task. Multiple-choice tasks fill the fields up to `eval_texts`; a generated task has
    only `generate`."""

    name: str
    kind: str  # "letters" | "fixed" | "generated" | "dialogue"
    # Multiple choice: (path, split, limit, on_error) -> items; the default source of each split; files
    # besides the data file that decide the split (PubMedQA's official PMIDs).
    read: Callable[[str | None, str, int | None, OnError], list[MultipleChoiceItem]] | None = None
    sources: dict[str, str] | None = None
    split_files: tuple[Path, ...] = ()
    prompt: Callable[[MultipleChoiceItem], str] | None = None  # lm-eval's doc_to_text
    cot_prompt: Callable[[MultipleChoiceItem, str], str] | None = None  # generative mode's user turn
    cot_instruction: str = ""
    extract: Callable[[str, MultipleChoiceItem], int | None] | None = None  # a reply's choice, generative mode
    lm_eval_task: tuple[str, str] | None = None  # (folder, YAML) under lm_eval/tasks
    lm_eval_row: Callable[[MultipleChoiceItem], Row] | None = None  # an item in the layout lm-eval reads
    raw_lm_eval_row: Callable[[Row], Row] | None = None  # a row of the data file itself, in that layout
    eval_texts: Callable[[str | None], list[TaskText]] | None = None  # the whole test split, for decontamination
    # Generated: (count, seed) -> cases.
    generate: Callable[[int, int], list[SyntheticCase]] | None = None

    @property
    def generative(self) -> bool:
        """Always scored by generating replies (so it gets the generation item limit and token cap)."""
        return self.kind in ("generated", "dialogue")

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sources or ())

    def context(self, item: MultipleChoiceItem) -> str:
        assert self.prompt is not None, f"{self.name} is not a multiple-choice task"
        return self.prompt(item)

    def choices(self, item: MultipleChoiceItem) -> list[str]:
        """The choice strings lm-eval scores (and measures for acc_norm), without the delimiter."""
        if self.kind == "letters":
            return list(LETTERS[: len(item.choices)])
        return list(item.choices)

    def continuations(self, item: MultipleChoiceItem) -> list[str]:
        return [TARGET_DELIMITER + choice for choice in self.choices(item)]


def medqa_lm_eval_row(item: MultipleChoiceItem) -> Row:
    """GBaker/MedQA-USMLE-4-options-hf's layout, which lm-eval's `medqa_4options` reads."""
    row: Row = {"id": item.id, "sent1": item.question, "sent2": "", "label": item.answer}
    row.update({f"ending{i}": text for i, text in enumerate(item.choices)})
    return row


def medqa_raw_lm_eval_row(raw: Row) -> Row:
    if "sent1" in raw:
        return raw
    letters = sorted(raw["options"])
    row = {"sent1": raw["question"], "sent2": "", "label": letters.index(raw["answer_idx"])}
    row.update({f"ending{i}": raw["options"][letter] for i, letter in enumerate(letters)})
    return row


def pubmedqa_lm_eval_row(item: MultipleChoiceItem) -> Row:
    """bigbio/pubmed_qa's layout, which lm-eval's `pubmedqa` reads."""
    return {
        "QUESTION": item.question,
        "CONTEXTS": (item.context or "").split("\n"),  # lm-eval joins them back with "\n"
        "final_decision": item.choices[item.answer],
    }


def pubmedqa_raw_lm_eval_row(raw: Row) -> Row:
    if "QUESTION" in raw:  # ori_pqal.json / bigbio layout
        return {key: raw[key] for key in ("QUESTION", "CONTEXTS", "final_decision")}
    return {"QUESTION": raw["question"], "CONTEXTS": raw["context"]["contexts"],
            "final_decision": raw["final_decision"]}  # fmt: skip


def dialogue_items(path: str | None, split: str, limit: int | None, on_error: OnError) -> list[Any]:
    from medsft.data.dialogue_split import load_dialogue_eval

    return load_dialogue_eval(limit)


def dialogue_eval_texts(path: str | None) -> list[TaskText]:
    """Every held-out patient message and reference reply (the near-duplicate rule is applied by the loaders)."""
    from medsft.data.dialogue_split import held_out_texts

    return held_out_texts()


def medqa_eval_texts(path: str | None) -> list[TaskText]:
    """Every question of the MedQA test split."""
    return [(item.id, "question", item.question) for item in load_medqa_eval(path)]


def pubmedqa_eval_texts(path: str | None) -> list[TaskText]:
    """Every question, abstract and long answer of the PubMedQA test split."""
    parts = ("question", "context", "long_answer")
    return [(record["id"], part, record[part]) for record in pubmedqa_test_records(path) for part in parts]


TASKS: dict[str, Task] = {
    "medqa": Task(
        "medqa",
        "letters",
        read=load_medqa_eval,
        sources=MEDQA_EVAL_FILES,
        prompt=medqa_prompt,
        cot_prompt=medqa_cot_prompt,
        cot_instruction=MEDQA_COT_INSTRUCTION,
        extract=extract_option_letter,
        lm_eval_task=("medqa", "medqa.yaml"),
        lm_eval_row=medqa_lm_eval_row,
        raw_lm_eval_row=medqa_raw_lm_eval_row,
        eval_texts=medqa_eval_texts,
    ),
    "pubmedqa": Task(
        "pubmedqa",
        "fixed",
        read=lambda path, split, limit, on_error: load_pubmedqa_eval(path, limit, on_error),
        sources={"test": DEFAULT_SOURCES["pubmedqa"]},
        split_files=(PUBMEDQA_TEST_FILE,),  # the official PMIDs pick the split
        prompt=pubmedqa_prompt,
        cot_prompt=pubmedqa_cot_prompt,
        cot_instruction=PUBMEDQA_COT_INSTRUCTION,
        extract=extract_decision,
        lm_eval_task=("pubmedqa", "pubmedqa.yaml"),
        lm_eval_row=pubmedqa_lm_eval_row,
        raw_lm_eval_row=pubmedqa_raw_lm_eval_row,
        eval_texts=pubmedqa_eval_texts,
    ),
    # In distribution: reserved cases no training case can equal.
    "synthetic": Task("synthetic", "generated", generate=synthetic_eval_cases),
    # Out of distribution: held-out facts and phrasings.
    "synthetic_ood": Task("synthetic_ood", "generated", generate=synthetic_ood_cases),
    # Held-out ChatDoctor dialogues, free-text replies (medsft.evaluate.dialogue).
    "dialogue": Task(
        "dialogue",
        "dialogue",
        read=dialogue_items,
        sources={"test": "bundled:chatdoctor"},
        eval_texts=dialogue_eval_texts,
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown evaluation task '{name}'; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def check_eval_request(task: str, path: str | None = None, split: str = "test") -> Task:
    """The task, after rejecting an unknown one, a split it does not have, or a data file for a generated one."""
    spec = get_task(task)
    if spec.kind == "generated":
        if path is not None:
            raise ValueError(f"{task}: the cases are generated from the seed; it reads no data file")
        return spec
    if spec.kind == "dialogue" and path is not None:
        raise ValueError(f"{task}: scores the fixed held-out split of the carried ChatDoctor file; it reads no other")
    # A hub id reads whatever split it is asked for; carried and local files have the splits listed here.
    if split not in spec.splits and (path is None or resolve_file(path, path) is not None):
        raise ValueError(f"{task}: no split '{split}'; use {', '.join(spec.splits)}")
    return spec


def load_eval_items(
    task: str,
    limit: int | None = None,
    seed: int = 0,
    path: str | None = None,
    split: str = "test",
    on_error: OnError = "raise",
) -> list[Any]:
    """The first `limit` items a task scores (`MultipleChoiceItem`s, or `SyntheticCase`s for generated sets).

    Raises `DataError` (file, row, field) for bad data and `ValueError` for an unknown task or split.
    """
    spec = check_eval_request(task, path, split)
    if spec.generate is not None:
        return spec.generate(limit or SYNTHETIC_EVAL_SIZE, seed)
    assert spec.read is not None
    return spec.read(path, split, limit, on_error)


def eval_data_files(task: str, path: str | None = None, split: str = "test") -> list[Path]:
    """The local files a task's items are read from (none for a hub id or a generated set)."""
    spec = check_eval_request(task, path, split)
    if spec.sources is None:
        return []
    local = resolve_file(path, spec.sources.get(split, spec.sources["test"]))
    return [*([local] if local is not None else []), *spec.split_files]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_eval_data(
    task: str, path: str | None = None, split: str = "test", seed: int = 0, n: int | None = None
) -> dict[str, Any]:
    """Where a task's items came from, for result files: the files with their sha256, or the generator."""
    spec = get_task(task)
    if spec.generate is not None:
        generator = spec.generate
        return {"task": task, "generator": f"{generator.__module__}.{generator.__name__}", "seed": seed, "items": n}
    try:
        files = [{"path": str(f.resolve()), "sha256": sha256_file(f)} for f in eval_data_files(task, path, split)]
    except OSError as err:
        raise DataError(str(path or task), f"cannot read ({err.strerror or err})") from None
    source = path if path is not None else (spec.sources or {}).get(split)
    return {"task": task, "split": split, "source": source, "files": files, "items": n}
