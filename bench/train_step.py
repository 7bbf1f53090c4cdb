"""TRL's default SFT step vs medsft's CPU step, side by side on the same batches of the embedded Gemma 3 270M.

Both steps train the same LoRA (r16, all linear) on the same examples (synthetic clinical chats, response-only
labels) with the same AdamW; they alternate batch by batch over several rounds, so machine noise hits both.
TRL's step is SFTTrainer's own `compute_loss` on its own collator (pad to the longest row; on CPU its fused head
scores every position and also computes entropy and top-1). medsft's step packs the batch into one row and
runs causal attention per conversation, and computes the LM head only at labelled positions, fused with the
cross-entropy.

Printed: tokens/s of each and their ratio; model-FLOPs utilization (MFU) of each, with FLOPs counted from the
model's shapes and divided by the fp32 matmul rate measured in this run; peak RSS of each step; and the largest
loss difference between the two on the same batch and weights.

    python bench/train_step.py [--batches 3] [--rounds 2] [--batch-size 4] [--no-record]

The goals (README): medsft at least 4x TRL's tokens/s, at 75% MFU or more; the last lines say whether this run
meets them. Each run is appended to bench/history.json; `python bench/history.py` shows the history.

Run it on a quiet machine, without OMP_WAIT_POLICY=PASSIVE: passive OpenMP threads sleep between the thousands of
small ops in a step, which costs ~12% there (it helps only when other processes compete for the cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

GOAL_RATIO = 4.0  # medsft tokens/s over TRL's default step
GOAL_MFU = 0.75  # medsft's model-FLOPs utilization against the fp32 matmul peak measured in the same run


def matmul_gflops(size: int, repeats: int = 5) -> float:
    """Best fp32 GEMM rate over `repeats` runs of a size x size x size product."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up the BLAS threads and caches
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def step_flops(model, sequence_lengths: list[int], head_positions: int) -> float:
    """FLOPs of one training step: frozen body forward + activation-gradient backward, LoRA, attention, head.

    Frozen weights get no weight gradient, so each frozen linear costs 2*in*out per token forward and the same
    backward. Each LoRA pair costs 2*r*(in+out) forward and twice that backward (input and weight gradients).
    Causal attention computes half of QK^T and AV: 2*T^2*heads*head_dim forward per layer, twice that backward.
    The LM head (vocab x hidden) runs at `head_positions` rows, forward and input-gradient backward.
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    backbone, head, config = base.get_decoder(), base.get_output_embeddings(), base.config.get_text_config()
    tokens = sum(sequence_lengths)
    per_token = 0.0
    inside_lora: set[int] = set()  # base_layer, lora_A, lora_B: counted through their wrapper
    for module in backbone.modules():
        if isinstance(module, LoraLayer):
            inside_lora.update(id(child) for child in module.modules() if child is not module)
            layer, rank = module.base_layer, module.r["default"]
            per_token += 4 * layer.in_features * layer.out_features + 6 * rank * (
                layer.in_features + layer.out_features
            )
        elif isinstance(module, torch.nn.Linear) and id(module) not in inside_lora:
            per_token += 4 * module.in_features * module.out_features
    attention = sum(
        3 * 2 * length**2 * config.num_attention_heads * config.head_dim * config.num_hidden_layers
        for length in sequence_lengths
    )
    head_flops = 4 * head.in_features * head.out_features * head_positions
    return per_token * tokens + attention + head_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-record", action="store_true", help="do not append this run to bench/history.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from medsft.config import build_config
    from medsft.data.synthetic import generate_synthetic
    from medsft.train.backend import select_backend
    from medsft.train.cpu_step import pack_examples
    from medsft.train.cpu_step.attention import packed_attention
    from medsft.train.cpu_step.loss import sparse_head_loss
    from medsft.train.labels import IGNORE_INDEX, tokenize_conversation

    config = build_config({"model": "embedded", "lora_r": 16, "lora_alpha": 32, "lora_target": "all-linear"})
    backend = select_backend("transformers")
    model, tokenizer = backend.load(config)
    model = backend.add_lora(model, config)
    rows = [tokenize_conversation(tokenizer, case["messages"], 512) for case in generate_synthetic(64, seed=0)]
    size = args.batch_size
    batches = [rows[i * size : (i + 1) * size] for i in range(args.batches)]

    trl_args = SFTConfig(
        output_dir="/tmp/medsft-bench-trl",
        use_cpu=True,
        bf16=False,  # SFTConfig's default bf16=True fails on CPU
        gradient_checkpointing=False,  # TRL defaults to on; off here so TRL is not slowed by recomputation
        per_device_train_batch_size=size,
        report_to=[],
    )
    trainer = SFTTrainer(model=model, args=trl_args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def trl_step(batch: list[dict]) -> torch.Tensor:
        inputs = trainer.data_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in batch])
        return trainer.compute_loss(model, inputs)

    def medsft_step(batch: list[dict]) -> torch.Tensor:
        with packed_attention(model):  # what medsft.train.steps uses around trainer.train()
            return sparse_head_loss(model, pack_examples(batch)).loss

    # Same weights, same batch: the two losses must agree before any timing.
    loss_gap = 0.0
    with torch.no_grad():
        for batch in batches:
            loss_gap = max(loss_gap, abs(trl_step(batch).item() - medsft_step(batch).item()))

    peaks = [matmul_gflops(1024), matmul_gflops(2048)]
    timings: dict[str, list[float]] = {"trl": [], "medsft": []}
    rss: dict[str, float] = {"trl": 0.0, "medsft": 0.0}
    for _ in range(args.rounds):
        for batch in batches:
            for name, step in (("trl", trl_step), ("medsft", medsft_step)):
                optimizer.zero_grad(set_to_none=True)
                reset_peak_rss()
                started = time.perf_counter()
                step(batch).backward()
                optimizer.step()
                timings[name].append(time.perf_counter() - started)
                rss[name] = max(rss[name], peak_rss_gib())
        peaks += [matmul_gflops(1024), matmul_gflops(2048)]

    peak = max(peaks)
    tokens = [sum(len(r["input_ids"]) for r in batch) for batch in batches] * args.rounds
    lengths = [[len(r["input_ids"]) for r in batch] for batch in batches] * args.rounds
    padded = [max(seq) * len(seq) for seq in lengths]
    labelled = [sum(sum(1 for t in r["labels"][1:] if t != IGNORE_INDEX) for r in batch) for batch in batches]
    labelled *= args.rounds
    flops = {
        "medsft": [step_flops(model, seq, head) for seq, head in zip(lengths, labelled, strict=True)],
        # TRL pads every row to the longest and scores every position but the last of each row.
        "trl": [
            step_flops(model, [max(seq)] * len(seq), pad - len(seq)) for seq, pad in zip(lengths, padded, strict=True)
        ],
    }

    def rate(name: str) -> float:
        return sum(tokens) / sum(timings[name])

    def mfu(name: str) -> float:
        return statistics.median(f / t / 1e9 for f, t in zip(flops[name], timings[name], strict=True)) / peak

    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"model: embedded google/gemma-3-270m, LoRA r16 all linear, fp32, {args.threads} threads, OpenMP {policy}")
    print(
        f"data: {args.batches} batches x {size} synthetic clinical chats, {sum(tokens) // args.rounds} real tokens, "
        f"{sum(labelled) // args.rounds} labelled, {args.rounds} rounds alternating"
    )
    print(f"fp32 matmul peak measured in this run: {peak:.1f} GFLOP/s (1024^3 and 2048^3, best of {len(peaks)})")
    print(f"{'step':<8}{'tokens/s':>10}{'s/step':>9}{'MFU':>7}{'peak RSS':>11}")
    for name in ("trl", "medsft"):
        print(
            f"{name:<8}{rate(name):>10.1f}{statistics.median(timings[name]):>9.2f}{mfu(name):>7.0%}"
            f"{rss[name]:>9.2f} GiB"
        )
    ratio = rate("medsft") / rate("trl")
    print(f"ratio medsft/trl tokens/s: {ratio:.2f}x")
    print(f"max loss difference on the same batch: {loss_gap:.2e}")
    for what, value, goal, shown in (
        ("medsft/trl tokens/s", ratio, GOAL_RATIO, f"{GOAL_RATIO:g}x: {ratio:.2f}x"),
        ("medsft MFU", mfu("medsft"), GOAL_MFU, f"{GOAL_MFU:.0%}: {mfu('medsft'):.0%}"),
    ):
        verdict = "met" if value >= goal else f"not met ({value / goal:.0%} of the goal)"
        print(f"goal: {what} >= {shown}, {verdict}")
    if not args.no_record:
        import history

        figures = {
            "trl tok/s": rate("trl"),
            "medsft tok/s": rate("medsft"),
            "medsft/trl": ratio,
            "medsft MFU %": 100 * mfu("medsft"),
            "trl MFU %": 100 * mfu("trl"),
            "matmul peak GFLOP/s": peak,
        }
        higher = list(figures)
        figures["medsft peak RSS GiB"] = rss["medsft"]
        settings = {"batches": args.batches, "rounds": args.rounds, "batch_size": size, "threads": args.threads,
                    "OMP_WAIT_POLICY": policy}  # fmt: skip
        for line in history.record("train_step", figures, higher_is_better=higher, settings=settings):
            print(f"slower than the last recorded run: {line}")


if __name__ == "__main__":
    main()
