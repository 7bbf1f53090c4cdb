"""Text-overlap metrics from the seeds: ROUGE-1/2/L against references (MedGenius) and key-point hit rate.

ROUGE goes through Hugging Face `evaluate`, offline. `evaluate.load("rouge")` fetches the metric script
from the Hub (`Module 'rouge' doesn't exist on the Hugging Face Hub either` with no network), and the
`evaluate` package ships no metric scripts. So `RougeMetric` is an `evaluate.Metric` defined here, on the
same `rouge_score` scorer the Hub script wraps (same tokenisation, F-measures, optional stemmer): `compute`,
`add_batch` and the features checks are evaluate's own. Per-example scores are averaged here instead of by
rouge_score's BootstrapAggregator, whose "mid" is a median of unseeded resamples and changes between runs;
the interval comes from the seeded bootstrap in `stats`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from medsft.evaluate.stats import bootstrap_ci

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _rouge_metric_class() -> type:
    # Built on first use: importing evaluate pulls in datasets and pyarrow, which `import medsft` must not.
    import datasets
    import evaluate
    from rouge_score import rouge_scorer

    class RougeMetric(evaluate.Metric):
        """ROUGE F-measures per example, computed by rouge_score (Google Research's reimplementation)."""

        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description="ROUGE-1/2/L F-measure per example (rouge_score), offline.",
                citation="Lin, Chin-Yew. ROUGE: A Package for Automatic Evaluation of Summaries. 2004.",
                features=datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
            )

        def _compute(
            self, predictions: list[str], references: list[str], rouge_types: Sequence[str] = ROUGE_TYPES,
            use_stemmer: bool = False,
        ) -> dict[str, list[float]]:
            scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
            scores = [scorer.score(ref, pred) for ref, pred in zip(references, predictions, strict=True)]
            return {kind: [s[kind].fmeasure for s in scores] for kind in rouge_types}

    return RougeMetric


def load_rouge() -> Any:
    """An offline `evaluate` ROUGE metric (use like `evaluate.load("rouge")` with use_aggregator=False)."""
    return _rouge_metric_class()()


def rouge_scores(
    predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = False, seed: int = 0
) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F-measure with a 95% bootstrap interval each, and the per-example scores."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references (and at least one): {len(predictions)} vs "
                         f"{len(references)}")
    per_example = load_rouge().compute(
        predictions=list(predictions), references=list(references), use_stemmer=use_stemmer
    )
    summary: dict[str, Any] = {}
    for kind in ROUGE_TYPES:
        interval = bootstrap_ci(per_example[kind], seed=seed)
        summary[kind] = interval.value
        summary[f"{kind}_ci"] = [interval.low, interval.high]
    summary["per_example"] = per_example
    return summary


STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is", "it", "its", "of"}
    | {"on", "or", "that", "the", "to", "was", "were", "with"}
)


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def keypoint_hit(output: str, keypoint: str, min_fraction: float = 1.0) -> bool:
    """A key point is hit when at least `min_fraction` of its content words occur in the output.

    Word-level rather than substring matching, so "start metformin" hits "metformin should be started"
    only with `min_fraction < 1`, and "beta blocker" never hits on "beta" alone at the default.
    """
    words = content_words(keypoint)
    if not words:
        raise ValueError(f"key point {keypoint!r} has no content words")
    present = set(content_words(output))
    return sum(w in present for w in words) / len(words) >= min_fraction


def keypoint_hit_rate(
    outputs: Sequence[str],
    keypoints: Sequence[Sequence[str]],
    disciplines: Sequence[str | None] | None = None,
    min_fraction: float = 1.0,
) -> dict[str, Any]:
    """Share of reference key points each output covers, averaged overall and per discipline.

    The Gemma 4 E2B seed scores an answer by the key points it mentions; each example's rate is
    hits / key points, and a discipline's rate is the mean over its examples.
    """
    if len(outputs) != len(keypoints):
        raise ValueError(f"need one key-point list per output: {len(outputs)} outputs, {len(keypoints)} lists")
    labels = list(disciplines) if disciplines is not None else [None] * len(outputs)
    rates = []
    for output, points in zip(outputs, keypoints, strict=True):
        if not points:
            raise ValueError("every example needs at least one key point")
        rates.append(sum(keypoint_hit(output, p, min_fraction) for p in points) / len(points))
    groups: dict[str, list[float]] = {}
    for rate, label in zip(rates, labels, strict=True):
        if label:
            groups.setdefault(label, []).append(rate)
    return {
        "hit_rate": sum(rates) / len(rates),
        "n": len(rates),
        "per_example": rates,
        "per_discipline": {k: {"n": len(v), "hit_rate": sum(v) / len(v)} for k, v in sorted(groups.items())},
    }
