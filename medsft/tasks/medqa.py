"""MedQA USMLE 4-option: the carried official test split (and dev), as lm-eval's `medqa_4options` scores it. The
question and options are kept verbatim (row 243 starts with a space, and lm-eval keeps it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medsft.data.loaders import format_options, load_rows, parse_medqa, resolve_file
from medsft.data.records import DataError, MultipleChoiceItem
from medsft.runs import read_json_lines
from medsft.tasks.base import Row, letters_task

SOURCES = {"test": "bundled:medqa-test", "dev": "bundled:medqa-dev"}


def load_items(path: str | None = None, split: str = "test", limit: int | None = None) -> list[MultipleChoiceItem]:
    """The first `limit` items in file order: the carried split (ids `medqa:test:<row>`), or that split of a hub id."""
    if path is None:
        if split not in SOURCES:
            raise DataError(f"medqa[{split}]", f"no carried MedQA split '{split}'; use {', '.join(SOURCES)}")
        path = SOURCES[split]
    return load_rows(path, SOURCES["test"], parse_medqa, None, split)[1][:limit]


def prompt(item: MultipleChoiceItem) -> str:
    return f"Question: {item.question}\n{format_options(item.choices)}\nAnswer:"


def lm_eval_row(item: MultipleChoiceItem) -> Row:
    """GBaker/MedQA-USMLE-4-options-hf's layout, which lm-eval's `medqa_4options` reads."""
    endings = {f"ending{i}": text for i, text in enumerate(item.choices)}
    return {"id": item.id, "sent1": item.question, "sent2": "", "label": item.answer, **endings}


def raw_lm_eval_row(raw: Row) -> Row:
    """A row of the data file itself in lm-eval's layout, every text untouched."""
    if "sent1" in raw:
        return raw
    letters = sorted(raw["options"])
    endings = {f"ending{i}": raw["options"][letter] for i, letter in enumerate(letters)}
    return {"sent1": raw["question"], "sent2": "", "label": letters.index(raw["answer_idx"]), **endings}


def raw_rows(path: str | None, items: Sequence[MultipleChoiceItem]) -> list[Row]:
    """The file's own first rows behind `items` (read without medsft's parser), in lm-eval's layout."""
    local = resolve_file(path, SOURCES["test"])
    assert local is not None, "parity needs a local file"
    return [raw_lm_eval_row(row) for row in read_json_lines(local)[: len(items)]]


def files(path: str | None, split: str) -> list[Path]:
    local = resolve_file(path, SOURCES.get(split, SOURCES["test"]))
    return [local] if local is not None else []


TASK = letters_task(
    "medqa",
    load_items,
    sources=SOURCES,
    files=files,
    prompt=prompt,
    lm_eval_yaml="medqa/medqa.yaml",
    lm_eval_row=lm_eval_row,
    raw_rows=raw_rows,
    discipline="USMLE step",
)
