"""The vLLM engine's arguments, prompts and score reading, checked without vLLM (it has no CPU wheel).

What `VLLMScorer` hands vLLM is built by plain functions, tested here; `scripts/check_vllm_api.py` checks the
same functions' output against the vLLM release's source. Choosing the engine fails before a model loads or
a run folder is made when vLLM is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from medsft.config import ConfigError, build_config
from medsft.evaluate.compare import scorer_settings
from medsft.evaluate.transformers_scorer import GenerationSettings, chat_prompt_ids
from medsft.evaluate.vllm_scorer import (
    continuation_logprob,
    engine_arguments,
    lora_rank_slot,
    sampling_arguments,
    vllm_available,
)

needs_no_vllm = pytest.mark.skipif(vllm_available(), reason="checks the error shown where vLLM is not installed")


def test_an_adapter_gets_the_smallest_lora_slot_that_holds_its_rank():
    assert [lora_rank_slot(r) for r in (1, 8, 9, 16, 24, 300, 512)] == [1, 8, 16, 16, 32, 320, 512]
    with pytest.raises(ValueError, match="LoRA rank 513 is above vLLM's largest slot"):
        lora_rank_slot(513)


def test_an_adapter_is_served_on_its_base_with_its_own_tokenizer(tmp_path):
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "config.json").write_text("{}", encoding="utf-8")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 24}))
    config = build_config({"model": str(adapter), "seed": 7, "dtype": "bfloat16"})

    arguments, lora_path = engine_arguments(str(adapter), config)
    assert lora_path == str(adapter)
    assert arguments["model"] == str(base) and arguments["tokenizer"] == str(adapter)
    assert arguments["enable_lora"] and arguments["max_lora_rank"] == 32 and arguments["max_loras"] == 1
    assert arguments["seed"] == 7 and arguments["dtype"] == "bfloat16"

    plain, no_adapter = engine_arguments(str(base), config)
    assert no_adapter is None and plain["model"] == plain["tokenizer"] == str(base)
    assert "enable_lora" not in plain


def test_greedy_replies_use_temperature_zero_and_sampled_rows_their_own_seed():
    greedy = sampling_arguments(GenerationSettings(max_new_tokens=64, temperature=0.7, seed=3), 2, [106])
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["top_k"] == 0
    assert greedy["max_tokens"] == 64 and greedy["stop_token_ids"] == [106] and greedy["seed"] == 5
    sampled = sampling_arguments(GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9, seed=3), 2, [])
    assert sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9 and sampled["seed"] == 5


def test_a_continuation_score_sums_its_own_prompt_positions_only():
    def ranked(token: int, logprob: float) -> dict[int, SimpleNamespace]:
        # vLLM returns the actual prompt token beside the top-ranked one
        return {token: SimpleNamespace(logprob=logprob), 999: SimpleNamespace(logprob=-0.01)}

    tokens = [2, 10, 11, 12, 13]
    prompt_logprobs = [None, ranked(10, -1.0), ranked(11, -2.0), ranked(12, -0.5), ranked(13, -0.25)]
    assert continuation_logprob(prompt_logprobs, tokens, 3) == pytest.approx(-0.75)
    assert continuation_logprob(prompt_logprobs, tokens, 4) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="at least one context token"):
        continuation_logprob(prompt_logprobs, tokens, 0)
    prompt_logprobs[4] = {999: SimpleNamespace(logprob=-0.01)}
    with pytest.raises(ValueError, match="no log-probability for prompt position 4"):
        continuation_logprob(prompt_logprobs, tokens, 3)


def test_chat_prompts_hold_one_bos_and_end_with_the_generation_prompt(gemma_tokenizer):
    conversations = [[{"role": "user", "content": "Name one cause of anaemia."}], [{"role": "user", "content": "Hi"}]]
    ids = chat_prompt_ids(gemma_tokenizer, conversations)
    assert len(ids) == 2
    for prompt in ids:
        assert prompt[0] == gemma_tokenizer.bos_token_id and prompt.count(gemma_tokenizer.bos_token_id) == 1
        assert gemma_tokenizer.decode(prompt).endswith("<start_of_turn>model\n")


def test_each_engine_keeps_its_own_cached_results():
    assert scorer_settings("vllm", 8)["class"] == "VLLMScorer"
    assert scorer_settings("transformers", 8)["class"] == "HFScorer"


def test_an_unknown_engine_is_a_config_error():
    with pytest.raises(ConfigError, match="eval_engine: 'tpu' is not allowed; choose one of transformers, vllm"):
        build_config({"eval_engine": "tpu"})


@needs_no_vllm
def test_the_pipeline_refuses_vllm_before_making_a_run_folder(tmp_path):
    from medsft.pipeline import run_pipeline

    config = build_config({"eval_engine": "vllm", "output_dir": str(tmp_path / "runs")})
    with pytest.raises(ConfigError, match=r"eval_engine: vllm is not installed; pip install -e '\.\[vllm\]'"):
        run_pipeline(config, "evaluate")
    assert not (tmp_path / "runs").exists()


@needs_no_vllm
@pytest.mark.parametrize(
    ("engine", "model", "message"),
    [
        ("tpu", "embedded", "medsft: --engine: unknown engine 'tpu'; choose one of transformers, vllm"),
        ("vllm", "model.gguf", "medsft: --engine vllm: a .gguf file is scored by llama.cpp"),
        ("vllm", "embedded", "medsft: --engine vllm: vLLM is not installed"),
    ],
)
def test_medsft_eval_checks_the_engine_before_loading(capsys, tmp_path: Path, engine, model, message):
    from medsft.__main__ import main

    if model.endswith(".gguf"):
        model = str(tmp_path / model)
        Path(model).write_bytes(b"GGUF")
    code = main(["eval", "--model", model, "--task", "medqa", "--limit", "2", "--engine", engine,
                 "--out", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().startswith(message)
