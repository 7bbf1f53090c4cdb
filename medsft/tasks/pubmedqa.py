"""PubMedQA: the official 500-PMID test split of the carried `ori_pqal.json`, as lm-eval's `pubmedqa` scores it. A
file with none of the official PMIDs (the self-written sample) is split label-stratified, seed 0 (`split_pubmedqa`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsft.data.loaders import (
    DEFAULT_SOURCES,
    PUBMEDQA_TEST_FILE,
    load_rows,
    parse_pubmedqa,
    pubmedqa_item,
    resolve_file,
    split_pubmedqa,
)
from medsft.data.records import DataError, MultipleChoiceItem
from medsft.tasks.base import Row, Task, TaskText
from medsft.tasks.extraction import extract_decision

SOURCE = DEFAULT_SOURCES["pubmedqa"]
COT_INSTRUCTION = (
    "Think through the question step by step, then give your answer on the last line as "
    "'Final answer: yes', 'Final answer: no' or 'Final answer: maybe'."
)


def test_records(path: str | None = None) -> list[dict[str, Any]]:
    """The test split as parsed records (with the long answer, which decontamination also checks)."""
    origin, records, _ = load_rows(path, SOURCE, parse_pubmedqa, "pqa_labeled")
    test = split_pubmedqa(records, origin)[1]
    if not test:
        raise DataError(origin, f"no PubMedQA test items among its {len(records)} rows")
    return test


def load_items(path: str | None = None, split: str = "test", limit: int | None = None) -> list[MultipleChoiceItem]:
    """The first `limit` test items, in the order of the official `test_ground_truth.json`."""
    return [pubmedqa_item(r) for r in test_records(path)][:limit]


def prompt(item: MultipleChoiceItem) -> str:
    if item.context is None:
        raise ValueError(f"PubMedQA item {item.id} has no context (the abstract passages)")
    return f"Abstract: {item.context}\nQuestion: {item.question}\nAnswer:"


def cot_prompt(item: MultipleChoiceItem, instruction: str) -> str:
    return f"Abstract: {item.context}\n\nQuestion: {item.question}\n\n{instruction}"


def lm_eval_row(item: MultipleChoiceItem) -> Row:
    """bigbio/pubmed_qa's layout, which lm-eval's `pubmedqa` reads."""
    contexts = (item.context or "").split("\n")  # lm-eval joins them back with "\n"
    return {"QUESTION": item.question, "CONTEXTS": contexts, "final_decision": item.choices[item.answer]}


def raw_lm_eval_row(raw: Row) -> Row:
    if "QUESTION" not in raw:  # the hub's pqa_labeled layout (ori_pqal.json and bigbio have these keys)
        raw = {**raw, "QUESTION": raw["question"], "CONTEXTS": raw["context"]["contexts"]}
    return {key: raw[key] for key in ("QUESTION", "CONTEXTS", "final_decision")}


def raw_rows(path: str | None, items: Sequence[MultipleChoiceItem]) -> list[Row]:
    """The file's own rows behind `items`, by PMID, in lm-eval's layout."""
    local = resolve_file(path, SOURCE)
    assert local is not None, "parity needs a local file"
    by_pmid = json.loads(local.read_text(encoding="utf-8"))
    if isinstance(by_pmid, list):  # the hub's pqa_labeled layout, as a JSON array
        by_pmid = {str(row["pubid"]): row for row in by_pmid}
    return [raw_lm_eval_row(by_pmid[item.id.rsplit(":", 1)[1]]) for item in items]


def eval_texts() -> list[TaskText]:
    parts = ("question", "context", "long_answer")
    return [(record["id"], part, record[part]) for record in test_records() for part in parts]


def files(path: str | None, split: str) -> list[Path]:
    local = resolve_file(path, SOURCE)
    return [*([local] if local is not None else []), PUBMEDQA_TEST_FILE]  # the official PMIDs pick the split


TASK = Task(
    "pubmedqa",
    "fixed",
    read=load_items,
    sources={"test": SOURCE},
    files=files,
    prompt=prompt,
    cot_prompt=cot_prompt,
    cot_instruction=COT_INSTRUCTION,
    extract=extract_decision,
    lm_eval_yaml="pubmedqa/pubmedqa.yaml",
    lm_eval_version="1.0",
    lm_eval_row=lm_eval_row,
    raw_rows=raw_rows,
    eval_texts=eval_texts,
)
