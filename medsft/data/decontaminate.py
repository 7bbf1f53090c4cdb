"""Drop training rows that cover >= 70% of an evaluation text's word 8-grams (PaLM's criterion, per row).
Why coverage, boilerplate and the 8-word minimum: docs/data.md#decontamination."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from medsft.data.clean import Removed, words
from medsft.data.records import Example

NGRAM = 8
MIN_COVERAGE = 0.7
COMMON_MIN_TEXTS = 5  # an n-gram in more of a task's texts than max(this, COMMON_SHARE of them) is boilerplate
COMMON_SHARE = 0.01
# Odd 64-bit multiplier for the polynomial n-gram hash; collisions at 64 bits are negligible here.
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class EvalText:
    task: str
    id: str
    part: str
    text: str


@dataclass(frozen=True)
class Contamination:
    """A training row found to cover `coverage` of an evaluation text's n-grams."""

    train_id: str
    source: str
    task: str
    eval_id: str
    part: str
    coverage: float


class OverlapIndex:
    """The distinct n-grams of every evaluation text, hashed, for fast coverage queries."""

    def __init__(self, texts: Iterable[EvalText]) -> None:
        self.vocab: dict[str, int] = {}  # id 0 is "a word no evaluation text has": it can never match
        self.powers = HASH_MULTIPLIER ** np.arange(NGRAM, dtype=np.uint64)
        self.texts: list[EvalText] = []
        self.sizes: list[int] = []
        owners: dict[int, list[int]] = {}
        for text in texts:
            tokens = words(text.text)
            if len(tokens) < NGRAM:
                continue
            ids = np.array([self.vocab.setdefault(w, len(self.vocab) + 1) for w in tokens], dtype=np.uint64)
            grams = self.hashes(ids)
            for gram in grams.tolist():
                owners.setdefault(gram, []).append(len(self.texts))
            self.texts.append(text)
            self.sizes.append(grams.size)
        # Boilerplate is judged within each task, so a large benchmark in the index does not make a small
        # task's template phrases look rare.
        per_task = Counter(text.task for text in self.texts)
        limits = {task: max(COMMON_MIN_TEXTS, int(COMMON_SHARE * count)) for task, count in per_task.items()}
        common = [
            gram
            for gram, texts in owners.items()
            if len(texts) > COMMON_MIN_TEXTS
            and any(n > limits[task] for task, n in Counter(self.texts[i].task for i in texts).items())
        ]
        for gram in common:
            for i in owners.pop(gram):
                self.sizes[i] -= 1
        self.keys = np.array(sorted(owners), dtype=np.uint64)
        self.owners = owners

    def hashes(self, ids: np.ndarray) -> np.ndarray:
        """Distinct hashes of the n-grams made only of known words (uint64 arithmetic wraps by design)."""
        if ids.size < NGRAM:
            return np.zeros(0, dtype=np.uint64)
        windows = np.lib.stride_tricks.sliding_window_view(ids, NGRAM)
        known = (windows != 0).all(axis=1)
        with np.errstate(over="ignore"):
            values = (windows[known] * self.powers).sum(axis=1, dtype=np.uint64)
        return np.unique(values)

    def matches(self, text: str) -> list[tuple[EvalText, float]]:
        """Evaluation texts that `text` covers to at least MIN_COVERAGE, with their coverage."""
        if not self.texts:
            return []
        ids = np.array([self.vocab.get(w, 0) for w in words(text)], dtype=np.uint64)
        grams = self.hashes(ids)
        if grams.size == 0:
            return []
        positions = np.searchsorted(self.keys, grams).clip(max=self.keys.size - 1)
        shared = grams[self.keys[positions] == grams]
        counts: Counter[int] = Counter(owner for gram in shared.tolist() for owner in self.owners[gram])
        found = [(self.texts[i], count / self.sizes[i]) for i, count in counts.items() if self.sizes[i]]
        return sorted(
            [(t, c) for t, c in found if c >= MIN_COVERAGE], key=lambda pair: (-pair[1], pair[0].task, pair[0].id)
        )


def decontaminate(
    examples: Sequence[Example], eval_texts: Iterable[EvalText]
) -> tuple[list[Example], list[Removed], list[Contamination]]:
    """(kept rows, removed rows, every contamination found). A row is dropped once, however many hits."""
    index = OverlapIndex(eval_texts)
    kept, removed, hits = [], [], []
    for example in examples:
        found = index.matches("\n".join(m["content"] for m in example["messages"]))
        if not found:
            kept.append(example)
            continue
        for text, coverage in found:
            hits.append(Contamination(example["id"], example["source"], text.task, text.id, text.part, coverage))
        text, coverage = found[0]
        reason = f"holds {coverage:.0%} of the {NGRAM}-grams of {text.task} test {text.part} {text.id}"
        removed.append(Removed(example["id"], example["source"], "contaminated", reason))
    return kept, removed, hits
