"""Answer extraction for chain-of-thought replies: which option a free-text answer picks. A reasoning model writes
`<think>...</think>` and then its answer, so the text after the last `</think>` is read first, taking the *last*
match of the strongest rule (models restate, and the closing statement is the answer):

1. `Final answer: B` / `final answer is (B)`;  2. `the answer is B` / `answer is (B)`;  3. `Answer: B`;
4. the reply is just a letter (`B`, `(B)`, `B.`) or opens with one (`B. Metformin ...`);
5. the text after `Final answer:` / `answer is` equals one option's text.

Rules 1-3 are tried on the whole reply too when the part after `</think>` has no answer. A letter must be
upper case, in parentheses, or end its line, so the article in "the answer is a ..." is not option A.
An answer that fits no rule is *unparseable*: reported as its own share, and never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from medsft.data.records import LETTERS, MultipleChoiceItem

_LEAD = {
    "final": r"final\s+answer[\s*_]*(?:is\s*)?[:=\-]?\s*",
    "answer_is": r"answer\s+is\s*:?\s*",
    "answer_colon": r"\banswer[\s*_]*:\s*",
}
_DECOR = r"[\s*_`\"']*"  # markdown bold/italics and quotes around an answer


def final_segment(text: str) -> str:
    """The text after the last `</think>`: where a reasoning model puts its answer."""
    return text.rsplit("</think>", 1)[-1]


def _lead_letter(text: str, letters: str) -> int | None:
    """Rules 1-3: the last letter after the strongest lead-in (any case) that has one: upper case, any case in
    parentheses, or a lone lower-case letter that ends the line (`Final answer: b`)."""
    upper, lower = letters.upper(), letters.lower()
    letter = rf"(?:\(\s*([{upper}{lower}])\s*\)|\b([{upper}])(?![A-Za-z])|\b([{lower}])(?=[ \t*_.)]*$))"
    for lead in _LEAD.values():
        pattern = rf"(?i:{lead})(?:(?i:option|choice)\s+)?{_DECOR}{letter}"
        matches = list(re.finditer(pattern, text, flags=re.MULTILINE))
        if matches:
            return LETTERS.index(next(g for g in matches[-1].groups() if g).upper())
    return None


def extract_letter(text: str, options: Sequence[str] = ()) -> int | None:
    """The chosen option's index from a free-text reply, or None when no rule finds one."""
    letters = LETTERS[: len(options)] if options else "ABCD"
    segment = final_segment(text)
    found = _lead_letter(segment, letters)
    if found is not None:
        return found
    stripped = segment.strip()
    bare = re.fullmatch(rf"{_DECOR}\(?([{letters}])\)?[.:]?{_DECOR}", stripped)
    bare = bare or re.match(rf"{_DECOR}\(?([{letters}])[.):]\s", stripped)  # or a reply opening with a letter
    if bare:
        return LETTERS.index(bare.group(1))
    by_text = _match_option_text(segment, options)
    if by_text is not None or segment == text:
        return by_text
    return _lead_letter(text, letters)  # nothing after </think>: an answer stated inside the reasoning still counts


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _match_option_text(segment: str, options: Sequence[str]) -> int | None:
    """`Final answer: Metformin` when the option text, not its letter, follows the lead-in."""
    wanted = {_normalize(option): i for i, option in enumerate(options)}
    for lead in _LEAD.values():
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


def extract_decision(text: str, item: MultipleChoiceItem) -> int | None:
    """The index into `item.choices` of the yes/no/maybe a reply states (PubMedQA), or None."""
    word = extract_yes_no_maybe(text)
    lowered = [c.lower() for c in item.choices]
    return lowered.index(word) if word in lowered else None
