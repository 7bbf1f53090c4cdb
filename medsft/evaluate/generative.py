"""Chain-of-thought evaluation for reasoning-tuned models: chat prompt, decode, extract the final answer.

A reasoning model writes `<think>...</think>` and then its answer, so its letter is found by reading the
text, not by scoring ` A`..` D`. Extraction looks at the text after the last `</think>` first and takes
the *last* match of the strongest rule (models restate, and the closing statement is the answer):

1. `Final answer: B` / `final answer is (B)`;  2. `the answer is B` / `answer is (B)`;  3. `Answer: B`;
4. the reply is just a letter (`B`, `(B)`, `B.`) or opens with one (`B. Metformin ...`);
5. the text after `Final answer:` / `answer is` equals one option's text.

Rules 1-3 are tried on the whole reply too when the part after `</think>` has no answer. A letter must be
upper case, in parentheses, or end its line, so the article in "the answer is a ..." is not option A.
An answer that fits no rule is *unparseable*: reported as its own share, and never guessed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medsft import DISCLAIMER
from medsft.evaluate.multiple_choice import subject_breakdown
from medsft.evaluate.prompts import LETTERS, get_task
from medsft.evaluate.results import TaskResult
from medsft.evaluate.scoring import Messages, Scorer
from medsft.evaluate.stats import wilson_interval

if TYPE_CHECKING:
    from medsft.data import MultipleChoiceItem

MEDQA_COT_INSTRUCTION = (
    "Think through the question step by step, then give your answer on the last line as "
    "'Final answer: <letter>'."
)
PUBMEDQA_COT_INSTRUCTION = (
    "Think through the question step by step, then give your answer on the last line as "
    "'Final answer: yes', 'Final answer: no' or 'Final answer: maybe'."
)
_LEAD = {
    "final": r"final\s+answer[\s*_]*(?:is\s*)?[:=\-]?\s*",
    "answer_is": r"answer\s+is\s*:?\s*",
    "answer_colon": r"\banswer[\s*_]*:\s*",
}
_DECOR = r"[\s*_`\"']*"  # markdown bold/italics and quotes around an answer


def cot_messages(task: str, item: MultipleChoiceItem, instruction: str | None = None) -> Messages:
    """The user turn for chain-of-thought decoding: the question, the options and how to end the answer."""
    if task == "medqa":
        options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(item.choices))
        content = f"{item.question}\n\n{options}\n\n{instruction or MEDQA_COT_INSTRUCTION}"
    elif task == "pubmedqa":
        content = (
            f"Abstract: {item.context}\n\nQuestion: {item.question}\n\n{instruction or PUBMEDQA_COT_INSTRUCTION}"
        )
    else:
        raise ValueError(f"no chain-of-thought prompt for task '{task}'; choose medqa or pubmedqa")
    return [{"role": "user", "content": content}]


def final_segment(text: str) -> str:
    """The text after the last `</think>`: where a reasoning model puts its answer."""
    return text.rsplit("</think>", 1)[-1]


def _letter_pattern(lead: str, letters: str) -> str:
    """A lead-in (any case) followed by an option letter.

    The letter is upper case on its own and any case in parentheses, so "the answer is a fever" is not
    option A; a lone lower-case letter that ends the line is accepted too (`Final answer: b`).
    """
    upper, lower = letters.upper(), letters.lower()
    alternatives = [
        rf"\(\s*([{upper}{lower}])\s*\)",
        rf"\b([{upper}])(?![A-Za-z])",
        rf"\b([{lower}])(?=[ \t*_.)]*$)",
    ]
    return rf"(?i:{lead})(?:(?i:option|choice)\s+)?{_DECOR}(?:{'|'.join(alternatives)})"


def _last_letter(pattern: str, text: str) -> int | None:
    matches = list(re.finditer(pattern, text, flags=re.MULTILINE))
    if not matches:
        return None
    letter = next(g for g in matches[-1].groups() if g)
    return LETTERS.index(letter.upper())


def extract_letter(text: str, options: Sequence[str] = ()) -> int | None:
    """The chosen option's index from a free-text reply, or None when no rule finds one."""
    letters = LETTERS[: len(options)] if options else "ABCD"
    segment = final_segment(text)
    for lead in _LEAD.values():
        found = _last_letter(_letter_pattern(lead, letters), segment)
        if found is not None:
            return found
    bare = re.fullmatch(rf"{_DECOR}\(?([{letters}])\)?[.:]?{_DECOR}", segment.strip())
    if bare:
        return LETTERS.index(bare.group(1))
    opening = re.match(rf"{_DECOR}\(?([{letters}])[.):]\s", segment.strip())
    if opening:
        return LETTERS.index(opening.group(1))
    by_text = _match_option_text(segment, options)
    if by_text is not None:
        return by_text
    if segment != text:  # nothing after </think>: an answer stated inside the reasoning still counts
        for lead in _LEAD.values():
            found = _last_letter(_letter_pattern(lead, letters), text)
            if found is not None:
                return found
    return None


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _match_option_text(segment: str, options: Sequence[str]) -> int | None:
    """`Final answer: Metformin` when the option text, not its letter, follows the lead-in."""
    if not options:
        return None
    wanted = {_normalize(option): i for i, option in enumerate(options)}
    for lead in (_LEAD["final"], _LEAD["answer_is"], _LEAD["answer_colon"]):
        for match in reversed(list(re.finditer(rf"(?i:{lead})(.+)", segment))):
            said = _normalize(match.group(1))
            if said in wanted:
                return wanted[said]
    return None


def extract_yes_no_maybe(text: str) -> str | None:
    """`yes`, `no` or `maybe` from a reply (`Final answer: yes`, `The answer is no.`, a bare `Maybe`)."""
    word = r"(yes|no|maybe)\b"
    segment = final_segment(text)
    for source in (segment, text):
        for lead in _LEAD.values():
            matches = list(re.finditer(rf"{lead}{_DECOR}{word}", source, flags=re.IGNORECASE))
            if matches:
                return matches[-1].group(1).lower()
        if source is segment:
            opening = re.match(rf"{_DECOR}{word}(?:[\s.,!:;*]|$)", segment.strip(), flags=re.IGNORECASE)
            if opening:
                return opening.group(1).lower()
    return None


def extract_choice(task: str, text: str, item: MultipleChoiceItem) -> int | None:
    """The index into `item.choices` that a reply picks for `task`, or None (unparseable)."""
    if get_task(task).kind == "letters":
        return extract_letter(text, item.choices)
    word = extract_yes_no_maybe(text)
    lowered = [c.lower() for c in item.choices]
    return lowered.index(word) if word in lowered else None


def score_replies(task: str, items: Sequence[MultipleChoiceItem], replies: Sequence[str]) -> list[dict[str, Any]]:
    """Per-question records: the extracted choice (None when unparseable), whether it is right, the reply."""
    records = []
    for item, reply in zip(items, replies, strict=True):
        pred = extract_choice(task, reply, item)
        records.append(
            {
                "id": item.id,
                "subject": item.subject,
                "gold": item.answer,
                "pred": pred,
                "parsed": pred is not None,
                "correct": pred == item.answer,
                "output": reply,
            }
        )
    return records


def summarize_replies(records: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """acc over all questions (unparseable = not correct), shown with the unparseable share and acc_parsed."""
    parsed = [r for r in records if r["parsed"]]
    acc = wilson_interval([r["correct"] for r in records])
    return {
        "acc": acc.value,
        "acc_ci": [acc.low, acc.high],
        "unparseable": 1 - len(parsed) / len(records),
        "n_unparseable": len(records) - len(parsed),
        "acc_parsed": sum(r["correct"] for r in parsed) / len(parsed) if parsed else None,
    }


def evaluate_generative(
    scorer: Scorer,
    task: str,
    items: Sequence[MultipleChoiceItem],
    max_new_tokens: int = 512,
    do_sample: bool = False,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int = 0,
    instruction: str | None = None,
    model_spec: dict[str, Any] | None = None,
) -> TaskResult:
    """Generate a reasoned answer per item and score the extracted choice.

    `acc` counts an unparseable reply as not correct and is always shown next to `unparseable` (the share
    of replies with no answer); `acc_parsed` is the accuracy over the replies that gave one.
    """
    if not items:
        raise ValueError(f"{task}: no items to evaluate")
    started = time.perf_counter()
    replies = scorer.generate(
        [cot_messages(task, item, instruction) for item in items],
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    elapsed = time.perf_counter() - started
    records = score_replies(task, items, replies)
    metrics = summarize_replies(records, seed)
    settings = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "temperature": temperature if do_sample else None,
        "top_p": top_p if do_sample else None,
        "seed": seed,
        "instruction": instruction or (MEDQA_COT_INSTRUCTION if task == "medqa" else PUBMEDQA_COT_INSTRUCTION),
        "seconds": round(elapsed, 3),
    }
    return TaskResult(
        task=f"{task}_cot",  # its own file name: a log-likelihood result for the same task sits beside it
        model=scorer.name,
        mode="generate",
        n=len(records),
        metrics=metrics,
        questions=records,
        settings=settings,
        model_spec=model_spec or {"name": scorer.name},
        breakdown=subject_breakdown(records),
        disclaimer=DISCLAIMER,
    )
