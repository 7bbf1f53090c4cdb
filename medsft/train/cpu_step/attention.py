"""Causal attention over packed rows, one conversation at a time (an `AttentionInterface` function): no dense
block mask; small conversations by two matmuls, others by SDPA's causal kernel (docs/training.md#cpu-step)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

IMPLEMENTATION = "medsft_packed"
_segments: contextvars.ContextVar[list[tuple[int, int]] | None] = contextvars.ContextVar("segments", default=None)


@contextlib.contextmanager
def packed_segments(position_ids: torch.Tensor | None) -> Iterator[None]:
    """Inside the block, attention works on the conversations of this single packed row (restarting position ids)."""
    bounds = None
    if position_ids is not None and position_ids.shape[0] == 1:
        starts = (position_ids[0] == 0).nonzero().flatten().tolist()
        bounds = list(zip(starts, starts[1:] + [position_ids.shape[1]], strict=True))
    token = _segments.set(bounds)
    try:
        yield
    finally:
        _segments.reset(token)


# Up to this many scores per conversation and layer, two matmuls beat SDPA's CPU kernel (docs/training.md#cpu-step).
MATMUL_ATTENTION_MAX_SCORES = 8 * 2**20


def allowed_positions(length: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Boolean (query, key) mask: causal, and within `window` positions for Gemma's local-attention layers."""
    index = torch.arange(length, device=device)
    offset = index[:, None] - index[None, :]
    return (offset >= 0) if window is None else (offset >= 0) & (offset < window)


def packed_causal_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention per conversation; `query` is (batch, heads, tokens, dim), key/value may have fewer heads."""
    bounds = _segments.get() or [(0, query.shape[2])]
    if query.shape[0] != 1 and len(bounds) > 1:
        raise ValueError("packed attention expects one packed row per batch")
    dropout = dropout if module.training else 0.0
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    softcap = kwargs.get("softcap")
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    outputs = []
    for start, end in bounds:
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        length = end - start
        window = sliding_window if sliding_window is not None and length > sliding_window else None
        if softcap is not None or heads * length * length <= MATMUL_ATTENTION_MAX_SCORES:
            # Two batched matmuls; query heads share their key/value head by broadcasting (GQA).
            grouped = q.reshape(batch, kv_heads, heads // kv_heads, length, dim)
            scores = (grouped @ k.unsqueeze(2).transpose(-1, -2)) * scale
            if softcap is not None:
                scores = torch.tanh(scores / softcap) * softcap
            allowed = allowed_positions(length, window, query.device)
            probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
            if dropout:
                probs = F.dropout(probs, p=dropout)
            out = (probs @ v.unsqueeze(2)).reshape(batch, heads, length, dim)
        else:  # a sliding window needs its mask; plain causal attention gets SDPA's fused causal kernel
            mask = allowed_positions(length, window, query.device) if window is not None else None
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=dropout, scale=scale, enable_gqa=True
            )
        outputs.append(out)
    attended = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return attended.transpose(1, 2).contiguous(), None


AttentionInterface.register(IMPLEMENTATION, packed_causal_attention)


def base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def language_model(model: Any) -> Any:
    """The decoder whose attention is switched: multimodal towers keep theirs (Gemma 4's audio accepts no other)."""
    base = base_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    return decoder if decoder is not None and hasattr(decoder, "set_attn_implementation") else base


@contextlib.contextmanager
def attention_implementation(model: Any, implementation: str) -> Iterator[None]:
    """`implementation` inside the block, the language model's previous one after."""
    decoder = language_model(model)
    previous = decoder.config._attn_implementation
    decoder.set_attn_implementation(implementation)
    try:
        yield
    finally:
        decoder.set_attn_implementation(previous)


@contextlib.contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """Use packed attention while training; restore the model's own implementation for generation after."""
    base_model(model).medsft_own_attention = language_model(model).config._attn_implementation  # for `own_attention`
    with attention_implementation(model, IMPLEMENTATION):
        yield


@contextlib.contextmanager
def own_attention(model: Any) -> Iterator[None]:
    """The model's own attention inside the block, where `packed_attention` switched it (scoring mid-training)."""
    own = getattr(base_model(model), "medsft_own_attention", None)
    with attention_implementation(model, own) if own else contextlib.nullcontext():
        yield
