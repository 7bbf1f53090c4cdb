"""What a multiple-choice score has to beat: the best constant answer, and the answer distributions.

A model that always answers "yes" on PubMedQA scores 0.552; one that always answers "A" on MedQA 0.277. So an
accuracy is read next to (1) the best constant answer's accuracy on the same items, (2) the model's answer
distribution beside the gold one, and (3) for a tuned model, the paired difference to that constant answer.
"Tuned beats base" and "tuned beats the prior" are separate lines: only the second says the task was learned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from medsft.data.records import LETTERS
from medsft.evaluate.results import TaskResult
from medsft.evaluate.stats import paired_bootstrap, wilson_interval

PUBMEDQA_WORDS = ("yes", "no", "maybe")


def choice_labels(task: str, count: int) -> list[str]:
    """How a choice index reads: yes/no/maybe for PubMedQA, letters otherwise."""
    return list(PUBMEDQA_WORDS[:count]) if task.startswith("pubmedqa") else list(LETTERS[:count])


def is_multiple_choice(result: TaskResult) -> bool:
    return bool(result.questions) and all(isinstance(q.get("gold"), int) for q in result.questions)


def choice_count(results: Sequence[TaskResult]) -> int:
    seen = [q["gold"] for r in results for q in r.questions] + [
        q["pred"] for r in results for q in r.questions if isinstance(q.get("pred"), int)
    ]
    scores = [len(q["scores"]) for r in results for q in r.questions if q.get("scores")]
    return max([*seen, *(s - 1 for s in scores)]) + 1


def distribution(values: Sequence[int | None], labels: Sequence[str]) -> dict[str, int]:
    """How often each choice was given (`none` for an unparseable reply), in choice order."""
    counts = Counter(values)
    out = {label: counts.get(i, 0) for i, label in enumerate(labels)}
    if counts.get(None):
        out["none"] = counts[None]
    return out


def constant_outcomes(golds: Sequence[int], answer: int) -> list[bool]:
    return [gold == answer for gold in golds]


def baselines(results: Sequence[TaskResult], seed: int = 0) -> dict[str, Any]:
    """The best constant answer (first on ties) with its accuracy and Wilson interval, every model's answer
    distribution beside gold's, and each model's paired difference to the constant answer (bootstrap 95%)."""
    base = results[0]
    if not all(is_multiple_choice(r) for r in results):
        return {}
    labels = choice_labels(base.task, choice_count(results))
    golds = [q["gold"] for q in base.questions]
    best = max(range(len(labels)), key=lambda i: (sum(constant_outcomes(golds, i)), -i))
    constant = constant_outcomes(golds, best)
    interval = wilson_interval(constant)
    vs_constant = []
    for result in results:
        diff = paired_bootstrap(constant, result.outcomes(), seed=seed)
        vs_constant.append({"model": result.model, "diff": diff.value, "diff_ci": [diff.low, diff.high]})
    return {
        "constant": {"answer": labels[best], "acc": interval.value, "acc_ci": [interval.low, interval.high]},
        "distribution": {
            "gold": distribution(golds, labels),
            **{r.model: distribution([q.get("pred") for q in r.questions], labels) for r in results},
        },
        "vs_constant": vs_constant,
    }
