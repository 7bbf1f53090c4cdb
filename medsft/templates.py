"""Chat templates by name, taken from the official copies TRL ships — never a hand-written imitation.

TRL keeps byte-identical copies of the templates the model repos ship (`trl/chat_templates/*.jinja`, checked
weekly against the hub) and training variants with `{% generation %}` markers for assistant-only loss.
Unsloth's `get_chat_template` names are accepted as aliases, so recipes read the same on both backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE_FILES = {
    "gemma-3": "gemma3.jinja",
    "gemma-4": "gemma4.jinja",
    "llama-3.1": "llama3_1.jinja",
    "llama-3.2": "llama3_2.jinja",
    "qwen-3": "qwen3.jinja",
}
ALIASES = {
    "gemma3": "gemma-3",
    "gemma4": "gemma-4",
    "llama-31": "llama-3.1",
    "llama-32": "llama-3.2",
    "qwen3": "qwen-3",
}


def trl_template_dir() -> Path:
    import trl

    return Path(trl.__file__).resolve().parent / "chat_templates"


def template_text(name: str) -> str:
    """The official chat template registered under an Unsloth-style name (`gemma-3`, `llama-3.2`, ...)."""
    key = ALIASES.get(name, name)
    if key not in TEMPLATE_FILES:
        raise ValueError(f"unknown chat template '{name}'; choose one of {', '.join(TEMPLATE_FILES)}")
    return (trl_template_dir() / TEMPLATE_FILES[key]).read_text(encoding="utf-8")


def gemma3_template() -> str:
    return template_text("gemma-3")


def apply_chat_template_name(tokenizer: Any, name: str | None) -> Any:
    """Set `tokenizer.chat_template` from a name; None keeps the tokenizer's own (and requires one)."""
    if name is not None:
        tokenizer.chat_template = template_text(name)
    elif not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "the tokenizer has no chat template; set chat_template to one of " + ", ".join(TEMPLATE_FILES)
        )
    return tokenizer


def render_generation_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text up to the assistant header; it already holds `<bos>`, so tokenize it without one."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
