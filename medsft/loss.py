"""Causal-LM loss with the LM head applied only where a label is trained.

Gemma 3's vocabulary has 262,144 tokens: its LM head is 168M of the 270M model's parameters. Computing logits at
every position (prompt and padding included), as the default step does, spends most of a CPU step on outputs the
loss then throws away. Here the backbone runs once, the hidden states at positions whose next token is labelled
are gathered, and only those rows go through the head and the cross-entropy. The loss is the same number:
the mean negative log-likelihood over labelled tokens (or the sum over `num_items_in_batch` under gradient
accumulation, as transformers' Trainer does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medsft.labels import IGNORE_INDEX


@dataclass
class LossOutput:
    loss: torch.Tensor
    trained_tokens: int
    correct_tokens: int


def causal_lm_parts(model: Any) -> tuple[Any, Any, Any]:
    """(backbone, lm_head, text config) of a causal LM, through a PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings(), base.config.get_text_config()


def sparse_head_loss(
    model: Any, inputs: dict[str, torch.Tensor], num_items_in_batch: int | torch.Tensor | None = None
) -> LossOutput:
    """Mean next-token cross-entropy over labelled positions, computing logits only there."""
    backbone, lm_head, text_config = causal_lm_parts(model)
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    hidden = backbone(**features, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    logits = lm_head(hidden[:, :-1][trained])
    scale = getattr(text_config, "logit_scale", None)
    if scale is not None:
        logits = logits * scale
    softcap = getattr(text_config, "final_logit_softcapping", None)
    if softcap is not None:  # Gemma 2 style capping: the loss must see the same logits generation does
        logits = torch.tanh(logits / softcap) * softcap
    wanted = targets[trained]
    total = F.cross_entropy(logits.float(), wanted, reduction="sum")
    count = int(trained.sum())
    denominator = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
    with torch.no_grad():
        correct = int((logits.argmax(dim=-1) == wanted).sum()) if count else 0
    return LossOutput(loss=total / denominator, trained_tokens=count, correct_tokens=correct)
