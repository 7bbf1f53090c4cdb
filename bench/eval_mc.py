"""Benchmark: medsft's multiple-choice scorer vs lm-evaluation-harness on the nine tasks' real items, same model.

lm-eval reads the benchmark file's own rows, converted to its task's layout with every text untouched
(`medsft.evaluate.harness.raw_rows`, each task's `raw_rows`), through its own task config (`medqa_4options`,
`pubmedqa`, `medmcqa`, `mmlu_<subject>`, included as is, only the data set pointed at the local file); medsft
reads the same file through its own task module (`medsft.tasks`). So a loader that altered a question would
show as a difference here. Both models
are loaded and warmed up before any clock starts; a clock covers one whole evaluation (task and data
set-up, tokenisation, forwards, metrics). With `--repeats` above 1 the two alternate and each one's best
run counts, since the CPU is shared. Prints, per task: questions/s of each, the ratio, the number of
questions whose predicted answer differs (must be 0) and the largest log-likelihood difference.

    .venv/bin/python bench/eval_mc.py                       # all nine tasks, every item
    .venv/bin/python bench/eval_mc.py --task medqa -n 100   # the first 100 MedQA test questions
    .venv/bin/python bench/eval_mc.py --task medqa,pubmedqa -n 200 --view chat   # lm-eval --apply_chat_template
    .venv/bin/python bench/eval_mc.py --task mmlu --num-fewshot 5                # MMLU 5-shot (first_n dev rows)
    .venv/bin/python bench/eval_mc.py --task medqa --data my_medqa.jsonl
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads spin on a shared CPU otherwise
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the data is local; never reach for the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def warm_up(model: Any) -> None:
    """One short forward, so one-time kernel set-up is not charged to whichever runs first."""
    import torch

    with torch.inference_mode():
        model(input_ids=torch.tensor([[2, 7925, 236787]]))


def time_medsft(scorer: Any, task: str, args: argparse.Namespace) -> tuple[float, Any]:
    """medsft's whole evaluation: read the file, build prompts, tokenise, score, metrics with intervals."""
    from medsft.evaluate import evaluate_multiple_choice
    from medsft.tasks import load_items

    started = time.perf_counter()
    items = load_items(task, args.n, path=args.data)
    result = evaluate_multiple_choice(scorer, task, items, num_fewshot=args.num_fewshot, view=args.view)
    return time.perf_counter() - started, result


def time_lm_eval(lm: Any, task: str, folder: Path, args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """lm-eval's whole evaluation: index the task, load the data set, build requests, score, metrics."""
    from medsft.evaluate.harness import run_local_task

    started = time.perf_counter()
    samples = run_local_task(lm, task, folder, args.num_fewshot, chat=args.view == "chat")
    return time.perf_counter() - started, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="suite", help="tasks, comma-separated, or a suite: suite (all nine), mmlu")
    parser.add_argument("--data", help="one task's data file instead of the carried split")
    parser.add_argument("--num-fewshot", type=int, default=0, help="k few-shot examples (MMLU: the first k dev rows)")
    parser.add_argument("--view", choices=("raw", "chat"), default="raw", help="chat: lm-eval --apply_chat_template")
    parser.add_argument("-n", type=int, help="only the first N test questions (default: all)")
    parser.add_argument("--batch-size", type=int, default=8, help="medsft's batch size (and lm-eval's by default)")
    parser.add_argument("--lm-eval-batch-size", type=int, help="lm-eval's batch_size, if not --batch-size")
    parser.add_argument("--model", default="embedded", help="model spec (a checkpoint folder, not an adapter)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each, alternating; the best counts")
    args = parser.parse_args(argv)
    from medsft.tasks import expand_tasks

    tasks = expand_tasks(args.task.split(","))
    if len(tasks) > 1 and args.data:
        parser.error("--data names one file: give one --task with it")

    from lm_eval.models.huggingface import HFLM

    from medsft.evaluate import HFScorer
    from medsft.models import resolve_model

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    print(f"load average at start: {load_average()}")
    location = resolve_model(args.model).location
    # Both models loaded and warmed up before any clock starts; the same checkpoint folder for both.
    scorer = HFScorer.from_spec(args.model, batch_size=args.batch_size)  # medsft's backend loader, fp32 on CPU
    their_batch = args.lm_eval_batch_size or args.batch_size
    lm = HFLM(pretrained=location, device="cpu", batch_size=their_batch)  # what model="hf" builds
    warm_up(scorer.model)
    warm_up(lm.model)
    print(f"batch size medsft {args.batch_size} / lm-eval {their_batch}, torch threads {threads()}")
    rows = [bench_task(task, scorer, lm, args) for task in tasks]
    print(f"load average at end: {load_average()}")
    print("\n| task | n | medsft q/s | lm-eval q/s | ratio | differing predictions | max abs loglik diff | acc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['task']} | {row['n']} | {row['ours_qps']:.2f} | {row['theirs_qps']:.2f} | "
            f"{row['ratio']:.2f} | {row['differing']} | {row['max_delta']:.1e} | {row['acc']:.4f} |"
        )
    return 1 if any(row["differing"] or row["max_delta"] > 1e-3 for row in rows) else 0


def bench_task(task: str, scorer: Any, lm: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Time both on one task and print the comparison; the row for the summary table."""
    from medsft.evaluate.harness import raw_rows, sample_loglikelihoods, write_local_task
    from medsft.tasks import load_items

    items = load_items(task, args.n, path=args.data)
    times: dict[str, list[float]] = {"medsft": [], "lm-eval": []}
    with tempfile.TemporaryDirectory(prefix="medsft-bench-") as tmp:
        folder = Path(tmp)
        name = write_local_task(task, raw_rows(task, items, args.data), folder)
        # Alternate the two, so a neighbour's load on the shared CPU hits both alike; keep each one's best.
        for repeat in range(args.repeats):
            order = ("medsft", "lm-eval") if repeat % 2 == 0 else ("lm-eval", "medsft")
            for who in order:
                if who == "medsft":
                    seconds, result = time_medsft(scorer, task, args)
                else:
                    seconds, samples = time_lm_eval(lm, name, folder, args)
                times[who].append(seconds)
    ours_s, theirs_s = min(times["medsft"]), min(times["lm-eval"])

    n = len(items)
    if len(samples) != n or result.n != n:
        raise SystemExit(f"{task}: question counts differ: medsft {result.n}, lm-eval {len(samples)}, file {n}")
    differing = 0
    max_delta = 0.0
    for record, sample, item in zip(result.questions, samples, items, strict=True):
        lls = sample_loglikelihoods(sample)
        their_pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
        differing += record["pred"] != their_pred
        max_delta = max(max_delta, *(abs(a - b) for a, b in zip(record["scores"], lls, strict=True)))
        target = sample["target"]
        gold = item.choices.index(target) if isinstance(target, str) and target in item.choices else target
        gold = "ABCD".index(gold) if isinstance(gold, str) else gold
        if gold != record["gold"]:
            raise SystemExit(f"{task}: gold answers differ on doc {sample['doc_id']}: {gold} vs {record['gold']}")
    their_acc = sum(s["acc"] for s in samples) / n
    ours_qps, theirs_qps = n / ours_s, n / theirs_s
    print(f"== {task} ({args.view}, {args.num_fewshot}-shot): {n} questions, best of {args.repeats} run(s) each")
    runs = ", ".join(f"{t:.1f}" for t in times["medsft"])
    print(f"medsft : {ours_s:7.1f} s  {ours_qps:6.2f} q/s  acc {result.metrics['acc']:.4f}  (runs: {runs} s)")
    runs = ", ".join(f"{t:.1f}" for t in times["lm-eval"])
    print(f"lm-eval: {theirs_s:7.1f} s  {theirs_qps:6.2f} q/s  acc {their_acc:.4f}  (runs: {runs} s)")
    print(f"ratio (medsft / lm-eval q/s): {ours_qps / theirs_qps:.2f}")
    print(f"differing predictions: {differing}")
    print(f"max |loglik difference|: {max_delta:.2e}", flush=True)
    acc = result.metrics["acc"]
    ratio = ours_qps / theirs_qps
    return {"task": task, "n": n, "ours_qps": ours_qps, "theirs_qps": theirs_qps, "ratio": ratio,
            "differing": differing, "max_delta": max_delta, "acc": acc}  # fmt: skip


def threads() -> int:
    import torch

    return torch.get_num_threads()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
