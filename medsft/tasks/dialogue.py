"""ChatDoctor dialogues: free-text replies to the 500 held-out dialogues of the carried ChatDoctor file, scored
by ROUGE and key-point hit rate against the doctor's reply (`medsft.evaluate.dialogue`; the split lives in
`medsft.data.dialogue_split`). Always generative; the fixed split, whatever the seed."""

from __future__ import annotations

from typing import Any

from medsft.data.dialogue_split import held_out_texts, load_dialogue_eval
from medsft.data.loaders import bundled_path
from medsft.data.records import OnError
from medsft.tasks.base import Task, TaskText


def load_items(path: str | None, split: str, limit: int | None, on_error: OnError) -> list[Any]:
    return load_dialogue_eval(limit)


def eval_texts(path: str | None) -> list[TaskText]:
    """Every held-out patient message and reference reply (the near-duplicate rule is applied by the loaders)."""
    return held_out_texts()


TASK = Task(
    "dialogue",
    "dialogue",
    read=load_items,
    sources={"test": "bundled:chatdoctor"},
    files=lambda path, split: [bundled_path("chatdoctor")],
    eval_texts=eval_texts,
)
