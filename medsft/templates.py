"""Chat templates by name, from TRL's copies of the official ones, under Unsloth's names too (docs/models.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE_FILES = {"gemma-3": "gemma3.jinja", "gemma-4": "gemma4.jinja", "llama-3.1": "llama3_1.jinja",
                  "llama-3.2": "llama3_2.jinja", "qwen-3": "qwen3.jinja"}  # fmt: skip
ALIASES = {"gemma3": "gemma-3", "gemma4": "gemma-4", "llama-31": "llama-3.1", "llama-32": "llama-3.2",
           "qwen3": "qwen-3"}  # fmt: skip


def template_text(name: str) -> str:
    """The official chat template registered under an Unsloth-style name (`gemma-3`, `llama-3.2`, ...)."""
    key = ALIASES.get(name, name)
    if key not in TEMPLATE_FILES:
        raise ValueError(f"unknown chat template '{name}'; choose one of {', '.join(TEMPLATE_FILES)}")
    import trl

    return (Path(trl.__file__).resolve().parent / "chat_templates" / TEMPLATE_FILES[key]).read_text(encoding="utf-8")


def apply_chat_template_name(tokenizer: Any, name: str | None) -> None:
    """Set `tokenizer.chat_template` from a name; None keeps the tokenizer's own (and requires one)."""
    if name is not None:
        tokenizer.chat_template = template_text(name)
    elif not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; set chat_template to one of " + ", ".join(TEMPLATE_FILES))


def render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """A whole conversation rendered by the tokenizer's own chat template (which writes `<bos>` itself)."""
    apply_chat_template_name(tokenizer, None)  # fail clearly when there is no template to render with
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def encode_rendered(tokenizer: Any, text: str | list[str]) -> Any:
    """Token ids of rendered chat text. The text already holds `<bos>`; adding special tokens would double it."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_one_bos(tokenizer: Any, ids: list[int]) -> None:
    """Raise unless `ids` start with their one `<bos>` (a second quietly degrades Gemma fine-tunes); Qwen has none."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return
    count = sum(1 for token in ids if token == bos)
    if count != 1 or not ids or ids[0] != bos:
        raise ValueError(
            f"expected exactly one {tokenizer.bos_token} at the start of the sequence, found {count}"
            + ("" if not ids or ids[0] == bos else " and not at the start")
            + "; tokenize rendered chat text with add_special_tokens=False"
        )


def chat_token_lengths(tokenizer: Any, conversations: list[list[dict[str, str]]], batch_size: int = 512) -> list[int]:
    """Token counts of many conversations as the trainer will see them (rendered, one `<bos>` each)."""
    apply_chat_template_name(tokenizer, None)
    lengths: list[int] = []
    for start in range(0, len(conversations), batch_size):
        texts = tokenizer.apply_chat_template(conversations[start : start + batch_size], tokenize=False)
        for ids in encode_rendered(tokenizer, texts):
            check_one_bos(tokenizer, ids)
            lengths.append(len(ids))
    return lengths
