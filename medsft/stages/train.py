"""02 train: what each step of a LoRA fine-tune (`medsft.train.steps`, one notebook cell each) shows."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pandas as pd

from medsft.config import RunConfig
from medsft.runs import Run
from medsft.stages.common import load_data
from medsft.train.labels import IGNORE_INDEX, tokenize_conversation

log = logging.getLogger("medsft")

# Library arguments whose recipe key has another name (every other key is the library's own name).
LIBRARY_TO_RECIPE = {
    "model_name": "model",
    "r": "lora_r",
    "target_modules": "lora_target",
    "random_state": "seed",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "batch_size",
    "lr_scheduler_type": "lr_scheduler",
    "warmup_steps": "warmup_ratio",
    "num_train_epochs": "num_epochs",
    "optim": "optimizer",
    "eval_steps": "eval_every_steps",
    "save_steps": "save_every_steps",
    "metric_for_best_model": "select_checkpoint_by",
    "max_length": "max_seq_length",
}

# The config fields a reader of the training notebook wants to see first (all of them are in config.yaml).
RECIPE_FIELDS = (
    "model", "max_seq_length", "lora_r", "lora_alpha", "lora_target", "optimizer", "learning_rate",
    "lr_scheduler", "batch_size", "gradient_accumulation_steps", "num_epochs", "max_steps",
    "eval_every_steps", "select_checkpoint_by", "train_on_reasoning", "seed", "dry_run",
)  # fmt: skip


def recipe_frame(config: RunConfig) -> Any:
    """The recipe's main knobs as a two-column table."""
    values = config.to_dict()
    return pd.DataFrame({"field": list(RECIPE_FIELDS), "value": [str(values[name]) for name in RECIPE_FIELDS]})


def run_data(run: Run) -> Any | None:
    """The data stage's splits; None (training builds them) when the data stage did not run."""
    data = load_data(run.run_dir)
    if data is None:
        log.warning("no data stage output in %s; building the data inside training", run.run_dir)
    return data


def model_frame(begun: Any, model: Any) -> Any:
    """Which backend loaded the model, why, and how: class, dtype, device, 4-bit, parameter count."""
    parameter = next(model.parameters())
    rows = {
        "backend": f"{begun.backend.name} ({begun.backend.reason})",
        "model": begun.config.model,
        "class": type(model).__name__,
        "dtype": str(parameter.dtype).removeprefix("torch."),
        "device": str(parameter.device),
        "4-bit": str(bool(getattr(model, "is_loaded_in_4bit", False))),
        "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
        "chat template": begun.config.chat_template or "the tokenizer's own",
    }
    return settings_frame(rows)


def trained_text(tokenizer: Any, messages: list[dict[str, str]], config: RunConfig) -> str:
    """A conversation's labels decoded, each masked run as one space (Unsloth's `train_on_responses_only` check)."""
    row = tokenize_conversation(tokenizer, messages, config.max_seq_length, config.train_on_reasoning)
    pairs = zip(row["input_ids"], row["labels"], strict=True)
    runs = itertools.groupby(pairs, key=lambda pair: pair[1] == IGNORE_INDEX)
    return "".join(" " if masked else tokenizer.decode([token for token, _ in run]) for masked, run in runs)


def lora_frame(model: Any) -> Any:
    """The LoRA settings PEFT applied (r, alpha, dropout, target modules) and how much of the model trains."""
    lora = model.peft_config["default"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    rows = {
        "r": lora.r,
        "lora_alpha": lora.lora_alpha,
        "lora_dropout": lora.lora_dropout,
        "target_modules": ", ".join(sorted(lora.target_modules)) if lora.target_modules else "—",
        "trainable parameters": f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)",
    }
    return settings_frame(rows)


def arguments_frame(arguments: dict[str, Any], config: RunConfig | None = None) -> Any:
    """A library call's keyword arguments, with the recipe key each comes from (`LIBRARY_TO_RECIPE` if renamed)."""
    own = set(config.to_dict()) if config else set()
    rows = [
        {"argument": name, "value": str(value), "recipe key": name if name in own else LIBRARY_TO_RECIPE.get(name, "")}
        for name, value in arguments.items()
        if name != "token"  # a secret: never shown in a rendered notebook
    ]
    return pd.DataFrame(rows).set_index("argument")


def trainer_frame(trainer: Any, rows: Any) -> Any:
    """The trainer's settings that decide what a step is: batch, schedule, evaluation, checkpoints, the step."""
    from medsft.train.steps import batch_layout

    args = trainer.args
    layout = batch_layout(trainer)
    cpu_step = getattr(trainer, "cpu_step", False)
    values = {
        "trainer": f"{type(trainer).__name__}" + (" with use_cpu_step" if cpu_step else ""),
        "train / validation rows": f"{len(rows.train)} / {len(rows.validation)}",
        "effective batch": f"{args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} "
        f"accumulation x {layout['world_size']} processes = {layout['effective_batch_size']}",
        "optimizer steps": args.max_steps if args.max_steps > 0 else f"{args.num_train_epochs} epoch(s)",
        "learning rate": f"{args.learning_rate} ({args.lr_scheduler_type.value}, warm-up {args.warmup_steps})",
        "optimizer": str(args.optim.value),
        "evaluate / save every": f"{args.eval_steps} / {args.save_steps} steps",
        "adapter": f"the best checkpoint by {args.metric_for_best_model}" if args.load_best_model_at_end
        else "the weights after the last step",
        "step": "packed rows, LM head at labelled positions only (CPU)" if cpu_step
        else "padded batches, the model's own loss",
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }  # fmt: skip
    return settings_frame(values)


def settings_frame(values: dict[str, Any]) -> Any:
    return pd.DataFrame({"": list(values), "value": [str(v) for v in values.values()]}).set_index("")


def evaluations_frame(result: Any) -> Any:
    """Per evaluation: validation loss and, if it chose the checkpoint, the benchmark's accuracy (step 0: untrained)."""
    frame = pd.DataFrame(result.eval_losses)
    if result.validation_accuracy:
        frame = frame.merge(pd.DataFrame(result.validation_accuracy), on="step", how="left")
    return frame.set_index("step")
