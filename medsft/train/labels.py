"""Response-only labels: only assistant tokens carry loss; system, user and the prompt prefix get -100. Spans are
found on the rendered text, for any prefix-preserving chat template (docs/training.md#response-only-labels)."""

from __future__ import annotations

import re
from typing import Any

from medsft.templates import check_one_bos, render_chat

IGNORE_INDEX = -100
THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


class LabelError(ValueError):
    """A conversation cannot be labelled (template not prefix-preserving, or nothing left to learn)."""


def assistant_char_spans(tokenizer: Any, messages: list[dict[str, str]], text: str) -> list[tuple[int, int]]:
    """Character spans of each assistant turn (content + end-of-turn marker) in the rendered `text`."""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (through.startswith(prefix) and text.startswith(through)):
            raise LabelError(
                "the chat template is not prefix-preserving (rendering a conversation changes how earlier turns "
                f"look), so assistant turn {index} cannot be located; use a template such as gemma-3 or llama-3.2"
            )
        spans.append((len(prefix), len(through)))
    return spans


def tokenize_conversation(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int, train_on_reasoning: bool = True
) -> dict[str, list[int]]:
    """`input_ids` and `labels` for one conversation, truncated to `max_length` (keeping the start). The rendered
    text already holds `<bos>`, so it is tokenized without special tokens: one `<bos>` per sequence."""
    text = render_chat(tokenizer, messages)
    spans = assistant_char_spans(tokenizer, messages, text)
    thinking = [(s + m.start(), s + m.end()) for s, e in spans for m in THINK_BLOCK.finditer(text[s:e])]
    excluded = [] if train_on_reasoning else thinking  # `<think>` blocks inside assistant spans
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    check_one_bos(tokenizer, encoding["input_ids"])
    input_ids = encoding["input_ids"][:max_length]
    offsets = encoding["offset_mapping"][:max_length]

    def trained(start: int, end: int) -> bool:
        if end <= start:  # zero-width tokens carry no text of their own
            return False
        inside = any(s <= start < e for s, e in spans)
        return inside and not any(s <= start < e for s, e in excluded)

    labels = [tok if trained(s, e) else IGNORE_INDEX for tok, (s, e) in zip(input_ids, offsets, strict=True)]
    return {"input_ids": input_ids, "labels": labels}


def count_trained_tokens(labels: list[int]) -> int:
    return sum(1 for label in labels if label != IGNORE_INDEX)
