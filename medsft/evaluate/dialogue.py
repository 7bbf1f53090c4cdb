"""The `dialogue` task: ROUGE-1/2/L and the key-point hit rate (also `acc`) of held-out replies (docs/dialogue.md)."""

from __future__ import annotations

import dataclasses
import functools
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsft.data.dialogue_split import DialogueItem, read_dialogues
from medsft.evaluate import keypoints, stats
from medsft.evaluate.results import Scored, TaskResult, group_breakdown
from medsft.evaluate.transformers_scorer import GenerationSettings, Scorer, generated_result

Row = dict[str, Any]
ROUGE_DIR = Path(__file__).resolve().parent / "metrics" / "rouge"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
METRICS = (*ROUGE_TYPES, "key_point_hit_rate")


@functools.cache
def load_rouge() -> Any:
    """ROUGE from the carried metric folder: `evaluate.load("rouge")` would download it, and medsft runs offline."""
    import evaluate

    return evaluate.load(str(ROUGE_DIR))


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F-measure of each prediction against its reference (per reply, no stemming: the hub's defaults)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {name: [] for name in ROUGE_TYPES}
    scores = load_rouge().compute(predictions=predictions, references=references, rouge_types=list(ROUGE_TYPES),
                                  use_aggregator=False)  # fmt: skip
    return {name: [float(v) for v in scores[name]] for name in ROUGE_TYPES}


@functools.cache
def corpus() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every reference and patient message of the carried file: what the key-point rule learns its table from."""
    rows = read_dialogues()
    return tuple(row.reference for row in rows), tuple(row.patient for row in rows)


def key_points(items: Sequence[DialogueItem]) -> list[keypoints.KeyPoints]:
    references, patients = corpus()
    return keypoints.key_points_for([item.reference for item in items], references, patients)


def score_dialogue_replies(items: Sequence[DialogueItem], replies: Sequence[str]) -> list[Row]:
    """Per dialogue: ROUGE-1/2/L, the key points and which the reply contains, the hit rate, the reply."""
    rouge = rouge_scores(list(replies), [item.reference for item in items])
    records = []
    for i, (item, reply, points) in enumerate(zip(items, replies, key_points(items), strict=True)):
        found = keypoints.hits(reply, points)
        records.append({
            "id": item.id, "group": keypoints.condition_group(points.condition), "condition": points.condition,
            "key_points": points.all, "hits": found, "key_point_hit_rate": sum(found) / len(found) if found else None,
            **{name: rouge[name][i] for name in ROUGE_TYPES}, "reference": item.reference, "output": reply,
        })  # fmt: skip
    return records


def mean_interval(values: Sequence[float | None], seed: int) -> tuple[float | None, list[float | None]]:
    """Mean of the defined values with its bootstrap 95% interval (None where there is none)."""
    present = [v for v in values if v is not None]
    if not present:
        return None, [None, None]
    interval = stats.bootstrap_ci(present, seed=seed)
    return interval.value, [interval.low, interval.high]


def summarize_dialogue(records: Sequence[Row], seed: int = 0) -> dict[str, Any]:
    """Overall and per condition group: each metric's mean with a seeded bootstrap 95% interval, reply words."""

    def block(rows: Sequence[Row]) -> Row:
        out: Row = {"n": len(rows)}
        for name in METRICS:
            out[name], out[f"{name}_ci"] = mean_interval([r[name] for r in rows], seed)
        out["key_point_dialogues"] = sum(r["key_point_hit_rate"] is not None for r in rows)
        out["key_points"] = sum(len(r["hits"]) for r in rows)
        out["condition_hit_rate"] = mean_interval([float(r["hits"][0]) if r["condition"] else None for r in rows],
                                                  seed)[0]  # fmt: skip
        out["reply_words"] = statistics.median(len(r["output"].split()) for r in rows) if rows else None
        out["acc"], out["acc_ci"] = out["key_point_hit_rate"], out["key_point_hit_rate_ci"]
        out["acc_ci_method"] = "percentile bootstrap (key-point hit rate)"
        return out

    groups = sorted({r["group"] for r in records})
    return {"overall": block(records), "groups": {g: block([r for r in records if r["group"] == g]) for g in groups}}


def scored(items: Sequence[DialogueItem], replies: Sequence[str], seed: int) -> Scored:
    records = score_dialogue_replies(items, replies)
    summary = summarize_dialogue(records, seed)
    return records, summary["overall"], summary["groups"]


def evaluate_dialogue(
    scorer: Scorer, items: Sequence[DialogueItem], max_new_tokens: int = 128, seed: int = 0
) -> TaskResult:
    """A greedy reply per held-out dialogue, scored."""
    generation = GenerationSettings(max_new_tokens, seed=seed)
    return generated_result(scorer, "dialogue", "dialogue", [item.messages() for item in items], generation,
                            lambda replies: scored(items, replies, seed))  # fmt: skip


def rescore(result: TaskResult, items: Sequence[DialogueItem]) -> TaskResult:
    """A (cached) result's replies, scored by the rule in force: generating them is what costs."""
    records, metrics, groups = scored(items, [q["output"] for q in result.questions], result.settings.get("seed", 0))
    return dataclasses.replace(result, questions=records, metrics=metrics, breakdown=groups)


def compare_dialogue(results: Sequence[TaskResult], seed: int = 0) -> tuple[list[Row], list[Row], dict[str, Row]]:
    """A `Comparison`'s table, pairs (each later model minus the first, paired) and per-group breakdown."""
    base = results[0]
    keys = ("acc", "acc_ci", "reply_words", "condition_hit_rate", *(k for m in METRICS for k in (m, f"{m}_ci")))
    table = [
        {"model": r.model, "n": r.n, "metric": "key-point hit rate", **{key: r.metrics[key] for key in keys}}
        for r in results
    ]
    pairs = []
    for result in results[1:]:
        pair: Row = {"baseline": base.model, "model": result.model}
        for name in METRICS:
            both = [(a[name], b[name]) for a, b in zip(base.questions, result.questions, strict=True)
                    if a[name] is not None and b[name] is not None]  # fmt: skip
            diff = stats.paired_bootstrap([a for a, _ in both], [b for _, b in both], seed=seed)
            pair[f"{name}_diff"], pair[f"{name}_diff_ci"] = diff.value, [diff.low, diff.high]
        pair["diff"], pair["diff_ci"] = pair["key_point_hit_rate_diff"], pair["key_point_hit_rate_diff_ci"]
        pair["mcnemar_p"] = None  # per-item scores are not 0/1: the paired bootstrap is the test
        pairs.append(pair)
    return table, pairs, group_breakdown(results, ("n", "acc", *METRICS))
