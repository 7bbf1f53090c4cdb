"""A run's numbers (`results.json`) from its stages' JSON files, never notebook text; the sweep's summary."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsft.config import selection_task
from medsft.runs import Run, read_json, read_json_lines, write_json, write_text_atomic


def run_results(run: Run | str | Path) -> dict[str, Any]:
    """One run's numbers from its stages' JSON files, with the config as the run wrote it (an older medsft's own)."""
    run = run if isinstance(run, Run) else Run.open(run)
    manifest = run.manifest()
    out: dict[str, Any] = {"run_id": run.run_dir.name, "status": manifest.get("status"), "config": run.values,
                           "timings": manifest.get("timings", {})}  # fmt: skip
    data = run.read_json("data_report.json")
    if data:
        out["data"] = {k: data[k] for k in ("train_rows", "validation_rows", "removed", "tokens", "train_sha256")}
    train = run.read_json("train_results.json")
    task = selection_task(run.values.get("select_checkpoint_by", "eval_loss"))
    if train and task:
        out["validation_constant"] = validation_constant(run.run_dir / "data", task)
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
        baselines = comparison.get("baselines") or {}
        if baselines.get("constant"):  # the best constant answer (always-"yes", the most frequent letter)
            entry["constant"] = {key: baselines["constant"][key] for key in ("answer", "acc")}
        for pair in baselines.get("vs_constant", []):
            if roles.get(pair["model"]) == "tuned":
                entry["vs_constant"], entry["vs_constant_ci"] = pair["diff"], pair["diff_ci"]
        tasks[task] = entry
    return tasks


def validation_constant(data_dir: Path, task: str) -> dict[str, Any] | None:
    """The training rows' most frequent answer of `task` and its validation accuracy: the bar learning must clear."""
    paths = [data_dir / f"{split}.jsonl" for split in ("train", "validation")]
    if not all(path.is_file() for path in paths):
        return None
    train, validation = (
        [(row.get("meta") or {}).get("answer") for row in read_json_lines(path) if row.get("source") == task]
        for path in paths
    )
    if not train or not validation:
        return None
    constant = Counter(train).most_common(1)[0][0]
    return {"answer": constant, "n": len(validation), "acc": validation.count(constant) / len(validation)}


def replicate_groups(runs: Sequence[dict[str, Any]], over: str) -> dict[str, list[dict[str, Any]]]:
    """Runs differing only in `over` (seeds, folds), grouped by the other varying fields as JSON ("": none vary)."""
    keys = sorted({k for run in runs for k in run["config"]} - {"run_id", over})
    varied = [k for k in keys if len({json.dumps(run["config"].get(k), sort_keys=True) for run in runs}) > 1]
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        label = json.dumps({k: run["config"].get(k) for k in varied}, sort_keys=True) if varied else ""
        groups.setdefault(label, []).append(run)
    return groups


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def seed_frame(runs: Sequence[dict[str, Any]], over: str = "seed") -> Any:
    """Per replicate group and task: tuned accuracy and gains over base and constant (docs/beating-the-prior.md)."""
    import pandas as pd

    rows = []
    for label, group in replicate_groups(runs, over).items():
        for task in sorted({task for run in group for task in run.get("evaluate", {})}):
            entries = [
                (run["config"].get(over), run["evaluate"][task]) for run in group if task in run.get("evaluate", {})
            ]
            row: dict[str, Any] = {"group": label, "task": task, "runs": len(entries), over: [v for v, _ in entries]}
            for name, key in (("tuned", "tuned.acc"), ("vs_base", "diff"), ("vs_constant", "vs_constant")):
                found = [(nested(e, key), nested(e, f"{key}_ci")) for _, e in entries if nested(e, key) is not None]
                if not found:
                    continue
                row[f"{name}_mean"], row[f"{name}_sd"] = mean_sd([v for v, _ in found])
                row[f"{name}_per_run"] = [round(v, 4) for v, _ in found]
                row[f"{name}_ci_per_run"] = [[round(x, 4) for x in ci] if ci else None for _, ci in found]
            constants = {nested(e, "constant.acc") for _, e in entries} - {None}
            row["constant_acc"] = constants.pop() if len(constants) == 1 else None  # same split, same constant
            rows.append(row)
    return pd.DataFrame(rows)


def cross_validation_frame(runs: Sequence[dict[str, Any]], over: str = "validation_fold") -> Any:
    """Per group of folds and step: validation accuracy, mean ± sd, beside the constant answer's on the same rows."""
    import pandas as pd

    rows = []
    for label, group in replicate_groups(runs, over).items():
        by_step: dict[int, list[float]] = {}
        for run in group:
            for point in run.get("train", {}).get("validation_accuracy", []):
                by_step.setdefault(int(point["step"]), []).append(next(v for k, v in point.items() if k != "step"))
        constants = [run["validation_constant"]["acc"] for run in group if run.get("validation_constant")]
        for step, values in sorted(by_step.items()):
            row: dict[str, Any] = {"group": label, "step": step, "folds": len(values)}
            row["val_acc_mean"], row["val_acc_sd"] = mean_sd(values)
            row["val_acc_per_fold"] = [round(v, 4) for v in values]
            row["constant_acc_mean"] = statistics.fmean(constants) if constants else None
            rows.append(row)
    return pd.DataFrame(rows)


def replicate_tables(folder: str | Path, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`seeds` (`seed_frame`) and `folds` (`cross_validation_frame`) when the sweep's grid varies their field."""
    grid = (read_json(Path(folder) / "sweep.json") or {}).get("grid", {})
    frames = {"seeds": ("seed", seed_frame), "folds": ("validation_fold", cross_validation_frame)}
    return {name: make(runs) for name, (over, make) in frames.items() if over in grid}


def nested(entry: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        entry = entry.get(key) if isinstance(entry, dict) else None
    return entry


def summary_frame(runs: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> Any:
    """One row per run: the config `fields` (default: those that differ between runs), status, numbers, sizes."""
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
    """Every run under `folder` in one table, saved beside them as `summary.json` and `summary.csv`."""
    folder = Path(folder)
    folders = sorted(p for p in folder.iterdir() if Run.is_run_folder(p)) if folder.is_dir() else []
    runs = [run_results(run) for run in folders]
    sweep = read_json(folder / "sweep.json")
    frame = summary_frame(runs, list(sweep["grid"]) if sweep else None)
    tables = {"table": frame, **replicate_tables(folder, runs)}
    summary = {"runs": runs, **{name: json.loads(table.to_json(orient="records")) for name, table in tables.items()}}
    write_json(folder / "summary.json", summary, overwrite=True)  # redrawn on every call
    write_text_atomic(folder / "summary.csv", frame.to_csv(index=False))
    return runs, frame
