"""Causal-LM loss with the LM head applied only where a label is trained, fused with the cross-entropy (Gemma 3's
head is 168M of the 270M model's parameters; docs/training.md#cpu-step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medsft.train.cpu_step.attention import base_model, packed_segments
from medsft.train.labels import IGNORE_INDEX

# Logits of one chunk stay under this (512 rows of Gemma's 262k vocabulary): 512-1024 rows ran ~20% faster than 128.
CHUNK_BYTES = 512 * 2**20
# Within a chunk, the head runs on blocks of this many vocabulary columns, each block's logits reduced while in
# cache: the whole step took 9% less time than one GEMM of the whole head (docs/training.md#cpu-step).
BLOCK_COLUMNS = 2048

_workspace: list[torch.Tensor] = []  # the CPU logits buffer, kept between steps (see logits_workspace)


def logits_workspace(elements: int, device: torch.device) -> torch.Tensor:
    """fp32 room for one chunk's logits, kept for the next step on the CPU (a fresh one costs 2%: docs/training.md)."""
    if device.type != "cpu":
        return torch.empty(elements, dtype=torch.float32, device=device)
    if not _workspace or _workspace[0].numel() < elements:
        _workspace.clear()  # the old buffer goes before the larger one comes
        _workspace.append(torch.empty(elements, dtype=torch.float32))
    return _workspace[0][:elements]


def release_workspace() -> None:
    _workspace.clear()


@dataclass
class LossOutput:
    loss: torch.Tensor
    trained_tokens: int
    correct_tokens: int


class FusedLinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(hidden @ weight.T, targets)) and top-1 hits for a frozen `weight` (docs/training.md)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple:
        rows_total, vocab = hidden.shape[0], weight.shape[0]
        grad_hidden = torch.empty_like(hidden)
        total = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        largest = max(64, CHUNK_BYTES // (4 * vocab))
        chunks = max(1, -(-rows_total // largest))
        chunk = -(-rows_total // chunks)  # equal chunks: a small remainder chunk runs its GEMMs slowly
        # On a GPU the whole vocabulary is one block: its GEMMs gain nothing from cache-sized blocks.
        columns = BLOCK_COLUMNS if hidden.device.type == "cpu" else vocab
        starts = list(range(0, vocab, columns))
        block_start = torch.tensor(starts, device=hidden.device)
        workspace = logits_workspace(min(chunk, rows_total) * vocab, hidden.device)
        for first in range(0, rows_total, chunk):
            h, wanted = hidden[first : first + chunk], targets[first : first + chunk]
            rows = h.shape[0]
            maxima = torch.empty(len(starts), rows, dtype=torch.float32, device=h.device)
            argmax = torch.empty(len(starts), rows, dtype=torch.long, device=h.device)
            sums = torch.empty(len(starts), rows, dtype=torch.float32, device=h.device)
            blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
            offset = 0
            for b, start in enumerate(starts):  # pass 1
                w = weight[start : start + columns]
                z = workspace[offset : offset + rows * w.shape[0]].view(rows, w.shape[0])
                offset += z.numel()
                if h.dtype == torch.float32:
                    torch.mm(h, w.T, out=z)
                else:  # 16-bit weights: the GEMM in their type, the softmax in fp32
                    z.copy_(h @ w.T)
                torch.max(z, dim=1, out=(maxima[b], argmax[b]))
                torch.sum(z.sub_(maxima[b][:, None]).exp_(), dim=1, out=sums[b])
                blocks.append((z, w))
            top, top_block = maxima.max(dim=0)
            lse = top + (sums * (maxima - top).exp_()).sum(dim=0).log_()
            target_rows = weight[wanted]
            total += (lse - (h * target_rows).sum(dim=1, dtype=torch.float32)).sum()
            best = argmax.gather(0, top_block[None]).squeeze(0) + block_start[top_block]
            correct += (best == wanted).sum()
            factors = (maxima - lse).exp_()  # exp(m_b - lse): turns each stored exp(z - m_b) into the softmax
            g = grad_hidden[first : first + chunk]
            for b, (z, w) in enumerate(blocks):  # pass 2
                probabilities = z.mul_(factors[b][:, None]).to(w.dtype)
                if b == 0:
                    torch.mm(probabilities, w, out=g)
                else:
                    g.addmm_(probabilities, w)
            g.sub_(target_rows)  # (softmax - onehot) @ W = softmax @ W - W[target]
        ctx.save_for_backward(grad_hidden)
        ctx.mark_non_differentiable(correct)
        return total, correct

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor, _grad_correct: Any) -> tuple:
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_total.to(grad_hidden.dtype), None, None


def last_hidden_state(model: Any, backbone: Any, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The backbone's output, hooked while the whole model runs forward (DDP's wrapper arms the gradient all-reduce)
    with its head on no position (an empty index tensor, not an integer: docs/training.md#cpu-step)."""
    caught: list[torch.Tensor] = []
    hook = backbone.register_forward_hook(lambda _module, _args, output: caught.append(output[0]))
    nothing = torch.empty(0, dtype=torch.long, device=features["input_ids"].device)
    try:
        model(**features, use_cache=False, logits_to_keep=nothing)
    finally:
        hook.remove()
    return caught[-1]


def head_loss_sum(hidden: torch.Tensor, lm_head: Any, text_config: Any, targets: torch.Tensor) -> tuple:
    """Summed cross-entropy and top-1 hits of `lm_head(hidden)` against `targets`."""
    scale = getattr(text_config, "logit_scale", None)
    softcap = getattr(text_config, "final_logit_softcapping", None)
    if not lm_head.weight.requires_grad and lm_head.bias is None and scale is None and softcap is None:
        return FusedLinearCrossEntropy.apply(hidden, lm_head.weight, targets)
    # A trained head, a bias or transformed logits: the plain path keeps autograd exact for every case.
    logits = lm_head(hidden)
    if scale is not None:
        logits = logits * scale
    if softcap is not None:  # Gemma 2 style capping: the loss must see the same logits generation does
        logits = torch.tanh(logits / softcap) * softcap
    correct = (logits.detach().argmax(dim=-1) == targets).sum()
    return F.cross_entropy(logits.float(), targets, reduction="sum"), correct


def sparse_head_loss(
    model: Any, inputs: dict[str, torch.Tensor], num_items_in_batch: int | torch.Tensor | None = None
) -> LossOutput:
    """Mean next-token cross-entropy over labelled positions, computing logits only there; with `num_items_in_batch`
    (the labelled tokens of the whole optimizer step, as transformers' Trainer counts them) the sum over it."""
    base = base_model(model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model)
    backbone, lm_head, text_config = base.get_decoder(), base.get_output_embeddings(), base.config.get_text_config()
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    with packed_segments(inputs.get("position_ids")):
        hidden = last_hidden_state(model, backbone, features)
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    total, correct = head_loss_sum(hidden[:, :-1][trained], lm_head, text_config, targets[trained])
    count = int(trained.sum())
    denominator = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
    return LossOutput(loss=total / denominator, trained_tokens=count, correct_tokens=int(correct))
