"""Fast greedy generation gives transformers' `generate` text; base-model results are cached and say so."""

from __future__ import annotations

import pytest
import torch

from medsft.evaluate.transformers_scorer import GenerationSettings, HFScorer, greedy_generate

CONVERSATIONS = [
    [{"role": "user", "content": "Name one symptom of anaemia, and explain why it happens."}],
    [{"role": "user", "content": "Hi"}],  # much shorter: left padding in a batch
    [{"role": "user", "content": "A 70-year-old man has chest pain and a heart rate of 140. How urgent is this?"}],
    [{"role": "user", "content": "List two causes of hyperkalaemia."}],
    [{"role": "user", "content": "What does a raised CRP mean?"}],
]


@pytest.fixture(scope="module")
def tiny_model(tiny_gemma_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()


def plain_and_fast(model, tokenizer, batch_size: int, max_new_tokens: int) -> tuple[list[str], list[str]]:
    plain = HFScorer(model, tokenizer, batch_size=batch_size, fast_greedy=False)
    fast = HFScorer(model, tokenizer, generate_batch_size=batch_size)
    return plain.generate(CONVERSATIONS, GenerationSettings(max_new_tokens)), fast.generate(
        CONVERSATIONS, GenerationSettings(max_new_tokens)
    )


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_fast_greedy_gives_the_text_of_transformers_generate(tiny_model, gemma_tokenizer, batch_size):
    plain, fast = plain_and_fast(tiny_model, gemma_tokenizer, batch_size, max_new_tokens=12)
    assert all(plain) and fast == plain


def test_rows_that_end_early_leave_the_batch_and_the_rest_still_match(tiny_model, gemma_tokenizer, monkeypatch):
    from medsft.templates import render_chat

    prompts = [
        list(
            gemma_tokenizer(render_chat(gemma_tokenizer, c, add_generation_prompt=True), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for c in CONVERSATIONS
    ]
    free = greedy_generate(tiny_model, prompts, 10, batch_size=8)
    # Make the third token of one reply an end token (one that no other reply produces before its own third
    # token), so that row stops after 3 tokens while the others run on without it in the batch.
    row = next(r for r in range(len(free)) if all(free[r][2] not in other[:3] for other in free if other != free[r]))
    stop = free[row][2]
    monkeypatch.setattr(tiny_model.generation_config, "eos_token_id", [stop])
    ended = greedy_generate(tiny_model, prompts, 10, batch_size=8)
    assert ended[row] == free[row][:3]
    for other, reply in enumerate(free):
        if other != row:
            cut = reply.index(stop) + 1 if stop in reply else len(reply)
            assert ended[other] == reply[:cut]
    plain, fast = plain_and_fast(tiny_model, gemma_tokenizer, 8, max_new_tokens=10)
    assert fast == plain


def test_fast_greedy_runs_a_model_with_a_lora_adapter_like_transformers_generate(tiny_gemma_dir, gemma_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # non-zero: it matters
    model = get_peft_model(base, lora).eval()
    plain, fast = plain_and_fast(model, gemma_tokenizer, 2, max_new_tokens=8)
    assert fast == plain


def test_fast_greedy_is_deterministic_and_independent_of_input_order(tiny_model, gemma_tokenizer):
    scorer = HFScorer(tiny_model, gemma_tokenizer, generate_batch_size=2)
    first = scorer.generate(CONVERSATIONS, GenerationSettings(8))
    assert scorer.generate(CONVERSATIONS, GenerationSettings(8)) == first
    assert scorer.generate(CONVERSATIONS[::-1], GenerationSettings(8)) == first[::-1]


# The evaluation cache -----------------------------------------------------------------------------------


def test_a_cached_result_has_the_same_records_says_so_and_loads_no_model(tiny_gemma_dir, tmp_path, monkeypatch):
    from medsft.data import synthetic_ood_cases
    from medsft.evaluate.compare import evaluate_models

    monkeypatch.setenv("MEDSFT_CACHE", str(tmp_path / "cache"))
    items = {"synthetic_ood": synthetic_ood_cases(3, 0)}
    spec = str(tiny_gemma_dir)
    first = evaluate_models([spec], items, "loglikelihood", 0, tmp_path / "run1", False, 8, max_new_tokens=4)
    assert "cached" not in first["synthetic_ood"][0].settings

    def no_loading(*args, **kwargs):
        raise AssertionError("a cached model must not be loaded")

    monkeypatch.setattr(HFScorer, "from_spec", no_loading)
    second = evaluate_models([spec], items, "loglikelihood", 0, tmp_path / "run2", False, 8, max_new_tokens=4)
    computed, cached = first["synthetic_ood"][0], second["synthetic_ood"][0]
    assert cached.questions == computed.questions and cached.metrics == computed.metrics
    assert cached.settings["cached"] is True
    assert cached.settings["cached_from"].startswith(str(tmp_path / "cache" / "eval"))
    written = (tmp_path / "run2" / f"eval_synthetic_ood_{tiny_gemma_dir.name}.json").read_text()
    assert '"cached": true' in written and '"cached_from"' in written


def test_the_cache_key_changes_with_the_data_the_scorer_and_the_generation_settings(tmp_path):
    from medsft.data import synthetic_eval_cases
    from medsft.evaluate.cache import result_cache

    items = synthetic_eval_cases(4, 0)
    settings = {"class": "HFScorer", "batch_size": 8, "generate_batch_size": 32}

    def key(task="synthetic", data=items, scorer=settings, generation=None, seed=0, model="embedded"):
        generation = generation or {"max_new_tokens": 224}
        cache = result_cache(model, scorer, "loglikelihood", seed, None, generation, tmp_path)
        return cache.key(task, data)

    assert key() == key()
    changed = [
        key(data=items[:3]),
        key(data=synthetic_eval_cases(4, 1)),
        key(task="synthetic_ood"),
        key(scorer={**settings, "batch_size": 16}),
        key(scorer={**settings, "generate_batch_size": 8}),
        key(generation={"max_new_tokens": 128}),
        key(seed=1),
        key(model="unsloth/gemma-3-1b-it"),
    ]
    assert len({key(), *changed}) == len(changed) + 1


def test_only_stable_models_are_cached_and_a_folder_by_its_contents(tmp_path):
    from medsft.evaluate.cache import model_identity, result_cache

    adapter = tmp_path / "run-1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    assert model_identity(str(adapter)) is None
    assert result_cache(str(adapter), {}, "loglikelihood", 0) is None
    assert result_cache(object(), {}, "loglikelihood", 0) is None  # a ready scorer object
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    before = model_identity(str(folder))
    assert before == model_identity(str(folder)) and before.startswith("folder:")
    (folder / "config.json").write_text('{"a": 2}')
    assert model_identity(str(folder)) != before
    assert model_identity("embedded").startswith("embedded:") and model_identity("org/model") == "hub:org/model"
