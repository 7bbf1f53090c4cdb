"""The fast scorer gives the log-likelihoods of a naive full forward; on the real model, lm-eval's predictions."""

from __future__ import annotations

import pytest
import torch

from medsft.data import MultipleChoiceItem
from medsft.evaluate.multiple_choice import build_requests, evaluate_multiple_choice
from medsft.evaluate.results import read_result, write_result
from medsft.evaluate.transformers_scorer import ChoiceRequest, GenerationSettings, HFScorer, encode_pair
from medsft.tasks import get_task

ITEMS = [
    MultipleChoiceItem(
        id="short",
        question="Which vitamin deficiency causes scurvy?",
        choices=["A", "B12", "C", "D"],
        answer=2,
        subject="nutrition",
    ),
    MultipleChoiceItem(
        id="long",
        question=(
            "A 67-year-old woman with atrial fibrillation on warfarin starts a course of clarithromycin for a chest "
            "infection. Three days later her INR is 6.2 and she has bruising on both forearms. What is the "
            "mechanism of this interaction?"
        ),
        choices=["CYP3A4 inhibition", "Reduced vitamin K intake", "Protein binding displacement", "Renal failure"],
        answer=0,
        subject="pharmacology",
    ),
    MultipleChoiceItem(
        id="mid",
        question="Which electrolyte disturbance causes peaked T waves?",
        choices=["Hyponatraemia", "Hyperkalaemia", "Hypocalcaemia", "Hypomagnesaemia"],
        answer=1,
        subject="cardiology",
    ),
]


@pytest.fixture(scope="module")
def tiny_scorer(tiny_gemma_dir, gemma_tokenizer) -> HFScorer:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    return HFScorer(model, gemma_tokenizer, name="tiny", batch_size=2)


def naive_loglikelihood(model, context: list[int], continuation: list[int]) -> float:
    """The definition: one full forward over context + continuation, full logits, sum of the continuation."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([context + continuation])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[len(context) - 1 + i, token]) for i, token in enumerate(continuation))


def test_single_token_choices_match_a_naive_full_forward(tiny_scorer):
    requests = build_requests(tiny_scorer, get_task("medqa"), ITEMS)  # 3 questions, batch 2: padding and a rest
    scores = tiny_scorer.loglikelihood(requests)
    for request, row in zip(requests, scores, strict=True):
        expected = [naive_loglikelihood(tiny_scorer.model, request.context, c) for c in request.continuations]
        assert row == pytest.approx(expected, abs=1e-4)


def test_multi_token_continuations_reuse_the_prefix_and_match_a_naive_full_forward(tiny_scorer):
    tokenize = tiny_scorer.tokenize
    context = "Abstract: Statins were given before surgery.\nQuestion: Did AF fall?\nAnswer:"
    texts = [" yes", " no, not in this trial", " maybe in older patients only"]
    pairs = [encode_pair(tokenize, context, text) for text in texts]
    request = ChoiceRequest(pairs[0][0], [cont for _, cont in pairs])
    assert [len(c) > 1 for c in request.continuations] == [False, True, True]
    (scores,) = tiny_scorer.loglikelihood([request])
    expected = [naive_loglikelihood(tiny_scorer.model, request.context, c) for c in request.continuations]
    assert scores == pytest.approx(expected, abs=1e-4)


def test_scores_do_not_depend_on_batch_size(tiny_scorer):
    requests = build_requests(tiny_scorer, get_task("medqa"), ITEMS)
    batched = tiny_scorer.loglikelihood(requests)
    one_by_one = HFScorer(tiny_scorer.model, tiny_scorer.tokenizer, batch_size=1).loglikelihood(requests)
    for a, b in zip(batched, one_by_one, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_the_lm_head_and_the_last_layers_mlp_run_on_one_position_per_question(tiny_scorer):
    model = tiny_scorer.model
    seen: dict[str, list[int]] = {"head": [], "last_mlp": [], "first_mlp": []}

    def record(name):
        return lambda module, args, output: seen[name].append(args[0].shape[:-1].numel())

    hooks = [
        model.lm_head.register_forward_hook(record("head")),
        model.model.layers[-1].mlp.register_forward_hook(record("last_mlp")),
        model.model.layers[0].mlp.register_forward_hook(record("first_mlp")),
    ]
    requests = build_requests(tiny_scorer, get_task("medqa"), ITEMS)
    try:
        tiny_scorer.loglikelihood(requests)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen["head"] == seen["last_mlp"] == [2, 1]  # batch of 2, then the rest: one row per question
    assert seen["first_mlp"][0] == 2 * max(len(r.context) for r in requests)  # earlier layers: every position


def test_evaluation_records_every_question_with_its_scores_and_prediction(tiny_scorer, tmp_path):
    result = evaluate_multiple_choice(tiny_scorer, "medqa", ITEMS)
    assert result.ids == ["short", "long", "mid"]
    for record, item in zip(result.questions, ITEMS, strict=True):
        assert len(record["scores"]) == 4
        assert record["pred"] == max(range(4), key=lambda i: record["scores"][i])
        assert record["correct"] == (record["pred"] == item.answer)
    assert result.metrics["acc"] == pytest.approx(sum(result.outcomes()) / 3)
    assert set(result.breakdown) == {"nutrition", "pharmacology", "cardiology"}
    assert read_result(write_result(result, tmp_path)).questions == result.questions


def test_batched_generation_equals_generating_each_conversation_alone(tiny_scorer):
    conversations = [
        [{"role": "user", "content": "Name one symptom of anaemia, and explain why it happens."}],
        [{"role": "user", "content": "Hi"}],  # much shorter: left padding in the batch
    ]
    batched = tiny_scorer.generate(conversations, GenerationSettings(6))
    assert len(batched) == 2 and all(reply for reply in batched)
    assert batched == [tiny_scorer.generate([c], GenerationSettings(6))[0] for c in conversations]


PUBMED_ITEMS = [
    MultipleChoiceItem(
        id="p1",
        question="Do preoperative statins reduce atrial fibrillation after CABG?",
        choices=["yes", "no", "maybe"],
        answer=0,
        context="Statins have anti-inflammatory effects.\nIn 200 patients, AF occurred in 18% with and 31% without.",
    ),
    MultipleChoiceItem(
        id="p2",
        question="Is vitamin D supplementation associated with fewer falls in care homes?",
        choices=["yes", "no", "maybe"],
        answer=2,
        context="A cluster trial in 40 homes.\nFalls fell by 9% (95% CI -2% to 19%).",
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize(("task", "items"), [("medqa", ITEMS), ("pubmedqa", PUBMED_ITEMS)])
def test_real_model_predictions_equal_lm_evals(embedded_dir, gemma_tokenizer, tmp_path, task, items):
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    from medsft.evaluate.harness import run_local_task, sample_loglikelihoods, write_local_task

    lm = HFLM(pretrained=str(embedded_dir), device="cpu", batch_size=2)
    samples = run_local_task(lm, write_local_task(task, items, tmp_path), tmp_path)
    ours = evaluate_multiple_choice(HFScorer(lm.model, gemma_tokenizer, batch_size=2), task, items)
    for record, sample, item in zip(ours.questions, samples, items, strict=True):
        theirs = sample_loglikelihoods(sample)
        assert record["scores"] == pytest.approx(theirs, abs=1e-4)
        assert record["pred"] == max(range(len(theirs)), key=lambda i: (theirs[i], -i))
        target = sample["target"]
        assert record["gold"] == (item.choices.index(target) if isinstance(target, str) else target)


@pytest.fixture(scope="module")
def lm_eval_model(embedded_dir):
    """lm-eval's own `hf` model on the embedded checkpoint (its folder carries the Gemma 3 chat template)."""
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(embedded_dir), device="cpu", batch_size=2)


# MedQA rows 243 and 828 (0-based) begin a question / an option with a space: the two predictions that once
# differed from lm-eval because the loader stripped it. Elsewhere: the first items and one further in.
PICKS = {
    "medqa": [243, 828, 0], "pubmedqa": [0, 1], "medmcqa": [0, 2000], "mmlu_anatomy": [0, 70],
    "mmlu_clinical_knowledge": [0, 100], "mmlu_college_biology": [0, 50], "mmlu_college_medicine": [0, 90],
    "mmlu_medical_genetics": [0, 60], "mmlu_professional_medicine": [0, 200],
}  # fmt: skip


def assert_scores_like_lm_eval(model, tokenizer, folder, task, picks, view="raw", num_fewshot=0):
    from medsft.evaluate.harness import raw_rows, run_local_task, sample_loglikelihoods, write_local_task
    from medsft.tasks import load_items

    every = load_items(task)
    items = [every[i] for i in picks]
    raw = raw_rows(task, every[: max(picks) + 1])  # the file's own rows, read without medsft's parser
    local = write_local_task(task, [raw[i] for i in picks], folder)
    samples = run_local_task(model, local, folder, num_fewshot, chat=view == "chat")
    scorer = HFScorer(model.model, tokenizer, batch_size=3)
    ours = evaluate_multiple_choice(scorer, task, items, num_fewshot=num_fewshot, view=view)
    for record, sample in zip(ours.questions, samples, strict=True):
        theirs = sample_loglikelihoods(sample)
        assert record["scores"] == pytest.approx(theirs, abs=1e-3), record["id"]
        assert record["pred"] == max(range(len(theirs)), key=lambda i: (theirs[i], -i)), record["id"]


@pytest.mark.integration
@pytest.mark.parametrize("task", list(PICKS))
def test_real_items_of_each_task_score_like_lm_eval_reading_the_raw_file(
    lm_eval_model, gemma_tokenizer, tmp_path, task
):
    assert_scores_like_lm_eval(lm_eval_model, gemma_tokenizer, tmp_path, task, PICKS[task])


@pytest.mark.integration
def test_mmlu_few_shot_scores_like_lm_evals_first_n_sampler(lm_eval_model, gemma_tokenizer, tmp_path):
    assert_scores_like_lm_eval(lm_eval_model, gemma_tokenizer, tmp_path, "mmlu_medical_genetics", [0], num_fewshot=2)


@pytest.mark.integration
@pytest.mark.parametrize("task", ["medqa", "pubmedqa"])
def test_the_chat_view_scores_like_lm_evals_apply_chat_template(lm_eval_model, gemma_tokenizer, tmp_path, task):
    """The continuation after the rendered `<start_of_turn>model\n` is the bare choice, split like lm-eval
    (the trailing newline moves into it), so it is two tokens and goes through the KV-cache path."""
    assert_scores_like_lm_eval(lm_eval_model, gemma_tokenizer, tmp_path, task, [0, 1], view="chat")


def test_compare_writes_one_file_per_model_and_the_paired_comparison(tiny_scorer, tmp_path):
    from medsft.evaluate.compare import compare

    twin = HFScorer(tiny_scorer.model, tiny_scorer.tokenizer, name="tiny-twin", batch_size=3)
    comparison = compare([tiny_scorer, twin], "medqa", items=ITEMS, run_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["compare_medqa.json", "eval_medqa_tiny-twin.json", "eval_medqa_tiny.json"]
    (pair,) = comparison.pairs
    assert (pair["diff"], pair["diff_ci"], pair["mcnemar_p"]) == (0.0, [0.0, 0.0], 1.0)  # same weights


def test_chain_of_thought_result_reports_unparseable_replies_and_carries_the_disclaimer(tiny_scorer, tmp_path):
    import json

    from medsft import DISCLAIMER
    from medsft.evaluate.generative import evaluate_generative

    result = evaluate_generative(tiny_scorer, "medqa", ITEMS[:2], max_new_tokens=3)
    assert result.task == "medqa_cot" and result.n == 2
    parsed = sum(q["parsed"] for q in result.questions)
    assert result.metrics["n_unparseable"] == 2 - parsed
    assert all(q["correct"] is False for q in result.questions if not q["parsed"])
    assert json.loads(write_result(result, tmp_path).read_text())["disclaimer"] == DISCLAIMER


def test_a_model_with_a_lora_adapter_is_scored_through_the_same_path(tiny_gemma_dir, gemma_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    scorer = HFScorer(model, gemma_tokenizer, name="tiny-lora", batch_size=2)
    requests = build_requests(scorer, get_task("medqa"), ITEMS[:2])
    for request, row in zip(requests, scorer.loglikelihood(requests), strict=True):
        expected = [naive_loglikelihood(model, request.context, c) for c in request.continuations]
        assert row == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("embedded", "embedded"),
        ("unsloth/gemma-3-1b-it", "gemma-3-1b-it"),
        ("outputs/run-7/adapter", "run-7-adapter"),  # not just "adapter": runs must not share result files
        ("outputs/run-7/checkpoints/checkpoint-40/", "run-7-checkpoint-40"),
    ],
)
def test_model_names_in_result_files_say_which_run_they_came_from(spec, name):
    from medsft.evaluate.transformers_scorer import model_name

    assert model_name(spec) == name


def test_eval_mode_generate_in_the_config_scores_medqa_by_generation(tiny_gemma_dir, tmp_path):
    from medsft.config import build_config
    from medsft.evaluate.compare import evaluate_models
    from medsft.tasks import item_limit, load_items

    config = build_config(
        {"model": str(tiny_gemma_dir), "eval_tasks": ["medqa"], "eval_limit": 2, "eval_mode": "generate"}
    )
    items = {task: load_items(task, item_limit(config, task), config.seed) for task in config.eval_tasks}
    results = evaluate_models([config.model], items, config.eval_mode, config.seed, tmp_path, False, 8, config,
                              max_new_tokens=3)  # fmt: skip
    result = results["medqa"][0]
    assert (result.task, result.mode, result.n) == ("medqa_cot", "generate", 2)
    assert [q["id"] for q in result.questions] == ["medqa:test:1", "medqa:test:2"]  # the carried test split


def test_the_old_mode_spelling_generative_is_still_accepted(tiny_scorer):
    from medsft.evaluate.compare import evaluate_one

    assert evaluate_one(tiny_scorer, "medqa", ITEMS[:1], "generative", 0, max_new_tokens=2).mode == "generate"
    with pytest.raises(ValueError, match="unknown mode 'sample'; choose one of loglikelihood, generate"):
        evaluate_one(tiny_scorer, "medqa", ITEMS[:1], "sample", 0)


def test_the_notebook_shows_a_real_test_question_as_scored_with_each_models_loglikelihoods(tiny_scorer):
    from medsft.config import build_config
    from medsft.evaluate.compare import compare
    from medsft.stages import eval_data_frame, scored_example
    from medsft.tasks.medqa import load_items as load_medqa_eval
    from medsft.tasks.medqa import prompt as medqa_prompt

    config = build_config({"eval_tasks": ["medqa", "synthetic_ood"], "eval_limit": 2})
    comparison = compare([tiny_scorer], "medqa", items=load_medqa_eval(limit=2))
    prompt, frame = scored_example(comparison, config)
    assert prompt == medqa_prompt(load_medqa_eval(limit=1)[0]) and prompt.endswith("\nAnswer:")
    assert list(frame["continuation"]) == ["' A'", "' B'", "' C'", "' D'"]
    assert list(frame["tiny"]) == comparison.results[0].questions[0]["scores"]
    assert list(frame["gold"]).count("✓") == 1
    sources = eval_data_frame(config).set_index("task")
    assert sources.loc["medqa", "split"] == "test" and "test.jsonl" in sources.loc["medqa", "source"]
    assert sources.loc["synthetic_ood", "split"] == "generated" and sources.loc["medqa", "items"] == 2
