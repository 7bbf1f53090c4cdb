"""Benchmark: medsft's MedQA scorer vs lm-evaluation-harness on the same local file and the same model.

Both read one local MedQA file in lm-eval's `GBaker/MedQA-USMLE-4-options-hf` layout (`sent1`,
`ending0..3`, `label`): lm-eval through its own `medqa_4options` task config (included as is, only the
dataset pointed at the local file), medsft through `medsft.data.load_medqa_eval`. Both models are loaded
and warmed up before any clock starts; a clock covers one whole evaluation of the N questions (task and
data set-up, tokenisation, forwards, metrics). The two run alternately `--repeats` times and each one's
best run counts, since the CPU is shared. Prints questions/s of each, the ratio, the number of questions
whose predicted answer differs (must be 0) and the largest log-likelihood difference.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/eval_mc.py -n 60
    .venv/bin/python bench/eval_mc.py --data my_medqa.jsonl -n 100 --batch-size 8
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


def time_medsft(scorer: Any, data_file: Path) -> tuple[float, Any]:
    """medsft's whole evaluation: read the file, build prompts, tokenise, score, metrics with bootstrap CIs."""
    from medsft.data import load_medqa_eval
    from medsft.evaluate import evaluate_multiple_choice

    started = time.perf_counter()
    result = evaluate_multiple_choice(scorer, "medqa", load_medqa_eval(path=str(data_file)))
    return time.perf_counter() - started, result


def time_lm_eval(lm: Any, task: str, folder: Path) -> tuple[float, list[dict[str, Any]]]:
    """lm-eval's whole evaluation: index the task, load the data set, build requests, score, metrics."""
    from medsft.evaluate.harness import run_local_task

    started = time.perf_counter()
    samples = run_local_task(lm, task, folder)
    return time.perf_counter() - started, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", help="MedQA JSONL (either schema); default: medsft's bundled test then train samples (60)"
    )
    parser.add_argument("-n", type=int, default=40, help="questions (the first N of the file)")
    parser.add_argument("--batch-size", type=int, default=8, help="medsft's batch size (and lm-eval's by default)")
    parser.add_argument("--lm-eval-batch-size", type=int, help="lm-eval's batch_size, if not --batch-size")
    parser.add_argument("--model", default="embedded", help="model spec (a checkpoint folder, not an adapter)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each, alternating; the best counts")
    args = parser.parse_args(argv)

    from lm_eval.models.huggingface import HFLM

    from medsft.data import load_medqa_eval
    from medsft.evaluate import HFScorer
    from medsft.evaluate.harness import sample_loglikelihoods, write_local_task
    from medsft.models import resolve_model

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    print(f"load average at start: {load_average()}")
    location = resolve_model(args.model).location
    if args.data:
        items = load_medqa_eval(path=args.data, limit=args.n)
    else:  # a speed and parity check, not an accuracy claim, so the train sample may top up the 30 test rows
        items = (load_medqa_eval(split="test") + load_medqa_eval(split="train"))[: args.n]
    if len(items) < args.n:
        print(f"note: the file has {len(items)} questions, fewer than -n {args.n}", file=sys.stderr)
    # Both models loaded and warmed up before any clock starts; the same checkpoint folder for both.
    scorer = HFScorer.from_spec(args.model, batch_size=args.batch_size)  # medsft's backend loader, fp32 on CPU
    their_batch = args.lm_eval_batch_size or args.batch_size
    lm = HFLM(pretrained=location, device="cpu", batch_size=their_batch)  # what model="hf" builds
    warm_up(scorer.model)
    warm_up(lm.model)
    times: dict[str, list[float]] = {"medsft": [], "lm-eval": []}
    with tempfile.TemporaryDirectory(prefix="medsft-bench-") as tmp:
        folder = Path(tmp)
        # One local file in lm-eval's layout (and its task YAML); medsft reads it through its own loader.
        task = write_local_task("medqa", items, folder)
        data_file = folder / f"{task}.jsonl"
        # Alternate the two, so a neighbour's load on the shared CPU hits both alike; keep each one's best.
        for repeat in range(args.repeats):
            order = ("medsft", "lm-eval") if repeat % 2 == 0 else ("lm-eval", "medsft")
            for name in order:
                if name == "medsft":
                    seconds, result = time_medsft(scorer, data_file)
                else:
                    seconds, samples = time_lm_eval(lm, task, folder)
                times[name].append(seconds)
    ours_s, theirs_s = min(times["medsft"]), min(times["lm-eval"])

    n = len(items)
    if len(samples) != n or result.n != n:
        raise SystemExit(f"question counts differ: medsft {result.n}, lm-eval {len(samples)}, file {n}")
    theirs_lls = [sample_loglikelihoods(s) for s in samples]
    differing = 0
    max_delta = 0.0
    for record, lls, sample in zip(result.questions, theirs_lls, samples, strict=True):
        their_pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
        differing += record["pred"] != their_pred
        max_delta = max(max_delta, *(abs(a - b) for a, b in zip(record["scores"], lls, strict=True)))
        if sample["target"] != record["gold"]:
            raise SystemExit(f"gold answers differ on doc {sample['doc_id']}: {sample['target']} vs {record['gold']}")
    their_acc = sum(s["acc"] for s in samples) / n
    ours_qps, theirs_qps = n / ours_s, n / theirs_s
    print(
        f"questions: {n}, batch size medsft {args.batch_size} / lm-eval {their_batch}, torch threads {threads()}, "
        f"best of {args.repeats} runs each"
    )
    print(f"load average at end: {load_average()}")
    runs = ", ".join(f"{t:.1f}" for t in times["medsft"])
    print(f"medsft : {ours_s:7.1f} s  {ours_qps:6.2f} q/s  acc {result.metrics['acc']:.3f}  (runs: {runs} s)")
    runs = ", ".join(f"{t:.1f}" for t in times["lm-eval"])
    print(f"lm-eval: {theirs_s:7.1f} s  {theirs_qps:6.2f} q/s  acc {their_acc:.3f}  (runs: {runs} s)")
    print(f"ratio (medsft / lm-eval q/s): {ours_qps / theirs_qps:.2f}")
    print(f"differing predictions: {differing}")
    print(f"max |loglik difference|: {max_delta:.2e}")
    return 0 if differing == 0 else 1


def threads() -> int:
    import torch

    return torch.get_num_threads()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
