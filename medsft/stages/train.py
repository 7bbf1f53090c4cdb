"""02 train: the recipe's knobs and the training of the run's LoRA adapter."""

from __future__ import annotations

import logging
from typing import Any

from medsft.config import RunConfig
from medsft.pipeline import NotebookRun
from medsft.stages.common import load_data

log = logging.getLogger("medsft")

# The config fields a reader of the training notebook wants to see first (all of them are in config.yaml).
RECIPE_FIELDS = (
    "model", "max_seq_length", "lora_r", "lora_alpha", "lora_target", "optimizer", "learning_rate",
    "lr_scheduler", "batch_size", "gradient_accumulation_steps", "num_epochs", "max_steps",
    "eval_every_steps", "select_checkpoint_by", "train_on_reasoning", "seed", "dry_run",
)  # fmt: skip



def recipe_frame(config: RunConfig, fields: tuple[str, ...] = RECIPE_FIELDS) -> Any:
    """The recipe's main knobs as a two-column table."""
    import pandas as pd

    values = config.to_dict()
    return pd.DataFrame({"field": list(fields), "value": [str(values[name]) for name in fields]})


def train_stage(run: NotebookRun) -> Any:
    """Train on the data stage's splits (or build them, if the data stage did not run) into the run folder."""
    from medsft.train import train

    data = load_data(run.run_dir)
    if data is None:
        log.warning("no data stage output in %s; building the data inside training", run.run_dir)
    return train(run.config, data=data, run_dir=run.run_dir)
