"""Which option a chain-of-thought reply picks, or None (*unparseable*, never guessed): the rules and their order
in docs/scoring.md#answer-extraction."""

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


def _lead_letter(text: str, letters: str) -> int | None:
    """Rules 1-3: the last letter after the strongest lead-in: upper case, any case in parentheses, or a lone
    lower-case letter that ends the line (`Final answer: b`)."""
    upper, lower = letters.upper(), letters.lower()
    letter = rf"(?:\(\s*([{upper}{lower}])\s*\)|\b([{upper}])(?![A-Za-z])|\b([{lower}])(?=[ \t*_.)]*$))"
    for lead in _LEAD.values():
        pattern = rf"(?i:{lead})(?:(?i:option|choice)\s+)?{_DECOR}{letter}"
        if matches := list(re.finditer(pattern, text, flags=re.MULTILINE)):
            return LETTERS.index(next(g for g in matches[-1].groups() if g).upper())
    return None


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def extract_letter(text: str, options: Sequence[str] = ()) -> int | None:
    """The chosen option's index from a free-text reply, or None when no rule finds one."""
    letters = LETTERS[: len(options)] if options else "ABCD"
    segment = text.rsplit("</think>", 1)[-1]  # after the last </think>: where a reasoning model answers
    found = _lead_letter(segment, letters)
    if found is not None:
        return found
    stripped = segment.strip()
    bare = re.fullmatch(rf"{_DECOR}\(?([{letters}])\)?[.:]?{_DECOR}", stripped)
    bare = bare or re.match(rf"{_DECOR}\(?([{letters}])[.):]\s", stripped)  # or a reply opening with a letter
    if bare:
        return LETTERS.index(bare.group(1))
    wanted = {_normalize(option): i for i, option in enumerate(options)}  # rule 5: `Final answer: Metformin`
    for lead in _LEAD.values():
        for match in reversed(list(re.finditer(rf"(?i:{lead})(.+)", segment))):
            if (said := _normalize(match.group(1))) in wanted:
                return wanted[said]
    # nothing after </think>: an answer stated inside the reasoning still counts
    return None if segment == text else _lead_letter(text, letters)


def extract_yes_no_maybe(text: str) -> str | None:
    """`yes`, `no` or `maybe` from a reply (`Final answer: yes`, `The answer is no.`, a bare `Maybe`)."""
    word = r"(yes|no|maybe)\b"
    segment = text.rsplit("</think>", 1)[-1]
    for source in (segment, text):
        for lead in _LEAD.values():
            if matches := re.findall(rf"{lead}{_DECOR}{word}", source, flags=re.IGNORECASE):
                return matches[-1].lower()
        opening = re.match(rf"{_DECOR}{word}(?:[\s.,!:;*]|$)", segment.strip(), flags=re.IGNORECASE)
        if opening:  # only the part after </think> may open with the word (a second try finds nothing new)
            return opening.group(1).lower()
    return None


def extract_decision(text: str, item: MultipleChoiceItem) -> int | None:
    """The index into `item.choices` of the yes/no/maybe a reply states (PubMedQA), or None."""
    word = extract_yes_no_maybe(text)
    lowered = [c.lower() for c in item.choices]
    return lowered.index(word) if word in lowered else None
