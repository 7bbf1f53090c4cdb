"""bench/train_step.py's two steps, for several code trees at once, interleaved on one machine.

A speed figure measured last month on another machine says little about a change; this runs the same steps of
two (or more) checkouts side by side: one worker process per tree (its own `medsft` on PYTHONPATH, its own
model, LoRA and AdamW), and the driver asks them in turn for one step at a time, so the machine's noise falls on
all of them alike. Each worker times TRL's default step and medsft's step on the same batch, as
bench/train_step.py does, and the driver prints tokens/s, the ratio to TRL and MFU per tree.

    python bench/compare_trees.py OLD_TREE NEW_TREE [--rows-of NEW_TREE] [--loss-file NAME=PATH ...]

--rows-of: every worker trains on the rows of that tree's synthetic data (otherwise each its own: the
synthetic generator changed over time, and with it the bench's batches). --loss-file NAME=PATH adds a worker on
the first tree whose `medsft.loss` is the file PATH (e.g. loss.py as of an older commit, `git show C:medsft/loss.py`),
to price one change at a time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE_LAYOUTS = [  # before and after the package split of issue 24
    {"attention": "medsft.attention", "backend": "medsft.backend", "labels": "medsft.labels",
     "loss": "medsft.loss", "steps": "medsft.train"},
    {"attention": "medsft.train.cpu_step.attention", "backend": "medsft.train.backend",
     "labels": "medsft.train.labels", "loss": "medsft.train.cpu_step.loss", "steps": "medsft.train.cpu_step"},
]  # fmt: skip


def worker(tree: Path, rows_file: Path | None, loss_file: Path | None, batches: int, size: int) -> None:
    """One tree's model and steps; reads "trl I" / "medsft I" / "quit" on stdin, answers one JSON line each."""
    import torch

    # The modules moved over time (medsft/loss.py became medsft/train/cpu_step/loss.py): each tree's own place.
    layout = TREE_LAYOUTS[0] if (tree / "medsft" / "loss.py").is_file() else TREE_LAYOUTS[1]
    if loss_file is not None:  # this worker's loss module is another version of the file
        importlib.import_module(layout["attention"])  # the loss file imports these from this tree
        importlib.import_module(layout["labels"])
        spec = importlib.util.spec_from_file_location(layout["loss"], loss_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[layout["loss"]] = module
        spec.loader.exec_module(module)
        if not hasattr(module, "release_workspace"):  # older loss files keep nothing between steps
            module.release_workspace = lambda: None

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    import medsft
    from medsft.config import build_config
    from medsft.data.synthetic import generate_synthetic

    packed_attention = importlib.import_module(layout["attention"]).packed_attention
    select_backend = importlib.import_module(layout["backend"]).select_backend
    labels = importlib.import_module(layout["labels"])
    IGNORE_INDEX, tokenize_conversation = labels.IGNORE_INDEX, labels.tokenize_conversation  # noqa: N806
    sparse_head_loss = importlib.import_module(layout["loss"]).sparse_head_loss
    pack_examples = importlib.import_module(layout["steps"]).pack_examples

    assert Path(medsft.__file__).resolve().is_relative_to(tree.resolve()), (medsft.__file__, tree)
    sys.path.insert(0, str(HERE))
    from train_step import step_flops  # this file's own FLOP count, the same for every tree

    torch.manual_seed(0)
    config = build_config({"model": "embedded", "lora_r": 16, "lora_alpha": 32, "lora_target": "all-linear"})
    backend = select_backend("transformers")
    model, tokenizer = backend.load(config)
    model = backend.add_lora(model, config)
    if rows_file is not None and rows_file.is_file():
        rows = json.loads(rows_file.read_text())
    else:
        rows = [tokenize_conversation(tokenizer, case["messages"], 512) for case in generate_synthetic(64, seed=0)]
        rows = [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in rows]
        if rows_file is not None:  # the driver's --rows-of: this tree's rows, for every worker
            rows_file.write_text(json.dumps(rows))
            return
    chosen = [rows[i * size : (i + 1) * size] for i in range(batches)]
    trl_args = SFTConfig(output_dir="/tmp/medsft-bench-trl", use_cpu=True, bf16=False, gradient_checkpointing=False,
                         per_device_train_batch_size=size, report_to=[])  # fmt: skip
    trainer = SFTTrainer(model=model, args=trl_args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def trl_step(batch: list[dict]) -> torch.Tensor:
        inputs = trainer.data_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in batch])
        return trainer.compute_loss(model, inputs)

    def medsft_step(batch: list[dict]) -> torch.Tensor:
        with packed_attention(model):
            return sparse_head_loss(model, pack_examples(batch)).loss

    info = []
    for index, batch in enumerate(chosen):
        lengths = [len(r["input_ids"]) for r in batch]
        labelled = sum(sum(1 for t in r["labels"][1:] if t != IGNORE_INDEX) for r in batch)
        gap = 0.0
        if index == 0:  # the two losses agree on the same batch and weights, in every tree (first batch: enough)
            with torch.no_grad():
                gap = abs(trl_step(batch).item() - medsft_step(batch).item())
        padded = [max(lengths)] * len(lengths)  # TRL pads to the longest row and scores all but each row's last
        flops = {
            "medsft": step_flops(model, lengths, labelled),
            "trl": step_flops(model, padded, sum(padded) - len(padded)),
        }
        info.append({"tokens": sum(lengths), "flops": flops, "loss_gap": gap})
    print(json.dumps({"ready": info}), flush=True)
    steps = {"trl": trl_step, "medsft": medsft_step}
    for line in sys.stdin:
        what, index = line.split()
        if what == "quit":
            return
        optimizer.zero_grad(set_to_none=True)
        started = time.perf_counter()
        loss = steps[what](chosen[int(index)])
        loss.backward()
        optimizer.step()
        print(json.dumps({"seconds": time.perf_counter() - started, "loss": loss.item()}), flush=True)


def matmul_gflops(size: int, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="*", type=Path)
    parser.add_argument("--rows-of", type=Path, help="every worker trains on this tree's synthetic rows")
    parser.add_argument("--rows-from", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--loss-file", action="append", default=[], help="NAME=PATH: a worker on the first tree "
                        "with this medsft/loss.py")  # fmt: skip
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--trl-once", action="store_true", help="with --rows-of: time TRL's step in the first "
                        "worker only (its code and rows are the same in every worker) and rate every tree against it")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between steps (spinning threads settle)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-loss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.rows_from, args.worker_loss, args.batches, args.batch_size)
        return

    if args.rows_of:
        args.rows_from = Path(f"/tmp/medsft-compare-rows-{os.getpid()}.json")
        env = {**os.environ, "PYTHONPATH": str(args.rows_of.resolve())}
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(args.rows_of.resolve()),
                        "--rows-from", str(args.rows_from)], cwd=args.rows_of, env=env, check=True)  # fmt: skip
    entries = [(tree.name, tree, None) for tree in args.trees]
    for spec in args.loss_file:
        name, path = spec.split("=", 1)
        entries.append((name, args.trees[0], Path(path).resolve()))
    procs = {}
    for name, tree, loss in entries:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree.resolve()),
                   "--batches", str(args.batches), "--batch-size", str(args.batch_size)]  # fmt: skip
        if args.rows_from:
            command += ["--rows-from", str(args.rows_from.resolve())]
        if loss:
            command += ["--worker-loss", str(loss)]
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        procs[name] = subprocess.Popen(command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, bufsize=1)  # fmt: skip
    info = {}
    for name, proc in procs.items():  # each loads in turn (loading in parallel would only crowd the two cores)
        for line in proc.stdout:
            if line.startswith("{"):
                info[name] = json.loads(line)["ready"]
                break
        else:
            sys.exit(f"worker {name} ended before it was ready")
        print(f"{name}: ready, max loss gap trl/medsft {max(b['loss_gap'] for b in info[name]):.2e}", flush=True)

    seconds = {(name, step): [] for name in procs for step in ("trl", "medsft")}
    first = next(iter(procs))
    peaks = [matmul_gflops(1024), matmul_gflops(2048)]
    order = random.Random(0)
    for round_ in range(args.rounds):
        for batch in range(args.batches):
            names = list(procs)
            order.shuffle(names)
            for step in ("trl", "medsft"):
                for name in names:
                    if step == "trl" and args.trl_once and name != first:
                        continue
                    time.sleep(args.pause)
                    procs[name].stdin.write(f"{step} {batch}\n")
                    procs[name].stdin.flush()
                    seconds[name, step].append(json.loads(procs[name].stdout.readline())["seconds"])
                    print(f"  round {round_ + 1} batch {batch} {name} {step}: {seconds[name, step][-1]:.2f} s")
        peaks += [matmul_gflops(1024), matmul_gflops(2048)]
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    for proc in procs.values():
        proc.stdin.write("quit 0\n")
        proc.stdin.flush()
        proc.wait()

    peak = max(peaks)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s; {args.rounds} rounds x {args.batches} batches of {args.batch_size}")
    print(f"{'tree':<22}{'real tokens':>12}{'trl tok/s':>10}{'medsft tok/s':>13}{'ratio':>7}{'MFU':>6}{'trl MFU':>8}")
    result = {}
    for name in procs:
        if args.trl_once:  # the same rows and the same TRL code everywhere: one TRL timing serves all
            seconds[name, "trl"] = seconds[first, "trl"]
        batches = info[name] * args.rounds
        tokens = sum(b["tokens"] for b in batches)
        rate = {step: tokens / sum(seconds[name, step]) for step in ("trl", "medsft")}
        mfu = {
            step: statistics.median(
                b["flops"][step] / t / 1e9 for b, t in zip(batches, seconds[name, step], strict=True)
            )
            / peak
            for step in ("trl", "medsft")
        }
        result[name] = {"rate": rate, "mfu": mfu, "ratio": rate["medsft"] / rate["trl"], "seconds": {
            step: seconds[name, step] for step in ("trl", "medsft")}}  # fmt: skip
        print(f"{name:<22}{tokens // args.rounds:>12}{rate['trl']:>10.1f}{rate['medsft']:>13.1f}"
              f"{rate['medsft'] / rate['trl']:>6.2f}x{mfu['medsft']:>6.0%}{mfu['trl']:>8.0%}")  # fmt: skip
    print(json.dumps({"peak": peak, "result": result}))


if __name__ == "__main__":
    main()
