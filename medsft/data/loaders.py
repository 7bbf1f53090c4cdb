"""Read each medical source from the hub or a local file, validate it row by row (a `DataError` names the file,
the 1-based row and the field; `on_error="skip"` counts bad rows instead), and convert it to chats."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from medsft.config import DataSource
from medsft.data.dialogue_split import exclude_held_out
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
    present,
    require_object,
    text_field,
    type_name,
)
from medsft.data.synthetic import generate_cases

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
BENCHMARKS_DIR = Path(__file__).resolve().parent / "benchmarks"
# Real public files carried in the package (sources, licences and counts: benchmarks/README.md).
BUNDLED = {
    "medqa-test": "medqa/test.jsonl",  # MedQA US 4-option official test split, 1,273
    "medqa-dev": "medqa/dev.jsonl",  # MedQA US 4-option official dev split, 1,272
    "pubmedqa": "pubmedqa/ori_pqal.json",  # PubMedQA PQA-L, 1,000 keyed by PMID
    "chatdoctor": "chatdoctor/chatdoctor5k.json",  # ChatDoctor GenMedGPT-5k (ChatGPT-generated), 5,452
}
PUBMEDQA_TEST_FILE = BENCHMARKS_DIR / "pubmedqa" / "test_ground_truth.json"  # the official 500 test PMIDs
# What each source reads when its path is None: the real data where a licensed copy is carried. medical-o1
# and messages have none (the medical-o1 demo file has no licence), so they read the self-written samples.
DEFAULT_SOURCES = {
    "medical_o1": "sample:medical_o1",
    "medqa": "bundled:medqa-dev",  # training never reads the test split
    "pubmedqa": "bundled:pubmedqa",  # training keeps only the 500 PMIDs outside the official test split
    "instructions": "bundled:chatdoctor",
    "messages": "sample:messages",
}
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
KEY_FIELD = "_key"  # the key of a row read from a JSON object keyed by id (a PMID in ori_pqal.json)

MEDQA_OPTIONS = 4
MEDQA_INSTRUCTION = "Answer with the letter of the correct option."
PUBMEDQA_CHOICES = ["yes", "no", "maybe"]
PUBMEDQA_INSTRUCTION = "Answer the question from the abstract with yes, no or maybe."
PUBMEDQA_TEST_SIZE = 500  # the official pqa_labeled test split: 500 of the 1000 expert-labelled questions
PUBMEDQA_SPLIT_SEED = 0  # only for files with none of the official test PMIDs (the self-written sample)

T = TypeVar("T")
Rows = Iterable[tuple[int, Any]]


def sample_path(name: str) -> Path:
    """A bundled sample file by name, with or without its suffix (`medqa_hf` or `medqa_hf.jsonl`)."""
    for candidate in [SAMPLES_DIR / name, *(SAMPLES_DIR / f"{name}{suffix}" for suffix in FILE_SUFFIXES)]:
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in SAMPLES_DIR.glob("*.jsonl")))
    raise DataError(f"sample:{name}", f"no bundled sample of that name; bundled samples: {known}")


def bundled_path(name: str) -> Path:
    if name not in BUNDLED:
        raise DataError(f"bundled:{name}", f"no carried data set of that name; carried: {', '.join(BUNDLED)}")
    return BENCHMARKS_DIR / BUNDLED[name]


def resolve_file(path: str | None, default: str) -> Path | None:
    """The local file a source path reads: None → `default`; `bundled:<name>` → a carried real file (`BUNDLED`);
    `sample:<name>` → a self-written file in `samples/`; else an existing local file. None for a hub id (`owner/name`,
    read with `datasets.load_dataset(path, subset, split=split)`; local files ignore `subset` and `split`)."""
    path = default if path is None else path
    if path.startswith("bundled:"):
        return bundled_path(path.removeprefix("bundled:"))
    if path.startswith("sample:"):
        return sample_path(path.removeprefix("sample:"))
    local = Path(path).expanduser()
    if local.is_file():
        return local
    if path.startswith((".", "/", "~")) or local.suffix.lower() in FILE_SUFFIXES:
        raise DataError(path, "file not found")
    return None


def read_file(path: Path) -> Rows:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path.read_bytes())
    if suffix == ".json":
        return read_json_rows(path)
    if suffix != ".parquet":
        raise DataError(path.name, f"unsupported file type '{suffix}'; use {', '.join(FILE_SUFFIXES)}")
    import pyarrow.parquet

    try:
        return enumerate(pyarrow.parquet.read_table(path).to_pylist(), start=1)
    except (pyarrow.ArrowException, OSError) as err:
        raise DataError(path.name, f"not a readable Parquet file ({err})") from None


def read_jsonl(data: bytes) -> Iterator[tuple[int, Any]]:
    """One JSON value per line; a line that is not UTF-8 or not JSON becomes a row error, not a file error."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors write
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            value = FieldError(None, f"not valid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})")
        except json.JSONDecodeError as err:
            value = FieldError(None, f"not valid JSON ({err.msg} at column {err.colno})")
        yield number, value


def read_json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array of objects, an object of objects keyed by id (`ori_pqal.json`: PMID → item, the key kept as
    `KEY_FIELD`), or JSON Lines under a .json name (what `Dataset.to_json` writes)."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(path.name, f"not valid UTF-8 (byte 0x{data[err.start]:02x} on line {line})") from None
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            return read_jsonl(data)
        raise DataError(path.name, f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if isinstance(value, dict) and value and all(isinstance(row, dict) for row in value.values()):
        return ((number, {**row, KEY_FIELD: key}) for number, (key, row) in enumerate(value.items(), start=1))
    if not isinstance(value, list):
        kinds = "a JSON array of objects, an object of objects keyed by id, or JSON Lines"
        raise DataError(path.name, f"expected {kinds}, got {type_name(value)}")
    return enumerate(value, start=1)


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
    if not converted:
        if not skipped:
            raise DataError(origin, "has no rows")
        raise DataError(origin, f"no rows left after validation: all {len(skipped)} rows are invalid ({skipped[0]})")
    return converted, skipped


def load_rows(
    path: str | None,
    default: str,
    convert: Callable[[dict[str, Any], int, str], T],
    subset: str | None = None,
    split: str = "train",
    on_error: OnError = "raise",
) -> tuple[str, list[T], list[DataError]]:
    """(origin for messages, converted rows, skipped rows) of a source path (`resolve_file`) or a hub id; `convert`
    gets each row, its number and a short stable tag for ids (the file stem, or the hub subset or name)."""
    local = resolve_file(path, default)
    path = default if path is None else path
    if local is not None:
        carried = local.resolve().is_relative_to(BENCHMARKS_DIR)  # named by their path there (`medqa/test.jsonl`)
        origin = local.resolve().relative_to(BENCHMARKS_DIR).as_posix() if carried else local.name
        rows = read_file(local)
    elif path.count("/") != 1:
        raise DataError(path, "not an existing file and not a hub dataset id like 'GBaker/MedQA-USMLE-4-options'")
    else:  # needs network or a warm `datasets` cache
        import datasets

        origin = f"{path}{f'/{subset}' if subset else ''}[{split}]"
        try:
            rows = enumerate(datasets.load_dataset(path, subset, split=split), start=1)
        except Exception as err:  # noqa: BLE001 - hub failures come in many types; all mean "could not load"
            raise DataError(origin, f"could not load from the Hugging Face hub ({type(err).__name__}: {err})") from err
    tag = Path(origin.split("[")[0]).stem or origin
    converted, skipped = convert_rows(origin, rows, lambda row, number: convert(row, number, tag), on_error)
    return origin, converted, skipped


def medical_o1_example(row: dict[str, Any], number: int, tag: str) -> Example:
    """medical-o1-reasoning-SFT: the reasoning goes inside <think> so it is visible and auditable."""
    question = text_field(row, "Question")
    answer = f"<think>\n{text_field(row, 'Complex_CoT')}\n</think>\n{text_field(row, 'Response')}"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return make_example(f"medical_o1:{tag}:{number}", "medical_o1", messages)


def parse_medqa(row: dict[str, Any], number: int, tag: str) -> MultipleChoiceItem:
    """MedQA 4-option in either schema: `question/options{A..D}/answer_idx` or the -hf `sent1/ending0..3/label`;
    texts verbatim (no strip): lm-eval builds its prompt from the raw text, and so must scoring."""
    expected = list(LETTERS[:MEDQA_OPTIONS])
    listed = ", ".join(expected)
    if "sent1" in row:
        question = text_field(row, "sent1", strip=False)
        choices = [text_field(row, f"ending{i}", strip=False) for i in range(MEDQA_OPTIONS)]
        answer = present(row, "label")
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise FieldError("label", f"expected an integer 0-{MEDQA_OPTIONS - 1}, got {type_name(answer)}")
        if not 0 <= answer < MEDQA_OPTIONS:
            allowed = ", ".join(str(i) for i in range(MEDQA_OPTIONS))
            raise FieldError("label", f"{answer} is not one of the option indices {allowed}")
        row_id, subject = row.get("id"), None
    else:
        question = text_field(row, "question", strip=False)
        # Parquet stores options as a struct; a 4-option row in a 5-option schema has E = null.
        options = {key: value for key, value in object_field(row, "options").items() if value is not None}
        if sorted(options) != expected:
            got = ", ".join(sorted(options)) or "none"
            raise FieldError("options", f"expected exactly the {MEDQA_OPTIONS} options {listed}, got {got}")
        choices = [text_field(options, letter, label=f"options.{letter}", strip=False) for letter in expected]
        answer_key = present(row, "answer_idx")
        if not isinstance(answer_key, str) or answer_key.strip() not in expected:
            raise FieldError("answer_idx", f"{answer_key!r} is not one of the options {listed}")
        answer, row_id, subject = expected.index(answer_key.strip()), None, row.get("meta_info")
    return MultipleChoiceItem(
        id=f"medqa:{tag}:{row_id if row_id not in (None, '') else number}",
        question=question,
        choices=choices,
        answer=answer,
        subject=subject if isinstance(subject, str) and subject else None,
    )


def format_options(choices: Sequence[str]) -> str:
    """`A. first`, `B. second`, ... one per line: the options of lm-eval's MedQA, MedMCQA and MMLU prompts."""
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


def medqa_example(row: dict[str, Any], number: int, tag: str) -> Example:
    item = parse_medqa(row, number, tag)
    choices = [choice.strip() for choice in item.choices]  # items keep raw text; training turns are tidied
    prompt = f"{item.question.strip()}\n\n{format_options(choices)}\n\n{MEDQA_INSTRUCTION}"
    answer = f"Answer: {item.answer_letter}. {choices[item.answer]}"
    meta: dict[str, Any] = {"answer": item.answer_letter, "item": item.to_dict()}  # scored on validation rows
    if item.subject:
        meta["subject"] = item.subject
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return make_example(item.id, "medqa", messages, meta)


def parse_pubmedqa(row: dict[str, Any], number: int, tag: str) -> dict[str, Any]:
    """PubMedQA PQA-L, the hub's pqa_labeled rows or `ori_pqal.json`: the question and the passages joined by "\n"
    verbatim (as lm-eval reads them); ids `pubmedqa:<PMID>`, or `pubmedqa:<file>:<row>` for a row without one."""
    if "QUESTION" in row or KEY_FIELD in row:
        question = text_field(row, "QUESTION", strip=False)
        contexts = list_field(row, "CONTEXTS")
        passages_label, long_answer = "CONTEXTS", text_field(row, "LONG_ANSWER")
        pubid = row.get(KEY_FIELD)
    else:
        question = text_field(row, "question", strip=False)
        contexts = list_field(object_field(row, "context"), "contexts", label="context.contexts")
        passages_label, long_answer = "context.contexts", text_field(row, "long_answer")
        pubid = row.get("pubid")
    for i, passage in enumerate(contexts):
        if not isinstance(passage, str):
            raise FieldError(f"{passages_label}[{i}]", f"expected a string, got {type_name(passage)}")
    decision = present(row, "final_decision")
    if not isinstance(decision, str) or decision.strip().lower() not in PUBMEDQA_CHOICES:
        raise FieldError("final_decision", f"{decision!r} is not one of {', '.join(PUBMEDQA_CHOICES)}")
    pmid = str(pubid).strip() if pubid not in (None, "") else None
    return {
        "id": f"pubmedqa:{pmid}" if pmid else f"pubmedqa:{tag}:{number}",
        "pubid": pmid,
        "question": question,
        "context": "\n".join(contexts),
        "long_answer": long_answer,
        "decision": decision.strip().lower(),
    }


def pubmedqa_example(record: dict[str, Any], style: str = "reasoning") -> Example:
    """The abstract and question as the user turn; the assistant turn is the long answer (the abstract's
    conclusion) then `Answer: <decision>` ("reasoning"), or the decision line alone ("answer")."""
    context = "\n".join(p.strip() for p in record["context"].split("\n") if p.strip())  # training turns are tidied
    prompt = f"Abstract: {context}\n\nQuestion: {record['question'].strip()}\n\n{PUBMEDQA_INSTRUCTION}"
    decision = f"Answer: {record['decision']}"
    answer = decision if style == "answer" else f"{record['long_answer']}\n\n{decision}"
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    meta = {"answer": record["decision"], "item": pubmedqa_item(record).to_dict()}  # scored on validation rows
    return make_example(record["id"], "pubmedqa", messages, meta)


def pubmedqa_item(record: dict[str, Any]) -> MultipleChoiceItem:
    return MultipleChoiceItem(
        id=record["id"],
        question=record["question"],
        choices=list(PUBMEDQA_CHOICES),
        answer=PUBMEDQA_CHOICES.index(record["decision"]),
        context=record["context"],
    )


def stratified_test_indices(labels: list[str], test_size: int, seed: int = PUBMEDQA_SPLIT_SEED) -> list[int]:
    """Indices of a label-stratified test split: quotas by the largest-remainder rule (ties by label name) sum to
    `test_size`; each label's rows are shuffled with `random.Random(seed)` in label order."""
    if not 0 <= test_size <= len(labels):
        raise ValueError(f"test_size must be between 0 and {len(labels)}, got {test_size}")
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    exact = {label: test_size * len(rows) / len(labels) for label, rows in by_label.items()}
    quotas = {label: int(share) for label, share in exact.items()}
    leftover = test_size - sum(quotas.values())
    for label in sorted(exact, key=lambda lab: (-(exact[lab] - quotas[lab]), lab))[:leftover]:
        quotas[label] += 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        rng.shuffle(by_label[label])
        chosen.extend(by_label[label][: quotas[label]])
    return sorted(chosen)


def split_pubmedqa(
    records: list[dict[str, Any]], origin: str = "pubmedqa"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) records. Records holding any official test PMID: test is exactly those, in the official
    order (a label differing from the official one is a `DataError`). Else (the self-written sample): stratified."""
    official = {str(pmid): str(label) for pmid, label in json.loads(PUBMEDQA_TEST_FILE.read_bytes()).items()}
    test = [r for r in records if r.get("pubid") in official]
    if test:
        for r in test:
            if r["decision"] != official[r["pubid"]]:
                raise DataError(
                    origin,
                    f"PMID {r['pubid']}: final_decision '{r['decision']}' differs from the official test "
                    f"label '{official[r['pubid']]}' (pubmedqa test_ground_truth.json)",
                )
        order = {pmid: i for i, pmid in enumerate(official)}
        return [r for r in records if r.get("pubid") not in official], sorted(test, key=lambda r: order[r["pubid"]])
    # Without the official PMIDs: 500 for a 1000-row file; for a smaller one half (rounded down).
    test_size = min(PUBMEDQA_TEST_SIZE, len(records) // 2)
    test_rows = set(stratified_test_indices([r["decision"] for r in records], test_size))
    return (
        [r for i, r in enumerate(records) if i not in test_rows],
        [r for i, r in enumerate(records) if i in test_rows],
    )


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
    messages = []
    for i, turn in enumerate(list_field(row, name)):
        if not isinstance(turn, dict):
            raise FieldError(f"{name}[{i}]", f"expected an object, got {type_name(turn)}")
        role = turn.get(role_key)
        if role not in roles:
            raise FieldError(f"{name}[{i}].{role_key}", f"{role!r} is not one of {', '.join(roles)}")
        content = text_field(turn, content_key, label=f"{name}[{i}].{content_key}")
        messages.append({"role": roles[role], "content": content})
    try:
        return make_example(f"messages:{tag}:{number}", "messages", messages)
    except FieldError as err:
        raise FieldError((err.field or name).replace("messages", name, 1), err.reason) from None


# Dialogue sources: every file they read loses the rows that repeat a held-out ChatDoctor test dialogue.
DIALOGUE_SOURCES = ("instructions", "messages")


def row_loader(
    name: str, convert: Callable[[dict[str, Any], int, str], Example], default_subset: str | None = None
) -> Callable[..., LoadedSource]:
    """A training source whose rows each convert to one example (all but PubMedQA, whose split needs every row)."""

    def load(
        path: str | None = None, subset: str | None = default_subset, split: str = "train", on_error: OnError = "raise"
    ) -> LoadedSource:
        origin, examples, skipped = load_rows(path, DEFAULT_SOURCES[name], convert, subset, split, on_error)
        held_out = []
        if name in DIALOGUE_SOURCES:
            examples, held_out = exclude_held_out(examples)
            if not examples:
                raise DataError(origin, f"all {len(held_out)} rows repeat held-out test dialogues; none is left")
        return LoadedSource(name, origin, examples, skipped, held_out)

    load.__name__ = load.__qualname__ = f"load_{name}"
    return load


load_medical_o1 = row_loader("medical_o1", medical_o1_example, default_subset="en")
# MedQA for training: with no path the carried official dev split (1,272; no question shared with the test split);
# with the hub, `GBaker/MedQA-USMLE-4-options` split `train` (10,178).
load_medqa = row_loader("medqa", medqa_example)


def load_pubmedqa(
    path: str | None = None,
    subset: str | None = "pqa_labeled",
    split: str = "train",
    on_error: OnError = "raise",
    style: str = "reasoning",
) -> LoadedSource:
    """PubMedQA for training: every row outside the test split evaluation uses (`split_pubmedqa`)."""
    origin, records, skipped = load_rows(path, DEFAULT_SOURCES["pubmedqa"], parse_pubmedqa, subset, split, on_error)
    if subset in (None, "pqa_labeled"):  # the split means something only there; other subsets are used whole
        records, test = split_pubmedqa(records, origin)
        if not records:
            raise DataError(origin, f"all {len(test)} rows are in the PubMedQA test split; none is left to train on")
    return LoadedSource("pubmedqa", origin, [pubmedqa_example(r, style) for r in records], skipped)


load_instructions = row_loader("instructions", instruction_example)
load_messages = row_loader("messages", messages_example)

LOADERS: dict[str, Callable[..., LoadedSource]] = {
    f.__name__.removeprefix("load_"): f
    for f in (load_medical_o1, load_medqa, load_pubmedqa, load_instructions, load_messages)
}
SYNTHETIC_DEFAULT_COUNT = 200


def load_source(
    source: DataSource, data_seed: int = 0, on_error: OnError = "raise", synthetic_count: int | None = None
) -> LoadedSource:
    """Read one configured source. Synthetic cases ignore `path`; their number is `count` (or `synthetic_count`)."""
    if source.name == "synthetic":
        n = source.count or synthetic_count or SYNTHETIC_DEFAULT_COUNT
        cases = generate_cases(n, seed=data_seed)
        return LoadedSource("synthetic", f"synthetic(n={n}, seed={data_seed})", [c.to_example() for c in cases])
    if source.name not in LOADERS:
        raise ValueError(f"unknown data source '{source.name}'; choose one of {', '.join([*LOADERS, 'synthetic'])}")
    # None leaves each loader's default (subset: medical_o1 "en", pubmedqa "pqa_labeled"; pubmedqa's style)
    given = {key: value for key, value in (("subset", source.subset), ("style", source.style)) if value is not None}
    return LOADERS[source.name](path=source.path, split=source.split, on_error=on_error, **given)
