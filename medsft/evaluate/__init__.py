"""Evaluation: MedQA / PubMedQA like lm-evaluation-harness, chain-of-thought, synthetic tasks, comparisons.

```python
from medsft.evaluate import HFScorer, compare, evaluate_multiple_choice, load_items

scorer = HFScorer.from_spec("embedded")                      # or HFScorer(model, tokenizer, name="tuned")
result = evaluate_multiple_choice(scorer, "medqa", load_items("medqa", limit=50))
comparison = compare(["embedded", "outputs/run-1/adapter"], "medqa", limit=50, run_dir="outputs/run-1")
```

Modules, one concern each: `tasks` (the task table: loading, splits, prompts, choices, extraction per task),
`prompts` (lm-eval's templates and the chain-of-thought prompts), `scoring` (the Scorer seam and the fast
transformers scorer), `gguf_scorer` (the llama.cpp Scorer for GGUF files), `multiple_choice`, `generative`
(chain-of-thought decoding), `extraction` (the answer in a free-text reply), `synthetic`, `stats` (Wilson
interval, bootstrap, paired difference, McNemar), `results` (JSON files), `cache`, `compare`, `plots`,
`harness` (lm-eval itself, for parity checks). Nothing heavy is imported until a model is loaded.
"""

from medsft.evaluate.compare import Comparison, compare, compare_results, evaluate_one, load_items
from medsft.evaluate.extraction import extract_letter, extract_yes_no_maybe
from medsft.evaluate.generative import cot_messages, evaluate_generative, extract_choice, score_replies
from medsft.evaluate.multiple_choice import evaluate_multiple_choice, score_items
from medsft.evaluate.prompts import medqa_prompt, pubmedqa_prompt
from medsft.evaluate.results import TaskResult, read_result, write_result
from medsft.evaluate.stats import Interval, McNemar, bootstrap_ci, mcnemar_exact, paired_bootstrap, wilson_interval
from medsft.evaluate.synthetic import evaluate_synthetic, format_compliance, score_synthetic_replies
from medsft.evaluate.tasks import TASKS, Task, get_task, load_eval_items
from medsft.evaluate.transformers_scorer import ChoiceRequest, GenerationSettings, HFScorer, Scorer, encode_pair

__all__ = [
    "TASKS",
    "ChoiceRequest",
    "Comparison",
    "GenerationSettings",
    "HFScorer",
    "Interval",
    "McNemar",
    "Scorer",
    "Task",
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
    "extract_letter",
    "extract_yes_no_maybe",
    "format_compliance",
    "get_task",
    "load_eval_items",
    "load_items",
    "mcnemar_exact",
    "medqa_prompt",
    "paired_bootstrap",
    "pubmedqa_prompt",
    "read_result",
    "score_items",
    "score_replies",
    "score_synthetic_replies",
    "wilson_interval",
    "write_result",
]
