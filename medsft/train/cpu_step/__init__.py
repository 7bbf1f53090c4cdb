"""The CPU step, `trainer = use_cpu_step(trainer)` in the trainer cell: packed rows, packed attention (`attention`),
the LM head only where a label is trained (`loss`); docs/training.md#cpu-step."""

from __future__ import annotations

import functools
import types
from typing import Any

import torch

from medsft.train.cpu_step.attention import packed_attention
from medsft.train.cpu_step.loss import release_workspace, sparse_head_loss
from medsft.train.labels import IGNORE_INDEX


def pack_examples(examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """A micro-batch as one row with restarting position ids (no padding is ever computed). Each conversation's
    first label is masked so no token is trained to follow the previous conversation."""
    input_ids, labels, positions = [], [], []
    for example in examples:
        ids = list(example["input_ids"])
        input_ids += ids
        labels += [IGNORE_INDEX] + list(example["labels"][1:])
        positions += range(len(ids))
    as_row = lambda values: torch.tensor(values, dtype=torch.long)[None]  # noqa: E731
    return {"input_ids": as_row(input_ids), "labels": as_row(labels), "position_ids": as_row(positions)}


def use_cpu_step(trainer: Any) -> Any:
    """This SFTTrainer (same class, arguments and callbacks) with the CPU step; `trainer.cpu_step` says it is on."""
    trainer.data_collator = pack_examples
    trainer.compute_loss = types.MethodType(sparse_compute_loss, trainer)
    # The sparse loss divides by `num_items_in_batch`: the trainer always counts it (micro-batches, processes).
    trainer.model_accepts_loss_kwargs = True
    trainer.train = functools.partial(train_with_packed_attention, trainer, trainer.train)
    trainer.cpu_step = True
    return trainer


def train_with_packed_attention(trainer: Any, train: Any, *args: Any, **kwargs: Any) -> Any:
    with packed_attention(trainer.model):
        try:
            return train(*args, **kwargs)
        finally:
            release_workspace()  # the sparse head's logits buffer (up to 0.5 GB), kept between steps, goes now


def sparse_compute_loss(trainer: Any, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch=None):  # noqa: ANN001
    """SFTTrainer.compute_loss with the sparse head; logs TRL's `num_tokens` and `mean_token_accuracy` (all ranks)."""
    mode = "train" if trainer.model.training else "eval"
    if num_items_in_batch is None and trainer.accelerator.num_processes > 1:
        # TRL's evaluation passes no count and averages processes equally: all processes' tokens weigh them as one.
        labelled = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())  # the targets sparse_head_loss scores
        num_items_in_batch = summed_over_processes(trainer, labelled)[0]
    out = sparse_head_loss(model, inputs, num_items_in_batch)
    loss = out.loss
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        # DDP averages gradients, so each process's share of sum(all losses) / all tokens is scaled back up, as
        # transformers' own compute_loss does (docs/scale-out.md: same training as one process).
        loss = loss * trainer.accelerator.num_processes
    tokens, trained, correct = summed_over_processes(
        trainer, inputs["input_ids"].numel(), out.trained_tokens, out.correct_tokens
    )
    if mode == "train":
        trainer._total_train_tokens += tokens
    trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]
    if trained:
        trainer._metrics[mode]["mean_token_accuracy"].append(correct / trained)
    return (loss, {"loss": loss}) if return_outputs else loss


def summed_over_processes(trainer: Any, *counts: int) -> list[int]:
    """`counts` summed over all processes (as they are, with one process), so logs describe the whole batch."""
    if trainer.accelerator.num_processes == 1:
        return list(counts)
    summed = trainer.accelerator.reduce(torch.tensor(counts, device=trainer.args.device), reduction="sum")
    return [int(value) for value in summed.tolist()]
