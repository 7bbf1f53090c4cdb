"""Evaluation (docs/scoring.md; each task in `medsft.tasks`): nothing heavy is imported until a model is loaded."""

from medsft.evaluate.compare import compare
from medsft.evaluate.multiple_choice import evaluate_multiple_choice
from medsft.evaluate.results import read_result
from medsft.evaluate.synthetic import evaluate_synthetic
from medsft.evaluate.transformers_scorer import HFScorer

__all__ = ["HFScorer", "compare", "evaluate_multiple_choice", "evaluate_synthetic", "read_result"]
