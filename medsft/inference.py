"""Generation with a transformers model through its chat template (used by the smoke run and evaluation)."""

from __future__ import annotations

from typing import Any

from medsft.templates import render_chat


def generate_reply(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """Answer the last user turn; greedy by default so the same prompt gives the same text."""
    import torch

    prompt = render_chat(tokenizer, messages, add_generation_prompt=True)  # holds <bos> already
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
