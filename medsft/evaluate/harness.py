"""Run lm-evaluation-harness itself on medsft's items, for parity checks (the benchmark, integration tests).

lm-eval reads the items from a local JSONL written in its task's own layout, through its own task YAML
(`include:`d unchanged, so its prompt functions and choices are the ones used), with only the data set
pointed at the local file. Needs `lm-eval` installed; never used by evaluation itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.evaluate.tasks import Task, get_task

if TYPE_CHECKING:
    from medsft.data import MultipleChoiceItem


def lm_eval_task(task: str) -> Task:
    spec = get_task(task)
    if spec.lm_eval_task is None:
        raise ValueError(f"no lm-eval layout for task '{task}'")
    return spec


def lm_eval_row(task: str, item: MultipleChoiceItem) -> dict[str, Any]:
    """An item in the layout lm-eval's task reads (GBaker/MedQA-USMLE-4-options-hf, bigbio/pubmed_qa)."""
    return lm_eval_task(task).lm_eval_row(item)


def raw_lm_eval_row(task: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A row of the benchmark file itself in lm-eval's layout, every text untouched.

    Parity checks feed lm-eval from the file, not from medsft's parsed items, so a loader that alters the
    text (stripping a leading space, say) shows up as a difference instead of being copied to both sides.
    """
    return lm_eval_task(task).raw_lm_eval_row(raw)


def write_local_task(
    task: str, items: Sequence[MultipleChoiceItem] | Sequence[dict[str, Any]], folder: str | Path
) -> str:
    """Write the items (`<name>.jsonl`) and a task YAML into `folder`; return the local task's name.

    `items` are medsft items, or rows already in lm-eval's layout (`raw_lm_eval_row`)."""
    import lm_eval

    folder = Path(folder)
    name = f"{task}_medsft_local"
    data_file = folder / f"{name}.jsonl"
    with data_file.open("w", encoding="utf-8") as handle:
        for item in items:
            row = item if isinstance(item, dict) else lm_eval_row(task, item)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    subdir, yaml_name = lm_eval_task(task).lm_eval_task
    upstream = Path(lm_eval.__file__).parent / "tasks" / subdir / yaml_name
    (folder / f"{name}.yaml").write_text(
        f"include: {upstream}\n"
        f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data_file}\n"
        "training_split: null\n"
        "validation_split: null\n"
        "test_split: test\n",
        encoding="utf-8",
    )
    return name


def run_local_task(lm: Any, name: str, folder: str | Path) -> list[dict[str, Any]]:
    """Evaluate a task written by `write_local_task` with lm-eval's `simple_evaluate`, logging samples."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    output = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, log_samples=True)
    return sorted(output["samples"][name], key=lambda sample: sample["doc_id"])


def sample_loglikelihoods(sample: dict[str, Any]) -> list[float]:
    """The per-choice log-likelihoods lm-eval logged for one question."""
    return [float(ll) for ll, _ in sample["filtered_resps"]]
