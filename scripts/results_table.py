"""Print README's results tables for one run folder, from its JSON files only (never from notebook text).

    .venv/bin/python scripts/results_table.py outputs/<run-id>

`results.json` gives each task's base and tuned accuracy with n, Wilson 95% intervals and the paired
difference (bootstrap interval, McNemar p); the synthetic tasks' format compliance comes from the per-model
`eval_synthetic*.json` files beside it. The goals are issue #12's, measured on the official test splits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# (task, what, threshold): the default pipeline's goals, fixed before any run.
GOALS = (
    ("pubmedqa", "tuned accuracy", 0.60),
    ("pubmedqa", "lower end of the gain's 95% interval", 0.0),
    ("synthetic", "tuned format compliance", 0.95),
    ("synthetic", "tuned label accuracy", 0.80),
)


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
    lines = [
        "| task | n | base | tuned | tuned − base [95% CI] | McNemar p | format compliance base / tuned |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    measured: dict[tuple[str, str], float | None] = {}
    for task, entry in evaluation.items():
        base, tuned = entry["base"], entry.get("tuned")
        cells = [task, str(base["n"]), acc_text(base)]
        if tuned:
            low, high = entry["diff_ci"]
            cells += [acc_text(tuned), f"{entry['diff']:+.3f} [{low:+.3f}, {high:+.3f}]", f"{entry['mcnemar_p']:.2g}"]
            measured[(task, "tuned accuracy")] = tuned["acc"]
            measured[(task, "lower end of the gain's 95% interval")] = low
        else:
            cells += ["—", "—", "—"]
        formats = [compliance(run, row["model"], task) for row in (base, tuned) if row]
        if any(f is not None for f in formats):
            cells.append(" / ".join(f"{f:.2f}" for f in formats if f is not None))
            measured[(task, "tuned format compliance")] = formats[-1]
            measured[(task, "tuned label accuracy")] = tuned["acc"] if tuned else None
        else:
            cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| goal | measured | target | met |", "| --- | --- | --- | --- |"]
    for task, what, threshold in GOALS:
        value = measured.get((task, what))
        met = "—" if value is None else ("yes" if value >= threshold else f"no (short by {threshold - value:.3f})")
        shown = "—" if value is None else f"{value:.3f}"
        lines.append(f"| {task}: {what} | {shown} | ≥ {threshold:.2f} | {met} |")
    train = results.get("train", {})
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
    seconds = results.get("timings", {}).get("notebooks", {})
    lines += ["", "Per notebook: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
              + f"; total {sum(seconds.values()) / 60:.1f} min."]  # fmt: skip
    return "\n".join(lines)


def acc_text(row: dict[str, Any]) -> str:
    low, high = row["acc_ci"]
    return f"{row['acc']:.3f} [{low:.3f}, {high:.3f}]"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(tables(Path(sys.argv[1])))
