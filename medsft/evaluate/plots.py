"""Plots of evaluation results: accuracy bars with 95% CI whiskers, one group per task, one bar per model.

Helpers take `TaskResult`s (or their JSON dicts, as read from the run folder) and return a matplotlib
Figure; they never call `plt.show()`, so notebooks display them and scripts save them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medsft.evaluate.results import TaskResult

ResultLike = TaskResult | dict[str, Any]


def _as_result(result: ResultLike) -> TaskResult:
    return result if isinstance(result, TaskResult) else TaskResult.from_dict(result)


def accuracy_bars(results: Sequence[ResultLike], title: str | None = None, chance: float | None = None) -> Any:
    """Grouped bars: one group per task, one bar per model, whiskers from each result's 95% interval."""
    import matplotlib.pyplot as plt
    import numpy as np

    parsed = [_as_result(r) for r in results]
    if not parsed:
        raise ValueError("no results to plot")
    tasks = list(dict.fromkeys(r.task for r in parsed))
    models = list(dict.fromkeys(r.model for r in parsed))
    by_key = {(r.task, r.model): r for r in parsed}
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(tasks) * len(models) ** 0.5 + 2), 3.6))
    for m, model in enumerate(models):
        xs, heights, errors = [], [], [[], []]
        for t, task in enumerate(tasks):
            result = by_key.get((task, model))
            if result is None:
                continue
            acc = result.metrics["acc"]
            low, high = result.metrics["acc_ci"]
            xs.append(t - 0.4 + width * (m + 0.5))
            heights.append(acc)
            errors[0].append(acc - low)
            errors[1].append(high - acc)
        ax.bar(xs, heights, width=width * 0.9, yerr=np.array(errors), capsize=4, label=model)
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
