"""The held-out ChatDoctor dialogues: a fixed, seeded 500 that training never sees, nor anything close to them.
Why content words, the rule and the split: docs/dialogue.md."""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medsft.data.clean import Removed, words
from medsft.data.records import DataError, Example, FieldError, require_object, text_field, user_text

DIALOGUE_TEST_SIZE = 500
DIALOGUE_SPLIT_SEED = 0
TEMPLATE_SHARE = 0.10  # a word in more than this share of patient messages is template, not content
NEAR_DUPLICATE_JACCARD = 0.7
HELD_OUT_STEP = "held_out_dialogue"  # the removal step the data report lists
# `bundled:chatdoctor` in `medsft.data.loaders.BUNDLED`
CHATDOCTOR_FILE = Path(__file__).resolve().parent / "benchmarks" / "chatdoctor" / "chatdoctor5k.json"


@dataclass(frozen=True)
class DialogueItem:
    """One held-out dialogue; `row` is the 1-based record number in the carried file."""

    id: str
    row: int
    instruction: str
    patient: str
    reference: str

    @property
    def prompt(self) -> str:
        """The user turn, exactly as the `instructions` loader renders a training row."""
        return f"{self.instruction}\n\n{self.patient}" if self.patient else self.instruction

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]


def read_dialogues(path: Path | None = None) -> list[DialogueItem]:
    """Every row of the carried ChatDoctor file (or `path`, in the same layout), validated (read here: the loaders
    import this module to exclude the split)."""
    path = path or CHATDOCTOR_FILE
    origin = path.relative_to(path.parents[1]).as_posix() if path == CHATDOCTOR_FILE else path.name
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(origin, f"cannot read as JSON ({err})") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(origin, "expected a non-empty JSON array of dialogues")
    items = []
    for number, row in enumerate(rows, start=1):
        try:
            row = require_object(row)
            items.append(DialogueItem(
                id=f"chatdoctor:{number}",
                row=number,
                instruction=text_field(row, "instruction"),
                patient=text_field(row, "input", required=False) or "",
                reference=text_field(row, "output"),
            ))  # fmt: skip
        except FieldError as err:
            raise DataError(origin, err.reason, row=number, field=err.field) from None
    return items


class ContentWords:
    """A message's words minus the template words of a message collection."""

    def __init__(self, messages: Sequence[str], extra_template: str = "") -> None:
        counts = Counter(word for message in messages for word in set(words(message)))
        common = {word for word, n in counts.items() if n > TEMPLATE_SHARE * len(messages)}
        self.template = frozenset(common | set(words(extra_template)))

    def __call__(self, text: str) -> frozenset[str]:
        return frozenset(words(text)) - self.template


def normalized(text: str) -> str:
    return " ".join(words(text))


class NearDuplicateIndex:
    """Messages indexed by content word, for "is this a near-duplicate of any of them" queries."""

    def __init__(self, content: ContentWords) -> None:
        self.content = content
        self.ids: list[str] = []
        self.sets: list[frozenset[str]] = []
        self.exact: dict[str, str] = {}
        self.by_word: dict[str, list[int]] = {}

    def add(self, item_id: str, text: str) -> None:
        self.exact.setdefault(normalized(text), item_id)
        index = len(self.ids)
        self.ids.append(item_id)
        self.sets.append(self.content(text))
        for word in self.sets[-1]:
            self.by_word.setdefault(word, []).append(index)

    def match(self, text: str) -> tuple[str, float] | None:
        """(id, similarity) of the most similar indexed message at or above the threshold, else None."""
        exact = self.exact.get(normalized(text))
        if exact is not None:
            return exact, 1.0
        mine = self.content(text)
        if not mine:
            return None
        shared = Counter(i for word in mine for i in self.by_word.get(word, ()))
        scored = ((self.ids[i], count / len(mine | self.sets[i])) for i, count in sorted(shared.items()))
        return max((p for p in scored if p[1] >= NEAR_DUPLICATE_JACCARD), key=lambda p: p[1], default=None)


@dataclass(frozen=True)
class DialogueSplit:
    test: list[DialogueItem]
    index: NearDuplicateIndex
    rows: int
    skipped_near_duplicates: int  # rows passed over while drawing because they repeat a drawn one

    def describe(self) -> dict[str, Any]:
        return {
            "file": CHATDOCTOR_FILE.relative_to(CHATDOCTOR_FILE.parents[1]).as_posix(),
            "sha256": hashlib.sha256(CHATDOCTOR_FILE.read_bytes()).hexdigest(),
            "rows": self.rows,
            "test": len(self.test),
            "seed": DIALOGUE_SPLIT_SEED,
            "near_duplicate": f"content-word Jaccard >= {NEAR_DUPLICATE_JACCARD} or equal normalized text",
            "template_words": len(self.index.content.template),
            "passed_over_while_drawing": self.skipped_near_duplicates,
        }


@functools.cache
def dialogue_split(size: int = DIALOGUE_TEST_SIZE, seed: int = DIALOGUE_SPLIT_SEED) -> DialogueSplit:
    """The fixed test split of the carried ChatDoctor file: the rows shuffled with `seed`, taken in that order
    but for those that are near-duplicates of one already taken, until `size` are taken."""
    items = read_dialogues()
    content = ContentWords([item.patient for item in items], extra_template=items[0].instruction)
    index = NearDuplicateIndex(content)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    test: list[DialogueItem] = []
    passed = 0
    for i in order:
        if len(test) == size:
            break
        item = items[i]
        if index.match(item.patient) is not None:
            passed += 1
            continue
        held_out = replace(item, id=f"chatdoctor:test:{item.row}")
        index.add(held_out.id, held_out.patient)
        test.append(held_out)
    if len(test) < size:
        raise DataError(CHATDOCTOR_FILE.name, f"only {len(test)} distinct dialogues for a {size}-item split")
    return DialogueSplit(test, index, len(items), passed)


def load_dialogue_eval(limit: int | None = None) -> list[DialogueItem]:
    return dialogue_split().test[:limit]


def exclude_held_out(examples: Iterable[Example]) -> tuple[list[Example], list[Removed]]:
    """Training rows minus those whose user turn is a near-duplicate of a held-out patient message."""
    split = dialogue_split()
    kept, removed = [], []
    for example in examples:
        found = split.index.match(user_text(example))
        if found is None:
            kept.append(example)
            continue
        test_id, similarity = found
        reason = f"patient message {similarity:.0%} like held-out dialogue {test_id}"
        removed.append(Removed(example["id"], example["source"], HELD_OUT_STEP, reason))
    return kept, removed


def held_out_texts() -> list[tuple[str, str, str]]:
    """(id, part, text) of every held-out dialogue, for the 8-gram decontamination index."""
    return [(item.id, part, text) for item in dialogue_split().test
            for part, text in (("patient", item.patient), ("reference", item.reference))]  # fmt: skip
