from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsft.train.cpu_step import attention
from medsft.train.cpu_step.attention import packed_causal_attention, packed_segments


class Layer(torch.nn.Module):
    pass


def reference(q, k, v, window):
    """Each conversation separately through SDPA with an explicit (causal, windowed) mask."""
    length = q.shape[2]
    offset = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    allowed = (offset >= 0) & ((offset < window) if window else True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True, scale=0.125)
    return out.transpose(1, 2)


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("use_matmul", [True, False])
def test_every_branch_equals_per_conversation_sdpa(window, use_matmul, monkeypatch):
    monkeypatch.setattr(attention, "MATMUL_ATTENTION_MAX_SCORES", 10**9 if use_matmul else 0)
    torch.manual_seed(0)
    lengths = [7, 12, 4]
    total = sum(lengths)
    q, k, v = torch.randn(1, 4, total, 16), torch.randn(1, 2, total, 16), torch.randn(1, 2, total, 16)
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    with packed_segments(positions):
        out, _ = packed_causal_attention(Layer().eval(), q, k, v, None, scaling=0.125, sliding_window=window)
    start = 0
    for n in lengths:
        piece = slice(start, start + n)
        expected = reference(q[:, :, piece], k[:, :, piece], v[:, :, piece], window)
        torch.testing.assert_close(out[:, piece], expected, atol=1e-5, rtol=1e-5)
        start += n
