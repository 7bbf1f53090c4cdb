"""A run's headline numbers (`results.json`) from the JSON files its stages wrote, never from notebook text, and
the comparison of many runs (the sweep summary)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsft.runs import Run, read_json, write_json, write_text_atomic


def run_results(run: Run | str | Path) -> dict[str, Any]:
    """One run's numbers: status, config (as written: an older medsft's run shows its own), per-notebook seconds,
    data, training, accuracy per task, GGUF sizes."""
    run = run if isinstance(run, Run) else Run.open(run)
    manifest = run.manifest()
    out: dict[str, Any] = {"run_id": run.run_dir.name, "status": manifest.get("status"), "config": run.values,
                           "timings": manifest.get("timings", {})}  # fmt: skip
    data = run.read_json("data_report.json")
    if data:
        out["data"] = {k: data[k] for k in ("train_rows", "validation_rows", "removed", "tokens", "train_sha256")}
    train = run.read_json("train_results.json")
    if train:
        evals = train.get("eval_losses") or []
        out["train"] = {
            "global_step": train["global_step"], "train_loss": train["train_loss"],
            "first_eval_loss": evals[0]["eval_loss"] if evals else None,
            "final_eval_loss": evals[-1]["eval_loss"] if evals else None,
            **{k: train[k] for k in ("tokens_per_second", "runtime_seconds", "peak_memory_gib", "trained_tokens")},
            # what chose the adapter among the checkpoints, and the validation scores it chose on (step 0: untrained)
            "selected_by": train.get("selected_by", "eval_loss"),
            "best_checkpoint": train.get("best_checkpoint"),
            "validation_accuracy": train.get("validation_accuracy", []),
        }  # fmt: skip
    evaluation = run.read_json("eval_results.json")
    if evaluation:
        out["evaluate"] = evaluation_summary(evaluation)
    export = run.read_json("export.json")
    if export and export.get("size_table"):
        out["export"] = {"size_table": export["size_table"]}
    return out


def evaluation_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Per task: base and tuned accuracy with n and interval, and the paired difference (tuned - base)."""
    roles = {name: role for role, name in evaluation["models"].items()}
    tasks = {}
    for task, comparison in evaluation["tasks"].items():
        entry: dict[str, Any] = {}
        for row in comparison["table"]:
            role = roles.get(row["model"], row["model"])
            entry[role] = {"model": row["model"], "n": row["n"], "acc": row["acc"], "acc_ci": row["acc_ci"]}
        for pair in comparison["pairs"]:
            if roles.get(pair["model"]) == "tuned":
                entry["diff"], entry["diff_ci"], entry["mcnemar_p"] = pair["diff"], pair["diff_ci"], pair["mcnemar_p"]
        tasks[task] = entry
    return tasks


def summary_frame(runs: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> Any:
    """One row per run: the config `fields` (by default those whose values differ between runs, what a comparison
    is about), status, training numbers, accuracy per task and GGUF sizes."""
    import pandas as pd

    if fields is None:
        keys = sorted({k for run in runs for k in run["config"]} - {"run_id"})
        fields = [k for k in keys if len({json.dumps(run["config"].get(k), sort_keys=True) for run in runs}) > 1]
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run_id": run["run_id"], "status": run["status"]}
        row.update({k: json.dumps(run["config"].get(k)) if isinstance(run["config"].get(k), (list, dict))
                    else run["config"].get(k) for k in fields})  # fmt: skip
        train = run.get("train", {})
        row.update({
            "steps": train.get("global_step"), "final_eval_loss": train.get("final_eval_loss"),
            "train_seconds": train.get("runtime_seconds"), "tokens_per_second": train.get("tokens_per_second"),
        })  # fmt: skip
        for task, entry in run.get("evaluate", {}).items():
            for role in ("base", "tuned"):
                if role in entry:
                    row[f"{task}_{role}_acc"] = entry[role]["acc"]
                    row[f"{task}_{role}_ci"] = entry[role]["acc_ci"]
        for size in run.get("export", {}).get("size_table", []):
            if size.get("passed", True):  # a file that failed its export check is not a result to compare
                row[f"gguf_{size['quantization']}_mib"] = size.get("file_mib")
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(folder: str | Path) -> tuple[list[dict[str, Any]], Any]:
    """Every run under `folder` in one table (the sweep's grid fields, or whatever differs), saved beside them as
    `summary.json` (each run's results and the table's columns) and `summary.csv`."""
    folder = Path(folder)
    folders = sorted(p for p in folder.iterdir() if Run.is_run_folder(p)) if folder.is_dir() else []
    runs = [run_results(run) for run in folders]
    sweep = read_json(folder / "sweep.json")
    frame = summary_frame(runs, list(sweep["grid"]) if sweep else None)
    table = json.loads(frame.to_json(orient="records"))
    write_json(folder / "summary.json", {"runs": runs, "table": table}, overwrite=True)  # redrawn on every call
    write_text_atomic(folder / "summary.csv", frame.to_csv(index=False))
    return runs, frame
