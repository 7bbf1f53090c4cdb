"""The data pipeline: read and validate every source, clean, decontaminate, length-filter, mix and split."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from medsft.config import RunConfig
from medsft.data.clean import (
    Removed,
    add_disclaimer,
    drop_exact_duplicates,
    drop_near_duplicates,
    filter_by_length,
    scrub_pii,
)
from medsft.data.decontaminate import decontaminate
from medsft.data.dialogue_split import dialogue_split
from medsft.data.loaders import DIALOGUE_SOURCES, load_source
from medsft.data.mix import mix_sources, split_train_validation
from medsft.data.records import DataError, Example, LoadedSource, OnError
from medsft.data.report import DatasetReport, SourceReport
from medsft.tasks import config_eval_texts


def validate_sources(config: RunConfig, on_error: OnError = "raise") -> list[LoadedSource]:
    """Read and validate every configured source, and the evaluation sets decontamination will read (no tokenizer or
    model needed). A bad row is a `DataError`, or with `on_error="skip"` is recorded on its `LoadedSource`."""
    sources = []
    for spec in config.datasets:
        # A weighted synthetic source may be asked for up to train_rows cases; generate enough to cover it.
        synthetic_count = config.train_rows if spec.weight is not None else None
        sources.append(load_source(spec, config.data_seed, on_error, synthetic_count=synthetic_count))
    if config.decontaminate:
        config_eval_texts(config)
    return sources


def unique_ids(pools: Sequence[list[Example]]) -> list[list[Example]]:
    """Suffix ids that repeat across sources (the same file listed twice), so every report line is traceable."""
    seen: set[str] = set()

    def unique(row: Example) -> Example:
        row_id, n = row["id"], 1
        while row_id in seen:
            n += 1
            row_id = f"{row['id']}#{n}"
        seen.add(row_id)
        return row if row_id == row["id"] else {**row, "id": row_id}

    return [[unique(row) for row in rows] for rows in pools]


def build_training_data(
    config: RunConfig,
    tokenizer: Any,
    *,
    on_error: OnError = "raise",
    sources: list[LoadedSource] | None = None,
) -> tuple[Any, DatasetReport]:
    """The train/validation `datasets.DatasetDict` and its report; cleaning runs before mixing so a source's `count`
    is met from clean rows. `sources` from `validate_sources` reads the data once."""
    from datasets import Dataset, DatasetDict

    from medsft import DISCLAIMER
    from medsft.templates import apply_chat_template_name, chat_token_lengths

    apply_chat_template_name(tokenizer, config.chat_template)
    sources = sources if sources is not None else validate_sources(config, on_error)
    pools = unique_ids([source.examples for source in sources])
    pool_of = {row["id"]: i for i, rows in enumerate(pools) for row in rows}
    rows = [row for rows in pools for row in rows]

    rows, pii, pii_rows = scrub_pii(rows)
    if config.add_disclaimer:
        rows = add_disclaimer(rows, DISCLAIMER)
    # Rows the loaders left out because they repeat a held-out test dialogue (medsft.data.dialogue_split).
    removed: list[Removed] = [row for source in sources for row in source.held_out]
    for step in (drop_exact_duplicates, drop_near_duplicates):
        rows, dropped = step(rows)
        removed += dropped
    hits, eval_texts = [], []
    if config.decontaminate:
        eval_texts = config_eval_texts(config)
        rows, dropped, hits = decontaminate(rows, eval_texts)
        removed += dropped
    lengths = chat_token_lengths(tokenizer, [row["messages"] for row in rows])
    rows, lengths, dropped = filter_by_length(rows, lengths, config.max_seq_length)
    removed += dropped
    length_of = {row["id"]: n for row, n in zip(rows, lengths, strict=True)}

    clean_pools = [[row for row in rows if pool_of[row["id"]] == i] for i in range(len(pools))]
    mixed, allocations = mix_sources(
        list(zip(config.datasets, clean_pools, strict=True)), config.train_rows, config.data_seed
    )
    train, validation = split_train_validation(
        mixed, config.validation_fraction, config.data_seed, config.validation_fold
    )
    if not train:
        left = "; ".join(
            f"{source.origin}: {len(pool)} loaded, {allocation.available} left"
            for source, pool, allocation in zip(sources, pools, allocations, strict=True)
        )
        raise DataError("training data", f"no rows left after cleaning and mixing ({left}); check the sources")

    excluded = {source.origin: len(source.held_out) for source in sources if source.name in DIALOGUE_SOURCES}
    held_out = {**dialogue_split().describe(), "training_rows_excluded": excluded} if excluded else {}
    split_of = {row["id"]: "train" for row in train} | {row["id"]: "validation" for row in validation}
    reports = []
    for i, (source, allocation) in enumerate(zip(sources, allocations, strict=True)):
        ids = {row["id"] for row in pools[i]} | {row.id for row in source.held_out}
        reports.append(
            SourceReport(
                name=source.name,
                origin=source.origin,
                loaded=len(source.examples) + len(source.held_out),
                skipped=len(source.skipped),
                removed=dict(Counter(row.step for row in removed if row.id in ids)),
                available=allocation.available,
                requested=allocation.requested,
                train=sum(1 for row_id in ids if split_of.get(row_id) == "train"),
                validation=sum(1 for row_id in ids if split_of.get(row_id) == "validation"),
            )
        )
    report = DatasetReport(
        sources=reports,
        held_out=held_out,
        removed_rows=removed,
        skipped=[str(error) for source in sources for error in source.skipped],
        pii=dict(pii),
        pii_rows=pii_rows,
        contamination_hits=hits,
        eval_tasks=list(config.eval_tasks) if config.decontaminate else [],
        eval_items=dict(Counter(task for task, _ in dict.fromkeys((text.task, text.id) for text in eval_texts))),
        token_lengths=[length_of[row["id"]] for row in [*train, *validation]],
        max_seq_length=config.max_seq_length,
        train_rows=len(train),
        validation_rows=len(validation),
    )
    full = Dataset.from_list([*train, *validation])  # one schema for both splits (meta keys differ by source)
    # Index lists, not ranges: `select` rejects an empty range that starts at the end (no validation rows).
    train_ids, validation_ids = list(range(len(train))), list(range(len(train), len(full)))
    return DatasetDict(train=full.select(train_ids), validation=full.select(validation_ids)), report
