"""01 data: load, clean, decontaminate, mix and split the run's data, and show one conversation as trained."""

from __future__ import annotations

import html
import json
from typing import Any

from medsft.config import RunConfig
from medsft.runs import Run, sha256_rows, write_json
from medsft.stages.common import SPLITS
from medsft.train.labels import IGNORE_INDEX, tokenize_conversation


def prepare_data(run: Run, tokenizer: Any) -> tuple[Any, Any]:
    """Load, clean, decontaminate, mix and split the run's data; save the splits and the report in the run."""
    from medsft.data.build import build_training_data, validate_sources

    sources = validate_sources(run.config)  # every row checked before anything else, with file/row/field errors
    data, report = build_training_data(run.config, tokenizer, sources=sources)
    hashes = {}
    for split in SPLITS:
        rows = list(data[split])
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        run.write_text(f"data/{split}.jsonl", lines, overwrite=True)  # rerunning the cell redoes the data
        hashes[f"{split}_sha256"] = sha256_rows(rows)
    write_json(run.path("data_report.json"), {**report.to_dict(), **hashes}, overwrite=True)
    run.update_manifest(data={"train_rows": report.train_rows, "validation_rows": report.validation_rows, **hashes})
    return data, report


def labelled_html(tokenizer: Any, messages: list[dict[str, str]], config: RunConfig) -> str:
    """One conversation as the model sees it, trained (labelled) tokens highlighted, the rest greyed out."""
    item = tokenize_conversation(tokenizer, messages, config.max_seq_length, config.train_on_reasoning)
    spans = []
    for token_id, label in zip(item["input_ids"], item["labels"], strict=True):
        text = html.escape(tokenizer.decode([token_id]))
        style = "background:#c8f0c8" if label != IGNORE_INDEX else "color:#888"
        spans.append(f'<span style="{style}">{text}</span>')
    return '<pre style="white-space:pre-wrap;font-size:12px">' + "".join(spans) + "</pre>"
