"""Evaluation: MedQA / PubMedQA like lm-evaluation-harness, chain-of-thought, synthetic tasks, comparisons.

```python
from medsft.evaluate import HFScorer, compare, evaluate_multiple_choice, load_items

scorer = HFScorer.from_spec("embedded")                      # or HFScorer(model, tokenizer, name="tuned")
result = evaluate_multiple_choice(scorer, "medqa", load_items("medqa", limit=50))
comparison = compare(["embedded", "outputs/run-1/adapter"], "medqa", limit=50, run_dir="outputs/run-1")
evaluate_config(config, run_dir)          # every config.eval_tasks, first config.eval_limit items, config.seed
```

Modules, one concern each: `prompts` (lm-eval's templates), `scoring` (the Scorer seam and the fast
transformers scorer), `multiple_choice`, `generative` (chain-of-thought + answer extraction), `synthetic`,
`stats` (Wilson interval, bootstrap, paired difference, McNemar), `metrics` (ROUGE, key points), `results` (JSON files),
`compare`, `plots`. Nothing heavy is imported until a model is loaded or a metric is computed.
"""

from medsft.evaluate.compare import Comparison, compare, compare_results, evaluate_config, evaluate_one, load_items
from medsft.evaluate.generative import (
    cot_messages,
    evaluate_generative,
    extract_choice,
    extract_letter,
    extract_yes_no_maybe,
    score_replies,
)
from medsft.evaluate.metrics import keypoint_hit_rate, load_rouge, rouge_scores
from medsft.evaluate.multiple_choice import evaluate_multiple_choice, score_items
from medsft.evaluate.plots import accuracy_bars, base_vs_tuned, subject_bars
from medsft.evaluate.prompts import TASKS, medqa_prompt, pubmedqa_prompt
from medsft.evaluate.results import TaskResult, read_result, write_result
from medsft.evaluate.scoring import ChoiceRequest, HFScorer, Scorer, encode_pair
from medsft.evaluate.stats import Interval, McNemar, bootstrap_ci, mcnemar_exact, paired_bootstrap, wilson_interval
from medsft.evaluate.synthetic import evaluate_synthetic, format_compliance, score_synthetic_replies

__all__ = [
    "TASKS",
    "ChoiceRequest",
    "Comparison",
    "HFScorer",
    "Interval",
    "McNemar",
    "Scorer",
    "TaskResult",
    "accuracy_bars",
    "base_vs_tuned",
    "bootstrap_ci",
    "compare",
    "compare_results",
    "cot_messages",
    "encode_pair",
    "evaluate_config",
    "evaluate_generative",
    "evaluate_multiple_choice",
    "evaluate_one",
    "evaluate_synthetic",
    "extract_choice",
    "extract_letter",
    "extract_yes_no_maybe",
    "format_compliance",
    "keypoint_hit_rate",
    "load_items",
    "load_rouge",
    "mcnemar_exact",
    "medqa_prompt",
    "paired_bootstrap",
    "pubmedqa_prompt",
    "read_result",
    "rouge_scores",
    "score_items",
    "score_replies",
    "score_synthetic_replies",
    "subject_bars",
    "wilson_interval",
    "write_result",
]
