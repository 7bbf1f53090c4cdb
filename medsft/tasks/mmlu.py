"""MMLU's six medical subjects, one task each, as lm-eval's `mmlu_<subject>` scores them: the test split, few-shot
examples the first k dev rows. The carried files (`cais/mmlu`'s January 2021 revision) are CSV without a header."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medsft.config import EVAL_SUITES
from medsft.data.loaders import BENCHMARKS_DIR, convert_rows, format_options
from medsft.data.records import LETTERS, DataError, FieldError, MultipleChoiceItem, text_field
from medsft.tasks.base import Row, Task, letters_task

FOLDER = BENCHMARKS_DIR / "mmlu"
COLUMNS = ("question", "A", "B", "C", "D", "answer")


def subject_file(subject: str, split: str, path: str | None = None) -> Path:
    if path is not None and not path.startswith("bundled:"):
        local = Path(path).expanduser()
        if not local.is_file():
            raise DataError(path, "file not found")
        return local
    if split not in ("test", "dev"):
        raise DataError(f"mmlu_{subject}[{split}]", "no carried MMLU split of that name; use test or dev")
    return FOLDER / split / f"{subject}_{split}.csv"


def csv_rows(file: Path) -> Iterator[tuple[int, Any]]:
    """(record number, {question, A..D, answer} or the row's error); quoted commas and CRLF are the csv module's."""
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(file.name, f"not valid UTF-8 (byte at {err.start})") from None
    for number, fields in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if len(fields) != len(COLUMNS):
            yield number, FieldError(None, f"expected {len(COLUMNS)} fields ({', '.join(COLUMNS)}), got {len(fields)}")
        else:
            yield number, dict(zip(COLUMNS, fields, strict=True))


def parse_row(row: dict[str, Any], number: int, subject: str, split: str) -> MultipleChoiceItem:
    choices = [text_field(row, letter, strip=False) for letter in "ABCD"]
    answer = text_field(row, "answer")
    if answer not in "ABCD" or len(answer) != 1:
        raise FieldError("answer", f"{answer!r} is not one of A, B, C, D")
    question = text_field(row, "question", strip=False)
    return MultipleChoiceItem(f"mmlu_{subject}:{split}:{number}", question, choices, LETTERS.index(answer), subject)


def read_split(subject: str, split: str, path: str | None = None) -> list[Any]:
    file = subject_file(subject, split, path)
    origin = f"mmlu/{split}/{file.name}" if file.parent.parent == FOLDER else file.name
    return convert_rows(origin, csv_rows(file), lambda row, n: parse_row(row, n, subject, split))[0]


def prompt(item: MultipleChoiceItem) -> str:
    return f"{item.question.strip()}\n{format_options(item.choices)}\nAnswer:"


def cot_prompt(item: MultipleChoiceItem, instruction: str) -> str:
    return f"{item.question.strip()}\n\n{format_options(item.choices)}\n\n{instruction}"


def lm_eval_row(item: MultipleChoiceItem) -> Row:
    """cais/mmlu's layout, which lm-eval's `mmlu_<subject>` reads."""
    return {"question": item.question, "subject": item.subject, "choices": list(item.choices), "answer": item.answer}


def make_task(subject: str) -> Task:
    heading = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"

    def raw_rows(path: str | None, items: Sequence[MultipleChoiceItem]) -> list[Row]:
        """The file's rows through the csv module only, in cais/mmlu's layout."""
        file = subject_file(subject, "test", path)
        with file.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))[: len(items)]
        name = file.stem.rsplit("_", 1)[0]
        return [{"question": r[0], "subject": name, "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in rows]

    return letters_task(
        f"mmlu_{subject}",
        lambda path=None, split="test", limit=None: read_split(subject, split, path)[:limit],
        sources={"test": f"bundled:mmlu/test/{subject}_test.csv", "dev": f"bundled:mmlu/dev/{subject}_dev.csv"},
        files=lambda path, split: [subject_file(subject, split, path)],
        prompt=prompt,
        description=heading,
        cot_prompt=cot_prompt,  # the question stripped, as lm-eval's doc_to_text strips it
        lm_eval_yaml=f"mmlu/default/mmlu_{subject}.yaml",
        lm_eval_version="1.0",
        lm_eval_row=lm_eval_row,
        raw_rows=raw_rows,
        fewshot=functools.cache(lambda: read_split(subject, "dev")),
        discipline="subject",
    )


TASKS = tuple(make_task(task.removeprefix("mmlu_")) for task in EVAL_SUITES["mmlu"])
