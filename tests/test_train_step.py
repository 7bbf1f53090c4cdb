from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from transformers import AutoModelForCausalLM

from medsft.config import build_config
from medsft.train.backend import TransformersBackend
from medsft.train.cpu_step import pack_examples
from medsft.train.cpu_step.attention import packed_attention
from medsft.train.cpu_step.loss import sparse_head_loss
from medsft.train.labels import IGNORE_INDEX, tokenize_conversation
from medsft.train.steps import tokenize_split

CHATS = [
    [{"role": "user", "content": "Name one loop diuretic."}, {"role": "assistant", "content": "Furosemide."}],
    [
        {"role": "user", "content": "What does a high TSH with low free T4 suggest?"},
        {
            "role": "assistant",
            "content": "<think>\nPituitary is pushing a failing gland.\n</think>\nPrimary hypothyroidism.",
        },
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First-line drug for anaphylaxis?"},
        {"role": "assistant", "content": "Intramuscular adrenaline."},
    ],
]


@pytest.fixture(scope="module")
def lora_model(tiny_gemma_dir):
    backend = TransformersBackend("test")
    config = build_config({"model": str(tiny_gemma_dir), "lora_r": 4, "lora_alpha": 8})
    model, tokenizer = backend.load(config)
    model = backend.add_lora(model, config)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    return model, tokenizer


def padded_batch(items):
    width = max(len(i["input_ids"]) for i in items)
    pad = lambda seq, value: list(seq) + [value] * (width - len(seq))  # noqa: E731
    return {
        "input_ids": torch.tensor([pad(i["input_ids"], 0) for i in items]),
        "attention_mask": torch.tensor([pad([1] * len(i["input_ids"]), 0) for i in items]),
        "labels": torch.tensor([pad(i["labels"], IGNORE_INDEX) for i in items]),
    }


def lora_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_sparse_head_and_packing_give_the_full_logit_loss_and_gradients(lora_model):
    model, tokenizer = lora_model
    items = [tokenize_conversation(tokenizer, chat, 256) for chat in CHATS]
    batch = padded_batch(items)

    model.zero_grad()
    reference = model(**batch).loss  # transformers' own loss: logits at every position
    reference.backward()
    expected = lora_grads(model)

    packed = pack_examples(items)
    for inputs, attention in ((batch, nullcontext()), (packed, nullcontext()), (packed, packed_attention(model))):
        model.zero_grad()
        with attention:
            out = sparse_head_loss(model, inputs)
        out.loss.backward()
        assert out.loss.item() == pytest.approx(reference.item(), abs=1e-5)
        assert out.trained_tokens == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        for name, grad in lora_grads(model).items():
            torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-4)


def test_gemma4_packed_step_gives_the_full_logit_loss_and_gradients(gemma_tokenizer):
    """Gemma 4 (E2B's shape: key/value-sharing layers, per-layer inputs, vision and audio towers): the packed,
    sparse-head step on its language-model-only adapter equals transformers' own loss over padded rows. Asked
    for one row of logits by an integer, Gemma 4 would also cut its key/value-sharing layers to one position."""
    import transformers
    from local_hub import gemma4_e2b

    torch.manual_seed(0)
    model = transformers.Gemma4ForConditionalGeneration._from_config(transformers.AutoConfig.for_model(**gemma4_e2b()))
    # In float64: Gemma 4's fp32 gradients differ from a float64 reference by ~7e-5 on either path (rounding over
    # the 262k-way softmax), which would hide a real difference; in float64 the two paths agree to ~1e-7.
    model = TransformersBackend("test").add_lora(model, build_config({"lora_r": 4, "lora_alpha": 8})).double()
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    items = [tokenize_conversation(gemma_tokenizer, chat, 256) for chat in CHATS]
    batch = padded_batch(items)
    model.zero_grad()
    reference = model(**batch).loss
    reference.backward()
    expected = lora_grads(model)
    assert expected and all(".language_model." in name for name in expected)
    model.zero_grad()
    with packed_attention(model):
        out = sparse_head_loss(model, pack_examples(items))
    out.loss.backward()
    assert out.loss.item() == pytest.approx(reference.item(), abs=1e-9)
    for name, grad in lora_grads(model).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-6, rtol=1e-6)


def test_packing_restarts_positions_and_never_trains_across_conversations(gemma_tokenizer):
    items = [tokenize_conversation(gemma_tokenizer, chat, 256) for chat in CHATS]
    packed = pack_examples(items)
    starts = [0, len(items[0]["input_ids"]), len(items[0]["input_ids"]) + len(items[1]["input_ids"])]
    assert packed["input_ids"].shape == (1, sum(len(i["input_ids"]) for i in items))
    for start in starts:
        assert packed["position_ids"][0, start] == 0 and packed["labels"][0, start] == IGNORE_INDEX


def test_a_dataset_with_nothing_to_learn_is_an_error_before_training(gemma_tokenizer):
    from medsft.train.labels import LabelError

    config = build_config({"max_seq_length": 8})  # cuts every conversation before its assistant turn
    rows = [{"id": str(i), "messages": chat} for i, chat in enumerate(CHATS)]
    with pytest.raises(LabelError, match="every train row has all labels -100"):
        tokenize_split(rows, gemma_tokenizer, config, "train")


@pytest.mark.parametrize("block_columns", [128, 2048])  # eight vocabulary blocks (the last one narrower), or one
def test_fused_head_matches_plain_cross_entropy_with_gradients(monkeypatch: pytest.MonkeyPatch, block_columns: int):
    from medsft.train.cpu_step import loss
    from medsft.train.cpu_step.loss import FusedLinearCrossEntropy

    vocab = 1000
    monkeypatch.setattr(loss, "CHUNK_BYTES", 4 * vocab * 100)  # 100 rows per chunk: 600 rows take six chunks
    monkeypatch.setattr(loss, "BLOCK_COLUMNS", block_columns)
    torch.manual_seed(0)
    hidden = torch.randn(600, 32, requires_grad=True)
    weight = torch.randn(vocab, 32)
    targets = torch.randint(0, vocab, (600,))
    total, correct = FusedLinearCrossEntropy.apply(hidden, weight, targets)
    (total * 0.5).backward()
    expected_grad = hidden.grad.clone()
    hidden.grad = None
    logits = hidden @ weight.T
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    (reference * 0.5).backward()
    assert total.item() == pytest.approx(reference.item(), rel=1e-5)
    assert correct.item() == int((logits.argmax(-1) == targets).sum())
    torch.testing.assert_close(expected_grad, hidden.grad, atol=1e-5, rtol=1e-4)


def test_tiny_model_loss_is_not_trivially_zero(tiny_gemma_dir, gemma_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    out = sparse_head_loss(model, pack_examples([tokenize_conversation(gemma_tokenizer, CHATS[0], 64)]))
    assert out.loss.item() > 5  # random weights over a 262k vocabulary: about ln(262144) = 12.5


def test_packed_attention_honours_a_sliding_window_shorter_than_the_conversation(embedded_dir, gemma_tokenizer):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(embedded_dir)
    config.update(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention"],
        }
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    items = [tokenize_conversation(gemma_tokenizer, chat, 256) for chat in CHATS]
    reference = [model(**padded_batch([item])).loss.item() for item in items]
    with packed_attention(model):
        packed = [sparse_head_loss(model, pack_examples([item])).loss.item() for item in items]
    assert packed == pytest.approx(reference, abs=1e-5)
    assert min(len(i["input_ids"]) for i in items) > 8  # every conversation is longer than the window
