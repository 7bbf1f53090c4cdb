"""Prompts, choices, the context/continuation token split and acc/acc_norm are lm-eval's, exactly (every real
item of all nine tasks against lm-eval's own task: tests/test_tasks.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest

from medsft.data import MultipleChoiceItem
from medsft.evaluate.multiple_choice import first_argmax, predictions
from medsft.evaluate.transformers_scorer import encode_pair, hf_tokenize
from medsft.tasks import get_task
from medsft.tasks.medqa import prompt as medqa_prompt
from medsft.tasks.pubmedqa import prompt as pubmedqa_prompt

MEDQA_ITEM = MultipleChoiceItem(
    id="q1",
    question="A 45-year-old man has crushing chest pain for 30 minutes. Which test should be done first?",
    choices=["Chest X-ray", "12-lead ECG", "D-dimer", "Echocardiogram"],
    answer=1,
)
PUBMEDQA_ITEM = MultipleChoiceItem(
    id="p1",
    question="Do preoperative statins reduce atrial fibrillation after CABG?",
    choices=["yes", "no", "maybe"],
    answer=0,
    context="Statins have anti-inflammatory effects.\nWe studied 200 patients undergoing CABG.",
)


def lm_eval_task_dir() -> Path:
    lm_eval = pytest.importorskip("lm_eval")
    return Path(lm_eval.__file__).parent / "tasks"


def test_medqa_prompt_is_the_pinned_lm_eval_template():
    assert medqa_prompt(MEDQA_ITEM) == (
        "Question: A 45-year-old man has crushing chest pain for 30 minutes. Which test should be done first?\n"
        "A. Chest X-ray\nB. 12-lead ECG\nC. D-dimer\nD. Echocardiogram\nAnswer:"
    )


def test_pubmedqa_prompt_is_the_pinned_lm_eval_template():
    assert pubmedqa_prompt(PUBMEDQA_ITEM) == (
        "Abstract: Statins have anti-inflammatory effects.\nWe studied 200 patients undergoing CABG.\n"
        "Question: Do preoperative statins reduce atrial fibrillation after CABG?\nAnswer:"
    )


def test_medqa_prompt_equals_lm_evals_own_doc_to_text():
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(lm_eval_task_dir() / "medqa" / "medqa.yaml")
    doc = {"sent1": MEDQA_ITEM.question, **{f"ending{i}": c for i, c in enumerate(MEDQA_ITEM.choices)}, "label": 1}
    assert config["task"] == "medqa_4options"
    assert medqa_prompt(MEDQA_ITEM) == config["doc_to_text"](doc)
    assert get_task("medqa").choices(MEDQA_ITEM) == config["doc_to_choice"]


def test_pubmedqa_prompt_equals_lm_evals_own_doc_to_text():
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(lm_eval_task_dir() / "pubmedqa" / "pubmedqa.yaml")
    doc = {"QUESTION": PUBMEDQA_ITEM.question, "CONTEXTS": PUBMEDQA_ITEM.context.split("\n"), "final_decision": "yes"}
    assert pubmedqa_prompt(PUBMEDQA_ITEM) == config["doc_to_text"](doc)
    assert get_task("pubmedqa").choices(PUBMEDQA_ITEM) == config["doc_to_choice"]


def test_continuations_carry_lm_evals_default_target_delimiter():
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import TaskConfig

    delimiter = TaskConfig(task="any").target_delimiter
    assert get_task("medqa").continuations(MEDQA_ITEM) == [delimiter + c for c in "ABCD"] == [" A", " B", " C", " D"]
    assert get_task("pubmedqa").continuations(PUBMEDQA_ITEM) == [" yes", " no", " maybe"]


@pytest.mark.parametrize(
    ("context", "continuation"),
    [
        ("Question: What?\nA. x\nB. y\nAnswer:", " A"),
        ("Abstract: a b c\nQuestion: q?\nAnswer:", " maybe"),
        ("Answer: ", "B"),  # a trailing space moves into the continuation
        ("hello wor", "ld now"),  # "world" merges across the boundary: whole-then-split differs from separate
        ("<bos>Already has a bos:", " yes"),  # no second <bos>
    ],
)
def test_encode_pair_splits_tokens_like_lm_eval(gemma_tokenizer, context, continuation):
    pytest.importorskip("lm_eval")
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.huggingface import HFLM

    # lm-eval's own methods, run on the real tokenizer with HFLM's defaults (add_bos_token unset).
    harness = SimpleNamespace(
        backend="causal", tokenizer=gemma_tokenizer, add_bos_token=None, prefix_token_id=gemma_tokenizer.bos_token_id
    )
    harness.tok_encode = partial(HFLM.tok_encode, harness)
    ours = encode_pair(partial(hf_tokenize, gemma_tokenizer), context, continuation)
    assert ours == TemplateLM._encode_pair(harness, context, continuation)


def test_gemma_scores_each_choice_as_one_token_after_a_bos_prefixed_context(gemma_tokenizer):
    tokenize = partial(hf_tokenize, gemma_tokenizer)

    for item, task in ((MEDQA_ITEM, "medqa"), (PUBMEDQA_ITEM, "pubmedqa")):
        context = get_task(task).context(item)
        pairs = [encode_pair(tokenize, context, c) for c in get_task(task).continuations(item)]
        assert all(ctx[0] == gemma_tokenizer.bos_token_id for ctx, _ in pairs)
        assert all(len(cont) == 1 for _, cont in pairs)


def test_acc_norm_divides_by_the_choice_length_in_characters_without_the_delimiter():
    # yes/no/maybe: raw argmax is "no" (-2.5); per character yes -1.0, no -1.25, maybe -1.2, so "yes".
    assert predictions([-3.0, -2.5, -6.0], ["yes", "no", "maybe"]) == (1, 0)


def test_ties_go_to_the_first_choice_like_numpy_argmax():
    assert first_argmax([-1.0, -0.5, -0.5, -2.0]) == 1
    assert predictions([-1.0, -1.0, -1.0, -1.0], list("ABCD")) == (0, 0)
