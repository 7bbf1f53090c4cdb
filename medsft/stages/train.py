"""02 train: the steps of a LoRA fine-tune (`medsft.train.steps`, one notebook cell each) and what each one shows.

start -> load_model -> tokenize_rows -> add_lora -> make_trainer -> fit -> finish, the order of Unsloth's own
notebooks; `train_stage` runs them all in one call (what `medsft train` does).
"""

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


def run_data(run: NotebookRun) -> Any | None:
    """The data stage's splits; None (training builds them) when the data stage did not run."""
    data = load_data(run.run_dir)
    if data is None:
        log.warning("no data stage output in %s; building the data inside training", run.run_dir)
    return data


def start_training(run: NotebookRun) -> Any:
    """Step 1 (`medsft.train.steps.start`) on the data stage's splits, into the run folder."""
    from medsft.train.steps import start

    return start(run.config, data=run_data(run), run_dir=run.run_dir)


def train_stage(run: NotebookRun) -> Any:
    """Every training step in one call: train on the data stage's splits (or build them) into the run folder."""
    from medsft.train.steps import train

    return train(run.config, data=run_data(run), run_dir=run.run_dir)


def model_frame(training: Any) -> Any:
    """Which backend loaded the model, why, and how: class, dtype, device, 4-bit, parameter count."""
    import pandas as pd

    model = training.model
    parameter = next(model.parameters())
    rows = {
        "backend": f"{training.backend.name} ({training.backend.reason})",
        "model": training.config.model,
        "class": type(model).__name__,
        "dtype": str(parameter.dtype).removeprefix("torch."),
        "device": str(parameter.device),
        "4-bit": str(bool(getattr(model, "is_loaded_in_4bit", False))),
        "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
        "chat template": training.config.chat_template or "the tokenizer's own",
    }
    return pd.DataFrame({"": list(rows), "value": list(rows.values())}).set_index("")


def template_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """One training conversation exactly as the chat template renders it (the text the model is trained on)."""
    from medsft.templates import render_chat

    return render_chat(tokenizer, messages)


def trained_text(tokenizer: Any, messages: list[dict[str, str]], config: RunConfig) -> str:
    """A conversation's labels decoded, each run of masked tokens (-100: no loss) shown as one space, as
    Unsloth's notebooks check `train_on_responses_only`: what is left is all the loss trains on."""
    from medsft.train.labels import IGNORE_INDEX, tokenize_conversation

    row = tokenize_conversation(tokenizer, messages, config.max_seq_length, config.train_on_reasoning)
    pieces, kept = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label == IGNORE_INDEX:
            if kept:
                pieces.append(tokenizer.decode(kept))
                kept = []
            if not pieces or pieces[-1] != " ":
                pieces.append(" ")
        else:
            kept.append(token)
    if kept:
        pieces.append(tokenizer.decode(kept))
    return "".join(pieces)


def lora_frame(model: Any) -> Any:
    """The LoRA settings PEFT applied (r, alpha, dropout, target modules) and how much of the model trains."""
    import pandas as pd

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
    return pd.DataFrame({"": list(rows), "value": [str(v) for v in rows.values()]}).set_index("")


def trainer_frame(training: Any) -> Any:
    """The trainer's settings that decide what a step is: batch, schedule, evaluation, checkpoints, the step."""
    import pandas as pd

    trainer = training.trainer
    args = trainer.args
    rows = {
        "trainer": type(trainer).__name__ + " (TRL SFTTrainer)",
        "train / validation rows": f"{len(training.train_rows)} / {len(training.validation_rows)}",
        "effective batch": f"{args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} "
        f"accumulation x {training.layout['world_size']} processes = {training.layout['effective_batch_size']}",
        "optimizer steps": trainer.args.max_steps if trainer.args.max_steps > 0 else
        f"{args.num_train_epochs} epoch(s)",
        "learning rate": f"{args.learning_rate} ({args.lr_scheduler_type.value}, warm-up {args.warmup_steps})",
        "optimizer": str(args.optim.value),
        "evaluate / save every": f"{args.eval_steps} / {args.save_steps} steps",
        "adapter": f"the best checkpoint by {args.metric_for_best_model}" if args.load_best_model_at_end
        else "the weights after the last step",
        "step": "packed rows, LM head at labelled positions only (CPU)" if trainer.sparse_head
        else "padded batches, the model's own loss",
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }  # fmt: skip
    return pd.DataFrame({"": list(rows), "value": [str(v) for v in rows.values()]}).set_index("")


def evaluations_frame(result: Any) -> Any:
    """One row per evaluation during training: the validation loss and, when it chose the checkpoint, the
    benchmark's validation accuracy (step 0 is the untrained model)."""
    import pandas as pd

    frame = pd.DataFrame(result.eval_losses)
    if result.validation_accuracy:
        frame = frame.merge(pd.DataFrame(result.validation_accuracy), on="step", how="left")
    return frame.set_index("step")
