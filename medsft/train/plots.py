"""Training plots: loss curves from a run's `train_log.jsonl` (train per step, eval at each evaluation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_train_log(path: str | Path) -> list[dict[str, Any]]:
    """The log's records; `path` is a run folder or the log file itself."""
    path = Path(path)
    log = path / "train_log.jsonl" if path.is_dir() else path
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curves(path: str | Path, ax: Any = None) -> Any:
    """Train loss per step and eval loss per evaluation on one axis; returns the matplotlib Figure.

    When a benchmark's validation accuracy chose the checkpoint, it is drawn on a second axis at the right."""
    import matplotlib.pyplot as plt

    records = read_train_log(path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="validation loss", linewidth=1.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    ax.set_title(Path(path).name if Path(path).is_dir() else Path(path).parent.name)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    accuracy = [key for r in records for key in r if key.startswith("eval_") and key.endswith("_accuracy")]
    measure = next((key for key in accuracy if key != "eval_mean_token_accuracy"), None)
    if measure:
        right = ax.twinx()
        points = [(r["step"], r[measure]) for r in records if measure in r]
        name = measure.removeprefix("eval_").replace("_", " ")
        right.plot(*zip(*points, strict=True), "s--", color="tab:green", label=f"validation {name}")
        right.set_ylabel(f"validation {name}")
        right.set_ylim(0, 1)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels)
    return ax.figure
