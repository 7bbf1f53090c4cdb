"""Print README's results tables for one run folder, or for a sweep over training seeds, from JSON files only
(never from notebook text).

    .venv/bin/python scripts/results_table.py outputs/<run-id>
    .venv/bin/python scripts/results_table.py outputs/seeds-default     # mean ± sd over the seeds

A seed sweep's table comes from its `summary.json` (`seeds`: `medsft.run_summary.seed_frame`).

`results.json` gives each task's base and tuned accuracy with n, Wilson 95% intervals and the paired
difference (bootstrap interval, McNemar p); `eval_results.json` the best constant answer on the same items and
the tuned model's paired difference to it; the synthetic tasks' format compliance comes from the per-model
`eval_synthetic*.json` files beside it. The goals are issues #12's and #23's, measured on the official test splits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from medsft.evaluate.report import ci_text, diff_text

# (task, what, threshold) by the recipe's checkpoint rule, fixed before any run: the default pipeline's goals
# (PubMedQA picks its checkpoint), the MedQA recipe's, and a synthetic-only run's (validation loss; issue 23).
SYNTHETIC_GOALS = (("synthetic", "tuned format compliance", 0.95), ("synthetic", "tuned label accuracy", 0.80))
GOALS = {
    "pubmedqa_accuracy": (
        ("pubmedqa", "tuned accuracy", 0.62),
        ("pubmedqa", "lower end of the gain's 95% interval", 0.0),
        ("pubmedqa", "lower end of tuned − best constant, 95% interval", 0.0),
        *SYNTHETIC_GOALS,
    ),
    "medqa_accuracy": (
        ("medqa", "tuned accuracy", 0.30),
        ("medqa", "lower end of the gain's 95% interval", 0.0),
        ("medqa", "lower end of tuned − best constant, 95% interval", 0.0),
    ),
    "eval_loss": SYNTHETIC_GOALS,
}
# Published Open Medical-LLM Leaderboard rows (lm-eval zero-shot, raw prompt), as cited in issue #22: not
# measured here. Only their MedQA and PubMedQA values were cited.
REFERENCES = {
    "GPT-2 124M (leaderboard)": {"medqa": 0.277, "pubmedqa": 0.454},
    "Apollo-0.5B (leaderboard)": {"medqa": 0.334, "pubmedqa": 0.500},
    "TinyLlama-1.1B (leaderboard)": {"medqa": 0.234, "pubmedqa": 0.614},
}
SUITE = ("medqa", "medmcqa", "pubmedqa", "mmlu_anatomy", "mmlu_clinical_knowledge", "mmlu_college_biology",
         "mmlu_college_medicine", "mmlu_medical_genetics", "mmlu_professional_medicine")


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def compliance(run: Path, model: str, task: str) -> float | None:
    path = run / f"eval_{task}_{model}.json"
    return read(path)["metrics"].get("format_compliance") if path.is_file() else None


def tables(run: Path) -> str:
    if (run / "results.json").is_file():
        results = read(run / "results.json")
    else:  # a run still going (or stopped): the same summary the runner writes when it finishes
        from medsft.run_summary import run_results

        results = run_results(run)
    evaluation = results["evaluate"]
    priors = {task: c.get("baselines") or {} for task, c in read(run / "eval_results.json")["tasks"].items()}
    lines = [
        "| task | n | base | tuned | tuned − base [95% CI] | McNemar p | best constant | tuned − constant [95% CI] "
        "| format compliance base / tuned |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    measured: dict[tuple[str, str], float | None] = {}
    for task, entry in evaluation.items():
        base, tuned = entry["base"], entry.get("tuned")
        cells = [task, str(base["n"]), acc_text(base)]
        if tuned:
            low, high = entry["diff_ci"]
            cells += [acc_text(tuned), diff_text(entry), f"{entry['mcnemar_p']:.2g}"]
            measured[(task, "tuned accuracy")] = tuned["acc"]
            measured[(task, "lower end of the gain's 95% interval")] = low
        else:
            cells += ["—", "—", "—"]
        cells += prior_cells(priors.get(task, {}), tuned["model"] if tuned else None)
        if tuned and priors.get(task, {}).get("vs_constant"):
            measured[(task, "lower end of tuned − best constant, 95% interval")] = next(
                row["diff_ci"][0] for row in priors[task]["vs_constant"] if row["model"] == tuned["model"])
        formats = [compliance(run, row["model"], task) for row in (base, tuned) if row]
        if any(f is not None for f in formats):
            cells.append(" / ".join(f"{f:.2f}" for f in formats if f is not None))
            measured[(task, "tuned format compliance")] = formats[-1]
            measured[(task, "tuned label accuracy")] = tuned["acc"] if tuned else None
        else:
            cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| goal | measured | target | met |", "| --- | --- | --- | --- |"]
    train = results.get("train", {})
    goals = GOALS.get(train.get("selected_by", ""), ())
    for task, what, threshold in [goal for goal in goals if goal[0] in evaluation]:
        value = measured.get((task, what))
        strict = "interval" in what  # an interval above 0, not touching it
        reached = value is not None and (value > threshold if strict else value >= threshold)
        met = "—" if value is None else ("yes" if reached else f"no (short by {threshold - value:.3f})")
        shown = "—" if value is None else f"{value:.3f}"
        sign = ">" if strict else "≥"
        lines.append(f"| {task}: {what} | {shown} | {sign} {threshold:.2f} | {met} |")
    if train.get("validation_accuracy"):
        scores = ", ".join(
            f"step {entry['step']} {value:.3f}"
            for entry in train["validation_accuracy"]
            for key, value in entry.items()
            if key != "step"
        )
        chosen = Path(train["best_checkpoint"]).name if train.get("best_checkpoint") else "the last step"
        lines += ["", f"Adapter: {chosen}, chosen by {train['selected_by']} on the validation rows ({scores}; step 0 "
                  "is the untrained model)."]  # fmt: skip
    lines += ["", reference_table(evaluation)]
    seconds = results.get("timings", {}).get("notebooks", {})
    lines += ["", "Per notebook: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
              + f"; total {sum(seconds.values()) / 60:.1f} min."]  # fmt: skip
    return "\n".join(lines)


def seed_table(folder: Path) -> str:
    """Per setting and task: tuned accuracy and its paired gains over base and over the best constant answer as
    mean ± sd over the seeds, then each seed's tuned accuracy and gain over the constant with its 95% interval."""
    lines = [
        "| task | seeds | tuned, mean ± sd | tuned − base, mean ± sd | best constant | tuned − constant, mean ± sd "
        "| per seed: tuned, tuned − constant [95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in read(folder / "summary.json")["seeds"]:
        per_seed = "; ".join(
            f"{seed}: {tuned:.3f}, {gain:+.3f} {ci_text(ci, '+')}"
            for seed, tuned, gain, ci in zip(row["seed"], row["tuned_per_run"], row.get("vs_constant_per_run") or [],
                                             row.get("vs_constant_ci_per_run") or [], strict=False)
        )  # fmt: skip
        constant = f"{row['constant_acc']:.3f}" if row.get("constant_acc") is not None else "—"
        group = f" ({row['group']})" if row["group"] else ""
        lines.append(f"| {row['task']}{group} | {row['runs']} | {mean_sd_text(row, 'tuned')} | "
                     f"{mean_sd_text(row, 'vs_base', signed=True)} | {constant} | "
                     f"{mean_sd_text(row, 'vs_constant', signed=True)} | {per_seed or '—'} |")  # fmt: skip
    return "\n".join(lines)


def mean_sd_text(row: dict[str, Any], name: str, signed: bool = False) -> str:
    mean, sd = row.get(f"{name}_mean"), row.get(f"{name}_sd")
    if mean is None:
        return "—"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return f"{text} ± {sd:.3f}" if sd is not None else text


def reference_table(evaluation: dict[str, Any]) -> str:
    """The nine tasks (raw view, the leaderboard's number) for this run's base and tuned model beside the cited rows."""
    tasks = [task for task in SUITE if task in evaluation]
    names = [task.removeprefix("mmlu_") for task in tasks]
    lines = ["| model | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(tasks)]
    for name, values in REFERENCES.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[t]:.3f}" if t in values else "—" for t in tasks) + " |")
    for role in ("base", "tuned"):
        if all(role in evaluation[t] for t in tasks):
            values = " | ".join(f"{evaluation[t][role]['acc']:.3f}" for t in tasks)
            lines.append(f"| this run, {role} | {values} |")
    return "\n".join(lines)


def prior_cells(prior: dict[str, Any], tuned: str | None) -> list[str]:
    """The best constant answer with its accuracy on the same items, and the tuned model's paired gain over it."""
    if not prior:
        return ["—", "—"]
    constant = prior["constant"]
    rows = [row for row in prior["vs_constant"] if row["model"] == tuned]
    gain = diff_text(rows[0]) if rows else "—"
    return [f"'{constant['answer']}' {constant['acc']:.3f}", gain]


def acc_text(row: dict[str, Any]) -> str:
    return f"{row['acc']:.3f} {ci_text(row['acc_ci'])}"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    summary = folder / "summary.json"
    print(seed_table(folder) if summary.is_file() and "seeds" in read(summary) else tables(folder))
