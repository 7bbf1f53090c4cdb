"""Chat templates: official copies by name, and rendering through the real Gemma 3 tokenizer with one <bos>."""

from __future__ import annotations

import copy

import pytest

from medsft.templates import (
    ALIASES,
    TEMPLATE_FILES,
    apply_chat_template_name,
    chat_token_lengths,
    check_one_bos,
    encode_rendered,
    render_chat,
    template_text,
)


def tokenize_chat(tokenizer, messages) -> list[int]:
    """Token ids of a conversation, checked to hold exactly one <bos> (at the start)."""
    ids = encode_rendered(tokenizer, render_chat(tokenizer, messages))
    check_one_bos(tokenizer, ids)
    return ids

GEMMA_BOS, GEMMA_START_OF_TURN, GEMMA_END_OF_TURN = 2, 105, 106
CHAT = [
    {"role": "system", "content": "Answer as a careful clinician."},
    {"role": "user", "content": "Is a potassium of 6.9 mmol/L urgent?"},
    {"role": "assistant", "content": "<think>\n1. It is above 6.5.\n</think>\nUrgency: HIGH"},
]


@pytest.mark.parametrize("name", [*TEMPLATE_FILES, *ALIASES])
def test_every_named_template_is_an_official_trl_copy(name):
    text = template_text(name)
    assert "{%" in text and "messages" in text


def test_unknown_template_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown chat template 'chatml'; choose one of gemma-3"):
        template_text("chatml")


def test_gemma_rendering_has_one_bos_and_the_gemma_turn_markers(gemma_tokenizer):
    text = render_chat(gemma_tokenizer, CHAT)
    assert text.startswith("<bos><start_of_turn>user\n") and text.count("<bos>") == 1
    assert "Answer as a careful clinician.\n\nIs a potassium" in text  # Gemma folds the system turn into the user's
    assert "<start_of_turn>model\n<think>\n1. It is above 6.5.\n</think>\nUrgency: HIGH<end_of_turn>\n" in text
    assert text.count("<end_of_turn>") == 2


def test_tokenized_chat_starts_with_the_single_bos_and_marks_each_turn(gemma_tokenizer):
    ids = tokenize_chat(gemma_tokenizer, CHAT)
    assert ids[0] == GEMMA_BOS and ids.count(GEMMA_BOS) == 1
    assert ids.count(GEMMA_START_OF_TURN) == 2 and ids.count(GEMMA_END_OF_TURN) == 2


def test_generation_prompt_ends_with_the_model_header(gemma_tokenizer):
    text = render_chat(gemma_tokenizer, CHAT[:2], add_generation_prompt=True)
    assert text.endswith("<start_of_turn>model\n") and text.count("<bos>") == 1


def test_tokenizing_rendered_text_with_special_tokens_would_double_the_bos(gemma_tokenizer):
    text = render_chat(gemma_tokenizer, CHAT)
    doubled = gemma_tokenizer(text)["input_ids"]  # the mistake: template text plus the tokenizer's own <bos>
    assert doubled.count(GEMMA_BOS) == 2
    with pytest.raises(ValueError, match="exactly one <bos>"):
        check_one_bos(gemma_tokenizer, doubled)
    check_one_bos(gemma_tokenizer, encode_rendered(gemma_tokenizer, text))


def test_a_sequence_without_bos_is_rejected(gemma_tokenizer):
    with pytest.raises(ValueError, match="found 0"):
        check_one_bos(gemma_tokenizer, [GEMMA_START_OF_TURN, 1234])


def test_batch_token_lengths_match_single_tokenization(gemma_tokenizer):
    chats = [CHAT, CHAT[1:], [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]]
    assert chat_token_lengths(gemma_tokenizer, chats, batch_size=2) == [
        len(tokenize_chat(gemma_tokenizer, chat)) for chat in chats
    ]


def test_rendering_uses_the_tokenizer_template_set_by_name(gemma_tokenizer):
    tokenizer = copy.copy(gemma_tokenizer)
    apply_chat_template_name(tokenizer, "gemma-3")
    assert tokenizer.chat_template == template_text("gemma3")
    assert render_chat(tokenizer, CHAT) == render_chat(gemma_tokenizer, CHAT)


def test_a_tokenizer_without_a_template_cannot_render(gemma_tokenizer):
    tokenizer = copy.copy(gemma_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        render_chat(tokenizer, CHAT)
