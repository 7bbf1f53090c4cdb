"""MedMCQA: the validation split (4,183 questions in 21 subject files, the subject being the file name), the split
lm-eval's `medmcqa` scores as the test labels are not public. The carried rows hold the options as one string and
the answer as `B. <text>`; each is split back and checked (the letter's text must equal the option's)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsft.data.loaders import BENCHMARKS_DIR, convert_rows, format_options, read_jsonl
from medsft.data.records import LETTERS, DataError, FieldError, MultipleChoiceItem, text_field
from medsft.tasks.base import Row, letters_task

FOLDER = BENCHMARKS_DIR / "medmcqa" / "validation"
SOURCES = {"validation": "bundled:medmcqa"}
OPTIONS = re.compile(r"A\. (.*)\nB\. (.*)\nC\. (.*)\nD\. (.*)", re.DOTALL)


def subject_files(path: str | None) -> list[Path]:
    """The subject files: every `*.jsonl` of a folder (sorted by name), or one file."""
    root = FOLDER if path in (None, SOURCES["validation"]) else Path(str(path)).expanduser()
    if root.is_file():
        return [root]
    found = sorted(root.glob("*.jsonl")) if root.is_dir() else []
    if not found:
        raise DataError(str(path or root), "no MedMCQA subject files (*.jsonl) there")
    return found


def parse_row(row: dict[str, Any], number: int, subject: str) -> MultipleChoiceItem:
    question = text_field(row, "question", strip=False)
    options = OPTIONS.fullmatch(text_field(row, "options", strip=False))
    if options is None:
        raise FieldError("options", "expected 'A. ...\\nB. ...\\nC. ...\\nD. ...'")
    choices = list(options.groups())
    answer = text_field(row, "answer", strip=False)
    letter = answer[:1]
    if letter not in LETTERS[:4] or answer != f"{letter}. {choices[LETTERS.index(letter)]}":
        raise FieldError("answer", f"{answer[:60]!r} is not 'X. <text of option X>' for one of the options A-D")
    return MultipleChoiceItem(f"medmcqa:{subject}:{number}", question, choices, LETTERS.index(letter), subject)


def load_items(
    path: str | None = None, split: str = "validation", limit: int | None = None
) -> list[MultipleChoiceItem]:
    """All subjects' items, subject files in name order, rows in file order; the first `limit`."""
    items: list[MultipleChoiceItem] = []
    for file in subject_files(path):
        origin = f"medmcqa/{file.name}" if file.parent == FOLDER else file.name
        rows = read_jsonl(file.read_bytes())
        items += convert_rows(origin, rows, lambda row, number, s=file.stem: parse_row(row, number, s))[0]
        if limit is not None and len(items) >= limit:
            break
    return items[:limit]


def prompt(item: MultipleChoiceItem) -> str:
    return f"Question: {item.question}\nChoices:\n{format_options(item.choices)}\nAnswer:"


def lm_eval_row(item: MultipleChoiceItem) -> Row:
    """openlifescienceai/medmcqa's layout, which lm-eval's `medmcqa` reads."""
    options = {f"op{key}": text for key, text in zip("abcd", item.choices, strict=True)}
    return {"id": item.id, "question": item.question, "cop": item.answer, "subject_name": item.subject, **options}


def raw_rows(path: str | None, items: Sequence[MultipleChoiceItem]) -> list[Row]:
    """The carried rows behind `items`, split with a plain string split (not the loader's pattern)."""
    by_file = {f.stem: f.read_text(encoding="utf-8").split("\n") for f in subject_files(path)}
    rows = []
    for item in items:
        _, subject, number = item.id.split(":")
        raw = json.loads(by_file[subject][int(number) - 1])
        options = {f"op{key}": part[3:] for key, part in zip("abcd", raw["options"].split("\n"), strict=True)}
        rows.append(dict(question=raw["question"], cop="ABCD".index(raw["answer"][0]), subject_name=subject, **options))
    return rows


TASK = letters_task(
    "medmcqa",
    load_items,
    sources=SOURCES,
    files=lambda path, split: subject_files(path),
    prompt=prompt,
    lm_eval_yaml="medmcqa/medmcqa.yaml",
    lm_eval_row=lm_eval_row,
    raw_rows=raw_rows,
    discipline="subject",
)
