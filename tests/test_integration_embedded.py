"""The real embedded google/gemma-3-270m: load through the backend, generate, LoRA forward/backward."""

from __future__ import annotations

import math

import pytest
import torch

from medsft.config import build_config
from medsft.evaluate.transformers_scorer import GenerationSettings, HFScorer
from medsft.train.backend import select_backend

pytestmark = pytest.mark.integration

PARAGRAPH = (
    "Hypertension is a major risk factor for stroke, myocardial infarction and chronic kidney disease. "
    "First-line drug treatment usually includes a thiazide diuretic, a calcium channel blocker or an "
    "ACE inhibitor, chosen according to age, ethnicity and other conditions such as diabetes."
)


@pytest.fixture(scope="module")
def loaded(embedded_dir):
    config = build_config({"model": "embedded", "lora_r": 8, "lora_alpha": 16})
    backend = select_backend(config.backend)
    model, tokenizer = backend.load(config)
    return backend, config, model, tokenizer


def perplexity(model, tokenizer, text: str) -> float:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def test_real_model_loads_through_the_cpu_backend(loaded):
    backend, _, model, tokenizer = loaded
    assert backend.name == "transformers"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(268e6, rel=0.01)
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") == 106 and tokenizer.bos_token_id == 2


def test_real_weights_prefer_real_text_over_shuffled_words(loaded):
    _, _, model, tokenizer = loaded
    words = PARAGRAPH.split()
    shuffled = " ".join(words[i] for i in torch.randperm(len(words), generator=torch.Generator().manual_seed(0)))
    real, scrambled = perplexity(model, tokenizer, PARAGRAPH), perplexity(model, tokenizer, shuffled)
    assert real < 30 and scrambled > 10 * real  # random or broken weights give similar, huge perplexities


def test_greedy_generation_is_deterministic_and_non_empty(loaded):
    _, _, model, tokenizer = loaded
    messages = [{"role": "user", "content": "List three symptoms of anaemia."}]
    scorer = HFScorer(model, tokenizer)
    (first,) = scorer.generate([messages], GenerationSettings(16))
    assert first.strip()
    assert scorer.generate([messages], GenerationSettings(16)) == [first]


def test_lora_forward_backward_updates_only_the_adapter(loaded):
    backend, config, model, tokenizer = loaded
    peft_model = backend.add_lora(model, config)
    ids = tokenizer(PARAGRAPH, return_tensors="pt").input_ids
    loss = peft_model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "lora_A" in n or "lora_B" in n)
    peft_model.unload()  # give the module its base model back for other tests


def test_a_short_run_on_synthetic_cases_lowers_validation_loss(embedded_dir, tmp_path):
    import json

    from medsft.config import DataSource
    from medsft.train.steps import train

    config = build_config(
        {
            "model": "embedded",
            "datasets": [DataSource(name="synthetic", count=64)],
            "eval_tasks": ["synthetic"],
            "validation_fraction": 0.125,
            "max_steps": 8,
            "eval_every_steps": 8,
            "save_every_steps": 8,
            "batch_size": 4,
            "output_dir": str(tmp_path),
            "run_id": "short",
        }
    )
    result = train(config)
    losses = [e["eval_loss"] for e in result.eval_losses]
    assert [e["step"] for e in result.eval_losses] == [0, 8]
    assert losses[1] < 0.8 * losses[0]
    assert (result.run_dir / "checkpoints" / "checkpoint-8").is_dir() and result.adapter_dir.is_dir()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert len(manifest["data"]["train_sha256"]) == 64 and manifest["packages"]["trl"]
