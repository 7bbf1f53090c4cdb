"""Evaluation: the nine leaderboard tasks like lm-evaluation-harness, chain-of-thought, synthetic tasks, comparisons.

```python
from medsft.evaluate import HFScorer, compare, evaluate_multiple_choice
from medsft.tasks import load_items

scorer = HFScorer.from_spec("embedded")                      # or HFScorer(model, tokenizer, name="tuned")
result = evaluate_multiple_choice(scorer, "medqa", load_items("medqa", limit=50))
comparison = compare(["embedded", "outputs/run-1/adapter"], "medqa", limit=50, run_dir="outputs/run-1")
```

What each task *is* lives in `medsft.tasks`; nothing heavy is imported here until a model is loaded.
"""

from medsft.evaluate.compare import compare
from medsft.evaluate.multiple_choice import evaluate_multiple_choice
from medsft.evaluate.results import read_result
from medsft.evaluate.synthetic import evaluate_synthetic
from medsft.evaluate.transformers_scorer import HFScorer

__all__ = ["HFScorer", "compare", "evaluate_multiple_choice", "evaluate_synthetic", "read_result"]
