"""Checks a GGUF passes before it gets its final name: chat template and stop tokens (a failure stops the export),
first greedy tokens against 16-bit, and `judge`'s verdict on those and the accuracy change (docs/export.md)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from medsft.evaluate.report import ci_text
from medsft.export.gguf import ExportError

PROBE = [
    {"role": "system", "content": "You are a careful clinical reasoning assistant."},
    {"role": "user", "content": "A 67-year-old woman has sudden painless vision loss in one eye. Next step?"},
    {"role": "assistant", "content": "<think>\n1. Summary: acute monocular loss.\n</think>\nUrgent fundoscopy."},
    {"role": "user", "content": "And if the fundus shows a cherry-red spot?"},
]
FIRST_TOKENS_PROMPT = [
    {"role": "user", "content": "A 58-year-old man has crushing chest pain radiating to his left arm and sweating. "
     "What is the most likely diagnosis and the first step?"}
]  # fmt: skip
FIRST_TOKENS = 16
LOSS_SIGNIFICANCE = 0.05  # the exact McNemar test's, on the paired questions, before an accuracy loss fails a file


class VerificationError(ExportError):
    """A GGUF failed a check that makes it unusable as the trained model (template, stop tokens)."""


@dataclass
class Verification:
    template_matches: bool
    stop_tokens_end_generation: dict[str, bool]
    first_tokens: list[int]
    reference_first_tokens: list[int]

    @property
    def agreeing_prefix(self) -> int:
        return len(os.path.commonprefix([self.first_tokens, self.reference_first_tokens]))

    def to_dict(self) -> dict[str, Any]:
        compared = len(self.reference_first_tokens)
        return {**asdict(self), "first_tokens_agree": self.agreeing_prefix, "first_tokens_compared": compared}


def render(tokenizer: Any, template: str) -> str:
    return tokenizer.apply_chat_template(PROBE, chat_template=template, tokenize=False, add_generation_prompt=True)


def check_template(gguf_template: str | None, tokenizer: Any, where: str) -> None:
    """Raise unless the GGUF's template renders the probe exactly like the training tokenizer's."""
    if not gguf_template:
        raise VerificationError(
            f"{where} has no embedded chat template; llama.cpp would fall back to a generic chat format. "
            "Export from a merged folder that holds chat_template.jinja (medsft's merged save writes it)."
        )
    expected, got = render(tokenizer, tokenizer.chat_template), render(tokenizer, gguf_template)
    if got != expected:
        at = len(os.path.commonprefix([got, expected]))
        raise VerificationError(
            f"{where}: the embedded chat template does not match the training template; first difference at "
            f"character {at}: GGUF renders {got[max(0, at - 30) : at + 30]!r}, training renders "
            f"{expected[max(0, at - 30) : at + 30]!r}. Re-export from the run's merged folder, or fix the "
            "chat_template setting so training and export use the same template."
        )


def end_of_turn_ids(tokenizer: Any, generation_eos: int | list[int] | None) -> dict[str, int]:
    """The generation config's eos ids (else the tokenizer's), and the token the template ends a reply with."""
    ids = generation_eos if generation_eos is not None else tokenizer.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    marker = "MEDSFT_PROBE_REPLY"
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}]
    after = tokenizer.apply_chat_template(turn, tokenize=False).split(marker, 1)[-1]
    following = tokenizer.encode(after, add_special_tokens=False)[:1]
    if following and following[0] in tokenizer.all_special_ids + list(tokenizer.added_tokens_decoder):
        ids.append(following[0])
    return {tokenizer.convert_ids_to_tokens(i): i for i in dict.fromkeys(ids)}


def reference_first_tokens(model: Any, tokenizer: Any, count: int = FIRST_TOKENS) -> tuple[list[int], list[int]]:
    """The prompt ids and the 16-bit model's first greedy tokens after them."""
    import torch

    from medsft.templates import render_chat

    prompt = render_chat(tokenizer, FIRST_TOKENS_PROMPT, add_generation_prompt=True)
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    with torch.inference_mode():
        prompt_ids = torch.tensor([ids], device=next(model.parameters()).device)
        out = model.generate(prompt_ids, max_new_tokens=count, do_sample=False, top_k=None, top_p=None,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return ids, out[0, len(ids) :].tolist()


def verify_gguf(scorer: Any, tokenizer: Any, stops: dict[str, int], prompt_ids: list[int],
                reference: list[int]) -> Verification:  # fmt: skip
    where = str(scorer.path)
    check_template(scorer.chat_template(), tokenizer, where)
    status = {name: scorer.is_end_of_generation(token) for name, token in stops.items()}
    missing = [name for name, ok in status.items() if not ok]
    if missing:
        raise VerificationError(
            f"{where}: {', '.join(missing)} is not an end-of-generation token in the GGUF, so chat replies would "
            "not stop at the end of the turn. Re-export with the tokenizer files of the trained model."
        )
    tokens = scorer.greedy_tokens(prompt_ids, len(reference))
    return Verification(True, status, first_tokens=tokens, reference_first_tokens=reference)


@dataclass
class Verdict:
    """Whether a GGUF passed, and if not, each reason with its numbers."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def judge(item: dict[str, Any], min_token_agreement: float) -> Verdict:
    """The pass/fail decision on one file's record in `export.json` (its `verification` and `accuracy`)."""
    reasons = []
    agree, compared = item["verification"]["first_tokens_agree"], item["verification"]["first_tokens_compared"]
    if compared and agree / compared < min_token_agreement:
        reasons.append(
            f"first greedy tokens: {agree}/{compared} agree with 16-bit, below the required share "
            f"{min_token_agreement:g} (export_min_token_agreement)"
        )
    for task, acc in item.get("accuracy", {}).items():
        # Beyond the goal, the whole 95% interval beyond it, and McNemar significant: docs/export.md says why.
        ci = acc.get("diff_ci") or (acc["diff"], acc["diff"])
        limit = -acc["goal"] - 1e-9
        if acc["diff"] < limit and ci[1] < limit and acc.get("mcnemar_p", 0.0) < LOSS_SIGNIFICANCE:
            reasons.append(
                f"{task}: accuracy {acc['acc']:.3f} vs 16-bit {acc['reference_acc']:.3f} (n={acc['n']}), "
                f"diff {acc['diff']:+.3f} {ci_text(ci, '+')} is beyond the goal -{acc['goal']:g}"
            )
    return Verdict(passed=not reasons, reasons=reasons)
