"""Every figure medsft draws, from plain records; none calls `plt.show()`, so notebooks display and scripts save."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def plot_token_lengths(lengths: Sequence[int], max_seq_length: int | None = None) -> Any:
    """Histogram of tokens per row, with max_seq_length marked."""
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(lengths, bins=40, color="#4C72B0")
    if max_seq_length:
        ax.axvline(max_seq_length, color="#C44E52", linestyle="--", label=f"max_seq_length {max_seq_length}")
        ax.legend()
    ax.set_xlabel("tokens per row (chat template applied)")
    ax.set_ylabel("rows")
    return ax


def read_train_log(path: str | Path) -> list[dict[str, Any]]:
    """The log's records; `path` is a run folder or the log file itself."""
    path = Path(path)
    log = path / "train_log.jsonl" if path.is_dir() else path
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curves(path: str | Path) -> Any:
    """Train and validation loss per step, and on a right axis the validation accuracy that chose the checkpoint."""
    import matplotlib.pyplot as plt

    records = read_train_log(path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
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


def accuracy_bars(results: Sequence[Any], title: str | None = None, chance: float | None = None) -> Any:
    """Grouped bars: one group per task, one bar per model, whiskers from each result's 95% interval."""
    import matplotlib.pyplot as plt

    # a `TaskResult`, or its JSON dict as read from a run folder
    parsed = [SimpleNamespace(**r) if isinstance(r, dict) else r for r in results]
    if not parsed:
        raise ValueError("no results to plot")
    tasks = list(dict.fromkeys(r.task for r in parsed))
    models = list(dict.fromkeys(r.model for r in parsed))
    by_key = {(r.task, r.model): r for r in parsed}
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(tasks) * len(models) ** 0.5 + 2), 3.6))
    for m, model in enumerate(models):
        shown = [(t, by_key[task, model].metrics) for t, task in enumerate(tasks) if (task, model) in by_key]
        xs = [t - 0.4 + width * (m + 0.5) for t, _ in shown]
        errors = [[r["acc"] - r["acc_ci"][0] for _, r in shown], [r["acc_ci"][1] - r["acc"] for _, r in shown]]
        ax.bar(xs, [r["acc"] for _, r in shown], width=width * 0.9, yerr=errors, capsize=4, label=model)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    # the dialogue task's bar is its key-point hit rate (medsft.evaluate.dialogue), not an accuracy
    dialogue = {r.task for r in parsed if r.mode == "dialogue"}
    ax.set_xticks(range(len(tasks)), [f"{t}\n(key-point hit rate)" if t in dialogue else t for t in tasks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(title or "Accuracy by task")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_run_accuracy(runs: Sequence[dict[str, Any]]) -> Any:
    """Tuned (and base) accuracy per task for each run, whiskers at the 95% interval; None without results."""
    import matplotlib.pyplot as plt

    tasks = sorted({task for run in runs for task in run.get("evaluate", {})})
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for offset, role in ((-0.2, "base"), (0.2, "tuned")):
            points = [(i, run["evaluate"][task][role]) for i, run in enumerate(runs)
                      if role in run.get("evaluate", {}).get(task, {})]  # fmt: skip
            if not points:
                continue
            accs = [p["acc"] for _, p in points]
            errors = [[p["acc"] - p["acc_ci"][0] for _, p in points], [p["acc_ci"][1] - p["acc"] for _, p in points]]
            ax.bar([i + offset for i, _ in points], accs, width=0.38, yerr=errors, capsize=3, label=role)
        ax.set_xticks(range(len(runs)), [run["run_id"] for run in runs], rotation=30, ha="right", fontsize="small")
        ax.set_ylim(0, 1)
        ax.set_title(task)
        ax.set_ylabel("accuracy (95% CI)")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_run_costs(frame: Any) -> Any:
    """Bars per run: training seconds, training tokens/s, and GGUF file size per quantization when exported."""
    import matplotlib.pyplot as plt

    panels = [("train_seconds", "training time (s)"), ("tokens_per_second", "training tokens/s")]
    gguf = [c for c in frame.columns if c.startswith("gguf_")]
    fig, axes = plt.subplots(1, len(panels) + bool(gguf), figsize=(4.5 * (len(panels) + bool(gguf)), 3.4))
    for ax, (column, label) in zip(axes, panels, strict=False):
        ax.bar(frame["run_id"], frame[column].astype(float))
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30, labelsize="small")
    if gguf:
        frame.set_index("run_id")[gguf].astype(float).plot.bar(ax=axes[-1], rot=30)
        axes[-1].set_title("GGUF file size (MiB)")
    fig.tight_layout()
    return fig


def plot_cross_validation(frame: Any) -> Any:
    """`run_summary.cross_validation_frame` drawn: mean ± sd per step and setting, the constant answer dashed."""
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7, 3.5))
    for label, group in frame.groupby("group", sort=False):
        ax.errorbar(
            group["step"],
            group["val_acc_mean"],
            yerr=group["val_acc_sd"].fillna(0),
            marker="o",
            capsize=3,
            label=label or "mean over folds",
        )
    constant = frame["constant_acc_mean"].dropna()
    if len(constant):
        ax.axhline(constant.mean(), color="#999999", linestyle="--", label="constant answer (same rows)")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=8)
    return ax
