"""scripts/results_table.py: the goals a run is held to follow its checkpoint rule, and an interval that only
touches 0 does not count as above it."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from script_loader import load_script


def results_table() -> ModuleType:
    return load_script("scripts/results_table.py")


def write_run(folder: Path, task: str, selected_by: str, tuned: float, diff_ci: list[float]) -> Path:
    """A run folder holding only what the table reads: one task's base/tuned pair and its best constant."""
    base = {"model": "embedded", "n": 100, "acc": 0.25, "acc_ci": [0.17, 0.34]}
    tuned_row = {"model": "run-adapter", "n": 100, "acc": tuned, "acc_ci": [tuned - 0.08, tuned + 0.08]}
    pair = {"base": base, "tuned": tuned_row, "diff": tuned - 0.25, "diff_ci": diff_ci, "mcnemar_p": 0.5}
    metric = f"eval_{selected_by}"
    train = {
        "selected_by": selected_by,
        "best_checkpoint": "checkpoints/checkpoint-100",
        "validation_accuracy": [{"step": 0, metric: 0.2}, {"step": 100, metric: 0.3}],
    }
    results = {"evaluate": {task: pair}, "train": train, "timings": {"notebooks": {"02_train": 60.0}}}
    constant = {
        "constant": {"answer": "A", "acc": 0.28},
        "vs_constant": [{"model": "run-adapter", "diff": tuned - 0.28, "diff_ci": [-0.05, 0.01]}],
    }
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (folder / "eval_results.json").write_text(json.dumps({"tasks": {task: {"baselines": constant}}}), encoding="utf-8")
    return folder


def goal_rows(text: str) -> dict[str, str]:
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and ": " in line.split(" | ")[0]]
    return {cells[0].removeprefix("| "): cells[-1].removesuffix(" |") for cells in rows}


def test_medqa_recipe_is_held_to_medqa_goals(tmp_path: Path) -> None:
    table = results_table().tables(write_run(tmp_path / "run", "medqa", "medqa_accuracy", 0.31, [0.0, 0.12]))
    goals = goal_rows(table)
    assert goals["medqa: tuned accuracy"] == "yes"
    # The gain's interval starts at exactly 0: not above it.
    assert goals["medqa: lower end of the gain's 95% interval"] == "no (short by 0.000)"
    assert goals["medqa: lower end of tuned − best constant, 95% interval"] == "no (short by 0.050)"
    assert not any(name.startswith("pubmedqa") for name in goals)
    assert "Adapter: checkpoint-100, chosen by medqa_accuracy" in table


def test_default_recipe_is_held_to_pubmedqa_goals(tmp_path: Path) -> None:
    table = results_table().tables(write_run(tmp_path / "run", "pubmedqa", "pubmedqa_accuracy", 0.58, [0.1, 0.25]))
    goals = goal_rows(table)
    assert goals["pubmedqa: tuned accuracy"] == "no (short by 0.040)"
    assert goals["pubmedqa: lower end of the gain's 95% interval"] == "yes"
    assert not any(name.startswith("medqa") for name in goals)


def test_synthetic_recipe_is_held_to_the_synthetic_goals_only(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", "synthetic", "eval_loss", 0.85, [0.5, 0.7])
    (run / "eval_synthetic_run-adapter.json").write_text(json.dumps({"metrics": {"format_compliance": 0.97}}))
    goals = goal_rows(results_table().tables(run))
    assert goals == {"synthetic: tuned format compliance": "yes", "synthetic: tuned label accuracy": "yes"}
