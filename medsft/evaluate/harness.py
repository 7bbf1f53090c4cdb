"""lm-evaluation-harness itself on medsft's items for parity checks: its task YAML with local JSONL data files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsft.data.records import MultipleChoiceItem
from medsft.tasks import Task, get_task


def lm_eval_task(task: str) -> Task:
    spec = get_task(task)
    if spec.lm_eval_yaml is None or spec.lm_eval_row is None:
        raise ValueError(f"no lm-eval layout for task '{task}'")
    return spec


def raw_rows(task: str, items: Sequence[MultipleChoiceItem], path: str | None = None) -> list[dict[str, Any]]:
    """The data file's own rows behind `items`, untouched, so a loader that alters a text shows up in a parity check."""
    return lm_eval_task(task).raw_rows(path, items)


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def write_local_task(
    task: str, items: Sequence[MultipleChoiceItem] | Sequence[dict[str, Any]], folder: str | Path
) -> str:
    """The items (medsft's, or rows in lm-eval's layout), any few-shot rows and a task YAML in `folder`; its name."""
    import lm_eval

    spec = lm_eval_task(task)
    folder = Path(folder)
    name = f"{task}_medsft_local"
    data_file = folder / f"{name}.jsonl"
    write_rows(data_file, [item if isinstance(item, dict) else spec.lm_eval_row(item) for item in items])
    data_files = f"    test: {data_file}\n"
    fewshot = "fewshot_split: null\n"
    if spec.fewshot is not None and items:
        dev_file = folder / f"{name}_dev.jsonl"
        write_rows(dev_file, [spec.lm_eval_row(shot) for shot in spec.fewshot()])
        data_files += f"    dev: {dev_file}\n"
        fewshot = "fewshot_split: dev\n"
    upstream = Path(lm_eval.__file__).parent / "tasks" / str(spec.lm_eval_yaml)
    (folder / f"{name}.yaml").write_text(
        f"include: {upstream}\ntask: {name}\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n{data_files}training_split: null\nvalidation_split: null\n"
        f"test_split: test\n{fewshot}",
        encoding="utf-8",
    )
    return name


def run_local_task(
    lm: Any, name: str, folder: str | Path, num_fewshot: int = 0, chat: bool = False
) -> list[dict[str, Any]]:
    """lm-eval's per-question samples, in item order, of a `write_local_task` task (`chat`: chat template)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    output = lm_eval.simple_evaluate(
        model=lm, tasks=[name], task_manager=manager, log_samples=True, num_fewshot=num_fewshot,
        apply_chat_template=chat,
    )  # fmt: skip
    return sorted(output["samples"][name], key=lambda sample: sample["doc_id"])


def sample_loglikelihoods(sample: dict[str, Any]) -> list[float]:
    """The per-choice log-likelihoods lm-eval logged for one question."""
    return [float(ll) for ll, _ in sample["filtered_resps"]]
