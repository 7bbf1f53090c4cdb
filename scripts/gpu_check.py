"""The GPU path end to end on a CUDA machine with no network, with a plain-transformers comparison.

Stages, in the order of what they are worth when time runs out; each has its own time cap (`STAGE_CAP_S`) and
writes its result as soon as it ends (`OUT/stages/<stage>.json` and one line of `--results`, JSON lines), so a
time-out keeps everything measured before it:

1. `labels`: medsft's Unsloth backend loads the model (the loader Unsloth's notebooks use, 4-bit), adds LoRA
   with Unsloth's checkpointing, builds the trainer, and one batch's labels are compared with the
   response-only labels medsft made, token by token.
2. `unsloth_train`: a few steps: tokens/s (also after the compiling first step), peak VRAM, loss; adapter saved.
3. `transformers`: the same steps on medsft's transformers backend (bitsandbytes 4-bit, peft LoRA), in a
   process of its own (Unsloth patches transformers, TRL and peft when imported): tokens/s and VRAM side by side.
4. `medqa`: MedQA scoring of the trained 4-bit Unsloth model as medsft scores now (torch.compile off while
   scoring, `medsft.evaluate.transformers_scorer.compile_free`): questions/s against the 20/s goal, each batch's
    seconds.
5. `gguf`: merged 16-bit save, GGUF Q8_0 through Unsloth's `save_pretrained_gguf` with the offline llama.cpp
   folder, the GGUF checked against the merged model loaded in 16-bit.
6. `multimodal`: a tiny Gemma 3 with a vision tower (random weights, the real tokenizer) through `FastModel`,
   LoRA on the language layers only, labels checked, a few steps (a process of its own).
7. `validation`: the validation-accuracy measure that picks checkpoints, taken on the training model inside
   its training attention, which must come back in training mode with its attention unchanged.
8. `stall_probe`: the same MedQA questions scored as before the fix (compile left on), for at most its cap, with
   each batch's width, seconds and newly compiled dynamo graphs: what confirms or refutes the stall's probable
   cause (docs/gpu.md, "The 4-bit scoring stall"). Last, because a compile stuck in C could outlast its cap and take
   the process down with it.
- `vllm` (only when asked for, on a machine with the vllm extra): the model on `VLLMScorer` against
  `HFScorer`, both in bf16: MedQA choices and greedy replies, with the time each engine took.

Stages 1, 2, 4, 5, 7 and 8 run in one process, on the model stage 2 trained; 3 and 6 are launched from it at their
turn (it waits, idle, while they run). A stage whose process died is reported as such; a stage of its own
process left over when the Unsloth process dies is run afterwards.

    python scripts/gpu_check.py --out /tmp/gpu-check [--model embedded|FOLDER] [--steps 15]
    python scripts/gpu_check.py --random-weights-from CONFIG_AND_TOKENIZER_FOLDER --caps medqa=90 ...

`--random-weights-from` builds the model from a folder's config and tokenizer with random weights (for a
machine that cannot receive the real weights): speed and memory are the real architecture's, accuracy is
chance. Writes OUT/gpu_check.json at the end and prints a summary. `.gpu/run.sh` (`scripts/gpu_bundle.py`)
calls this on a lent machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# In the order of their value: when time runs out, what comes first has been measured.
STAGES = (
    "labels",
    "unsloth_train",
    "transformers",
    "medqa",
    "gguf",
    "multimodal",
    "validation",
    "stall_probe",
    "vllm",
)
DEFAULT_STAGES = STAGES[:-1]  # vllm needs its extra, rarely on a lent machine
# Stages on the model the Unsloth process trained; the others need a process of their own.
IN_PROCESS = ("labels", "unsloth_train", "medqa", "gguf", "validation", "stall_probe")
OWN_PROCESS = ("transformers", "multimodal", "vllm")
ALIASES = {"unsloth": IN_PROCESS}  # the earlier stage name: the whole Unsloth process
# Seconds per stage (labels includes importing Unsloth and loading; unsloth_train its first, compiling step).
# The default stages add up to RUN_BUDGET_S with SETUP_CAP_S, so a run fits twice in a 15-minute lease.
STAGE_CAP_S = {
    "labels": 45,
    "unsloth_train": 90,
    "transformers": 45,
    "medqa": 30,
    "gguf": 45,
    "multimodal": 55,
    "validation": 15,
    "stall_probe": 25,
    "vllm": 300,
}
SETUP_CAP_S = 30  # the random-weight models, built before any stage
RUN_BUDGET_S = 380  # the default stages' caps and the set-up, at most (run.sh adds unpacking)
PROCESS_SLACK_S = 15  # what a process may take beyond its stages' caps (start, exit) before it is killed
MEDQA_GOAL_QPS = 20.0  # the 4-bit model must score at least this many questions per second on a GPU
# vLLM and transformers run different bf16 kernels, so near-ties may flip; more than this share must agree.
VLLM_MIN_AGREEMENT = 0.9


def parse_caps(text: str | None) -> dict[str, int]:
    """`STAGE_CAP_S` with `stage=seconds,...` overrides (`--caps`, or MEDSFT_GPU_CAPS in run.sh)."""
    caps = dict(STAGE_CAP_S)
    for part in filter(None, (text or "").split(",")):
        name, _, seconds = part.partition("=")
        if name.strip() not in caps or not seconds.strip().isdigit():
            raise ValueError(f"--caps wants stage=seconds with a stage of {', '.join(STAGES)}; got {part!r}")
        caps[name.strip()] = int(seconds)
    return caps


def parse_stages(text: str) -> list[str]:
    """The asked-for stages in value order (`unsloth` stands for the Unsloth process's stages)."""
    asked: set[str] = set()
    for name in filter(None, (n.strip() for n in text.split(","))):
        if name not in STAGES and name not in ALIASES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)} (or unsloth)")
        asked.update(ALIASES.get(name, (name,)))
    return [stage for stage in STAGES if stage in asked]


# ------------------------------------------------------------------------------------------------ time caps
class StageTimeout(BaseException):
    """A time cap ran out. A BaseException, so that `except Exception` in library code does not swallow it."""

    def __init__(self, cap: object, seconds: float) -> None:
        super().__init__(f"time cap of {seconds:g} s reached")
        self.cap = cap


class _Caps:
    """Nested time caps on one SIGALRM timer: the earliest deadline fires first. A cap that has fired fires
    again every half second until its block is left, in case code it interrupted caught the exception."""

    active: list[tuple[float, object, float]] = []  # (deadline, token, seconds)

    @classmethod
    def arm(cls) -> None:
        if not cls.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        deadline = min(d for d, _, _ in cls.active)
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))

    @classmethod
    def fire(cls, signum: int, frame: Any) -> None:
        deadline, token, seconds = min(cls.active, key=lambda cap: cap[0])
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # again, unless the block is left before
        raise StageTimeout(token, seconds)


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[object]:
    """Raise `StageTimeout` in this (main) thread once `seconds` have passed inside the block.

    Yields the cap's token: `except StageTimeout as err: if err.cap is not token: raise` tells this cap's
    expiry from an enclosing one's. Python code is interrupted between bytecodes; a call stuck in C is
    interrupted when it returns, which is why each process also has a hard limit set by its parent."""
    token = object()
    entry = (time.monotonic() + seconds, token, seconds)
    if not _Caps.active:
        signal.signal(signal.SIGALRM, _Caps.fire)
    _Caps.active.append(entry)
    _Caps.arm()
    try:
        yield token
    finally:
        _Caps.active.remove(entry)
        _Caps.arm()


# ------------------------------------------------------------------------------------------------ reporting
def report(out: Path, results: Path, stage: str, result: dict[str, Any]) -> None:
    """A stage's result, written the moment the stage ends: its own file and one line of the results file."""
    line = {"stage": stage, **result}
    (out / "stages").mkdir(parents=True, exist_ok=True)
    (out / "stages" / f"{stage}.json").write_text(json.dumps(line, indent=2, default=str), encoding="utf-8")
    with open(results, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({k: v for k, v in line.items() if k != "log_tail"}, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    shown = {k: v for k, v in line.items() if k not in ("log_tail", "batches", "decoded_labels_sample")}
    print(f"[{stage}] {json.dumps(shown, default=str)[:1500]}", flush=True)


def reported(results: Path) -> dict[str, dict[str, Any]]:
    """Every stage's last reported result in a results file (a line cut short by a kill is skipped)."""
    found: dict[str, dict[str, Any]] = {}
    if results.is_file():
        for line in results.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                found[entry["stage"]] = entry
    return found


def run_capped(stage: str, work: Callable[[dict[str, Any]], None], cap: float) -> dict[str, Any]:
    """`work(result)` under the stage's time cap; `result` keeps what it filled in before a failure or time-out."""
    result: dict[str, Any] = {"ok": False, "cap_s": cap}
    started = time.perf_counter()
    try:
        with time_cap(cap):
            work(result)
    except StageTimeout as err:
        result.update(timed_out=True, error=str(err))
        traceback.print_exc()
    except Exception as err:  # report every failure of a stage, whatever its kind, and go on to the next
        result["error"] = f"{err!r}"[:800]
        traceback.print_exc()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# ------------------------------------------------------------------------------------------------ models
def build_random_text_model(source: Path, out: Path, seed: int = 0) -> Path:
    """The source's architecture and tokenizer with seeded random weights, saved in bf16."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source), dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    for extra in ("chat_template.jinja", "generation_config.json"):
        if (source / extra).is_file():
            shutil.copy(source / extra, out / extra)
    return out


def build_tiny_multimodal_model(tokenizer_source: Path, out: Path, seed: int = 0) -> Path:
    """A tiny Gemma 3 with a vision tower (random weights) and the real Gemma 3 tokenizer and processor."""
    import torch
    from transformers import (
        AutoTokenizer,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=128,
    )
    vision = SiglipVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=224
    )
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=256)
    Gemma3ForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    if (tokenizer_source / "chat_template.jinja").is_file():
        shutil.copy(tokenizer_source / "chat_template.jinja", out / "chat_template.jinja")
    with contextlib.suppress(Exception):  # the processor is what FastModel prefers; a tokenizer also loads
        processor = Gemma3Processor(
            image_processor=Gemma3ImageProcessor(size={"height": 224, "width": 224}), tokenizer=tokenizer
        )
        processor.save_pretrained(out)
    return out


# ----------------------------------------------------------------------------------------------- parent
def child_command(stage: str, model: Path, out: Path, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, __file__, "--stage", stage, "--model", str(model), "--out", str(out)]
    command += ["--steps", str(args.steps), "--rows", str(args.rows), "--medqa", str(args.medqa)]
    command += ["--results", str(args.results), "--caps", ",".join(f"{k}={v}" for k, v in args.cap.items())]
    command += ["--backend", args.backend]
    return command


def launch(stage: str, model: Path, out: Path, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """One stage in a process of its own, killed after `timeout` s; what it measured before is kept."""
    started = time.perf_counter()
    log = out / f"{stage}.log"
    out.mkdir(parents=True, exist_ok=True)
    command = child_command(stage, model, out / stage, args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        stdout, stderr = (text.decode() if isinstance(text, bytes) else text or "" for text in (err.stdout, err.stderr))
        log.write_text(stdout + "\n--- stderr ---\n" + stderr, encoding="utf-8")
        partial = out / stage / "partial.json"
        measured = json.loads(partial.read_text(encoding="utf-8")) if partial.is_file() else {}
        return {
            **measured,
            "ok": False,
            "timed_out": True,
            "cap_s": timeout,
            "seconds": round(time.perf_counter() - started, 1),
            "error": f"timed out after {err.timeout} s",
            "log_tail": stderr[-3000:],
        }
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr, encoding="utf-8")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": False, "error": "no result line"}
    if done.returncode and result.get("ok", True):  # killed before printing its line
        result = {**result, "ok": False, "error": f"exit status {done.returncode}"}
    if not result.get("ok"):
        result["log_tail"] = done.stderr[-3000:]
    result.update(cap_s=timeout, seconds=round(time.perf_counter() - started, 1))
    return result


def summary(results: dict[str, Any]) -> str:
    rows = ["| stage | ok | seconds | tokens/s | peak VRAM GiB | labels match | notes |", "| --- " * 7 + "|"]
    for stage, r in results["stages"].items():
        notes = r.get("error", "") or ", ".join(f"{k}={v}" for k, v in r.get("notes", {}).items())
        if stage in ("medqa", "stall_probe") and not notes:
            notes = f"{r.get('questions_scored')} q, {r.get('questions_per_second')} q/s, {r.get('new_graphs')} graphs"
        row = [stage, r.get("ok"), r.get("seconds"), r.get("tokens_per_second"), r.get("peak_vram_gib")]
        rows.append("| " + " | ".join(str(x) for x in [*row, r.get("labels_match"), notes[:200]]) + " |")
    u, t = results["stages"].get("unsloth_train", {}), results["stages"].get("transformers", {})
    if u.get("tokens_per_second") and t.get("tokens_per_second"):
        rows.append(f"\nUnsloth / transformers tokens/s: {u['tokens_per_second'] / t['tokens_per_second']:.2f}x")
        if u.get("peak_vram_gib") and t.get("peak_vram_gib"):
            rows.append(f"transformers / Unsloth peak VRAM: {t['peak_vram_gib'] / u['peak_vram_gib']:.2f}x")
    return "\n".join(rows)


def parent(args: argparse.Namespace) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = parse_stages(args.stages)
    # Own-process stages the Unsloth process did not reach run afterwards only inside this budget
    args.deadline = time.monotonic() + SETUP_CAP_S + sum(args.cap[s] for s in stages) + PROCESS_SLACK_S
    header: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "steps": args.steps,
        "stages_asked": stages,
        "caps_s": {stage: args.cap[stage] for stage in stages},
    }
    models: dict[str, Path] = {}

    def build(result: dict[str, Any]) -> None:
        result.update(header)
        if args.random_weights_from:
            models["text"] = build_random_text_model(Path(args.random_weights_from), out / "model-random")
            result["model"] = f"{args.random_weights_from} architecture, random weights (seed 0)"
        else:
            from medsft.models import resolve_model

            models["text"] = Path(resolve_model(args.model).location)
            result["model"] = str(models["text"])
        if "multimodal" in stages:
            try:
                models["multimodal"] = build_tiny_multimodal_model(models["text"], out / "model-multimodal")
            except Exception as err:  # the multimodal stage reports it; the others need only the text model
                result["multimodal_error"] = f"{err!r}"[:500]
        result["ok"] = True

    setup = run_capped("setup", build, SETUP_CAP_S)
    report(out, args.results, "setup", setup)
    if "text" in models:
        run_all(stages, models, out, args)
    found = reported(args.results)
    results = {**header, "model": setup.get("model"), "stages": {s: found.get(s, {"ok": None}) for s in stages}}
    results["summary"] = summary(results)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(results["summary"])


def run_all(stages: list[str], models: dict[str, Path], out: Path, args: argparse.Namespace) -> None:
    """The Unsloth process (which launches the others at their turn), then whatever it did not reach."""
    in_process = [s for s in stages if s in IN_PROCESS]
    if in_process:
        chain = ",".join(stages)
        limit = sum(args.cap[s] for s in stages) + PROCESS_SLACK_S
        command = [*child_command("unsloth", models["text"], out / "unsloth", args), "--stages", chain]
        command += ["--multimodal-model", str(models.get("multimodal", ""))]
        with open(out / "unsloth.log", "w", encoding="utf-8") as log:
            try:
                subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
            except subprocess.TimeoutExpired:
                print(f"the Unsloth process was killed after {limit} s", file=log)
    found = reported(args.results)
    for stage in stages:
        if stage in found:
            continue
        left = args.deadline - time.monotonic()
        if stage in OWN_PROCESS and left < args.cap[stage]:
            report(out, args.results, stage, {"ok": False, "error": f"not run: {left:.0f} s of the run's budget left"})
        elif stage in OWN_PROCESS:
            report(out, args.results, stage, run_own_process(stage, models, out, args))
        else:
            error = "the Unsloth process ended before this stage (see unsloth.log)"
            report(out, args.results, stage, {"ok": False, "error": error})


def run_own_process(stage: str, models: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = models.get("multimodal" if stage == "multimodal" else "text")
    if model is None:
        return {"ok": False, "error": "building the tiny multimodal model failed (see the setup stage)"}
    return launch(stage, model, out, args, args.cap[stage])


# ------------------------------------------------------------------------------------------------ children
def keep(result: dict[str, Any], out: Path) -> None:
    """Write what is measured so far, so a later failure or a time-out loses no number (the parent reads it)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial.json").write_text(json.dumps(result, default=str), encoding="utf-8")


def training_config(args: argparse.Namespace, backend_name: str, out: Path) -> Any:
    from medsft.config import DataSource, build_config

    return build_config(
        {
            "model": args.model,
            "backend": backend_name,
            "chat_template": "gemma-3",
            "load_in_4bit": True,
            "max_steps": args.steps,
            "batch_size": 8,
            "gradient_accumulation_steps": 1,
            "optimizer": "adamw_8bit",
            "max_seq_length": 1024,
            "eval_every_steps": 0,
            "save_every_steps": 0,
            "logging_steps": 5,
            "datasets": [DataSource(name="synthetic", count=args.rows)],
            "eval_tasks": ["medqa"],
            "output_dir": str(out),
        }
    )


def load_for_training(args: argparse.Namespace, backend_name: str, out: Path, state: dict[str, Any]) -> dict:
    """Load, LoRA, data, trainer, and one batch's labels against medsft's: the `labels` stage's work, which the
    own-process stages (transformers, multimodal) repeat on their backend and model. Fills `state`."""
    result: dict[str, Any] = state.setdefault("result", {})
    if backend_name == "unsloth":
        from medsft.train.backend import import_unsloth_if_usable

        tick = time.perf_counter()
        usable, why = import_unsloth_if_usable()  # before transformers, TRL and peft
        result["import_seconds"] = round(time.perf_counter() - tick, 1)
        if not usable:
            raise RuntimeError(f"Unsloth cannot run here: {why}")
    from medsft.data.build import build_training_data
    from medsft.train.backend import is_multimodal, select_backend
    from medsft.train.labels import IGNORE_INDEX
    from medsft.train.steps import Start, TrainingRows, make_trainer, tokenize_split

    config = training_config(args, backend_name, out)
    out.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    backend = select_backend(backend_name)
    model, tokenizer = backend.load(config)
    result["load_seconds"] = round(time.perf_counter() - tick, 1)
    if backend_name == "unsloth":
        from medsft.train.backend import unsloth_loader

        result["loader"] = unsloth_loader(args.model).__name__
    else:
        result["loader"] = "AutoModelForCausalLM + BitsAndBytesConfig(nf4)"
    result["linear4bit_modules"] = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
    result["multimodal"] = is_multimodal(model.config)
    model = backend.add_lora(model, config)
    lora_names = [n for n, p in model.named_parameters() if p.requires_grad]
    result["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if result["multimodal"]:
        result.setdefault("notes", {})["lora_on_vision"] = sum("vision" in n for n in lora_names)
    data, _report = build_training_data(config, tokenizer)
    rows = tokenize_split(list(data["train"]), tokenizer, config, "train")
    begun = Start(dataclasses.replace(config, max_steps=args.steps, eval_every_steps=0), out, backend)
    trainer = make_trainer(begun, model, tokenizer, TrainingRows(data, rows, []))
    batch = next(iter(trainer.get_train_dataloader()))
    cpu_step = getattr(trainer, "cpu_step", False)
    result["labels_match"], result["sequences_checked"] = labels_match(batch, rows, cpu_step)
    first = batch["labels"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    trained = [token for token, label in zip(ids, first, strict=True) if label != IGNORE_INDEX]
    result["decoded_labels_sample"] = tokenizer.decode(trained)[:300]
    state.update(backend=backend, config=config, model=model, tokenizer=tokenizer, trainer=trainer, out=out)
    state["throughput"] = trainer.throughput
    return result


class StepClock:
    """Wall time and token count at the end of each optimizer step: the rate after the first (compiling) step."""

    def __init__(self, throughput: Any) -> None:
        self.throughput = throughput
        self.marks: list[tuple[float, int]] = []
        self.started = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.marks.append((time.perf_counter(), self.throughput.tokens))

    def rates(self) -> dict[str, Any]:
        if not self.marks:
            return {}
        first_seconds = self.marks[0][0] - self.started
        rates: dict[str, Any] = {"first_step_seconds": round(first_seconds, 1)}
        if len(self.marks) > 1:
            (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
            rates["tokens_per_second_after_first_step"] = round((n1 - n0) / (t1 - t0), 1)
        return rates


def train(state: dict[str, Any], result: dict[str, Any]) -> None:
    """The trainer's steps: tokens/s (all steps, and after the first), peak VRAM, loss; the adapter is saved."""
    import torch
    from transformers import TrainerCallback

    trainer, throughput = state["trainer"], state["throughput"]
    clock = StepClock(throughput)

    class Clock(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            clock.on_step_end()

    trainer.add_callback(Clock())
    cuda = torch.cuda.is_available()  # False only when the script's plumbing is tried on a CPU
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tick = time.perf_counter()
    clock.started = tick
    try:
        trainer.train()  # on the CPU step, with packed attention (use_cpu_step)
        if cuda:
            torch.cuda.synchronize()
    finally:  # the numbers so far also when the cap interrupts the steps
        result["train_seconds"] = round(time.perf_counter() - tick, 1)
        result["tokens_per_second"] = throughput.rate()
        result.update(clock.rates())
        result["peak_vram_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        result["loss_first_last"] = [losses[0], losses[-1]] if losses else None
        result["steps"] = trainer.state.global_step
    state["backend"].save_adapter(trainer.model, state["tokenizer"], state["out"] / "adapter", overwrite=True)
    result["ok"] = result["steps"] == state["config"].max_steps


def unsloth_chain(args: argparse.Namespace) -> None:
    """The Unsloth process: its stages in value order on one model; own-process stages launched at their turn."""
    out, results = Path(args.out), Path(args.results)
    stages = parse_stages(args.stages)
    state: dict[str, Any] = {}
    for stage in stages:
        if stage in OWN_PROCESS:
            model = Path(args.multimodal_model) if stage == "multimodal" and args.multimodal_model else None
            if stage == "multimodal" and model is None:
                result = {"ok": False, "error": "building the tiny multimodal model failed (see the setup stage)"}
            else:
                result = launch(stage, model or Path(args.model), out.parent, args, args.cap[stage])
            report(out.parent, results, stage, result)
            continue
        if stage != "labels" and "model" not in state:
            report(out.parent, results, stage, {"ok": False, "error": "no model: the labels stage did not load one"})
            continue
        work = IN_PROCESS_WORK[stage]
        report(
            out.parent,
            results,
            stage,
            run_capped(stage, lambda result, w=work: w(args, state, result), args.cap[stage]),
        )


def labels_stage(args: argparse.Namespace, state: dict[str, Any], result: dict[str, Any]) -> None:
    state["result"] = result
    load_for_training(args, args.backend, Path(args.out), state)
    result["ok"] = bool(result["labels_match"])


def train_stage(args: argparse.Namespace, state: dict[str, Any], result: dict[str, Any]) -> None:
    train(state, result)


def medqa_stage(args: argparse.Namespace, state: dict[str, Any], result: dict[str, Any]) -> None:
    """The trained 4-bit model on real MedQA questions as medsft scores now (compile off while scoring)."""
    from medsft.tasks.medqa import load_items as load_medqa_eval

    items = load_medqa_eval(limit=args.medqa)
    result["n"] = len(items)
    fixed = score_for(state["trainer"].model, state["tokenizer"], items, eager=True, seconds=args.cap["medqa"] - 2)
    result.update({k: v for k, v in fixed.items() if k != "cap_s"})
    result["goal_met"] = fixed["questions_per_second"] >= MEDQA_GOAL_QPS
    result["ok"] = fixed["questions_scored"] == len(items) and result["goal_met"]


def stall_probe_stage(args: argparse.Namespace, state: dict[str, Any], result: dict[str, Any]) -> None:
    """The same questions scored as before the fix, torch.compile left on, until the cap: where the time goes."""
    from medsft.tasks.medqa import load_items as load_medqa_eval

    items = load_medqa_eval(limit=args.medqa)
    probe = score_for(
        state["trainer"].model, state["tokenizer"], items, eager=False, seconds=args.cap["stall_probe"] - 2
    )
    result.update({k: v for k, v in probe.items() if k != "cap_s"})
    result["ok"] = True  # a measurement: slow or stalled is a finding, not a failure


def score_for(model: Any, tokenizer: Any, items: list, eager: bool, seconds: float) -> dict[str, Any]:
    """Score MedQA items for at most `seconds`: how many were scored, how fast, and what each batch cost."""
    import torch

    from medsft.evaluate import HFScorer, evaluate_multiple_choice

    counters = torch._dynamo.utils.counters["stats"]
    batches: list[dict[str, Any]] = []
    graphs = [counters["unique_graphs"]]
    started = time.perf_counter()

    def on_batch(batch: dict[str, Any]) -> None:
        batch["new_graphs"] = counters["unique_graphs"] - graphs[0]
        graphs[0] = counters["unique_graphs"]
        batch["seconds"] = round(batch["seconds"], 3)
        batches.append(batch)

    scorer = HFScorer(model, tokenizer, name=f"tuned-4bit-eager-{eager}", batch_size=16, eager=eager)
    scorer.on_batch = on_batch
    scorer.progress = False
    entry: dict[str, Any] = {"eager": eager, "cap_s": round(seconds, 1)}
    try:
        with time_cap(seconds) as cap:
            result = evaluate_multiple_choice(scorer, "medqa", items)
        entry["acc"] = result.metrics.get("acc")
    except StageTimeout as err:
        if err.cap is not cap:
            raise
        entry["stopped_at_cap"] = True
    elapsed = time.perf_counter() - started
    scored = sum(b["rows"] for b in batches)
    entry.update(
        questions_scored=scored,
        seconds=round(elapsed, 1),
        questions_per_second=round(scored / elapsed, 2) if scored else 0.0,
        first_batch_seconds=batches[0]["seconds"] if batches else None,
        new_graphs=sum(b["new_graphs"] for b in batches),
        batches=batches[:24],
    )
    return entry


def gguf_stage(args: argparse.Namespace, state: dict[str, Any], result: dict[str, Any]) -> None:
    model, tokenizer, out = state["trainer"].model, state["tokenizer"], state["out"]
    tick = time.perf_counter()
    merged = state["backend"].save_merged(model, tokenizer, out / "merged", overwrite=True)
    result["merged_seconds"] = round(time.perf_counter() - tick, 1)
    result["merged_files"] = sorted(p.name for p in merged.iterdir())
    if args.backend != "unsloth":
        raise RuntimeError("save_pretrained_gguf is Unsloth's: the GGUF step needs the Unsloth backend")
    sixteen_bit = dataclasses.replace(state["config"], load_in_4bit=False, backend="transformers")
    result.update(gguf_check(model, tokenizer, merged, sixteen_bit, out))
    result["ok"] = True  # gguf_check fails closed: a wrong template, stop token or file raises


def validation_stage(args: argparse.Namespace, state: dict[str, Any], result: dict[str, Any]) -> None:
    from medsft.train.cpu_step.attention import packed_attention

    trainer = state["trainer"]
    with packed_attention(trainer.model) if getattr(trainer, "cpu_step", False) else contextlib.nullcontext():
        result.update(validation_check(trainer.model, state["tokenizer"]))
    result["ok"] = result["training_mode_restored"] and result["attention_restored"]


IN_PROCESS_WORK: dict[str, Callable[[argparse.Namespace, dict[str, Any], dict[str, Any]], None]] = {
    "labels": labels_stage,
    "unsloth_train": train_stage,
    "medqa": medqa_stage,
    "gguf": gguf_stage,
    "validation": validation_stage,
    "stall_probe": stall_probe_stage,
}


def own_process_child(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """`transformers` or `multimodal`: load, LoRA, labels and the training steps; the merged save after them."""
    out = Path(args.out)
    backend_name = "transformers" if args.stage == "transformers" else args.backend
    state: dict[str, Any] = {"result": result}
    result.update(ok=False, stage=args.stage, backend=backend_name)
    load_for_training(args, backend_name, out, state)
    keep(result, out)
    with time_cap(max(args.cap[args.stage] - 10, 5)):  # leave time to print the line the parent reads
        try:
            train(state, result)
        finally:
            keep(result, out)
        tick = time.perf_counter()
        merged = state["backend"].save_merged(
            state["trainer"].model, state["tokenizer"], out / "merged", overwrite=True
        )
        result["merged_seconds"] = round(time.perf_counter() - tick, 1)
        result["merged_files"] = sorted(p.name for p in merged.iterdir())
    result["ok"] = bool(result["labels_match"]) and result.get("steps") == args.steps


# ------------------------------------------------------------------------------------------------ checks
def labels_match(batch: dict[str, Any], rows: list[dict[str, list[int]]], packed: bool) -> tuple[bool, int]:
    """Whether every sequence of a collated batch carries exactly the labels medsft made for that row."""
    by_ids = {tuple(row["input_ids"]): row["labels"] for row in rows}
    sequences = []
    for i in range(batch["input_ids"].shape[0]):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        if packed:  # one row per micro-batch; position ids restart at each conversation
            starts = [j for j, p in enumerate(batch["position_ids"][i].tolist()) if p == 0] + [len(ids)]
            sequences += [(ids[a:b], labels[a:b]) for a, b in zip(starts, starts[1:], strict=False)]
        else:
            length = int(batch["attention_mask"][i].sum())
            sequences.append((ids[:length], labels[:length]))
    matched = 0
    for ids, labels in sequences:
        expected = by_ids.get(tuple(ids))
        if expected is None:
            return False, matched
        # packing masks each conversation's first label (nothing is trained across a boundary)
        if labels[1:] != expected[1:] or (not packed and labels[0] != expected[0]):
            return False, matched
        matched += 1
    return bool(sequences), matched


def validation_check(model: Any, tokenizer: Any, count: int = 32) -> dict[str, Any]:
    """The checkpoint measure (`select_checkpoint_by: pubmedqa_accuracy`) as the trainer takes it mid-training:
    the training model scored through the evaluation prompt, then left in training mode with its attention back.

    Real runs score held-out training rows; here official test items stand in, for the plumbing and the speed."""
    from medsft.tasks.pubmedqa import load_items as load_pubmedqa_eval
    from medsft.train import checkpoint_selection

    items = load_pubmedqa_eval(limit=count)
    model.train()
    attention = getattr(model.config, "_attn_implementation", None)
    tick = time.perf_counter()
    acc = checkpoint_selection.accuracy(model, tokenizer, "pubmedqa", items, 8)
    return {
        "n": len(items),
        "acc": acc,
        "seconds": round(time.perf_counter() - tick, 1),
        "training_mode_restored": model.training,
        "attention_restored": getattr(model.config, "_attn_implementation", None) == attention,
    }


def gguf_check(model: Any, tokenizer: Any, merged: Path, config16: Any, out: Path) -> dict[str, Any]:
    """Unsloth's GGUF export (offline llama.cpp folder), then medsft's checks against the 16-bit merge."""
    from medsft.evaluate import HFScorer
    from medsft.evaluate.gguf_scorer import LlamaCppScorer
    from medsft.export.save import save_ggufs
    from medsft.export.verify import end_of_turn_ids, reference_first_tokens, verify_gguf

    finals = {"q8_0": out / "gguf" / "model-Q8_0.gguf"}
    finals["q8_0"].parent.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    partials = save_ggufs(model, tokenizer, ["q8_0"], finals)
    seconds = round(time.perf_counter() - tick, 1)
    path = partials["q8_0"].replace(finals["q8_0"])
    reference = HFScorer.from_spec(str(merged), name="merged-16bit", config=config16)
    stops = end_of_turn_ids(reference.tokenizer, reference.model.generation_config.eos_token_id)
    prompt_ids, first_tokens = reference_first_tokens(reference.model, reference.tokenizer)
    scorer = LlamaCppScorer(path, name="gguf-q8_0", n_ctx=2048)
    check = verify_gguf(scorer, reference.tokenizer, stops, prompt_ids, first_tokens)
    scorer.close()
    return {
        "seconds": seconds,
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "reference_dtype": str(next(reference.model.parameters()).dtype),
        **check.to_dict(),
    }


def vllm_child(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """The same model and items on transformers, then on vLLM (the first freed before the second starts)."""
    import gc

    import torch

    from medsft.config import build_config
    from medsft.data import synthetic_eval_cases
    from medsft.evaluate import HFScorer, evaluate_multiple_choice, evaluate_synthetic
    from medsft.evaluate.vllm_scorer import VLLMScorer
    from medsft.tasks.medqa import load_items as load_medqa_eval

    result.update(ok=False, stage="vllm")
    config = build_config({"model": args.model, "backend": "transformers", "dtype": "bfloat16"})
    items, cases = load_medqa_eval(limit=args.medqa), synthetic_eval_cases(32)
    engines: dict[str, Any] = {}
    for name, load in (("transformers", lambda: HFScorer.from_spec(args.model, batch_size=16, config=config)),
                       ("vllm", lambda: VLLMScorer.from_spec(args.model, config=config))):  # fmt: skip
        scorer = load()
        tick = time.perf_counter()
        choices = evaluate_multiple_choice(scorer, "medqa", items)
        scored = time.perf_counter() - tick
        replies = evaluate_synthetic(scorer, cases, max_new_tokens=128)
        engines[name] = {
            "choices": choices,
            "replies": replies,
            "score_s": scored,
            "generate_s": time.perf_counter() - tick - scored,
        }
        del scorer
        gc.collect()
        torch.cuda.empty_cache()
    hf, vl = engines["transformers"], engines["vllm"]
    pairs = list(zip(hf["choices"].questions, vl["choices"].questions, strict=True))
    agreement = sum(a["pred"] == b["pred"] for a, b in pairs) / len(pairs)
    result["medqa"] = {
        "n": len(pairs),
        "prediction_agreement": round(agreement, 4),
        "max_score_difference": max(
            abs(x - y) for a, b in pairs for x, y in zip(a["scores"], b["scores"], strict=True)
        ),
        "acc": {name: e["choices"].metrics["acc"] for name, e in engines.items()},
        "seconds": {name: round(e["score_s"], 1) for name, e in engines.items()},
    }
    same = [a["output"] == b["output"] for a, b in zip(hf["replies"].questions, vl["replies"].questions, strict=True)]
    result["synthetic_greedy"] = {
        "n": len(same),
        "identical_replies": round(sum(same) / len(same), 4),
        "seconds": {name: round(e["generate_s"], 1) for name, e in engines.items()},
    }
    result["ok"] = agreement > VLLM_MIN_AGREEMENT
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--random-weights-from", help="build the model from this folder's config, random weights")
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES), help=f"some of {', '.join(STAGES)}")
    parser.add_argument("--caps", default=os.environ.get("MEDSFT_GPU_CAPS"), help="stage=seconds,... (STAGE_CAP_S)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rows", type=int, default=256, help="synthetic training rows")
    parser.add_argument("--medqa", type=int, default=128, help="MedQA test questions to score")
    parser.add_argument("--out", default="/tmp/medsft-gpu-check")
    parser.add_argument("--results", help="JSON lines, one per stage as it ends (default OUT/stages.jsonl)")
    # Plumbing on a CPU: the Unsloth process's stages on the transformers backend (no GGUF, which is Unsloth's).
    parser.add_argument("--backend", choices=["unsloth", "transformers"], default="unsloth", help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=[*STAGES, "unsloth"], help=argparse.SUPPRESS)  # a child process's work
    parser.add_argument("--multimodal-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cap = parse_caps(args.caps)
    args.results = Path(args.results or Path(args.out) / "stages.jsonl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.stage:
        parent(args)
    elif args.stage == "unsloth":
        unsloth_chain(args)
    else:
        result: dict[str, Any] = {}
        try:
            vllm_child(args, result) if args.stage == "vllm" else own_process_child(args, result)
        except (Exception, StageTimeout) as err:  # the parent reads this line; the traceback goes to the log
            traceback.print_exc()
            result.update(ok=False, stage=args.stage, error=f"{err!r}"[:800], timed_out=isinstance(err, StageTimeout))
        print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
