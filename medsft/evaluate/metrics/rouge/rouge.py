"""ROUGE as an offline `evaluate` metric (docs/dialogue.md); aggregated: the plain mean, not a bootstrap median."""

import datasets
import evaluate
from rouge_score import rouge_scorer

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    pages = "74--81",
}
"""

_KWARGS_DESCRIPTION = """predictions and references (one per prediction); rouge_types (default: rouge1, rouge2, rougeL,
rougeLsum); use_stemmer (Porter); use_aggregator: the mean F-measure per type, else a list per item."""

DEFAULT_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="ROUGE-N and ROUGE-L F-measures (case-insensitive), by Google Research's `rouge_score`.",
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False):
        types = list(rouge_types or DEFAULT_TYPES)
        scorer = rouge_scorer.RougeScorer(rouge_types=types, use_stemmer=use_stemmer)
        scores = [scorer.score(ref, pred) for ref, pred in zip(references, predictions, strict=True)]
        per_item = {name: [float(score[name].fmeasure) for score in scores] for name in types}
        if not use_aggregator:
            return per_item
        return {name: (sum(values) / len(values) if values else 0.0) for name, values in per_item.items()}
