"""Cleaning steps for training rows (PII, duplicates, length, the disclaimer): each returns what it kept and a
`Removed` record for every row it dropped, and never mutates its input."""

from __future__ import annotations

import json
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from medsft.data.records import Example, user_text

# Near-duplicates: MinHash estimate of user-turn word 3-gram Jaccard, then exact. Why: docs/data.md#near-duplicates
NEAR_DUPLICATE_THRESHOLD = 0.8
SHINGLE_WORDS = 3
MINHASH_PERMUTATIONS = 128
MINHASH_BANDS = 16  # 16 bands of 8 rows: pairs at Jaccard 0.8 become candidates with probability > 0.99
MERSENNE_31 = np.uint64((1 << 31) - 1)

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD = re.compile(rf"[{CJK}]|[^\W_{CJK}]+")


@dataclass(frozen=True)
class Removed:
    """A training row a step dropped, and why: what the dataset report counts per step."""

    id: str
    source: str
    step: str
    reason: str


def words(text: str) -> list[str]:
    """Lower-cased word tokens with punctuation dropped; each CJK character is a word (no spaces to split on)."""
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATE = (
    rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{MONTH},?\s+\d{{4}}|{MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
ID_LABELS = (
    r"MRN|medical record (?:number|no\.?)|record (?:number|no\.?)|patient (?:id|number|no\.?)"
    r"|hospital (?:number|no\.?)|NHS (?:number|no\.?)|social security (?:number|no\.?)|SSN|case (?:number|no\.?)|ID"
)

# A surname-like word: Smith, McDonald, O'Brien, Smith-Jones, or an initial.
NAME_WORD = r"[A-Z][a-z]*(?:[A-Z][a-z]+)?(?:['-][A-Z][a-z]+)?"
# A value with at least 4 digits after up to 3 letters (A1234567), or digit groups (943 476 5919).
ID_VALUE = r"[A-Z]{0,3}-?\d{4,}(?:[ -]\d{3,})*|\d{3}(?:[ -]\d{3,})+"


def enough_digits(minimum: int, replacement: str) -> Callable[[re.Match[str]], str]:
    """A replacement that only fires when the match holds enough digits to be a phone number."""
    return lambda match: replacement if sum(ch.isdigit() for ch in match.group(0)) >= minimum else match.group(0)


# (kind, pattern, replacement). Order matters: emails and URLs hold digits that the phone patterns would
# otherwise take. Labels (`MRN:`, `DOB:`, `Dr.`) are kept and only the value is replaced, so the text reads on.
Replacement = str | Callable[[re.Match[str]], str]
PII_RULES: list[tuple[str, str, Replacement]] = [
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", "[EMAIL]"),
    ("url", r"(?i)\b(?:https?://|www\.)[^\s<>\"')\]]*[^\s<>\"')\].,;:!?]", "[URL]"),
    (
        "date_of_birth",
        rf"(?i)\b(date of birth|birth ?date|d\.?o\.?b\.?|born(?: on)?)(\s*[:\-]?\s*){DATE}",
        r"\1\2[DOB]",
    ),
    ("id_number", rf"(?i)\b({ID_LABELS})(\s*(?:#|:|no\.?)?\s*)({ID_VALUE})\b", r"\1\2[ID]"),
    ("id_number", r"\b\d{3}-\d{2}-\d{4}\b", "[ID]"),  # US social security number
    (
        "phone",
        r"(?i)\b(my (?:phone |mobile |cell )?number is|phone|telephone|tel|mobile|fax|call|contact)"
        r"(\.?\s*(?:number|no\.?)?\s*(?:on|at)?\s*[:#]?\s*)(\+?\(?\d[\d\s().-]{6,}\d)",
        r"\1\2[PHONE]",
    ),
    ("phone", r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w-])", enough_digits(8, "[PHONE]")),
    ("phone", r"(?<![\w/.-])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w/-]|\.\d)", "[PHONE]"),
    # National numbers with a trunk 0 (UK 07700 900123, 020 7946 0958): 10 or more digits.
    ("phone", r"(?<![\w.])0\d{2,4}[\s-]?\d{3,4}[\s-]?\d{3,4}(?![\w.])", enough_digits(10, "[PHONE]")),
    ("phone", r"(?<!\d)1[3-9]\d{9}(?!\d)", "[PHONE]"),  # mainland China mobile numbers
    ("name", r"\b(Mr|Mrs|Ms|Miss|Mx|Dr|Prof)(\.?\s+)" + NAME_WORD + rf"(?:[ \t]+{NAME_WORD})?", r"\1\2[NAME]"),
    (
        "name",
        r"((?im:^\s*name\s*:\s*|\bpatient(?:'s)? name\s*:\s*))([A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){0,2})",
        r"\1[NAME]",
    ),
    ("name", r"\b((?i:my name is|I am called)\s+)([A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)?)", r"\1[NAME]"),
]
PII_PATTERNS = [(kind, re.compile(pattern), replacement) for kind, pattern, replacement in PII_RULES]


def scrub_text(text: str) -> tuple[str, Counter[str]]:
    """Replace PII with placeholders ([EMAIL], [PHONE], [URL], [ID], [DOB], [NAME]); count what was replaced."""
    counts: Counter[str] = Counter()
    for kind, pattern, replacement in PII_PATTERNS:

        def replace(match: re.Match[str], kind: str = kind, replacement: Replacement = replacement) -> str:
            new = replacement(match) if callable(replacement) else match.expand(replacement)
            if new != match.group(0):
                counts[kind] += 1
            return new

        text = pattern.sub(replace, text)
    return text, counts


def scrub_pii(examples: Sequence[Example]) -> tuple[list[Example], Counter[str], int]:
    """(scrubbed copies, replacements by kind, rows changed). Rows are scrubbed, never dropped."""
    scrubbed: list[Example] = []
    rows: list[Counter[str]] = []
    for example in examples:
        results = [scrub_text(message["content"]) for message in example["messages"]]
        rows.append(sum((counts for _, counts in results), Counter()))
        messages = [{**m, "content": text} for m, (text, _) in zip(example["messages"], results, strict=True)]
        scrubbed.append({**example, "messages": messages})
    return scrubbed, sum(rows, Counter()), sum(map(bool, rows))


def add_disclaimer(examples: Sequence[Example], disclaimer: str) -> list[Example]:
    """Append the disclaimer to every assistant turn that does not already end with it."""

    def add(m: dict[str, str]) -> dict[str, str]:
        done = m["role"] != "assistant" or m["content"].endswith(disclaimer)
        return m if done else {**m, "content": f"{m['content']}\n\n{disclaimer}"}

    return [{**example, "messages": [add(m) for m in example["messages"]]} for example in examples]


def drop_exact_duplicates(examples: Sequence[Example]) -> tuple[list[Example], list[Removed]]:
    """Keep the first of each group of conversations equal in roles and contents up to case and whitespace."""
    first: dict[str, str] = {}
    kept, removed = [], []
    for example in examples:
        key = json.dumps([(m["role"], " ".join(m["content"].lower().split())) for m in example["messages"]])
        if key in first:
            removed.append(Removed(example["id"], example["source"], "exact_duplicate", f"same as {first[key]}"))
        else:
            first[key] = example["id"]
            kept.append(example)
    return kept, removed


def shingle_set(text: str, size: int = SHINGLE_WORDS) -> np.ndarray:
    """Sorted unique CRC32 hashes (stable across processes, unlike `hash()`) of the word `size`-grams (a short text
    is one shingle)."""
    tokens = words(text)
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    grams = [tokens] if len(tokens) < size else [tokens[i : i + size] for i in range(len(tokens) - size + 1)]
    return np.unique(np.array([zlib.crc32(" ".join(g).encode()) for g in grams], dtype=np.uint64))


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    shared = np.intersect1d(first, second, assume_unique=True).size
    return shared / (first.size + second.size - shared)


def drop_near_duplicates(examples: Sequence[Example]) -> tuple[list[Example], list[Removed]]:
    """Drop rows whose user turns are near-copies (Jaccard >= NEAR_DUPLICATE_THRESHOLD) of an earlier kept row:
    MinHash + LSH banding finds candidates, the exact Jaccard of the shingle sets confirms them."""
    rows = MINHASH_PERMUTATIONS // MINHASH_BANDS
    # Universal hashes mod p = 2**31 - 1, so uint64 arithmetic is exact. Why: docs/data.md#near-duplicates
    rng = np.random.default_rng(0)
    a = rng.integers(1, int(MERSENNE_31), size=MINHASH_PERMUTATIONS, dtype=np.uint64)
    b = rng.integers(0, int(MERSENNE_31), size=MINHASH_PERMUTATIONS, dtype=np.uint64)
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept_shingles: list[np.ndarray] = []
    kept, removed = [], []
    for example in examples:
        shingles = shingle_set(user_text(example))
        if shingles.size == 0:
            kept.append(example)
            kept_shingles.append(shingles)
            continue
        values = shingles % MERSENNE_31
        signature = ((a[:, None] * values[None, :] + b[:, None]) % MERSENNE_31).min(axis=1)
        keys = [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(MINHASH_BANDS)]
        candidates = sorted({index for key in keys for index in buckets.get(key, ())})
        similar = ((i, jaccard(shingles, kept_shingles[i])) for i in candidates)
        match = next(((i, share) for i, share in similar if share >= NEAR_DUPLICATE_THRESHOLD), None)
        if match is not None:
            reason = f"prompt {match[1]:.0%} similar to {kept[match[0]]['id']}"
            removed.append(Removed(example["id"], example["source"], "near_duplicate", reason))
            continue
        for key in keys:
            buckets.setdefault(key, []).append(len(kept))
        kept.append(example)
        kept_shingles.append(shingles)
    return kept, removed


def filter_by_length(
    examples: Sequence[Example], lengths: Sequence[int], max_tokens: int
) -> tuple[list[Example], list[int], list[Removed]]:
    """Drop rows longer than `max_tokens` (rendered with the chat template), rather than truncating them:
    a truncated row loses its final answer, which is the part the model most needs to learn."""
    kept, kept_lengths, removed = [], [], []
    for example, length in zip(examples, lengths, strict=True):
        if length > max_tokens:
            reason = f"{length} tokens > max_seq_length {max_tokens}"
            removed.append(Removed(example["id"], example["source"], "too_long", reason))
        else:
            kept.append(example)
            kept_lengths.append(length)
    return kept, kept_lengths, removed
