"""The evaluation tasks, one module per benchmark; `load_items` is the one reader of their items, so every user
sees exactly what is scored. Adding a task: docs/evaluation.md#one-home-per-benchmark."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsft.config import EVAL_SUITES, RunConfig, expand_suites
from medsft.data.decontaminate import EvalText
from medsft.data.dialogue_split import held_out_texts, load_dialogue_eval
from medsft.data.loaders import bundled_path
from medsft.data.records import DataError
from medsft.data.synthetic import SYNTHETIC_EVAL_SIZE, synthetic_eval_cases, synthetic_ood_cases
from medsft.tasks import medmcqa, medqa, mmlu, pubmedqa
from medsft.tasks.base import Task

# Scored by generation (medsft.evaluate.synthetic); in and out of distribution: docs/data.md, "Synthetic cases"
GENERATED = (
    Task("synthetic", "generated", generate=synthetic_eval_cases),
    Task("synthetic_ood", "generated", generate=synthetic_ood_cases),
)
# The 500 held-out ChatDoctor dialogues, fixed whatever the seed, scored by ROUGE and key points: docs/dialogue.md
DIALOGUE = Task(
    "dialogue",
    "dialogue",
    read=lambda path, split, limit: load_dialogue_eval(limit),
    sources={"test": "bundled:chatdoctor"},
    files=lambda path, split: [bundled_path("chatdoctor")],
    eval_texts=held_out_texts,  # every patient message and reference reply
)
TASKS: dict[str, Task] = {
    task.name: task for task in (medqa.TASK, pubmedqa.TASK, medmcqa.TASK, *mmlu.TASKS, *GENERATED, DIALOGUE)
}
SUITES = EVAL_SUITES


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown evaluation task '{name}'; choose one of {', '.join([*TASKS, *SUITES])}")
    return TASKS[name]


def expand_tasks(names: Iterable[str]) -> list[str]:
    """Task names with each suite name replaced by its tasks, in order, without repeats; an unknown one is an error."""
    return [get_task(task).name for task in expand_suites(names)]


def check_request(task: str, path: str | None = None, split: str | None = None) -> Task:
    """The task, after rejecting an unknown one, a split it does not have, or a data file for a generated one."""
    spec = get_task(task)
    if spec.kind == "dialogue" and path is not None:
        raise ValueError(f"{task}: scores the fixed held-out split of the carried ChatDoctor file; it reads no other")
    if spec.kind == "generated":
        if path is not None:
            raise ValueError(f"{task}: the cases are generated from the seed; it reads no data file")
        return spec
    # A hub id reads whatever split it is asked for; carried and local files have the splits listed here.
    local = path is None or path.startswith(("bundled:", "sample:")) or Path(path).expanduser().exists()
    if split is not None and split not in spec.splits and local:
        raise ValueError(f"{task}: no split '{split}'; use {', '.join(spec.splits)}")
    return spec


def scored_split(task: Task, split: str | None = None) -> str:
    """The split a task scores unless told otherwise: its first (test, or MedMCQA's validation)."""
    return split if split is not None else task.splits[0]


def load_items(
    task: str, limit: int | None = None, seed: int = 0, path: str | None = None, split: str | None = None
) -> list[Any]:
    """The first `limit` items a task scores (`MultipleChoiceItem`s, or `SyntheticCase`s for generated sets); a
    `DataError` (file, row, field) for bad data, a `ValueError` for an unknown task or split."""
    spec = check_request(task, path, split)
    if spec.generate is not None:
        return spec.generate(limit or SYNTHETIC_EVAL_SIZE, seed)
    return spec.read(path, scored_split(spec, split), limit)


def item_limit(config: RunConfig, task: str) -> int | None:
    """How many items of `task` a run evaluates: generation, ~100x slower than scoring on a CPU, has its own."""
    if config.eval_generate_limit is not None and not get_task(task).multiple_choice:
        return config.eval_generate_limit
    return config.eval_limit


def run_items(config: RunConfig) -> dict[str, list[Any]]:
    """Each of a run's `eval_tasks`, its items as the evaluate stage scores them (`item_limit`, `config.seed`)."""
    return {task: load_items(task, item_limit(config, task), config.seed) for task in config.eval_tasks}


def data_files(task: str, path: str | None = None, split: str | None = None) -> list[Path]:
    """The local files a task's items are read from (none for a hub id or a generated set)."""
    spec = check_request(task, path, split)
    return [] if spec.files is None else spec.files(path, scored_split(spec, split))


def describe_data(
    task: str, path: str | None = None, split: str | None = None, seed: int = 0, n: int | None = None
) -> dict[str, Any]:
    """Where a task's items came from, for result files: the files with their sha256, or the generator."""
    spec = get_task(task)
    if spec.generate is not None:
        generator = f"{spec.generate.__module__}.{spec.generate.__name__}"
        return {"task": task, "generator": generator, "seed": seed, "items": n}
    split = scored_split(spec, split)
    try:
        files = [
            {"path": str(f.resolve()), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
            for f in data_files(task, path, split)
        ]
    except OSError as err:
        raise DataError(str(path or task), f"cannot read ({err.strerror or err})") from None
    source = path if path is not None else (spec.sources or {}).get(split)
    return {"task": task, "split": split, "source": source, "files": files, "items": n}


def load_eval_texts(
    tasks: Sequence[str], seed: int = 0, synthetic_n: int | Mapping[str, int | None] | None = None
) -> list[EvalText]:
    """For decontamination: each benchmark's `eval_texts` (its whole test split, not the first `eval_limit`), each
    generated set drawn with `seed` and `synthetic_n` items (one number, or one per task; None: 200)."""
    texts: list[EvalText] = []
    for task in expand_tasks(tasks):
        spec = get_task(task)
        if spec.eval_texts is not None:
            texts += [EvalText(task, *text) for text in spec.eval_texts()]
        else:
            n = synthetic_n.get(task) if isinstance(synthetic_n, Mapping) else synthetic_n
            texts += [EvalText(task, case.id, "prompt", case.prompt) for case in load_items(task, n, seed)]
    return texts


def config_eval_texts(config: RunConfig) -> list[EvalText]:
    """Exactly what a run's evaluation scores: generated sets drawn as the evaluate stage draws them (not data_seed)."""
    limits = {task: item_limit(config, task) for task in config.eval_tasks}
    return load_eval_texts(config.eval_tasks, seed=config.seed, synthetic_n=limits)
