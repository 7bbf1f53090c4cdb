"""Read each medical source from the hub or a local file, validate it row by row, and convert it to chats.

A source `path` is resolved in this order: None → the sample bundled in `medsft/data/samples/`;
`sample:<name>` → that bundled file; an existing local file → read by suffix (.jsonl, .json, .parquet);
anything shaped like `owner/name` → `datasets.load_dataset(path, subset, split=split)`. Local files ignore
`subset` and `split`. Each row is validated as it is converted, so a bad file fails with the file, the
1-based row (the line for JSONL, the record index + 1 for JSON arrays and Parquet) and the field, long
before a model is loaded. With `on_error="skip"` bad rows are counted and left out instead. Errors that
concern the whole file (not found, not a JSON array, unreadable Parquet) are raised either way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from medsft.config import DataSource
from medsft.data.records import (
    LETTERS,
    DataError,
    Example,
    FieldError,
    LoadedSource,
    MultipleChoiceItem,
    OnError,
    list_field,
    make_example,
    object_field,
    require_object,
    text_field,
    type_name,
)

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
# The bundled sample each source reads when its path is None.
DEFAULT_SAMPLES = {
    "medical_o1": "medical_o1.jsonl",
    "medqa": "medqa.jsonl",
    "pubmedqa": "pubmedqa.jsonl",
    "instructions": "instructions.jsonl",
    "messages": "messages.jsonl",
}
MEDQA_EVAL_SAMPLES = {"test": "medqa_test.jsonl", "train": "medqa.jsonl"}
# The public datasets these loaders read (for recipes and docs; nothing here downloads them by itself).
HUB_IDS = {
    "medical_o1": "FreedomIntelligence/medical-o1-reasoning-SFT",  # configs en, zh, en_mix, zh_mix
    "medqa": "GBaker/MedQA-USMLE-4-options",
    "medqa_hf": "GBaker/MedQA-USMLE-4-options-hf",
    "pubmedqa": "qiaojin/PubMedQA",  # config pqa_labeled
}
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

MEDQA_OPTIONS = 4
MEDQA_INSTRUCTION = "Answer with the letter of the correct option."
PUBMEDQA_CHOICES = ["yes", "no", "maybe"]
PUBMEDQA_INSTRUCTION = "Answer the question from the abstract with yes, no or maybe."
PUBMEDQA_TEST_SIZE = 500  # the standard pqa_labeled test split: 500 of the 1000 expert-labelled questions
PUBMEDQA_SPLIT_SEED = 0
# The split is only meaningful for the expert-labelled subset; other subsets are used whole.
PUBMEDQA_SPLIT_SUBSETS = (None, "pqa_labeled")

T = TypeVar("T")
Rows = Iterable[tuple[int, Any]]


# Reading -----------------------------------------------------------------------------------------------


def sample_path(name: str) -> Path:
    """A bundled sample file by name, with or without its suffix (`medqa_hf` or `medqa_hf.jsonl`)."""
    candidates = [SAMPLES_DIR / name] + [SAMPLES_DIR / f"{name}{suffix}" for suffix in FILE_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in SAMPLES_DIR.glob("*.jsonl")))
    raise DataError(f"sample:{name}", f"no bundled sample of that name; bundled samples: {known}")


def open_rows(
    path: str | None, default_sample: str, subset: str | None = None, split: str = "train"
) -> tuple[str, Rows]:
    """Resolve a source path and return (origin for messages, iterator of (row number, raw row))."""
    if path is None:
        local = sample_path(default_sample)
        return local.name, read_file(local)
    if path.startswith("sample:"):
        local = sample_path(path.removeprefix("sample:"))
        return local.name, read_file(local)
    local = Path(path).expanduser()
    if local.is_file():
        return local.name, read_file(local)
    if path.startswith((".", "/", "~")) or local.suffix.lower() in FILE_SUFFIXES:
        raise DataError(path, "file not found")
    if path.count("/") != 1:
        raise DataError(path, "not an existing file and not a hub dataset id like 'GBaker/MedQA-USMLE-4-options'")
    origin = f"{path}{f'/{subset}' if subset else ''}[{split}]"
    return origin, read_hub(path, subset, split, origin)


def read_file(path: Path) -> Rows:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path.read_bytes())
    if suffix == ".json":
        return read_json(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise DataError(path.name, f"unsupported file type '{suffix}'; use {', '.join(FILE_SUFFIXES)}")


def read_jsonl(data: bytes) -> Iterator[tuple[int, Any]]:
    """One JSON value per line; a line that is not UTF-8 or not JSON becomes a row error, not a file error."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors write
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield number, FieldError(None, f"not valid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})")
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as err:
            yield number, FieldError(None, f"not valid JSON ({err.msg} at column {err.colno})")


def read_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array of objects. `Dataset.to_json` writes JSON Lines under a .json name, so accept that too."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(path.name, f"not valid UTF-8 (byte 0x{data[err.start]:02x} on line {line})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            return read_jsonl(data)
        raise DataError(path.name, f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(value, list):
        raise DataError(path.name, f"expected a JSON array of objects (or JSON Lines), got {type_name(value)}")
    return iter(enumerate(value, start=1))


def read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow
    import pyarrow.parquet

    try:
        rows = pyarrow.parquet.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError) as err:
        raise DataError(path.name, f"not a readable Parquet file ({err})") from None
    return iter(enumerate(rows, start=1))


def read_hub(path: str, subset: str | None, split: str, origin: str) -> Iterator[tuple[int, Any]]:
    """Rows of a hub dataset (needs network or a warm `datasets` cache)."""
    import datasets

    try:
        dataset = datasets.load_dataset(path, subset, split=split)
    except Exception as err:  # noqa: BLE001 - hub failures come in many types; all mean "could not load"
        raise DataError(origin, f"could not load from the Hugging Face hub ({type(err).__name__}: {err})") from err
    return iter(enumerate(dataset, start=1))


def convert_rows(
    origin: str, rows: Rows, convert: Callable[[dict[str, Any], int], T], on_error: OnError = "raise"
) -> tuple[list[T], list[DataError]]:
    """Apply a row converter; raise the first bad row as a DataError, or collect them with on_error='skip'."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    converted: list[T] = []
    skipped: list[DataError] = []
    for number, raw in rows:
        try:
            if isinstance(raw, FieldError):
                raise raw
            converted.append(convert(require_object(raw), number))
        except FieldError as err:
            error = DataError(origin, err.reason, row=number, field=err.field)
            if on_error == "raise":
                raise error from None
            skipped.append(error)
    return converted, skipped


def row_tag(origin: str) -> str:
    """A short, stable tag for example ids: the file stem or the hub subset/split."""
    return Path(origin.split("[")[0]).stem or origin


# Formats -----------------------------------------------------------------------------------------------


def medical_o1_example(row: dict[str, Any], number: int, tag: str) -> Example:
    """medical-o1-reasoning-SFT: the reasoning goes inside <think> so it is visible and auditable."""
    question = text_field(row, "Question")
    reasoning = text_field(row, "Complex_CoT")
    response = text_field(row, "Response")
    return make_example(
        f"medical_o1:{tag}:{number}",
        "medical_o1",
        [{"role": "user", "content": question}, {"role": "assistant", "content": think(reasoning, response)}],
    )


def think(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n{answer.strip()}"


def parse_medqa(row: dict[str, Any], number: int, tag: str) -> MultipleChoiceItem:
    """MedQA 4-option in either schema: `question/options{A..D}/answer_idx` or the -hf `sent1/ending0..3/label`."""
    if "sent1" in row:
        question = text_field(row, "sent1")
        choices = [text_field(row, f"ending{i}") for i in range(MEDQA_OPTIONS)]
        label = row.get("label")
        if label is None:
            raise FieldError("label", "missing")
        if isinstance(label, bool) or not isinstance(label, int):
            raise FieldError("label", f"expected an integer 0-{MEDQA_OPTIONS - 1}, got {type_name(label)}")
        if not 0 <= label < MEDQA_OPTIONS:
            allowed = ", ".join(str(i) for i in range(MEDQA_OPTIONS))
            raise FieldError("label", f"{label} is not one of the option indices {allowed}")
        row_id = row.get("id")
        return MultipleChoiceItem(
            id=f"medqa:{tag}:{row_id if row_id not in (None, '') else number}",
            question=question,
            choices=choices,
            answer=label,
        )
    question = text_field(row, "question")
    options = object_field(row, "options")
    # Parquet stores options as a struct; a 4-option row in a 5-option schema has E = null.
    options = {key: value for key, value in options.items() if value is not None}
    expected = list(LETTERS[:MEDQA_OPTIONS])
    if sorted(options) != expected:
        got = ", ".join(sorted(options)) or "none"
        raise FieldError("options", f"expected exactly the {MEDQA_OPTIONS} options {', '.join(expected)}, got {got}")
    choices = [text_field(options, letter, label=f"options.{letter}") for letter in expected]
    answer_key = row.get("answer_idx")
    if answer_key is None:
        raise FieldError("answer_idx", "missing")
    if not isinstance(answer_key, str) or answer_key.strip() not in expected:
        raise FieldError("answer_idx", f"{answer_key!r} is not one of the options {', '.join(expected)}")
    subject = row.get("meta_info")
    return MultipleChoiceItem(
        id=f"medqa:{tag}:{number}",
        question=question,
        choices=choices,
        answer=expected.index(answer_key.strip()),
        subject=subject if isinstance(subject, str) and subject else None,
    )


def format_options(choices: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


def medqa_example(item: MultipleChoiceItem) -> Example:
    prompt = f"{item.question}\n\n{format_options(item.choices)}\n\n{MEDQA_INSTRUCTION}"
    answer = f"Answer: {item.answer_letter}. {item.choices[item.answer]}"
    meta = {"answer": item.answer_letter}
    if item.subject:
        meta["subject"] = item.subject
    return make_example(
        item.id, "medqa", [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], meta
    )


def parse_pubmedqa(row: dict[str, Any], number: int, tag: str) -> dict[str, Any]:
    """PubMedQA pqa_labeled: `question`, `context.contexts`, `long_answer`, `final_decision`."""
    question = text_field(row, "question")
    context = object_field(row, "context")
    contexts = list_field(context, "contexts", label="context.contexts")
    for i, passage in enumerate(contexts):
        if not isinstance(passage, str):
            raise FieldError(f"context.contexts[{i}]", f"expected a string, got {type_name(passage)}")
    long_answer = text_field(row, "long_answer")
    decision = row.get("final_decision")
    if decision is None:
        raise FieldError("final_decision", "missing")
    if not isinstance(decision, str) or decision.strip().lower() not in PUBMEDQA_CHOICES:
        raise FieldError("final_decision", f"{decision!r} is not one of {', '.join(PUBMEDQA_CHOICES)}")
    pubid = row.get("pubid")
    return {
        "id": f"pubmedqa:{tag}:{pubid if pubid not in (None, '') else number}",
        "question": question,
        "context": "\n".join(p.strip() for p in contexts if p.strip()),
        "long_answer": long_answer,
        "decision": decision.strip().lower(),
    }


def pubmedqa_example(record: dict[str, Any]) -> Example:
    prompt = f"Abstract: {record['context']}\n\nQuestion: {record['question']}\n\n{PUBMEDQA_INSTRUCTION}"
    answer = f"{record['long_answer']}\n\nAnswer: {record['decision']}"
    return make_example(
        record["id"],
        "pubmedqa",
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        {"answer": record["decision"]},
    )


def pubmedqa_item(record: dict[str, Any]) -> MultipleChoiceItem:
    return MultipleChoiceItem(
        id=record["id"],
        question=record["question"],
        choices=list(PUBMEDQA_CHOICES),
        answer=PUBMEDQA_CHOICES.index(record["decision"]),
        context=record["context"],
    )


def stratified_test_indices(labels: list[str], test_size: int, seed: int = PUBMEDQA_SPLIT_SEED) -> list[int]:
    """Indices of a label-stratified test split: each label's share of the test set matches its share overall.

    Quotas use the largest-remainder rule (ties by label name) so they sum to `test_size` exactly; within a
    label, rows are shuffled with `random.Random(seed)` in label order, so the split depends only on the rows.
    """
    if not 0 <= test_size <= len(labels):
        raise ValueError(f"test_size must be between 0 and {len(labels)}, got {test_size}")
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    exact = {label: test_size * len(rows) / len(labels) for label, rows in by_label.items()} if labels else {}
    quotas = {label: int(share) for label, share in exact.items()}
    leftover = test_size - sum(quotas.values())
    for label in sorted(exact, key=lambda lab: (-(exact[lab] - quotas[lab]), lab))[:leftover]:
        quotas[label] += 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = list(by_label[label])
        rng.shuffle(rows)
        chosen.extend(rows[: quotas[label]])
    return sorted(chosen)


def pubmedqa_test_size(rows: int) -> int:
    """500 for the 1000-row pqa_labeled set; for a smaller file the same proportion, half (rounded down)."""
    return min(PUBMEDQA_TEST_SIZE, rows // 2)


def split_pubmedqa(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) records; the test split is label-stratified with seed 0, in original row order."""
    test = set(stratified_test_indices([r["decision"] for r in records], pubmedqa_test_size(len(records))))
    return [r for i, r in enumerate(records) if i not in test], [r for i, r in enumerate(records) if i in test]


def instruction_example(row: dict[str, Any], number: int, tag: str) -> Example:
    """Alpaca/MedGenius-style `instruction` + optional `input` → `output`, with an optional `system`."""
    instruction = text_field(row, "instruction")
    extra = text_field(row, "input", required=False)
    output = text_field(row, "output")
    system = text_field(row, "system", required=False)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction})
    messages.append({"role": "assistant", "content": output})
    return make_example(f"instructions:{tag}:{number}", "instructions", messages)


OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def messages_example(row: dict[str, Any], number: int, tag: str) -> Example:
    """`messages: [{role, content}]` (OpenAI/TRL) or ShareGPT `conversations: [{from, value}]`."""
    if "messages" in row or "conversations" not in row:
        name, role_key, content_key, roles = "messages", "role", "content", OPENAI_ROLES
    else:
        name, role_key, content_key, roles = "conversations", "from", "value", SHAREGPT_ROLES
    turns = list_field(row, name)
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise FieldError(f"{name}[{i}]", f"expected an object, got {type_name(turn)}")
        role = turn.get(role_key)
        if role not in roles:
            allowed = ", ".join(roles)
            raise FieldError(f"{name}[{i}].{role_key}", f"{role!r} is not one of {allowed}")
        content = text_field(turn, content_key, label=f"{name}[{i}].{content_key}")
        messages.append({"role": roles[role], "content": content})
    try:
        return make_example(f"messages:{tag}:{number}", "messages", messages)
    except FieldError as err:
        raise FieldError((err.field or name).replace("messages", name, 1), err.reason) from None


# Loaders -----------------------------------------------------------------------------------------------


def load_rows(
    name: str,
    path: str | None,
    convert: Callable[[dict[str, Any], int, str], T],
    subset: str | None,
    split: str,
    on_error: OnError,
) -> tuple[str, list[T], list[DataError]]:
    origin, rows = open_rows(path, DEFAULT_SAMPLES[name], subset, split)
    tag = row_tag(origin)
    converted, skipped = convert_rows(origin, rows, lambda row, number: convert(row, number, tag), on_error)
    return origin, converted, skipped


def load_medical_o1(
    path: str | None = None, subset: str | None = "en", split: str = "train", on_error: OnError = "raise"
) -> LoadedSource:
    origin, examples, skipped = load_rows("medical_o1", path, medical_o1_example, subset, split, on_error)
    return LoadedSource("medical_o1", origin, examples, skipped)


def load_medqa(
    path: str | None = None, subset: str | None = None, split: str = "train", on_error: OnError = "raise"
) -> LoadedSource:
    origin, items, skipped = load_rows("medqa", path, parse_medqa, subset, split, on_error)
    return LoadedSource("medqa", origin, [medqa_example(item) for item in items], skipped)


def load_pubmedqa(
    path: str | None = None, subset: str | None = "pqa_labeled", split: str = "train", on_error: OnError = "raise"
) -> LoadedSource:
    """PubMedQA for training: every row except the stratified test split (which evaluation uses)."""
    origin, records, skipped = load_rows("pubmedqa", path, parse_pubmedqa, subset, split, on_error)
    if subset in PUBMEDQA_SPLIT_SUBSETS:
        records, _ = split_pubmedqa(records)
    return LoadedSource("pubmedqa", origin, [pubmedqa_example(r) for r in records], skipped)


def load_instructions(
    path: str | None = None, subset: str | None = None, split: str = "train", on_error: OnError = "raise"
) -> LoadedSource:
    origin, examples, skipped = load_rows("instructions", path, instruction_example, subset, split, on_error)
    return LoadedSource("instructions", origin, examples, skipped)


def load_messages(
    path: str | None = None, subset: str | None = None, split: str = "train", on_error: OnError = "raise"
) -> LoadedSource:
    origin, examples, skipped = load_rows("messages", path, messages_example, subset, split, on_error)
    return LoadedSource("messages", origin, examples, skipped)


LOADERS: dict[str, Callable[..., LoadedSource]] = {
    "medical_o1": load_medical_o1,
    "medqa": load_medqa,
    "pubmedqa": load_pubmedqa,
    "instructions": load_instructions,
    "messages": load_messages,
}
SYNTHETIC_DEFAULT_COUNT = 200


def load_source(
    source: DataSource, data_seed: int = 0, on_error: OnError = "raise", synthetic_count: int | None = None
) -> LoadedSource:
    """Read one configured source. Synthetic cases ignore `path`; their number is `count` (or `synthetic_count`)."""
    if source.name == "synthetic":
        from medsft.data.synthetic import generate_cases

        n = source.count or synthetic_count or SYNTHETIC_DEFAULT_COUNT
        cases = generate_cases(n, seed=data_seed)
        return LoadedSource("synthetic", f"synthetic(n={n}, seed={data_seed})", [c.to_example() for c in cases])
    if source.name not in LOADERS:
        raise ValueError(f"unknown data source '{source.name}'; choose one of {', '.join([*LOADERS, 'synthetic'])}")
    kwargs: dict[str, Any] = {"path": source.path, "split": source.split, "on_error": on_error}
    if source.subset is not None:  # otherwise each loader's default (medical_o1 "en", pubmedqa "pqa_labeled")
        kwargs["subset"] = source.subset
    return LOADERS[source.name](**kwargs)


def load_medqa_eval(
    path: str | None = None, split: str = "test", limit: int | None = None, on_error: OnError = "raise"
) -> list[MultipleChoiceItem]:
    """MedQA as 4-option multiple choice, in file order, the first `limit` items.

    With no path the bundled `medqa_test.jsonl` (split "test") or `medqa.jsonl` (split "train") is read;
    the two share no question, so training on the sample never leaks the test.
    """
    if path is None:
        if split not in MEDQA_EVAL_SAMPLES:
            allowed = ", ".join(MEDQA_EVAL_SAMPLES)
            raise DataError(f"medqa[{split}]", f"no bundled sample for split '{split}'; use {allowed}")
        path = f"sample:{MEDQA_EVAL_SAMPLES[split]}"
    origin, rows = open_rows(path, DEFAULT_SAMPLES["medqa"], None, split)
    tag = row_tag(origin)
    items, _ = convert_rows(origin, rows, lambda row, number: parse_medqa(row, number, tag), on_error)
    return items[:limit] if limit is not None else items


def pubmedqa_test_records(path: str | None = None, on_error: OnError = "raise") -> list[dict[str, Any]]:
    """The PubMedQA test split as parsed records (with the long answer, which decontamination also checks)."""
    origin, rows = open_rows(path, DEFAULT_SAMPLES["pubmedqa"], "pqa_labeled", "train")
    tag = row_tag(origin)
    records, _ = convert_rows(origin, rows, lambda row, number: parse_pubmedqa(row, number, tag), on_error)
    return split_pubmedqa(records)[1]


def load_pubmedqa_eval(
    path: str | None = None, limit: int | None = None, on_error: OnError = "raise"
) -> list[MultipleChoiceItem]:
    """PubMedQA test items (choices yes/no/maybe, context = the abstract's passages joined by newlines).

    The test split is `min(500, rows // 2)` rows, stratified by `final_decision` with seed 0: the standard
    500 of pqa_labeled's 1000 rows, and half of a smaller file (30 of the bundled 60) in the same proportion.
    Items keep file order; `limit` takes the first ones.
    """
    items = [pubmedqa_item(r) for r in pubmedqa_test_records(path, on_error)]
    return items[:limit] if limit is not None else items
