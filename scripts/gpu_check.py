"""The GPU path end to end on a CUDA machine with no network, with a plain-transformers comparison.

Each check runs in its own process: Unsloth patches transformers, TRL and peft when imported, so the plain
transformers + peft + bitsandbytes comparison must never share a process with it.

- `unsloth`: medsft's Unsloth backend on a text model: the loader Unsloth's notebooks use for it, 4-bit
  load, LoRA with Unsloth's checkpointing, the trainer medsft builds (one batch's labels compared with the
  response-only labels medsft made, token by token), a few steps, adapter + merged 16-bit save, GGUF Q8_0
  through Unsloth's `save_pretrained_gguf` with the offline llama.cpp folder, the GGUF checked against the
  merged model loaded in 16-bit, and MedQA scoring of the trained 4-bit model. After training, the
  validation-accuracy measure that picks checkpoints is taken on the training model (inside its training
  attention), which must come back in training mode with its attention unchanged.
- `transformers`: the same steps up to training with medsft's transformers backend (bitsandbytes 4-bit,
  peft LoRA), for tokens/s and peak VRAM side by side.
- `multimodal`: a Gemma 3 checkpoint with a vision tower (tiny, random weights, the real Gemma 3
  tokenizer): loaded through `FastModel`, LoRA on the language layers only, labels checked, a few steps.
- `vllm` (only when asked for, on a machine with the vllm extra): the model on `VLLMScorer` against
  `HFScorer`, both in bf16: MedQA choices (share of equal predictions, largest score difference) and greedy
  replies to synthetic cases (share of identical replies), with the time each engine took.

    python scripts/gpu_check.py --out /tmp/gpu-check [--model embedded|FOLDER] [--steps 30]
    python scripts/gpu_check.py --random-weights-from CONFIG_AND_TOKENIZER_FOLDER ...

`--random-weights-from` builds the model from a folder's config and tokenizer with random weights (for a
machine that cannot receive the real weights): speed and memory are the real architecture's, accuracy is
chance. Writes OUT/gpu_check.json and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

STAGES = ("unsloth", "transformers", "multimodal", "vllm")
DEFAULT_STAGES = ("unsloth", "transformers", "multimodal")  # vllm needs its extra, rarely on a lent machine
STAGE_TIMEOUT_S = {"unsloth": 300, "transformers": 120, "multimodal": 150, "vllm": 300}
# vLLM and transformers run different bf16 kernels, so near-ties may flip; more than this share must agree.
VLLM_MIN_AGREEMENT = 0.9


# ----------------------------------------------------------------------------------------------- parent
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


def run_stage(stage: str, model: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stage", stage, "--model", str(model), "--out", str(out)]
    command += ["--steps", str(args.steps), "--rows", str(args.rows), "--medqa", str(args.medqa)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=STAGE_TIMEOUT_S[stage])
    except subprocess.TimeoutExpired as err:
        stdout, stderr = (text.decode() if isinstance(text, bytes) else text or "" for text in (err.stdout, err.stderr))
        (out.parent / f"{stage}.log").write_text(stdout + "\n--- stderr ---\n" + stderr, encoding="utf-8")
        partial = out / "partial.json"
        measured = json.loads(partial.read_text(encoding="utf-8")) if partial.is_file() else {}
        return {**measured, "ok": False, "error": f"timed out after {err.timeout} s", "log_tail": stderr[-3000:]}
    (out.parent / f"{stage}.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr, encoding="utf-8")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": False, "error": "no result line"}
    if done.returncode and result.get("ok", True):  # killed before printing its line
        result = {**result, "ok": False, "error": f"exit status {done.returncode}"}
    if not result.get("ok"):
        result["log_tail"] = done.stderr[-3000:]
    result["stage_seconds"] = round(time.perf_counter() - started, 1)
    return result


def summary(results: dict[str, Any]) -> str:
    rows = ["| stage | ok | loader | tokens/s | peak VRAM GiB | labels match | notes |", "| --- " * 7 + "|"]
    for stage, r in results["stages"].items():
        notes = r.get("error", "") or ", ".join(f"{k}={v}" for k, v in r.get("notes", {}).items())
        row = [stage, r.get("ok"), r.get("loader"), r.get("tokens_per_second"), r.get("peak_vram_gib")]
        rows.append("| " + " | ".join(str(x) for x in [*row, r.get("labels_match"), notes[:200]]) + " |")
    u, t = results["stages"].get("unsloth", {}), results["stages"].get("transformers", {})
    if u.get("tokens_per_second") and t.get("tokens_per_second"):
        rows.append(f"\nUnsloth / transformers tokens/s: {u['tokens_per_second'] / t['tokens_per_second']:.2f}x")
        rows.append(f"transformers / Unsloth peak VRAM: {t['peak_vram_gib'] / u['peak_vram_gib']:.2f}x")
    return "\n".join(rows)


def parent(args: argparse.Namespace) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "steps": args.steps,
        "stages": {},
    }
    if args.random_weights_from:
        model = build_random_text_model(Path(args.random_weights_from), out / "model-random")
        results["model"] = f"{args.random_weights_from} architecture, random weights (seed 0)"
    else:
        from medsft.models import resolve_model

        model = Path(resolve_model(args.model).location)
        results["model"] = str(model)
    for stage in args.stages.split(","):
        stage_model = model
        if stage == "multimodal":
            try:
                stage_model = build_tiny_multimodal_model(model, out / "model-multimodal")
            except Exception as err:  # report and go on: one family's failure must not hide the others
                results["stages"][stage] = {"ok": False, "error": f"building the tiny model failed: {err!r}"}
                continue
        results["stages"][stage] = run_stage(stage, stage_model, out / stage, args)
        print(stage, json.dumps({k: v for k, v in results["stages"][stage].items() if k != "log_tail"}), flush=True)
    results["summary"] = summary(results)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(results["summary"])


# ------------------------------------------------------------------------------------------------ child
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


def keep(result: dict[str, Any], out: Path) -> None:
    """Write what is measured so far, so a later failure or a time-out loses no number (the parent reads it)."""
    (out / "partial.json").write_text(json.dumps(result, default=str), encoding="utf-8")


def child(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    stage, out = args.stage, Path(args.out)
    if stage == "vllm":
        return vllm_child(args, result)
    backend_name = "transformers" if stage == "transformers" else "unsloth"
    notes: dict[str, Any] = {}
    if backend_name == "unsloth":
        from medsft.backend import import_unsloth_if_usable

        usable, why = import_unsloth_if_usable()  # before transformers, TRL and peft
        if not usable:
            return {"ok": False, "error": f"Unsloth cannot run here: {why}"}
    import dataclasses

    import torch

    from medsft.attention import packed_attention
    from medsft.backend import is_multimodal, select_backend
    from medsft.config import DataSource, build_config
    from medsft.data import build_training_data
    from medsft.labels import IGNORE_INDEX
    from medsft.train import Throughput, build_trainer, tokenize_split

    config = build_config(
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
    out.mkdir(parents=True, exist_ok=True)
    result.update(ok=False, stage=stage, backend=backend_name)
    tick = time.perf_counter()
    backend = select_backend(backend_name)
    model, tokenizer = backend.load(config)
    result["load_seconds"] = round(time.perf_counter() - tick, 1)
    if backend_name == "unsloth":
        from medsft.backend import unsloth_loader

        result["loader"] = unsloth_loader(args.model).__name__
    else:
        result["loader"] = "AutoModelForCausalLM + BitsAndBytesConfig(nf4)"
    result["linear4bit_modules"] = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
    result["multimodal"] = is_multimodal(model.config)
    model = backend.add_lora(model, config)
    lora_names = [n for n, p in model.named_parameters() if p.requires_grad]
    result["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if result["multimodal"]:
        notes["lora_on_vision"] = sum("vision" in n for n in lora_names)
    data, _report = build_training_data(config, tokenizer)
    rows = tokenize_split(list(data["train"]), tokenizer, config, "train")
    throughput = Throughput()
    trainer = build_trainer(model, tokenizer, backend, config, out, rows, [], throughput, args.steps)
    batch = next(iter(trainer.get_train_dataloader()))
    result["labels_match"], result["sequences_checked"] = labels_match(batch, rows, trainer.sparse_head)
    first = batch["labels"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    trained = [token for token, label in zip(ids, first, strict=True) if label != IGNORE_INDEX]
    result["decoded_labels_sample"] = tokenizer.decode(trained)[:300]

    cuda = torch.cuda.is_available()  # False only when the script's plumbing is tried on a CPU
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tick = time.perf_counter()
    with packed_attention(trainer.model) if trainer.sparse_head else contextlib.nullcontext():
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        result["train_seconds"] = round(time.perf_counter() - tick, 1)
        with record(notes, "validation"):  # inside the training attention, as at an evaluation step
            result["validation"] = validation_check(trainer.model, tokenizer)
    result["tokens_per_second"] = throughput.rate()
    result["peak_vram_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result["loss_first_last"] = [losses[0], losses[-1]] if losses else None
    result["steps"] = trainer.state.global_step
    keep(result, out)

    backend.save_adapter(trainer.model, tokenizer, out / "adapter")
    tick = time.perf_counter()
    merged = backend.save_merged(trainer.model, tokenizer, out / "merged")
    result["merged_seconds"] = round(time.perf_counter() - tick, 1)
    result["merged_files"] = sorted(p.name for p in merged.iterdir())
    keep(result, out)
    if stage == "unsloth":
        sixteen_bit = dataclasses.replace(config, load_in_4bit=False, backend="transformers")
        with record(notes, "gguf"):
            result["gguf"] = gguf_check(trainer.model, tokenizer, merged, sixteen_bit, out)
        with record(notes, "medqa"):
            result["medqa"] = medqa_check(trainer.model, tokenizer, args.medqa)
    result["notes"] = notes
    restored = result.get("validation", {})
    result["ok"] = (
        bool(result["labels_match"])
        and restored.get("training_mode_restored", False)
        and restored.get("attention_restored", False)
        and not any(k.endswith("_error") for k in notes)
    )
    return result


@contextlib.contextmanager
def record(notes: dict[str, Any], name: str):  # noqa: ANN201
    """Run one optional check; its failure is recorded with the traceback's end, not raised."""
    try:
        yield
    except Exception as err:  # report every failure of the check, whatever its kind
        notes[f"{name}_error"] = f"{err!r}"[:500]
        traceback.print_exc()


def validation_check(model: Any, tokenizer: Any, count: int = 32) -> dict[str, Any]:
    """The checkpoint measure (`select_checkpoint_by: pubmedqa_accuracy`) as the trainer takes it mid-training:
    the training model scored through the evaluation prompt, then left in training mode with its attention back.

    Real runs score held-out training rows; here official test items stand in, for the plumbing and the speed."""
    from medsft import validation
    from medsft.data import load_pubmedqa_eval

    items = load_pubmedqa_eval(limit=count)
    model.train()
    attention = getattr(model.config, "_attn_implementation", None)
    tick = time.perf_counter()
    acc = validation.accuracy(model, tokenizer, "pubmedqa", items, 8)
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
    from medsft.export.save import unsloth_ggufs
    from medsft.export.verify import end_of_turn_ids, reference_first_tokens, verify_gguf

    finals = {"q8_0": out / "gguf" / "model-Q8_0.gguf"}
    finals["q8_0"].parent.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    partials = unsloth_ggufs(model, tokenizer, ["q8_0"], finals)
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


def medqa_check(model: Any, tokenizer: Any, limit: int) -> dict[str, Any]:
    """The trained 4-bit model (Unsloth-patched forward) scored on real MedQA questions."""
    from medsft.data import load_medqa_eval
    from medsft.evaluate import HFScorer, evaluate_multiple_choice

    scorer = HFScorer(model, tokenizer, name="tuned-4bit", batch_size=16)
    items = load_medqa_eval(limit=limit)
    tick = time.perf_counter()
    result = evaluate_multiple_choice(scorer, "medqa", items)
    seconds = time.perf_counter() - tick
    return {
        "n": result.n,
        "questions_per_second": round(len(items) / seconds, 2),
        "acc": result.metrics.get("acc"),
        "acc_ci": result.metrics.get("acc_ci"),
    }


def vllm_child(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """The same model and items on transformers, then on vLLM (the first freed before the second starts)."""
    import gc

    import torch

    from medsft.config import build_config
    from medsft.data import load_medqa_eval, synthetic_eval_cases
    from medsft.evaluate import HFScorer, evaluate_multiple_choice, evaluate_synthetic
    from medsft.evaluate.vllm_scorer import VLLMScorer

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
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rows", type=int, default=256, help="synthetic training rows")
    parser.add_argument("--medqa", type=int, default=128, help="MedQA test questions to score")
    parser.add_argument("--out", default="/tmp/medsft-gpu-check")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # a child process's one check
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.stage:
        parent(args)
        return
    result: dict[str, Any] = {}
    try:
        child(args, result)
    except Exception as err:  # the parent reads this line; the traceback goes to the stage's log
        traceback.print_exc()
        result.update(ok=False, stage=args.stage, error=f"{err!r}"[:800])
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
