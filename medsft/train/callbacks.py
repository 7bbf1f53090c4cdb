"""What medsft adds to TRL's SFTTrainer, as callbacks: `add_run_callbacks(trainer, ...)` in the trainer cell."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, TrainerCallback

from medsft.config import RunConfig
from medsft.data.records import MultipleChoiceItem
from medsft.train import checkpoint_selection


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


class Throughput(TrainerCallback):
    """Tokens the trainer counted (TRL's `num_tokens`: all processes, no padding) and optimizer steps' wall time."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.first_tokens: int | None = None  # a resumed run counts from where it restarted
        self.seconds = self.step_started = 0.0

    @property
    def tokens(self) -> int:
        return self.trainer._total_train_tokens - (self.first_tokens or 0)

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.first_tokens = self.trainer._total_train_tokens

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.seconds += time.perf_counter() - self.step_started

    def rate(self) -> float | None:
        return round(self.tokens / self.seconds, 2) if self.seconds else None


class JsonlLog(TrainerCallback):
    """Appends one JSON line per logging event: loss, lr, grad norm, tokens/s, peak memory, eval loss."""

    def __init__(self, path: Path, throughput: Throughput) -> None:
        self.path, self.throughput = path, throughput
        self.last_seconds, self.last_tokens = 0.0, 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero:  # every process logs the same (already gathered) numbers
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **(logs or {})}
        seconds = self.throughput.seconds - self.last_seconds
        if "loss" in record and seconds > 0:
            record["tokens_per_second"] = round((self.throughput.tokens - self.last_tokens) / seconds, 2)
            record["peak_memory_gib"] = round(peak_memory_gib(), 3)
            self.last_seconds, self.last_tokens = self.throughput.seconds, self.throughput.tokens
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class ValidationAccuracy(TrainerCallback):
    """At each evaluation, the benchmark's validation accuracy: a metric the trainer compares, logged after the loss."""

    def __init__(self, trainer: Any, task: str, items: list[MultipleChoiceItem]) -> None:
        self.trainer, self.task, self.items = trainer, task, items

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        name = checkpoint_selection.metric_name(self.task)
        metrics[name] = checkpoint_selection.accuracy(
            self.trainer.model, self.trainer.processing_class, self.task, self.items, args.per_device_eval_batch_size
        )
        self.trainer.log({name: metrics[name]})


class UntrainedBaselineNotKept(TrainerCallback):
    """Step 0's evaluation is a baseline, not a candidate (no checkpoint-0; a later one equal to it would never be
    kept): the next evaluation forgets it before the trainer compares (tests/test_train_resume.py guards the order)."""

    def on_evaluate(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step > 0 and state.best_global_step == 0:
            state.best_metric, state.best_global_step = None, None


def add_run_callbacks(
    trainer: Any, config: RunConfig, run_dir: Path, validation_task: str | None, items: list[MultipleChoiceItem]
) -> Any:
    """The trainer with medsft's logging and checkpoint choice; `trainer.throughput` holds the token rate."""
    trainer.throughput = Throughput(trainer)
    trainer.add_callback(trainer.throughput)
    trainer.add_callback(JsonlLog(run_dir / "train_log.jsonl", trainer.throughput))
    if trainer.args.eval_strategy == "no":
        return trainer
    if validation_task:  # before early stopping, which reads the metric this adds
        trainer.add_callback(ValidationAccuracy(trainer, validation_task, items))
    trainer.add_callback(UntrainedBaselineNotKept())
    if config.early_stopping_patience:
        trainer.add_callback(EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_threshold))
    return trainer
