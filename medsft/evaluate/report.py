"""The tables every evaluation view prints (`medsft eval`, notebook 03, the card) and the baselines of a score."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from medsft.data.loaders import PUBMEDQA_CHOICES
from medsft.data.records import LETTERS
from medsft.evaluate.results import TaskResult
from medsft.evaluate.stats import accuracy, paired_bootstrap, wilson_interval
from medsft.tasks import TASKS


def mean_stderr(outcomes: Sequence[bool]) -> float:
    """lm-eval's `mean_stderr`: the sample standard deviation (n - 1) over sqrt(n)."""
    n = len(outcomes)
    if n < 2:
        return float("nan")
    mean = sum(outcomes) / n
    return math.sqrt(sum((x - mean) ** 2 for x in outcomes) / (n - 1)) / math.sqrt(n)


def ci_text(ci: Sequence[float], sign: str = "") -> str:
    return f"[{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]"


def diff_text(pair: dict[str, Any]) -> str:
    return f"{pair['diff']:+.3f} {ci_text(pair['diff_ci'], '+')}"


def base_task(name: str) -> str:
    return name.removesuffix("_chat").removesuffix("_cot")


def lm_eval_rows(result: TaskResult) -> list[dict[str, Any]]:
    """acc (and acc_norm for log-likelihood scoring) of one result, as lm-eval's table rows."""
    spec = TASKS.get(base_task(result.task))
    if result.mode == "dialogue":  # scored by ROUGE and key points, not lm-eval's acc
        return []
    keys = ("correct", "correct_norm") if result.mode == "loglikelihood" else ("correct",)
    rows = []
    for key in keys:
        outcomes = [bool(q.get(key)) for q in result.questions]
        interval = wilson_interval(outcomes)
        rows.append({
            "task": result.task, "model": result.model, "version": spec.lm_eval_version if spec else "N/A",
            "n_shot": result.settings.get("num_fewshot", 0), "metric": "acc" if key == "correct" else "acc_norm",
            "value": interval.value, "stderr": mean_stderr(outcomes), "n": len(outcomes),
            "ci": [interval.low, interval.high],
        })  # fmt: skip
    return rows


def lm_eval_table(results: Sequence[TaskResult]) -> str:
    """A markdown table in lm-eval's layout with n and the 95% interval; one block per model when several."""
    header = "|Tasks|Model|Version|Filter|n-shot|Metric| |Value| |Stderr|n|95% CI|"
    lines = [header, "|---|---|---:|---|---:|---|---|---:|---|---:|---:|---|"]
    lines += [f"|{row['task']}|{row['model']}|{row['version']}|none|{row['n_shot']}|{row['metric']}|↑|"
              f"{row['value']:.4f}|±|{row['stderr']:.4f}|{row['n']}|{ci_text(row['ci'])}|"
              for result in results for row in lm_eval_rows(result)]  # fmt: skip
    return "\n".join(lines)


def discipline_rows(results: Sequence[TaskResult]) -> list[dict[str, Any]]:
    """One row per task and subject for tasks scored per discipline (MedMCQA by subject; each MMLU subject)."""
    rows = []
    for result in results:
        spec = TASKS.get(base_task(result.task))
        if spec is None or spec.discipline != "subject":
            continue
        groups = result.breakdown if base_task(result.task) == "medmcqa" else {}
        if not groups:  # an MMLU task is one subject
            groups = {base_task(result.task).removeprefix("mmlu_"): {"n": result.n, **accuracy(result.outcomes())}}
        for subject, stats in groups.items():
            rows.append({"task": result.task, "model": result.model, "subject": subject, "n": stats["n"],
                         "acc": stats["acc"], "ci": list(stats.get("acc_ci") or [float("nan")] * 2)})  # fmt: skip
    return rows


def discipline_table(results: Sequence[TaskResult]) -> str:
    lines = ["|Task|Subject|Model|n|acc|95% CI|", "|---|---|---|---:|---:|---|"]
    rows = discipline_rows(results)
    lines += [f"|{r['task']}|{r['subject']}|{r['model']}|{r['n']}|{r['acc']:.3f}|{ci_text(r['ci'])}|" for r in rows]
    return "\n".join(lines)


def baseline_lines(comparison: Any) -> list[str]:
    """The prior next to the scores: the best constant answer, answer distributions, each model vs base and vs it."""
    found = comparison.baselines
    if not found:
        return []
    constant = found["constant"]
    answer, acc = constant["answer"], f"{constant['acc']:.3f} {ci_text(constant['acc_ci'])}"
    lines = [f"{comparison.task}: best constant answer '{answer}' scores {acc}"]
    for who, counts in found["distribution"].items():
        lines.append(f"  answers {who}: {counts_text(counts)}")
    for pair in comparison.pairs:
        lines.append(f"  {pair['model']} vs base {pair['baseline']}: {diff_text(pair)}")
    for row in found["vs_constant"]:
        low, high = row["diff_ci"]
        verdict = "beats the prior" if low > 0 else "below the prior" if high < 0 else "within the prior's noise"
        lines.append(f"  {row['model']} vs always '{answer}': {diff_text(row)} ({verdict})")
    return lines


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def distribution(values: Sequence[int | None], labels: Sequence[str]) -> dict[str, int]:
    """How often each choice was given (`none` for an unparseable reply), in choice order."""
    counts = Counter(values)
    out = {label: counts.get(i, 0) for i, label in enumerate(labels)}
    if counts.get(None):
        out["none"] = counts[None]
    return out


def baselines(results: Sequence[TaskResult], seed: int = 0) -> dict[str, Any]:
    """Constant answer (first on ties), distributions, models vs it (docs/evaluation.md#baselines-in-every-table)."""
    base = results[0]
    if not all(r.questions and all(isinstance(q.get("gold"), int) for q in r.questions) for r in results):
        return {}  # not multiple choice
    questions = [q for r in results for q in r.questions]
    seen = [q["gold"] for q in questions] + [q["pred"] for q in questions if isinstance(q.get("pred"), int)]
    count = max([*seen, *(len(q["scores"]) - 1 for q in questions if q.get("scores"))]) + 1
    labels = PUBMEDQA_CHOICES[:count] if base.task.startswith("pubmedqa") else list(LETTERS[:count])
    golds = [q["gold"] for q in base.questions]
    best = max(range(len(labels)), key=lambda i: (sum(gold == i for gold in golds), -i))
    constant = [gold == best for gold in golds]
    diffs = [(r.model, paired_bootstrap(constant, r.outcomes(), seed=seed)) for r in results]
    return {
        "constant": {"answer": labels[best], **accuracy(constant)},
        "distribution": {
            "gold": distribution(golds, labels),
            **{r.model: distribution([q.get("pred") for q in r.questions], labels) for r in results},
        },
        "vs_constant": [{"model": model, "diff": d.value, "diff_ci": [d.low, d.high]} for model, d in diffs],
    }
