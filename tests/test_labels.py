from __future__ import annotations

import pytest

from medsft.templates import template_text
from medsft.train.labels import IGNORE_INDEX, LabelError, tokenize_conversation

CONVERSATION = [
    {"role": "system", "content": "You are a careful clinical assistant."},
    {"role": "user", "content": "A 70-year-old on warfarin starts clarithromycin. Any concern?"},
    {
        "role": "assistant",
        "content": "<think>\nClarithromycin inhibits CYP3A4.\nWarfarin levels rise.\n</think>\n"
        "Yes: bleeding risk rises; check the INR within a week.",
    },
    {"role": "user", "content": "And with paracetamol?"},
    {"role": "assistant", "content": "Regular high doses can raise the INR modestly."},
]


def labelled_text(tokenizer, item) -> str:
    return tokenizer.decode([t for t in item["labels"] if t != IGNORE_INDEX])


def test_gemma3_labels_exactly_the_assistant_turns(gemma_tokenizer):
    item = tokenize_conversation(gemma_tokenizer, CONVERSATION, max_length=512)
    assert labelled_text(gemma_tokenizer, item) == (
        CONVERSATION[2]["content"] + "<end_of_turn>\n" + CONVERSATION[4]["content"] + "<end_of_turn>\n"
    )
    assert item["input_ids"].count(gemma_tokenizer.bos_token_id) == 1 and item["input_ids"][0] == 2


def test_llama32_labels_exactly_the_assistant_turns(llama_tokenizer):
    item = tokenize_conversation(llama_tokenizer, CONVERSATION, max_length=512)
    assert labelled_text(llama_tokenizer, item) == (
        CONVERSATION[2]["content"] + "<|eot_id|>" + CONVERSATION[4]["content"] + "<|eot_id|>"
    )
    assert item["input_ids"].count(llama_tokenizer.bos_token_id) == 1


@pytest.mark.parametrize("fixture", ["gemma_tokenizer", "llama_tokenizer"])
def test_reasoning_can_be_left_out_of_the_loss(fixture, request):
    tokenizer = request.getfixturevalue(fixture)
    text = labelled_text(tokenizer, tokenize_conversation(tokenizer, CONVERSATION, 512, train_on_reasoning=False))
    assert "think" not in text and "CYP3A4" not in text
    assert text.startswith("Yes: bleeding risk rises") and "modestly." in text


def test_no_user_or_system_token_is_labelled(gemma_tokenizer):
    item = tokenize_conversation(gemma_tokenizer, CONVERSATION, max_length=512)
    shown = "".join(  # every token that carries no loss blanked out
        gemma_tokenizer.decode([token]) if label != IGNORE_INDEX else "#"
        for token, label in zip(item["input_ids"], item["labels"], strict=True)
    )
    assert "warfarin starts" not in shown and "careful clinical" not in shown and "paracetamol" not in shown
    assert "check the INR" in shown


def test_labels_match_trl_assistant_only_loss_for_gemma3(gemma_tokenizer, tiny_gemma_dir):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir="/tmp/medsft-trl-check",
        use_cpu=True,
        bf16=False,
        assistant_only_loss=True,
        eos_token="<end_of_turn>",
        report_to=[],
        gradient_checkpointing=False,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_gemma_dir),
        args=args,
        train_dataset=Dataset.from_list([{"messages": CONVERSATION}]),
        processing_class=gemma_tokenizer,
    )
    trl_row = trainer.train_dataset[0]
    ours = tokenize_conversation(gemma_tokenizer, CONVERSATION, max_length=512)
    assert ours["input_ids"] == trl_row["input_ids"]
    assert ours["labels"] == trl_row["labels"]


def test_truncation_keeps_the_start(gemma_tokenizer):
    item = tokenize_conversation(gemma_tokenizer, CONVERSATION, max_length=20)
    assert len(item["input_ids"]) == len(item["labels"]) == 20 and item["input_ids"][0] == 2


def test_a_template_that_rewrites_history_is_refused(gemma_tokenizer):
    from copy import deepcopy

    tokenizer = deepcopy(gemma_tokenizer)
    tokenizer.chat_template = template_text("qwen-3")  # drops <think> from earlier assistant turns
    with pytest.raises(LabelError, match="not prefix-preserving"):
        tokenize_conversation(tokenizer, CONVERSATION, max_length=512)
