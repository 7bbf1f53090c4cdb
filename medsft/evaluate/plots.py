"""Plots of evaluation results: accuracy bars with 95% CI whiskers, base vs tuned, per task or subject.

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
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(title or "Accuracy by task")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def base_vs_tuned(base: ResultLike, tuned: ResultLike, title: str | None = None) -> Any:
    """Two bars on one task with CI whiskers, titled with the paired difference and its interval."""
    from medsft.evaluate.compare import compare_results

    first, second = _as_result(base), _as_result(tuned)
    pair = compare_results([first, second]).pairs[0]
    low, high = pair["diff_ci"]
    heading = title or (
        f"{first.task}: {second.model} - {first.model} = {pair['diff']:+.3f} [{low:+.3f}, {high:+.3f}]"
    )
    return accuracy_bars([first, second], title=heading)


def subject_bars(results: Sequence[ResultLike], min_n: int = 1, title: str | None = None) -> Any:
    """Horizontal bars of accuracy per subject (or domain) for each model, subjects with >= `min_n` items."""
    import matplotlib.pyplot as plt

    parsed = [_as_result(r) for r in results]
    subjects = sorted({s for r in parsed for s, v in r.breakdown.items() if v["n"] >= min_n})
    if not subjects:
        raise ValueError("the results carry no subject breakdown")
    height = 0.8 / len(parsed)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.35 * len(subjects) * len(parsed)))
    for m, result in enumerate(parsed):
        ys = [s - 0.4 + height * (m + 0.5) for s in range(len(subjects))]
        values = [result.breakdown.get(name, {}).get("acc", 0.0) for name in subjects]
        ax.barh(ys, values, height=height * 0.9, label=result.model)
    ax.set_yticks(range(len(subjects)), [f"{s} (n={parsed[0].breakdown.get(s, {}).get('n', 0)})" for s in subjects])
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title(title or f"{parsed[0].task}: accuracy by subject")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
