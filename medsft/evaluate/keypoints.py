"""Key points of a ChatDoctor reference (rule 1: condition; rule 2: tests, treatments), and hits (docs/dialogue.md)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from medsft.data.clean import words

MIN_ITEM_REFERENCES = 3
MAX_PHRASE_WORDS = 6
CONDITION_CUE = re.compile(
    r"(?i)\b(?:suffering from|suffer from|diagnosed with|diagnosis (?:is|of)|sounds like you (?:may |might |could )?"
    r"have|(?:you|that you) (?:may |might |could |probably |likely |most likely |possibly )?(?:have experienced|"
    r"have developed|have|had|are having|are experiencing|are suffering from|be experiencing|be having)"
    r"|symptoms of|signs? of|(?:for )?treating|to treat|evaluate your|indicative of|indicate|suggest"
    r"|(?:could|may|might) be (?:a case of |caused by |due to )?|likely (?:to be|a case of)|case of|condition called"
    r"|confirm (?:if you (?:do indeed )?have|the diagnosis of))\s+"
)
CONDITION_END = re.compile(
    r"(?i)[.,;:!?()\[\]]|\s(?:which|that|and|because|but|or|as|so|since|based|caused|called|in your|on your|"
    r"from|with|who|where|when|if|however|for)\b|(?<!\bdue)\sto\b"
)
ARTICLE = re.compile(
    r"(?i)^(?:(?:a|an|the|some|some kind of|a type of|a form of|an? case of|what is called|experienced|developed|"
    r"symptoms of|signs? of|contracted|been diagnosed with)\s+)+"
)
NOT_A_CONDITION = {"", "a", "any", "some", "it", "this", "these", "symptoms", "been", "several", "many", "other",
                   "to", "you", "your", "condition", "a condition", "an infection", "the following", "described",
                   "mentioned", "experiencing", "been experiencing"}  # fmt: skip

ITEM_SPLIT = re.compile(
    r"(?i),|;|:|\.(?:\s|$)|\(|\)|\band\b|\bor\b|\bas well as\b|\bsuch as\b|\bincluding\b|\bincludes\b|\blike\b"
    r"|\bwhich\b|\bthat\b|\bfollowed by\b|\bthen\b|\bwith\b|\bfor\b|\bto\b"
)
FILLER = re.compile(
    r"^(?:(?:(?:we|you|i)(?:'ll| will| would| may| might| should| can| need to| also)*(?: also)?(?: need to| have to)?"
    r"(?: recommend| suggest| prescribe| perform| conduct| do| run| get| take| undergo| start| order| have| go)*"
    r"|also|additionally|finally|first|lastly|some|a few|the|a|an|other|further|your|certain|possibly|perhaps"
    r"|medications?|tests?|procedures?|prescribe|recommend|perform|conduct|take|undergo|need|start|get|do|run)\b"
    r"|\s)+",
    re.IGNORECASE,
)
SENTENCE = re.compile(r"(?<=[.!?])\s+")
# A sentence holds a list of tests or treatments when it names one of these.
LIST_CUE = re.compile(
    r"(?i)\b(?:tests?|exam|examination|screen|screening|scan|imaging|measurement|procedures?|biopsy|medications?|"
    r"medicines?|drugs?|prescrib\w*|treatments?|therap\w*|take|recommend\w*|includ\w*|perform|conduct|undergo)\b"
)
# Words of prose, not of a test or drug name: a piece holding one is not an item.
PROSE = set(
    words(
        "you your we i it its this these that help helps symptoms symptom condition diagnosis confirm determine "
        "check see based sounds cause causing manage plan may might will can could should would need any order "
        "make ensure rule issue issues problem possible likely suffering experiencing treat relieve reduce improve "
        "prevent well yes no hello hi me my more following first next seek ll ve s be is are also there what how "
        "appropriate necessary course options option depending results further area all important best right "
        "effective doctor treatment medication medications tests test procedures those them they if one two both "
        "than other such which who have has been get give but evaluate patient okay moreover specifically meantime "
        "required needs performed done however leading lead going getting affects history human usp am"
    )
)
STOP = {"a", "an", "the", "of", "and", "or", "to", "in", "on", "for", "your", "with", "s", "some", "other", "test",
        "tests", "exam", "examination", "procedure", "procedures", "measurement", "therapy", "topical", "product",
        "diagnosis", "diagnostic", "evaluation"}  # fmt: skip
GROUPS: dict[str, tuple[str, ...]] = {
    "cancer and tumours": ("cancer", "carcinoma", "tumor", "tumour", "lymphoma", "leukemia", "melanoma", "sarcoma",
                           "myeloma", "neoplasm", "malignan", "blastoma", "oma of", "polyp", "cyst"),
    "infections": ("infection", "itis", "virus", "viral", "bacterial", "fungal", "abscess", "sepsis", "pox",
                   "tuberculosis", "influenza", "mumps", "measles", "worm", "syphilis", "hiv", "herpes", "lice",
                   "scabies", "candid", "malaria", "cellulitis", "flu"),
    "mental and behavioural": ("disorder", "depress", "anxiety", "schizophren", "psych", "panic", "phobia",
                               "adhd", "autism", "abuse", "dependence", "bipolar", "insomnia", "dementia",
                               "delirium", "anorexia", "bulimia"),
    "injuries": ("injury", "fracture", "sprain", "strain", "dislocation", "burn", "wound", "bite", "poisoning",
                 "concussion", "foreign body", "overdose", "bruise", "contusion"),
    "heart and vessels": ("heart", "cardi", "coronary", "arrhythm", "fibrillation", "hypertension", "aneurysm",
                          "thrombo", "embolism", "varic", "vascul", "angina", "hypotension", "stroke", "vein"),
}  # fmt: skip


@dataclass(frozen=True)
class KeyPoints:
    """What a reference says a reader should check: the condition named, and the tests and treatments."""

    condition: str | None
    items: tuple[str, ...]

    @property
    def all(self) -> list[str]:
        return [*([self.condition] if self.condition else []), *self.items]


def extract_condition(reference: str) -> str | None:
    """The condition a reference names (rule 1), or None."""
    for cue in CONDITION_CUE.finditer(reference):
        rest = reference[cue.end() :]
        end = CONDITION_END.search(rest)
        phrase = ARTICLE.sub("", (rest[: end.start()] if end else rest).strip()).strip(" '\"")
        if phrase.lower() in NOT_A_CONDITION or not words(phrase):
            continue
        if len(phrase.split()) <= MAX_PHRASE_WORDS:
            return phrase
    return None


def item_pieces(reference: str) -> list[str]:
    """Candidate enumeration items of a reference (rule 2 before the frequency filter), lower-cased."""
    pieces = []
    for sentence in SENTENCE.split(re.sub(r"\([^)]*\)", " ", reference)):
        if not LIST_CUE.search(sentence):
            continue
        for piece in ITEM_SPLIT.split(sentence):
            piece = " ".join(FILLER.sub("", piece.strip()).strip(" '\"").lower().split())
            if 1 <= len(piece.split()) <= MAX_PHRASE_WORDS and len(piece) >= 3 and not PROSE & set(words(piece)):
                pieces.append(piece)
    return pieces


@functools.cache
def table_entries(references: tuple[str, ...], patients: tuple[str, ...] = ()) -> frozenset[str]:
    """Items in at least `MIN_ITEM_REFERENCES` references (the disease table), less those as many patients say."""
    counts = Counter(piece for reference in references for piece in set(item_pieces(reference)))
    entries = {p for p, n in counts.items() if n >= MIN_ITEM_REFERENCES and key_words(p)}
    said = Counter(entry for patient in patients for entry in mentioned_entries(patient, frozenset(entries)))
    return frozenset(entry for entry in entries if said[entry] < MIN_ITEM_REFERENCES)


def mentioned_entries(reference: str, entries: frozenset[str]) -> tuple[str, ...]:
    """The table entries a reference mentions, longest first, skipping one inside a longer one already taken."""

    def spaced(phrase: str) -> str:
        return " " + " ".join(words(phrase)) + " "

    text = spaced(re.sub(r"\([^)]*\)", " ", reference))
    found: list[str] = []
    for entry in sorted(entries, key=lambda e: (-len(e), e)):
        needle = spaced(entry)
        if needle.strip() and needle in text and not any(needle in spaced(f) for f in found):
            found.append(entry)
    return tuple(sorted(found, key=lambda e: text.find(spaced(e))))


def stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def key_words(phrase: str) -> frozenset[str]:
    """The words that must all appear for a key point to count as contained (brackets dropped)."""
    phrase = re.sub(r"\([^)]*\)", " ", phrase)
    return frozenset(stem(w) for w in words(phrase) if w not in STOP)


def hits(reply: str, points: KeyPoints) -> list[bool]:
    """Per key point (condition first), whether the reply contains it."""
    reply_words = {stem(w) for w in words(reply)}
    return [bool(key_words(p)) and key_words(p) <= reply_words for p in points.all]


def condition_group(condition: str | None) -> str:
    if not condition:
        return "no condition named"
    lowered = condition.lower()  # first matching group, else `other`
    return next((group for group, keys in GROUPS.items() if any(key in lowered for key in keys)), "other")


def key_points_for(references: Sequence[str], corpus: Sequence[str], patients: Sequence[str] = ()) -> list[KeyPoints]:
    """Rules 1 and 2 on each reference, the table learned from the file's references and patient messages."""
    entries = table_entries(tuple(corpus), tuple(patients))
    out = []
    for reference in references:
        condition = extract_condition(reference)
        items = mentioned_entries(reference, entries)
        if condition:
            items = tuple(item for item in items if key_words(item) != key_words(condition))
        out.append(KeyPoints(condition, items))
    return out
