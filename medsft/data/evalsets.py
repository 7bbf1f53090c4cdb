"""The items each evaluation task scores, read by one function everywhere: the evaluate stage, `compare`,
`medsft eval`, the export checks, and decontamination (so training is cleaned against what is scored).

- `medqa`: the carried MedQA US test split (1,273; `split="dev"`: dev, 1,272), or `path`;
- `pubmedqa`: the official 500-PMID PubMedQA test split read from the carried `ori_pqal.json`, or `path`;
- every task in `SYNTHETIC_EVAL_SETS`: `limit` (default 200) generated test cases for `seed`.

`SYNTHETIC_EVAL_SETS` is the one list of generated test sets: a set added there is evaluated by its task
name and indexed by decontamination with the same seed and count evaluation uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsft.data.loaders import (
    DEFAULT_SOURCES,
    MEDQA_EVAL_FILES,
    PUBMEDQA_TEST_FILE,
    load_medqa_eval,
    load_pubmedqa_eval,
    resolve_file,
)
from medsft.data.records import DataError, OnError
from medsft.data.synthetic import SYNTHETIC_EVAL_SIZE, SyntheticCase, synthetic_eval_cases, synthetic_ood_cases

# Generated test sets by task name: (count, seed) -> cases. Evaluation and decontamination both read this.
SYNTHETIC_EVAL_SETS: dict[str, Callable[[int, int], list[SyntheticCase]]] = {
    "synthetic": synthetic_eval_cases,  # in distribution: reserved cases no training case can equal
    "synthetic_ood": synthetic_ood_cases,  # out of distribution: held-out facts and phrasings
}
MULTIPLE_CHOICE_TASKS = ("medqa", "pubmedqa")
EVAL_SPLITS = {"medqa": ("test", "dev"), "pubmedqa": ("test",)}


def eval_task_names() -> list[str]:
    return [*MULTIPLE_CHOICE_TASKS, *SYNTHETIC_EVAL_SETS]


def check_eval_request(task: str, path: str | None = None, split: str = "test") -> None:
    """Reject an unknown task, a split the task does not have, or a data file for a generated task."""
    if task not in eval_task_names():
        raise ValueError(f"unknown evaluation task '{task}'; choose one of {', '.join(eval_task_names())}")
    if task in SYNTHETIC_EVAL_SETS:
        if path is not None:
            raise ValueError(f"{task}: the cases are generated from the seed; it reads no data file")
        return
    # A hub id reads whatever split it is asked for; carried and local files have the splits listed here.
    if split not in EVAL_SPLITS[task] and (path is None or resolve_file(path, path) is not None):
        raise ValueError(f"{task}: no split '{split}'; use {', '.join(EVAL_SPLITS[task])}")


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
    check_eval_request(task, path, split)
    if task == "medqa":
        return load_medqa_eval(path, split, limit, on_error)
    if task == "pubmedqa":
        return load_pubmedqa_eval(path, limit, on_error)
    return SYNTHETIC_EVAL_SETS[task](limit or SYNTHETIC_EVAL_SIZE, seed)


def eval_data_files(task: str, path: str | None = None, split: str = "test") -> list[Path]:
    """The local files a task's items are read from (none for a hub id or a generated set)."""
    check_eval_request(task, path, split)
    if task == "medqa":
        local = resolve_file(path, MEDQA_EVAL_FILES.get(split, MEDQA_EVAL_FILES["test"]))
        return [local] if local is not None else []
    if task == "pubmedqa":
        local = resolve_file(path, DEFAULT_SOURCES["pubmedqa"])
        return [*([local] if local is not None else []), PUBMEDQA_TEST_FILE]  # the official PMIDs pick the split
    return []


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
    if task in SYNTHETIC_EVAL_SETS:
        generator = SYNTHETIC_EVAL_SETS[task]
        return {"task": task, "generator": f"{generator.__module__}.{generator.__name__}", "seed": seed, "items": n}
    try:
        files = [{"path": str(f.resolve()), "sha256": sha256_file(f)} for f in eval_data_files(task, path, split)]
    except OSError as err:
        raise DataError(str(path or task), f"cannot read ({err.strerror or err})") from None
    source = path if path is not None else (MEDQA_EVAL_FILES.get(split) if task == "medqa" else DEFAULT_SOURCES[task])
    return {"task": task, "split": split, "source": source, "files": files, "items": n}
