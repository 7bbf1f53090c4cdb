"""Causal-LM loss with the LM head applied only where a label is trained, fused with the cross-entropy.

Gemma 3's vocabulary has 262,144 tokens: its LM head is 168M of the 270M model's parameters. Computing logits at
every position (prompt and padding included), as the default step does, spends most of a CPU step on outputs the
loss then throws away. Here the backbone runs once, the hidden states at positions whose next token is labelled
are gathered, and only those rows go through the head.

The head and the cross-entropy are fused, chunk by chunk: for a frozen head the gradient of the loss with respect
to the hidden states is (softmax - onehot) @ W, known as soon as the forward has the logits. So each chunk's
logits are made, turned into that gradient in place and dropped; nothing of vocabulary width is kept for the
backward pass, which only scales the stored (tokens x hidden) gradient. The loss is the same number as the
model's own: the mean negative log-likelihood over labelled tokens (or the sum over `num_items_in_batch` under
gradient accumulation, as transformers' Trainer does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medsft.train.cpu_step.attention import packed_segments
from medsft.train.labels import IGNORE_INDEX

# Logits of one chunk stay under this many bytes (512 rows for Gemma's 262k vocabulary). Larger chunks re-read the
# head matrix less often in the backward GEMM; measured here, 512-1024 rows ran ~20% faster than 128.
CHUNK_BYTES = 512 * 2**20


@dataclass
class LossOutput:
    loss: torch.Tensor
    trained_tokens: int
    correct_tokens: int


class FusedLinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(hidden @ weight.T, targets)) and the count of top-1 hits, for a frozen `weight`."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple:
        grad_hidden = torch.empty_like(hidden)
        total = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        largest = max(64, CHUNK_BYTES // (4 * weight.shape[0]))
        chunks = max(1, -(-hidden.shape[0] // largest))
        chunk = -(-hidden.shape[0] // chunks)  # equal chunks: a small remainder chunk runs its GEMMs slowly
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            wanted = targets[rows]
            logits = (hidden[rows] @ weight.T).float()
            best, best_index = logits.max(dim=-1)
            correct += (best_index == wanted).sum()
            target_logit = logits.gather(1, wanted[:, None]).squeeze(1)
            logits.sub_(best[:, None]).exp_()  # logits now hold exp(z - max)
            sums = logits.sum(dim=-1)
            total += (best + sums.log() - target_logit).sum()
            logits.div_(sums[:, None])  # softmax
            logits[torch.arange(len(wanted), device=logits.device), wanted] -= 1.0
            grad_hidden[rows] = (logits.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad_hidden)
        ctx.mark_non_differentiable(correct)
        return total, correct

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor, _grad_correct: Any) -> tuple:
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_total.to(grad_hidden.dtype), None, None


def causal_lm_parts(model: Any) -> tuple[Any, Any, Any]:
    """(backbone, lm_head, text config) of a causal LM, through DDP and PEFT wrappers if there are any."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings(), base.config.get_text_config()


def last_hidden_state(model: Any, backbone: Any, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The backbone's output, taken by a hook while the whole model runs forward with its own head on one position.

    The call goes through `model` itself, not the backbone, because under data parallelism `model` is the DDP
    wrapper and its forward is what arms the all-reduce of gradients in the backward pass: calling the backbone
    directly would leave every process with only its own gradients, silently.
    """
    caught: list[torch.Tensor] = []
    hook = backbone.register_forward_hook(lambda _module, _args, output: caught.append(output[0]))
    # The head's one row of logits is not used. It is named by index, not by the integer 1: given an integer,
    # Gemma 4 also cuts its key/value-sharing layers down to that many positions (a generation shortcut), and the
    # backbone's output would then hold one position instead of the whole row.
    last = torch.tensor([features["input_ids"].shape[1] - 1], device=features["input_ids"].device)
    try:
        model(**features, use_cache=False, logits_to_keep=last)
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
    """Mean next-token cross-entropy over labelled positions, computing logits only there.

    With `num_items_in_batch` the sum is divided by it instead: the labelled tokens of the whole optimizer step
    (all accumulated micro-batches, and under DDP all processes), as transformers' Trainer counts them.
    """
    backbone, lm_head, text_config = causal_lm_parts(model)
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
