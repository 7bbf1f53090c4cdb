"""Label accuracy by training step on a run's synthetic *validation* cases (issue #23, item 4: is more of the same
data the lever for the label goal?).

    .venv/bin/python scripts/synthetic_curve.py outputs/synthetic-only/seed-3407

Every saved checkpoint replies greedily to the run's held-out synthetic cases (`data/validation.jsonl`), scored as
the test sets are (`medsft.evaluate.synthetic`). The replies are cached in `<run>/synthetic_curve/`, which the
committed run keeps, so the table prints without the checkpoints it leaves out; a new run needs its `checkpoints/`.
For the lab reports it also checks each value the reply compares in its reasoning ("Platelets 654 (150-400) LOW"):
is the flag the one that value and that range give? No test case is read.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from saved_checkpoints import saved_or_cached

from medsft.config import load_config
from medsft.evaluate.synthetic import evaluate_synthetic
from medsft.evaluate.transformers_scorer import HFScorer
from medsft.runs import read_json_lines

COMPARED_VALUE = re.compile(r"([A-Za-z][\w ]*?) (-?[\d.]+) \((-?[\d.]+)-([\d.]+)\) (LOW|HIGH|normal)")


def flag_consistency(replies: list[str]) -> tuple[int, int]:
    """(values whose flag matches the value against the range the reply wrote, values compared) in the replies."""
    right = total = 0
    for reply in replies:
        comparison = re.search(r"Comparison: (.*)", reply)
        for _, value, low, high, flag in COMPARED_VALUE.findall(comparison.group(1) if comparison else ""):
            try:
                value_, low_, high_ = float(value), float(low), float(high)
            except ValueError:  # "1.2.3": not a number the model meant
                continue
            truth = "LOW" if value_ < low_ else "HIGH" if value_ > high_ else "normal"
            right, total = right + (truth == flag), total + 1
    return right, total


def checkpoint_result(run: Path, checkpoint: Path, cases: list[dict], max_new_tokens: int) -> dict:
    """The checkpoint's scored replies to the validation cases, generated once and cached."""
    cache = run / "synthetic_curve" / f"{checkpoint.name}.json"
    if not cache.exists():
        config = load_config(run / "config.yaml")
        scorer = HFScorer.from_spec(str(checkpoint), name=checkpoint.name, config=config)
        result = evaluate_synthetic(scorer, cases, max_new_tokens=max_new_tokens, seed=config.seed, task="synthetic")
        cache.parent.mkdir(exist_ok=True)
        cache.write_text(json.dumps({"metrics": result.metrics, "breakdown": result.breakdown,
                                     "replies": [q["output"] for q in result.questions]}))  # fmt: skip
    return json.loads(cache.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder with checkpoints/ and data/validation.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=224, help="as the run's evaluation (default 224)")
    args = parser.parse_args()
    cases = [row for row in read_json_lines(args.run / "data/validation.jsonl") if row.get("source") == "synthetic"]
    checkpoints = saved_or_cached(args.run, args.run / "synthetic_curve")  # the committed run: from the cache alone
    if not checkpoints:
        raise SystemExit(f"{args.run}: no checkpoints/ (the committed copy leaves them out; rerun the sweep)")
    domains = sorted({case["meta"]["domain"] for case in cases})
    print(f"{len(cases)} validation cases of {args.run}: " + ", ".join(
        f"{d} {sum(c['meta']['domain'] == d for c in cases)}" for d in domains))  # fmt: skip
    print("| step | format | label accuracy | " + " | ".join(domains) + " | lab values flagged right |")
    print("| --- " * (4 + len(domains)) + "|")
    for checkpoint in checkpoints:
        result = checkpoint_result(args.run, checkpoint, cases, args.max_new_tokens)
        metrics, breakdown = result["metrics"], result["breakdown"]
        lab = [reply for reply, case in zip(result["replies"], cases, strict=True)
               if case["meta"]["domain"] == "lab_interpretation"]  # fmt: skip
        right, total = flag_consistency(lab)
        per_domain = " | ".join(f"{breakdown[d]['acc']:.2f}" for d in domains)
        print(f"| {checkpoint.name.split('-')[1]} | {metrics['format_compliance']:.2f} | {metrics['acc']:.2f} | "
              f"{per_domain} | {right}/{total} |")  # fmt: skip


if __name__ == "__main__":
    main()
