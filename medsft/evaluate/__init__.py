"""Evaluation: the nine leaderboard tasks like lm-evaluation-harness, chain-of-thought, synthetic tasks, comparisons.

```python
from medsft.evaluate import HFScorer, compare, evaluate_multiple_choice
from medsft.tasks import load_items

scorer = HFScorer.from_spec("embedded")                      # or HFScorer(model, tokenizer, name="tuned")
result = evaluate_multiple_choice(scorer, "medqa", load_items("medqa", limit=50))
comparison = compare(["embedded", "outputs/run-1/adapter"], "medqa", limit=50, run_dir="outputs/run-1")
```

What each task *is* (files, split, prompt, choices, extraction, lm-eval layout) lives in `medsft.tasks`, one
module per benchmark. Modules here, one concern each: `transformers_scorer` (the Scorer seam and the fast
transformers scorer), `gguf_scorer` (the llama.cpp Scorer for GGUF files), `multiple_choice` (raw and chat views),
`generative` (chain-of-thought decoding), `synthetic`, `baselines` (best constant answer, answer
distributions), `stats` (Wilson interval, bootstrap, paired difference, McNemar), `results` (JSON files),
`report` (lm-eval's table layout, the per-discipline table), `cache`, `compare`, `harness`
(lm-eval itself, for parity checks). Nothing heavy is imported until a model is loaded.
"""

from medsft.evaluate.compare import Comparison, compare, compare_results, evaluate_one
from medsft.evaluate.generative import cot_messages, evaluate_generative, extract_choice, score_replies
from medsft.evaluate.multiple_choice import evaluate_multiple_choice, score_items
from medsft.evaluate.results import TaskResult, read_result, write_result
from medsft.evaluate.stats import Interval, McNemar, bootstrap_ci, mcnemar_exact, paired_bootstrap, wilson_interval
from medsft.evaluate.synthetic import evaluate_synthetic, format_compliance, score_synthetic_replies
from medsft.evaluate.transformers_scorer import ChoiceRequest, GenerationSettings, HFScorer, Scorer, encode_pair

__all__ = [
    "ChoiceRequest",
    "Comparison",
    "GenerationSettings",
    "HFScorer",
    "Interval",
    "McNemar",
    "Scorer",
    "TaskResult",
    "bootstrap_ci",
    "compare",
    "compare_results",
    "cot_messages",
    "encode_pair",
    "evaluate_generative",
    "evaluate_multiple_choice",
    "evaluate_one",
    "evaluate_synthetic",
    "extract_choice",
    "format_compliance",
    "mcnemar_exact",
    "paired_bootstrap",
    "read_result",
    "score_items",
    "score_replies",
    "score_synthetic_replies",
    "wilson_interval",
    "write_result",
]
