"""Causal attention over packed rows, one conversation at a time.

A packed row holds several conversations back to back. The linear layers then see one large matrix (efficient
GEMMs, no padding), but attention must not cross conversations. transformers' SDPA path expresses that with a
dense block-diagonal mask over the whole row, which computes (and masks) every cross-conversation score and
rules out SDPA's fused causal kernel. This attention function instead slices each conversation out of the row
and runs SDPA with `is_causal=True` on it, so the work is exactly the causal attention of each conversation.

It is registered with transformers' `AttentionInterface`; the segment boundaries come from `packed_segments`,
which the loss sets from the row's position ids (they restart at 0 for each conversation).
"""

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


def segment_bounds(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each conversation in a single packed row, from restarting position ids."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    ends = starts[1:] + [position_ids.shape[1]]
    return list(zip(starts, ends, strict=True))


@contextlib.contextmanager
def packed_segments(position_ids: torch.Tensor | None) -> Iterator[None]:
    bounds = segment_bounds(position_ids) if position_ids is not None and position_ids.shape[0] == 1 else None
    token = _segments.set(bounds)
    try:
        yield
    finally:
        _segments.reset(token)


def sliding_causal_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean mask letting position i see positions (i - window, i]: Gemma's local-attention layers."""
    index = torch.arange(length, device=device)
    offset = index[:, None] - index[None, :]
    return (offset >= 0) & (offset < window)


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
    """SDPA per conversation; `query` is (batch, heads, tokens, dim), key/value may have fewer (GQA) heads."""
    bounds = _segments.get() or [(0, query.shape[2])]
    if query.shape[0] != 1 and len(bounds) > 1:
        raise ValueError("packed attention expects one packed row per batch")
    dropout = dropout if module.training else 0.0
    outputs = []
    for start, end in bounds:
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        if sliding_window is not None and end - start > sliding_window:
            mask = sliding_causal_mask(end - start, sliding_window, query.device)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling, enable_gqa=True
            )
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=dropout, scale=scaling, enable_gqa=True
            )
        outputs.append(out)
    attended = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return attended.transpose(1, 2).contiguous(), None


AttentionInterface.register(IMPLEMENTATION, packed_causal_attention)


@contextlib.contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """Use packed attention while training; restore the model's own implementation for generation after."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = base.config._attn_implementation
    base.set_attn_implementation(IMPLEMENTATION)
    try:
        yield
    finally:
        base.set_attn_implementation(previous)
