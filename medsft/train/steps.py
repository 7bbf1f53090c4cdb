"""`train(config) -> RunResult`: LoRA SFT with response-only loss on TRL's SFTTrainer, GPU or CPU.

On CUDA with Unsloth the model comes from `FastLanguageModel` (4-bit, Unsloth's gradient checkpointing) and
the step is Unsloth's own. Elsewhere the same trainer runs a step built for CPUs: each micro-batch is packed into
one padding-free row (position ids restart per conversation, so attention stays within each one) and the LM head
runs only where a label is trained (`medsft.train.cpu_step.loss`). Both paths train on identical labels
(`medsft.train.labels`).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medsft.train.backend import import_unsloth_if_usable

import_unsloth_if_usable()  # Unsloth patches transformers and TRL, so it must be imported before them

import torch
from transformers import EarlyStoppingCallback, TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from medsft.config import ConfigError, RunConfig
from medsft.data.records import MultipleChoiceItem
from medsft.models import resolve_model, tiny_random_model
from medsft.runs import (
    Run,
    check_no_training,
    claim_run_dir,
    open_run_dir,
    sha256_rows,
    write_text_atomic,
)
from medsft.train import checkpoint_selection, distributed
from medsft.train.backend import Backend, TransformersBackend, load_tokenizer, select_backend
from medsft.train.cpu_step.attention import packed_attention
from medsft.train.cpu_step.loss import release_workspace, sparse_head_loss
from medsft.train.labels import IGNORE_INDEX, LabelError, count_trained_tokens, tokenize_conversation
from medsft.train.plots import plot_loss_curves

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


def pack_examples(examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Concatenate a micro-batch into one row with restarting position ids: no padding is ever computed.

    Each conversation's first label is masked so no token is trained to follow the previous conversation.
    """
    input_ids, labels, positions = [], [], []
    for example in examples:
        ids = list(example["input_ids"])
        input_ids += ids
        labels += [IGNORE_INDEX] + list(example["labels"][1:])
        positions += range(len(ids))
    as_row = lambda values: torch.tensor(values, dtype=torch.long)[None]  # noqa: E731
    return {"input_ids": as_row(input_ids), "labels": as_row(labels), "position_ids": as_row(positions)}


def pad_examples(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch; the labels medsft built are passed through untouched (padding is -100).

    The GPU path uses this instead of TRL's default collator, which rebuilds labels from its own masks: with
    an explicit collator the response-only labels reach the loss whatever the installed TRL/Unsloth does.
    """
    longest = max(len(example["input_ids"]) for example in examples)
    ids, labels, mask = [], [], []
    for example in examples:
        gap = longest - len(example["input_ids"])
        ids.append(list(example["input_ids"]) + [pad_id] * gap)
        labels.append(list(example["labels"]) + [IGNORE_INDEX] * gap)
        mask.append([1] * len(example["input_ids"]) + [0] * gap)
    as_tensor = lambda rows: torch.tensor(rows, dtype=torch.long)  # noqa: E731
    return {"input_ids": as_tensor(ids), "labels": as_tensor(labels), "attention_mask": as_tensor(mask)}


class Throughput(TrainerCallback):
    """Real (non-padding) tokens of all processes and the wall time of optimizer steps only (evaluation and saving
    excluded)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self.step_started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.seconds += time.perf_counter() - self.step_started

    def rate(self) -> float | None:
        return round(self.tokens / self.seconds, 2) if self.seconds else None


class MedsftTrainer(SFTTrainer):
    """SFTTrainer whose loss computes the LM head only at labelled positions (CPU / transformers path)."""

    def __init__(
        self,
        *args: Any,
        sparse_head: bool,
        throughput: Throughput,
        validation_task: str | None = None,
        validation_items: list[MultipleChoiceItem] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sparse_head = sparse_head
        self.throughput = throughput
        self.validation_task = validation_task  # scored at each evaluation when it picks the checkpoint
        self.validation_items = validation_items or []
        if sparse_head:
            # The sparse loss divides by `num_items_in_batch`; this makes the trainer always count it, over every
            # accumulated micro-batch and (under DDP) every process, whatever the model's forward signature says.
            self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        mask = inputs.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        if not self.sparse_head:
            if self.model.training:
                self.throughput.tokens += self.summed_over_processes(tokens)[0]
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if num_items_in_batch is None and self.accelerator.num_processes > 1:
            # TRL's evaluation step passes no count, and the evaluation loop averages the processes' losses with
            # equal weight: counting the labelled tokens of all processes here weighs them as one process would.
            labelled = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())  # the targets sparse_head_loss scores
            num_items_in_batch = self.summed_over_processes(labelled)[0]
        out = sparse_head_loss(model, inputs, num_items_in_batch)
        loss = out.loss
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts the labelled tokens of all processes and DDP averages gradients over them,
            # so each process's share is scaled back up: the step then trains on sum(all losses) / all tokens, as
            # one process with the whole batch would (transformers' own compute_loss does the same).
            loss = loss * self.accelerator.num_processes
        tokens, trained, correct = self.summed_over_processes(tokens, out.trained_tokens, out.correct_tokens)
        if self.model.training:
            self.throughput.tokens += tokens
        if trained:
            self._metrics["train" if self.model.training else "eval"]["mean_token_accuracy"].append(correct / trained)
        return (loss, {"loss": loss}) if return_outputs else loss

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Validation loss, plus the benchmark accuracy on the validation rows when that picks the checkpoint.

        The accuracy joins the returned metrics, which is what the trainer compares to keep the best checkpoint
        (and early stopping watches); it is logged as its own line, after the loss line."""
        metrics = super().evaluate(*args, **kwargs)
        if self.validation_task:
            task = self.validation_task
            name = checkpoint_selection.metric_name(task)
            metrics[name] = checkpoint_selection.accuracy(
                self.model, self.processing_class, task, self.validation_items, self.args.per_device_eval_batch_size
            )
            self.log({name: metrics[name]})
        return metrics

    def _determine_best_metric(self, metrics: dict[str, float], trial: Any) -> bool:
        # The evaluation at step 0 (eval_on_start) is the untrained baseline in the log, not a candidate: there is
        # no checkpoint-0 to return to, and if it counted, a later checkpoint merely equal to the base model's
        # validation accuracy would never be kept. (A private transformers hook: if a new version stopped calling
        # it, tests/test_train_resume.py's checkpoint-choice test would find no best checkpoint and fail.)
        if self.state.global_step == 0:
            return False
        return super()._determine_best_metric(metrics, trial)

    def summed_over_processes(self, *counts: int) -> list[int]:
        """`counts` summed over all processes (as they are, with one process), so logs describe the whole batch."""
        if self.accelerator.num_processes == 1:
            return list(counts)
        summed = self.accelerator.reduce(torch.tensor(counts, device=self.args.device), reduction="sum")
        return [int(value) for value in summed.tolist()]


class JsonlLog(TrainerCallback):
    """Appends one JSON line per logging event: loss, lr, grad norm, tokens/s, peak memory, eval loss."""

    def __init__(self, path: Path, throughput: Throughput) -> None:
        self.path = path
        self.throughput = throughput
        self.last_seconds = 0.0
        self.last_tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        import json

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


def truncate_log(path: Path, after_step: int) -> None:
    """Drop log lines a killed run wrote past its last checkpoint; the resumed run writes them again."""
    import json

    if path.is_file():
        kept = [
            line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= after_step
        ]
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def tokenize_split(rows: list[dict[str, Any]], tokenizer: Any, config: RunConfig, split: str) -> list[dict]:
    """input_ids/labels for each conversation; rows left with nothing to learn are dropped and counted."""
    tokenized, empty = [], 0
    for row in rows:
        try:
            item = tokenize_conversation(tokenizer, row["messages"], config.max_seq_length, config.train_on_reasoning)
        except LabelError as err:
            raise LabelError(f"{split} row {row.get('id', '?')}: {err}") from err
        if count_trained_tokens(item["labels"]):
            tokenized.append(item)
        else:
            empty += 1
    if rows and not tokenized:
        raise LabelError(
            f"every {split} row has all labels -100 (nothing to learn): check that rows have assistant turns and "
            f"that max_seq_length={config.max_seq_length} leaves room for them"
        )
    if empty:
        log.warning("%s: dropped %d rows whose assistant turn was cut off by max_seq_length", split, empty)
    return tokenized


def resolve_optimizer(config: RunConfig, has_cuda: bool) -> str:
    if "8bit" in config.optimizer and not has_cuda:
        log.warning("optimizer=%s needs bitsandbytes on CUDA; using adamw_torch on CPU", config.optimizer)
        return "adamw_torch"
    return config.optimizer


def no_activation_checkpointing() -> dict[str, bool]:
    """Checkpointing off, under the name the installed transformers knows: `activation_checkpointing` (5.2x,
    where the old name warns) or `gradient_checkpointing` (5.17, the GPU set-up's pin). TRL turns it on by default."""
    import dataclasses

    names = {field.name for field in dataclasses.fields(SFTConfig)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": False}


def sft_arguments(config: RunConfig, run_dir: Path, has_cuda: bool, with_eval: bool, steps: int) -> SFTConfig:
    bf16 = has_cuda and torch.cuda.is_bf16_supported()
    return SFTConfig(
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
        optim=resolve_optimizer(config, has_cuda),
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
        **no_activation_checkpointing(),  # Unsloth applies its own; on CPU memory is not the limit
        max_length=config.max_seq_length,
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=False,
        # Under DDP: every LoRA weight takes part in every step, so DDP need not search the graph for unused ones
        # (the search costs a graph walk per step, and PEFT models would otherwise get it by default).
        ddp_find_unused_parameters=False,
    )


def selection_metric(config: RunConfig) -> str:
    task = checkpoint_selection.selection_task(config.select_checkpoint_by)
    return checkpoint_selection.metric_name(task) if task else "eval_loss"


def load_for_training(config: RunConfig, backend: Backend) -> tuple[Any, Any]:
    """The model and tokenizer to train; a tiny random model of the target's shape for a dry run."""
    if not config.dry_run:
        return backend.load(config)
    location = resolve_model(config.model).location
    log.info("dry run: tiny random model with the architecture and tokenizer of %s", location)
    try:
        tokenizer = load_tokenizer(location, config.chat_template)
        return tiny_random_model(location, seed=config.seed), tokenizer
    except OSError as err:  # a hub id with no network and nothing in the Hugging Face cache
        raise RuntimeError(
            f"dry run needs the config and tokenizer of {config.model} (a few MB, no weights), but they could not "
            f"be read ({err}); connect once to cache them, or use model: embedded or a local folder"
        ) from err


def build_trainer(
    model: Any,
    tokenizer: Any,
    backend: Backend,
    config: RunConfig,
    run_dir: Path,
    train_rows: list[dict],
    validation_rows: list[dict],
    throughput: Throughput,
    steps: int,
    validation_examples: list[dict] | None = None,
) -> MedsftTrainer:
    """TRL's SFTTrainer on already tokenised rows, with medsft's collator, logging and early stopping.

    transformers backend: packed micro-batches and the sparse LM-head loss (the CPU step). Unsloth, and FSDP:
    padded micro-batches and the model's own (for Unsloth, patched) step; all read the same response-only labels.
    `validation_examples` (the untokenised validation rows) carry the benchmark items scored when an accuracy
    picks the checkpoint (`config.select_checkpoint_by`).
    """
    import functools

    from datasets import Dataset

    with_eval = bool(validation_rows) and config.eval_every_steps > 0
    # Under FSDP the head's weights are sharded and only gathered inside the model's own forward, so the sparse
    # head (which reads them after the backbone) cannot run: padded batches and the model's own loss instead.
    sparse = backend.name == "transformers" and not distributed.fsdp_requested()
    collator = pack_examples if sparse else functools.partial(pad_examples, pad_id=tokenizer.pad_token_id)
    task = checkpoint_selection.selection_task(config.select_checkpoint_by) if with_eval else None
    items = checkpoint_selection.validation_items(validation_examples, task) if task else []
    if task and not items:
        raise ConfigError(
            f"select_checkpoint_by: {config.select_checkpoint_by}, but the validation split holds no {task} row; "
            "raise validation_fraction or use eval_loss"
        )
    trainer = MedsftTrainer(
        model=model,
        args=sft_arguments(config, run_dir, torch.cuda.is_available(), with_eval, steps),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if with_eval else None,
        processing_class=tokenizer,
        data_collator=collator,
        sparse_head=sparse,
        throughput=throughput,
        validation_task=task,
        validation_items=items,
    )
    trainer.add_callback(throughput)
    trainer.add_callback(JsonlLog(run_dir / "train_log.jsonl", throughput))
    if with_eval and config.early_stopping_patience:
        trainer.add_callback(
            EarlyStoppingCallback(
                early_stopping_patience=config.early_stopping_patience,
                early_stopping_threshold=config.early_stopping_threshold,
            )
        )
    return trainer


def batch_layout(trainer: MedsftTrainer) -> dict[str, Any]:
    """Processes, the trainer's kind of distribution (DDP, FSDP) and the effective batch, logged once."""
    args = trainer.args
    kind = trainer.accelerator.distributed_type.value
    layout = distributed.describe(
        args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size, kind
    )
    log.info(
        "effective batch: %d per device x %d accumulation steps x %d processes (%s) = %d conversations per step",
        *(layout[key] for key in ("per_device_batch_size", "gradient_accumulation_steps", "world_size")),
        kind,
        layout["effective_batch_size"],
    )
    return layout


def save_trained_adapter(trainer: MedsftTrainer, backend: Backend, tokenizer: Any, path: Path, overwrite: bool) -> Path:
    """The main process writes the adapter; under FSDP every process holds a shard, so all of them first take part
    in gathering the full weights."""
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if distributed.is_main_process():
        backend.save_adapter(trainer.model, tokenizer, path, overwrite=overwrite, state_dict=state_dict)
    return path


def write_results(run: Run, result: RunResult, backend: Backend) -> None:
    """train_results.json, the loss plot and the manifest's timings (main process only). A resumed run rewrites
    them; a fresh one never finds them (`check_no_training`)."""
    run.write_json("train_results.json", result.to_dict(), overwrite=True)
    figure = plot_loss_curves(run.run_dir)
    figure.savefig(run.path("loss_curves.png"), dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)  # saved, not shown: in a notebook an open figure would also display under the training cell
    run.update_manifest(timings={"train_seconds": result.runtime_seconds}, backend=backend.name)


def check_launch(config: RunConfig) -> None:
    """What medsft cannot train as launched, said before any model loads (on every process alike)."""
    if distributed.fsdp_requested() and config.load_in_4bit and torch.cuda.is_available():
        raise ConfigError(
            "load_in_4bit: FSDP shards 16-bit weights here (medsft does not set up sharded 4-bit storage); pass "
            "-p load_in_4bit false, or train the 4-bit model under DDP (configs/accelerate/ddp-multi-gpu.yaml)"
        )


def claim_or_check(config: RunConfig, run_dir: Path | None) -> Path:
    """A new run folder for this run, or the opened one it was given, checked (main process; path sent to all)."""
    return distributed.on_main(
        lambda: claim_run_dir(config) if run_dir is None else check_no_training(Path(run_dir), config)
    )


@dataclass
class Training:
    """What the training steps hand on, filled in as they run: the run folder, the backend, then the model,
    the rows, the trainer. `train()` runs the steps in order; the train notebook calls them one cell at a time."""

    config: RunConfig
    run_dir: Path
    backend: Backend
    data: Any | None = None  # the train/validation splits; built by `tokenize_rows` when the data stage did not run
    sources: Any | None = None  # rows already validated by `start`, when the data is built here
    started: float = field(default_factory=time.perf_counter)
    model: Any = None
    tokenizer: Any = None
    train_rows: list[dict] = field(default_factory=list)
    validation_rows: list[dict] = field(default_factory=list)
    throughput: Throughput = field(default_factory=Throughput)
    trainer: MedsftTrainer | None = None
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return distributed.is_main_process()

    @property
    def run(self) -> Run:
        """The run folder's owner (the config already resolved; nothing is read again)."""
        return Run(self.config, self.run_dir)


def start(config: RunConfig, data: Any | None = None, run_dir: Path | None = None) -> Training:
    """Step 1: check the launch and (when the data is built here) every source row, before any model loads; claim
    the run folder (or check the one the pipeline opened) and pick the backend.

    `run_dir` is a folder the pipeline runner already opened for this run (its config.yaml inside); training
    writes into it unless it already holds a training's outputs and `resume` is off."""
    started = time.perf_counter()
    check_launch(config)
    sources = None
    if data is None:
        from medsft.data import validate_sources

        sources = validate_sources(config)  # bad rows fail here, before any model loads
    run_dir = claim_or_check(config, run_dir)
    # A dry run checks a recipe on any machine: the tiny model is built in memory, which only transformers loads.
    backend = TransformersBackend("dry run: tiny random model") if config.dry_run else select_backend(config.backend)
    return Training(config, run_dir, backend, data=data, sources=sources, started=started)


def load_model(training: Training) -> tuple[Any, Any]:
    """Step 2: the model and tokenizer through the backend (Unsloth in 4-bit on CUDA, transformers elsewhere)."""
    training.model, training.tokenizer = load_for_training(training.config, training.backend)
    if training.main:  # the folder appears once the model has loaded, so a failed load leaves nothing behind
        open_run_dir(training.run_dir, training.config)
    return training.model, training.tokenizer


def tokenize_rows(training: Training) -> tuple[list[dict], list[dict]]:
    """Step 3: input ids and response-only labels for every train and validation conversation (the data is
    built here first when the data stage did not run); the rows' hashes go into the manifest."""
    config, tokenizer = training.config, training.tokenizer
    if training.data is None:
        from medsft.data import build_training_data

        training.data, report = build_training_data(config, tokenizer, sources=training.sources)
        if training.main:
            training.run.update_manifest(data=report.to_dict())
    hashes = {f"{split}_sha256": sha256_rows(list(training.data[split])) for split in ("train", "validation")}
    distributed.check_same_everywhere(" ".join(hashes.values()), "the training and validation rows")
    if training.main:
        training.run.update_manifest(data=hashes)
    training.train_rows = tokenize_split(list(training.data["train"]), tokenizer, config, "train")
    training.validation_rows = tokenize_split(list(training.data["validation"]), tokenizer, config, "validation")
    return training.train_rows, training.validation_rows


def add_lora(training: Training) -> Any:
    """Step 4: LoRA adapters on the target modules (r, alpha, dropout from the config); the rest is frozen."""
    set_seed(training.config.seed)  # LoRA's initial weights come from torch's generator: the same in every run
    training.model = training.backend.add_lora(training.model, training.config)
    return training.model


def make_trainer(training: Training) -> MedsftTrainer:
    """Step 5: TRL's SFTTrainer with medsft's collator, logging, checkpoints and checkpoint selection."""
    steps = DRY_RUN_STEPS if training.config.dry_run else training.config.max_steps
    training.trainer = build_trainer(
        training.model, training.tokenizer, training.backend, training.config, training.run_dir,
        training.train_rows, training.validation_rows, training.throughput, steps,
        validation_examples=list(training.data["validation"]),
    )  # fmt: skip
    training.layout = batch_layout(training.trainer)
    if training.main:
        training.run.update_manifest(distributed=training.layout)
    return training.trainer


def fit(training: Training) -> Any:
    """Step 6: train (from the last checkpoint when `resume` is on), evaluating and saving every few steps."""
    trainer, config, run_dir = training.trainer, training.config, training.run_dir
    assert trainer is not None, "make_trainer comes before fit"
    checkpoint = (
        get_last_checkpoint(trainer.args.output_dir) if config.resume and (run_dir / "checkpoints").is_dir() else None
    )
    if checkpoint:
        log.info("resuming from %s", checkpoint)
        if training.main:
            truncate_log(run_dir / "train_log.jsonl", after_step=int(checkpoint.rsplit("-", 1)[-1]))
    distributed.wait_for_everyone()  # the folder is set up before any process starts training into it
    with packed_attention(trainer.model) if trainer.sparse_head else contextlib.nullcontext():
        try:
            return trainer.train(resume_from_checkpoint=checkpoint)
        finally:
            release_workspace()  # the sparse head's logits buffer (up to 0.5 GB), kept between steps, goes now


def finish(training: Training, output: Any) -> RunResult:
    """Step 7: save the adapter (the best checkpoint's weights), then train_results.json, the loss plot and the
    manifest's timings."""
    trainer, config, run_dir = training.trainer, training.config, training.run_dir
    assert trainer is not None, "make_trainer comes before finish"
    adapter_dir = save_trained_adapter(
        trainer, training.backend, training.tokenizer, run_dir / "adapter", overwrite=config.resume
    )
    history = trainer.state.log_history
    measure = selection_metric(config)  # eval_loss, or e.g. eval_pubmedqa_accuracy logged at each evaluation
    result = RunResult(
        run_dir=run_dir,
        adapter_dir=adapter_dir,
        global_step=trainer.state.global_step,
        train_loss=output.training_loss,
        eval_losses=[{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        validation_accuracy=[{"step": h["step"], measure: h[measure]} for h in history if measure in h],
        selected_by=config.select_checkpoint_by,
        best_checkpoint=trainer.state.best_model_checkpoint,
        tokens_per_second=training.throughput.rate(),
        peak_memory_gib=round(peak_memory_gib(), 3),
        runtime_seconds=round(time.perf_counter() - training.started, 1),
        train_rows=len(training.train_rows),
        validation_rows=len(training.validation_rows),
        trained_tokens=sum(count_trained_tokens(r["labels"]) for r in training.train_rows),
        world_size=training.layout["world_size"],
        effective_batch_size=training.layout["effective_batch_size"],
    )
    if training.main:
        write_results(training.run, result, training.backend)
    distributed.wait_for_everyone()  # no process returns before the run folder is complete
    return result


def train(config: RunConfig, data: Any | None = None, run_dir: Path | None = None) -> RunResult:
    """Train LoRA adapters on the configured data mix and write everything under outputs/<run-id>/: the seven
    steps above, in order (`start` says what `data` and `run_dir` are).

    Under `accelerate launch` every process runs this function on the same rows; only the main process writes
    the run folder (`medsft.train.distributed`), and the trainer splits each batch between the processes.
    """
    training = start(config, data, run_dir)
    load_model(training)
    tokenize_rows(training)
    add_lora(training)
    make_trainer(training)
    return finish(training, fit(training))
