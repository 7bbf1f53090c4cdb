"""Benchmark: medsft's MedQA/PubMedQA scorer vs lm-evaluation-harness on the real test sets, same model.

lm-eval reads the benchmark file's own rows, converted to its task's layout with every text untouched
(`medsft.evaluate.harness.raw_lm_eval_row`), through its own `medqa_4options` / `pubmedqa` task config
(included as is, only the data set pointed at the local file); medsft reads the same file through its own
loader (`medsft.data`). So a loader that altered a question would show as a difference here. Both models
are loaded and warmed up before any clock starts; a clock covers one whole evaluation (task and data
set-up, tokenisation, forwards, metrics). With `--repeats` above 1 the two alternate and each one's best
run counts, since the CPU is shared. Prints, per task: questions/s of each, the ratio, the number of
questions whose predicted answer differs (must be 0) and the largest log-likelihood difference.

    .venv/bin/python bench/eval_mc.py                      # MedQA test (1,273) and PubMedQA test (500)
    .venv/bin/python bench/eval_mc.py --task medqa -n 100  # the first 100 MedQA test questions
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


def time_medsft(scorer: Any, task: str, data: str | None, n: int | None) -> tuple[float, Any]:
    """medsft's whole evaluation: read the file, build prompts, tokenise, score, metrics with intervals."""
    from medsft.evaluate import evaluate_multiple_choice

    started = time.perf_counter()
    result = evaluate_multiple_choice(scorer, task, load_items(task, data, n))
    return time.perf_counter() - started, result


def load_items(task: str, data: str | None, n: int | None) -> list[Any]:
    from medsft.evaluate.tasks import load_eval_items

    return load_eval_items(task, n, path=data)


def raw_rows(task: str, items: list[Any], data: str | None) -> list[dict[str, Any]]:
    """The file's own rows behind medsft's items, in lm-eval's layout with the text untouched."""
    import json

    from medsft.data.loaders import bundled_path
    from medsft.evaluate.harness import raw_lm_eval_row

    if task == "medqa":
        path = Path(data) if data else bundled_path("medqa-test")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines[: len(items)]]
    else:
        path = Path(data) if data else bundled_path("pubmedqa")
        by_pmid = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(by_pmid, list):  # the hub's pqa_labeled layout, as a JSON array
            by_pmid = {str(row["pubid"]): row for row in by_pmid}
        rows = [by_pmid[item.id.rsplit(":", 1)[1]] for item in items]
    return [raw_lm_eval_row(task, row) for row in rows]


def time_lm_eval(lm: Any, task: str, folder: Path) -> tuple[float, list[dict[str, Any]]]:
    """lm-eval's whole evaluation: index the task, load the data set, build requests, score, metrics."""
    from medsft.evaluate.harness import run_local_task

    started = time.perf_counter()
    samples = run_local_task(lm, task, folder)
    return time.perf_counter() - started, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("medqa", "pubmedqa", "both"), default="both")
    parser.add_argument("--data", help="a MedQA JSONL / PubMedQA ori_pqal.json; default: the carried test sets")
    parser.add_argument("-n", type=int, help="only the first N test questions (default: all)")
    parser.add_argument("--batch-size", type=int, default=8, help="medsft's batch size (and lm-eval's by default)")
    parser.add_argument("--lm-eval-batch-size", type=int, help="lm-eval's batch_size, if not --batch-size")
    parser.add_argument("--model", default="embedded", help="model spec (a checkpoint folder, not an adapter)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each, alternating; the best counts")
    args = parser.parse_args(argv)
    if args.task == "both" and args.data:
        parser.error("--data names one file: give --task medqa or --task pubmedqa with it")

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
    failed = False
    for task in ("medqa", "pubmedqa") if args.task == "both" else (args.task,):
        failed |= not bench_task(task, scorer, lm, args)
    print(f"load average at end: {load_average()}")
    return 1 if failed else 0


def bench_task(task: str, scorer: Any, lm: Any, args: argparse.Namespace) -> bool:
    """Time both on one task and print the comparison; True when no prediction differs."""
    from medsft.evaluate.harness import sample_loglikelihoods, write_local_task

    items = load_items(task, args.data, args.n)
    times: dict[str, list[float]] = {"medsft": [], "lm-eval": []}
    with tempfile.TemporaryDirectory(prefix="medsft-bench-") as tmp:
        folder = Path(tmp)
        name = write_local_task(task, raw_rows(task, items, args.data), folder)
        # Alternate the two, so a neighbour's load on the shared CPU hits both alike; keep each one's best.
        for repeat in range(args.repeats):
            order = ("medsft", "lm-eval") if repeat % 2 == 0 else ("lm-eval", "medsft")
            for who in order:
                if who == "medsft":
                    seconds, result = time_medsft(scorer, task, args.data, args.n)
                else:
                    seconds, samples = time_lm_eval(lm, name, folder)
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
        gold = item.choices.index(target) if isinstance(target, str) else target
        if gold != record["gold"]:
            raise SystemExit(f"{task}: gold answers differ on doc {sample['doc_id']}: {gold} vs {record['gold']}")
    their_acc = sum(s["acc"] for s in samples) / n
    ours_qps, theirs_qps = n / ours_s, n / theirs_s
    print(f"== {task}: {n} questions, best of {args.repeats} run(s) each")
    runs = ", ".join(f"{t:.1f}" for t in times["medsft"])
    print(f"medsft : {ours_s:7.1f} s  {ours_qps:6.2f} q/s  acc {result.metrics['acc']:.4f}  (runs: {runs} s)")
    runs = ", ".join(f"{t:.1f}" for t in times["lm-eval"])
    print(f"lm-eval: {theirs_s:7.1f} s  {theirs_qps:6.2f} q/s  acc {their_acc:.4f}  (runs: {runs} s)")
    print(f"ratio (medsft / lm-eval q/s): {ours_qps / theirs_qps:.2f}")
    print(f"differing predictions: {differing}")
    print(f"max |loglik difference|: {max_delta:.2e}")
    return differing == 0


def threads() -> int:
    import torch

    return torch.get_num_threads()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
