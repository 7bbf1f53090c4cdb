"""Row types, field validators and `DataError`; a training example is a plain dict (`id`, `source`, `messages`,
`meta`) so it goes straight into `datasets.Dataset.from_list`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Example = dict[str, Any]
OnError = Literal["raise", "skip"]
LETTERS = "ABCDEFGHIJ"


class DataError(ValueError):
    """A data file or row is wrong; the message names the file, the 1-based row, the field and the problem."""

    def __init__(self, origin: str, reason: str, row: int | None = None, field: str | None = None) -> None:
        self.origin, self.reason, self.row, self.field = origin, reason, row, field
        at_row = "" if row is None else f" row {row}"
        at_field = "" if field is None else f", field '{field}'"
        super().__init__(f"{origin}{at_row}{at_field}: {reason}")


class FieldError(Exception):
    """Raised by row validators; the caller adds the file and row to make a `DataError`."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass
class MultipleChoiceItem:
    """One evaluation question: option texts in order (letters A.. implied) and the index of the answer."""

    id: str
    question: str
    choices: list[str]
    answer: int
    subject: str | None = None
    context: str | None = None

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedSource:
    """One source after validation: its examples, rows skipped (`on_error="skip"`) and `Removed` records of rows
    that repeat a held-out test dialogue (`medsft.data.dialogue_split`)."""

    name: str
    origin: str
    examples: list[Example]
    skipped: list[DataError] = field(default_factory=list)
    held_out: list[Any] = field(default_factory=list)


# JSON-flavoured type names, because users read these messages against their JSON files (bool before number).
JSON_TYPES = {
    "null": type(None),
    "boolean": bool,
    "number": (int, float),
    "string": str,
    "array": (list, tuple),
    "object": dict,
}


def type_name(value: Any) -> str:
    return next((name for name, types in JSON_TYPES.items() if isinstance(value, types)), type(value).__name__)


def require_object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise FieldError(None, f"expected a JSON object, got {type_name(raw)}")
    return raw


def text_field(
    row: dict[str, Any], name: str, *, required: bool = True, label: str | None = None, strip: bool = True
) -> str:
    """A non-empty string field ('' for a missing or null optional one). `strip=False` keeps the text verbatim, as
    lm-eval reads it (MedQA test row 243 starts with a space; dropping it changes the scores)."""
    label = label or name
    if name not in row or row[name] is None:
        if required:
            raise FieldError(label, "missing")
        return ""
    value = row[name]
    if not isinstance(value, str):
        raise FieldError(label, f"expected a string, got {type_name(value)}")
    if required and not value.strip():
        raise FieldError(label, "is empty")
    return value.strip() if strip else value


def present(row: dict[str, Any], name: str, label: str | None = None) -> Any:
    if row.get(name) is None:
        raise FieldError(label or name, "missing")
    return row[name]


def object_field(row: dict[str, Any], name: str) -> dict[str, Any]:
    value = present(row, name)
    if not isinstance(value, dict):
        raise FieldError(name, f"expected an object, got {type_name(value)}")
    return value


def list_field(row: dict[str, Any], name: str, label: str | None = None) -> list[Any]:
    label = label or name
    value = present(row, name, label)
    if not isinstance(value, (list, tuple)):
        raise FieldError(label, f"expected an array, got {type_name(value)}")
    if not value:
        raise FieldError(label, "is empty")
    return list(value)


def check_messages(messages: list[dict[str, str]], label: str = "messages") -> None:
    """An optional system turn, then user/assistant alternating, ending with the assistant; checked at load time:
    chat templates (Gemma's among them) raise on anything else, which would surface only once a model is loaded."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise FieldError(label, "has no user or assistant turn")
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise FieldError(
                f"{label}[{i + len(messages) - len(turns)}].role",
                f"expected '{expected}' (turns must alternate user/assistant after an optional system turn), "
                f"got '{message['role']}'",
            )
    if turns[-1]["role"] != "assistant":
        raise FieldError(label, "must end with an assistant turn (there is nothing to train on otherwise)")


def make_example(id: str, source: str, messages: list[dict[str, str]], meta: dict[str, Any] | None = None) -> Example:
    clean = [{"role": m["role"], "content": m["content"].strip()} for m in messages]
    check_messages(clean)
    return {"id": id, "source": source, "messages": clean, "meta": dict(meta or {})}


def user_text(example: Example) -> str:
    """The user turns only: what near-duplicate detection compares (a shared system prompt would swamp it)."""
    return "\n".join(m["content"] for m in example["messages"] if m["role"] == "user")
