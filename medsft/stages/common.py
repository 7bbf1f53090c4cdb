"""What the stage notebooks share: the run's tokenizer and the data splits saved in a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsft.config import RunConfig
from medsft.models import resolve_model
from medsft.runs import find_artifact, read_json_lines
from medsft.train.fast_language_model import load_tokenizer

SPLITS = ("train", "validation")


def load_tokenizer_for(config: RunConfig) -> Any:
    """The run's tokenizer with its chat template (no model weights are loaded)."""
    return load_tokenizer(resolve_model(config.model).location, config.chat_template)


def load_data(run_dir: str | Path) -> Any | None:
    """The splits the data stage saved (in this run or the one it was started from), or None if there are none."""
    folder = find_artifact(run_dir, "data")
    if folder is None:
        return None
    from datasets import Dataset, DatasetDict

    train, validation = (read_json_lines(folder / f"{split}.jsonl") for split in SPLITS)
    # One table for both splits, as the data stage built it, so an empty validation split keeps the schema.
    full = Dataset.from_list(train + validation)
    n = len(train)
    return DatasetDict(train=full.select(list(range(n))), validation=full.select(list(range(n, len(full)))))
