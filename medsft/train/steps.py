"""`train(config) -> RunResult`: LoRA SFT with response-only loss on TRL's SFTTrainer, in the seven steps of
Unsloth's notebooks (docs/training.md#a-training-run); Unsloth and the CPU stand-in train on identical labels."""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from medsft.train.backend import import_unsloth_if_usable

import_unsloth_if_usable()  # Unsloth patches transformers and TRL, so it must be imported before them

import torch
from datasets import Dataset
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from medsft.config import ConfigError, RunConfig
from medsft.data.build import build_training_data, validate_sources
from medsft.plots import plot_loss_curves
from medsft.runs import Run, check_no_training, claim_run_dir, open_run_dir, sha256_rows, write_json, write_text_atomic
from medsft.train import checkpoint_selection, distributed
from medsft.train.backend import Backend, TransformersBackend, select_backend
from medsft.train.callbacks import add_run_callbacks, peak_memory_gib
from medsft.train.cpu_step import use_cpu_step
from medsft.train.labels import IGNORE_INDEX, LabelError, count_trained_tokens, tokenize_conversation

log = logging.getLogger("medsft")
DRY_RUN_STEPS = 2


@dataclass
class RunResult:
    run_dir: Path
    adapter_dir: Path
    global_step: int
    train_loss: float | None
    eval_losses: list[dict[str, float]] = field(default_factory=list)
    validation_accuracy: list[dict[str, float]] = field(default_factory=list)  # when an accuracy picks the checkpoint
    selected_by: str = "eval_loss"  # what chose best_checkpoint (config.select_checkpoint_by)
    best_checkpoint: str | None = None
    tokens_per_second: float | None = None
    peak_memory_gib: float | None = None
    runtime_seconds: float = 0.0
    train_rows: int = 0
    validation_rows: int = 0
    trained_tokens: int = 0
    world_size: int = 1
    effective_batch_size: int = 0  # conversations per optimizer step: per-device batch x accumulation x processes

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def pad_examples(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch, medsft's labels untouched (TRL's default collator rebuilds them: docs/training.md)."""
    longest = max(len(example["input_ids"]) for example in examples)

    def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
        return torch.tensor([list(row) + [fill] * (longest - len(row)) for row in rows], dtype=torch.long)

    ids, labels = [e["input_ids"] for e in examples], [e["labels"] for e in examples]
    mask = [[1] * len(row) for row in ids]
    return {"input_ids": padded(ids, pad_id), "labels": padded(labels, IGNORE_INDEX), "attention_mask": padded(mask, 0)}


def tokenize_split(rows: list[dict[str, Any]], tokenizer: Any, config: RunConfig, split: str) -> list[dict]:
    """input_ids/labels for each conversation; rows left with nothing to learn are dropped and counted."""
    items = []
    for row in rows:
        try:
            item = tokenize_conversation(tokenizer, row["messages"], config.max_seq_length, config.train_on_reasoning)
        except LabelError as err:
            raise LabelError(f"{split} row {row.get('id', '?')}: {err}") from err
        items.append(item)
    tokenized = [item for item in items if count_trained_tokens(item["labels"])]
    if rows and not tokenized:
        raise LabelError(
            f"every {split} row has all labels -100 (nothing to learn): check that rows have assistant turns and "
            f"that max_seq_length={config.max_seq_length} leaves room for them"
        )
    if empty := len(items) - len(tokenized):
        log.warning("%s: dropped %d rows whose assistant turn was cut off by max_seq_length", split, empty)
    return tokenized


def sft_arguments(config: RunConfig, run_dir: Path, has_cuda: bool, with_eval: bool, steps: int) -> dict[str, Any]:
    """`SFTConfig`'s keyword arguments from the config (recipe names map one to one: `LIBRARY_TO_RECIPE`)."""
    bf16 = has_cuda and torch.cuda.is_bf16_supported()
    optimizer = config.optimizer
    if "8bit" in optimizer and not has_cuda:
        log.warning("optimizer=%s needs bitsandbytes on CUDA; using adamw_torch on CPU", optimizer)
        optimizer = "adamw_torch"
    # Checkpointing off (TRL's default is on) by this transformers' name: activation_ (5.2x) or gradient_ (5.17).
    names = {option.name for option in fields(SFTConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return dict(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.num_epochs,
        max_steps=steps,
        optim=optimizer,
        seed=config.seed,
        data_seed=config.data_seed,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if with_eval else "no",
        eval_on_start=with_eval,  # the untrained baseline, so the log shows what training changed
        eval_steps=config.eval_every_steps or None,
        save_strategy="steps" if config.save_every_steps else "no",
        save_steps=config.save_every_steps or None,
        load_best_model_at_end=with_eval and bool(config.save_every_steps),
        metric_for_best_model=selection_metric(config),
        greater_is_better=config.select_checkpoint_by != "eval_loss",
        prediction_loss_only=True,
        use_cpu=not has_cuda,
        bf16=bf16,
        fp16=has_cuda and not bf16,
        **{checkpointing: False},  # Unsloth applies its own; on CPU memory is not the limit
        max_length=config.max_seq_length,
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=False,
        # Every LoRA weight takes part in every step: no per-step graph walk for unused ones (PEFT models' default).
        ddp_find_unused_parameters=False,
    )


def selection_metric(config: RunConfig) -> str:
    task = checkpoint_selection.selection_task(config.select_checkpoint_by)
    return checkpoint_selection.metric_name(task) if task else "eval_loss"


def uses_cpu_step(backend: Backend) -> bool:
    """The CPU step on the transformers backend, never under FSDP (sharded head: docs/scale-out.md)."""
    return backend.name == "transformers" and not distributed.fsdp_requested()


def batch_layout(trainer: SFTTrainer) -> dict[str, Any]:
    """Processes, the trainer's kind of distribution (DDP, FSDP) and the effective batch (for the manifest), logged."""
    args = trainer.args
    batch, accumulation, processes = args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size
    layout = {
        "world_size": processes,
        "distributed_type": trainer.accelerator.distributed_type.value,
        "per_device_batch_size": batch,
        "gradient_accumulation_steps": accumulation,
        "effective_batch_size": batch * accumulation * processes,
    }
    log.info(
        "effective batch: %(per_device_batch_size)d per device x %(gradient_accumulation_steps)d accumulation steps x "
        "%(world_size)d processes (%(distributed_type)s) = %(effective_batch_size)d conversations per step",
        layout,
    )
    return layout


@dataclass(frozen=True)
class Start:
    """What step 1 settles before any model loads: the splits are None when `training_rows` builds them."""

    config: RunConfig
    run_dir: Path
    backend: Backend
    data: Any | None = None
    sources: Any | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def run(self) -> Run:
        return Run(self.config, self.run_dir)


class TrainingRows(NamedTuple):
    """The splits (row dicts) and their tokenised conversations (input ids and response-only labels)."""

    data: Any
    train: list[dict]
    validation: list[dict]


def start(config: RunConfig, data: Any | None = None, run_dir: Path | None = None) -> Start:
    """Step 1, before any model loads: check the launch and source rows, claim the run folder, pick the backend."""
    started = time.perf_counter()
    if distributed.fsdp_requested() and config.load_in_4bit and torch.cuda.is_available():
        raise ConfigError(
            "load_in_4bit: FSDP shards 16-bit weights here (medsft does not set up sharded 4-bit storage); pass "
            "-p load_in_4bit false, or train the 4-bit model under DDP (configs/accelerate/ddp-multi-gpu.yaml)"
        )
    sources = validate_sources(config) if data is None else None  # bad rows fail here, before any model loads
    run_dir = distributed.on_main(
        lambda: claim_run_dir(config) if run_dir is None else check_no_training(Path(run_dir), config)
    )
    # A dry run checks a recipe on any machine: the tiny model is built in memory, which only transformers loads.
    backend = TransformersBackend("dry run: tiny random model") if config.dry_run else select_backend(config.backend)
    return Start(config, run_dir, backend, data=data, sources=sources, started=started)


def training_rows(begun: Start, tokenizer: Any) -> TrainingRows:
    """Step 3: input ids and response-only labels; the run folder appears here, so a failed model load leaves none."""
    config, main = begun.config, distributed.is_main_process()
    if main:
        open_run_dir(begun.run_dir, config)
    data = begun.data
    if data is None:
        data, report = build_training_data(config, tokenizer, sources=begun.sources)
        if main:
            begun.run.update_manifest(data=report.to_dict())
    hashes = {f"{split}_sha256": sha256_rows(list(data[split])) for split in ("train", "validation")}
    distributed.check_same_everywhere(" ".join(hashes.values()), "the training and validation rows")
    if main:
        begun.run.update_manifest(data=hashes)
    return TrainingRows(data, *(tokenize_split(list(data[s]), tokenizer, config, s) for s in ("train", "validation")))


def trainer_arguments(begun: Start, rows: TrainingRows) -> dict[str, Any]:
    """`sft_arguments` for this run: evaluation on when there are validation rows and `eval_every_steps`."""
    config = begun.config
    with_eval = bool(rows.validation) and config.eval_every_steps > 0
    steps = DRY_RUN_STEPS if config.dry_run else config.max_steps
    return sft_arguments(config, begun.run_dir, torch.cuda.is_available(), with_eval, steps)


def checkpoint_task(begun: Start, rows: TrainingRows, arguments: dict[str, Any]) -> tuple[str | None, list]:
    """The benchmark whose validation accuracy picks the checkpoint (`select_checkpoint_by`), and its items."""
    if arguments["eval_strategy"] == "no":
        return None, []
    task = checkpoint_selection.selection_task(begun.config.select_checkpoint_by)
    items = checkpoint_selection.validation_items(list(rows.data["validation"]), task) if task else []
    if task and not items:
        raise ConfigError(
            f"select_checkpoint_by: {begun.config.select_checkpoint_by}, but the validation split holds no {task} "
            "row; raise validation_fraction or use eval_loss"
        )
    return task, items


def make_trainer(begun: Start, model: Any, tokenizer: Any, rows: TrainingRows) -> SFTTrainer:
    """Step 5, as the train notebook's trainer cell writes it."""
    arguments = trainer_arguments(begun, rows)
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        args=SFTConfig(**arguments),
        train_dataset=Dataset.from_list(rows.train),
        eval_dataset=Dataset.from_list(rows.validation) if arguments["eval_strategy"] != "no" else None,
        data_collator=functools.partial(pad_examples, pad_id=tokenizer.pad_token_id),
    )
    if uses_cpu_step(begun.backend):
        trainer = use_cpu_step(trainer)
    task, items = checkpoint_task(begun, rows, arguments)
    return add_run_callbacks(trainer, begun.config, begun.run_dir, task, items)


def resume_checkpoint(begun: Start, trainer: SFTTrainer) -> str | None:
    """Step 6's argument: the last checkpoint when `resume` is on (the log cut back to it), else None; all wait here."""
    resume = begun.config.resume and (begun.run_dir / "checkpoints").is_dir()
    checkpoint = get_last_checkpoint(trainer.args.output_dir) if resume else None
    log_path = begun.run_dir / "train_log.jsonl"
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    if checkpoint and distributed.is_main_process() and log_path.is_file():  # the resumed run writes these again
        step = int(checkpoint.rsplit("-", 1)[-1])
        kept = [line for line in log_path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
        write_text_atomic(log_path, "".join(line + "\n" for line in kept))
    distributed.wait_for_everyone()
    return checkpoint


def finish(begun: Start, trainer: SFTTrainer, tokenizer: Any, rows: TrainingRows, output: Any) -> RunResult:
    """Step 7: the adapter (best checkpoint), train_results.json, loss plot, manifest timings (rewritten on resume)."""
    config, run_dir, backend = begun.config, begun.run_dir, begun.backend
    adapter_dir = run_dir / "adapter"
    # The main process writes the adapter; under FSDP every process holds a shard, so all first gather the weights.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if distributed.is_main_process():
        backend.save_adapter(trainer.model, tokenizer, adapter_dir, overwrite=config.resume, state_dict=state_dict)
    history = trainer.state.log_history
    measure = selection_metric(config)  # eval_loss, or e.g. eval_pubmedqa_accuracy logged at each evaluation
    layout = batch_layout(trainer)
    result = RunResult(
        run_dir=run_dir,
        adapter_dir=adapter_dir,
        global_step=trainer.state.global_step,
        train_loss=output.training_loss,
        eval_losses=[{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        validation_accuracy=[{"step": h["step"], measure: h[measure]} for h in history if measure in h],
        selected_by=config.select_checkpoint_by,
        best_checkpoint=trainer.state.best_model_checkpoint,
        tokens_per_second=trainer.throughput.rate(),
        peak_memory_gib=round(peak_memory_gib(), 3),
        runtime_seconds=round(time.perf_counter() - begun.started, 1),
        train_rows=len(rows.train),
        validation_rows=len(rows.validation),
        trained_tokens=sum(count_trained_tokens(r["labels"]) for r in rows.train),
        world_size=layout["world_size"],
        effective_batch_size=layout["effective_batch_size"],
    )
    if distributed.is_main_process():
        import matplotlib.pyplot as plt

        run = begun.run
        run.update_manifest(distributed=layout)
        write_json(run.path("train_results.json"), result.to_dict(), overwrite=True)
        figure = plot_loss_curves(run_dir)
        figure.savefig(run.path("loss_curves.png"), dpi=110, bbox_inches="tight")
        plt.close(figure)  # saved, not shown: in a notebook an open figure would also display under the training cell
        run.update_manifest(timings={"train_seconds": result.runtime_seconds}, backend=backend.name)
    distributed.wait_for_everyone()  # no process returns before the run folder is complete
    return result


def train(config: RunConfig, data: Any | None = None, run_dir: Path | None = None) -> RunResult:
    """The seven steps above, writing outputs/<run-id>/ (under `accelerate launch`: `medsft.train.distributed`)."""
    begun = start(config, data, run_dir)
    model, tokenizer = begun.backend.load(config)
    rows = training_rows(begun, tokenizer)
    model = begun.backend.add_lora(model, config)
    trainer = make_trainer(begun, model, tokenizer, rows)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(begun, trainer))
    return finish(begun, trainer, tokenizer, rows, output)
