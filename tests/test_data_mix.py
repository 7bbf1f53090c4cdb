"""Mixing by count and weight, the seeded validation split, and the whole pipeline with its report."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from medsft import DISCLAIMER
from medsft.config import DataSource, RunConfig
from medsft.data import mix_sources, sample_path, split_train_validation
from medsft.data.build import build_training_data
from medsft.data.mix import largest_remainder
from medsft.plots import plot_token_lengths


def pool(name: str, n: int) -> list[dict]:
    return [
        {"id": f"{name}-{i}", "source": name, "messages": [{"role": "user", "content": f"{name} {i}"}], "meta": {}}
        for i in range(n)
    ]


def counts(rows: list[dict]) -> Counter:
    return Counter(row["source"] for row in rows)


def test_largest_remainder_splits_a_total_exactly():
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(largest_remainder(97, [0.2, 0.5, 0.3])) == 97
    assert largest_remainder(0, [1, 2]) == [0, 0]


def test_count_takes_that_many_rows_and_no_spec_takes_all():
    mixed, allocations = mix_sources(
        [(DataSource(name="a", count=5), pool("a", 20)), (DataSource(name="b"), pool("b", 7))]
    )
    assert counts(mixed) == {"a": 5, "b": 7}
    assert [(a.available, a.requested, a.taken) for a in allocations] == [(20, 5, 5), (7, None, 7)]


def test_count_larger_than_the_pool_takes_everything_there_is():
    mixed, allocations = mix_sources([(DataSource(name="a", count=50), pool("a", 12))])
    assert len(mixed) == 12 and allocations[0].taken == 12


def test_weights_share_train_rows_after_counted_sources():
    pools = [
        (DataSource(name="a", count=10), pool("a", 50)),
        (DataSource(name="b", weight=3), pool("b", 200)),
        (DataSource(name="c", weight=1), pool("c", 200)),
    ]
    mixed, _ = mix_sources(pools, train_rows=90)
    assert counts(mixed) == {"a": 10, "b": 60, "c": 20}


def test_a_weighted_source_that_runs_short_gives_its_share_to_the_others():
    pools = [(DataSource(name="b", weight=1), pool("b", 10)), (DataSource(name="c", weight=1), pool("c", 200))]
    mixed, _ = mix_sources(pools, train_rows=100)
    assert counts(mixed) == {"b": 10, "c": 90}


def test_weights_without_train_rows_use_the_largest_mix_the_pools_can_fill():
    pools = [(DataSource(name="b", weight=2), pool("b", 30)), (DataSource(name="c", weight=1), pool("c", 100))]
    mixed, _ = mix_sources(pools)
    assert counts(mixed) == {"b": 30, "c": 15}


def test_train_rows_caps_the_total():
    mixed, _ = mix_sources(
        [(DataSource(name="a"), pool("a", 40)), (DataSource(name="b"), pool("b", 40))], train_rows=25
    )
    assert len(mixed) == 25


def test_mixing_is_seeded():
    pools = [(DataSource(name="a", count=10), pool("a", 40)), (DataSource(name="b", count=10), pool("b", 40))]
    first, second, other = mix_sources(pools, seed=1)[0], mix_sources(pools, seed=1)[0], mix_sources(pools, seed=2)[0]
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert [r["id"] for r in first] != [r["id"] for r in other]


def test_validation_split_is_disjoint_stratified_and_seeded():
    rows = pool("a", 60) + pool("b", 30) + pool("c", 10)
    train, validation = split_train_validation(rows, 0.1, seed=0)
    assert len(validation) == 10 and len(train) == 90
    assert not {r["id"] for r in train} & {r["id"] for r in validation}
    assert counts(validation) == {"a": 6, "b": 3, "c": 1}
    assert split_train_validation(rows, 0.1, seed=0) == (train, validation)
    assert split_train_validation(rows, 0.1, seed=1)[1] != validation


def test_a_positive_fraction_holds_out_at_least_one_row_and_zero_holds_out_none():
    assert len(split_train_validation(pool("a", 3), 0.05)[1]) == 1
    assert split_train_validation(pool("a", 3), 0.0) == (pool("a", 3), [])
    with pytest.raises(ValueError):
        split_train_validation(pool("a", 3), 1.0)


# The pipeline -------------------------------------------------------------------------------------------

# The self-written samples (the defaults of medqa, pubmedqa and instructions are the carried real sets).
ALL_SOURCES = [
    DataSource(name=n, path=f"sample:{n}") for n in ("medical_o1", "medqa", "pubmedqa", "instructions", "messages")
]


@pytest.fixture(scope="module")
def built(gemma_tokenizer):
    config = RunConfig(datasets=[*ALL_SOURCES, DataSource(name="synthetic", count=120)], data_seed=0)
    return build_training_data(config, gemma_tokenizer)


def test_pipeline_returns_train_and_validation_splits_of_chat_rows(built):
    splits, report = built
    assert set(splits) == {"train", "validation"}
    assert splits["train"].column_names == ["id", "source", "messages", "meta"]
    assert (len(splits["train"]), len(splits["validation"])) == (report.train_rows, report.validation_rows)
    assert report.validation_rows == round(0.1 * (report.train_rows + report.validation_rows))
    assert set(splits["train"]["source"]) == {
        "medical_o1",
        "medqa",
        "pubmedqa",
        "instructions",
        "messages",
        "synthetic",
    }


def test_every_row_fits_max_seq_length_with_exactly_one_bos(built, gemma_tokenizer):
    from medsft.templates import check_one_bos, encode_rendered, render_chat

    splits, report = built
    encoded = [encode_rendered(gemma_tokenizer, render_chat(gemma_tokenizer, r["messages"])) for r in splits["train"]]
    for ids in encoded:
        check_one_bos(gemma_tokenizer, ids)
    lengths = [len(ids) for ids in encoded]
    assert lengths == report.token_lengths[: len(lengths)]
    assert max(report.token_lengths) <= 512


def test_report_table_has_a_row_per_source_and_a_total(built):
    _, report = built
    frame = report.to_frame()
    assert list(frame["source"]) == [
        "medical_o1",
        "medqa",
        "pubmedqa",
        "instructions",
        "messages",
        "synthetic",
        "total",
    ]
    total = frame.iloc[-1]
    assert total["train"] + total["validation"] == report.train_rows + report.validation_rows
    assert total["loaded"] == 30 + 30 + 30 + 29 + 24 + 120
    assert set(report.token_percentiles()) == {"p50", "p90", "p95", "p99", "max"}


def test_report_is_json_ready(built):
    _, report = built
    data = json.loads(json.dumps(report.to_dict()))
    assert data["removed"]["exact_duplicate"] == 1 and data["removed"]["near_duplicate"] == 1
    assert set(data["contamination"]) == set(RunConfig().eval_tasks)  # the default: the nine and the synthetic sets
    assert len(data["token_lengths"]) == report.train_rows + report.validation_rows


def test_report_draws_a_token_histogram(built):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_token_lengths(built[1].token_lengths, built[1].max_seq_length)
    assert ax.get_xlabel().startswith("tokens per row") and len(ax.patches) == 40


def test_pipeline_is_reproducible(built, gemma_tokenizer):
    config = RunConfig(datasets=[*ALL_SOURCES, DataSource(name="synthetic", count=120)], data_seed=0)
    again, _ = build_training_data(config, gemma_tokenizer)
    assert again["train"]["id"] == built[0]["train"]["id"]
    assert again["validation"].to_list() == built[0]["validation"].to_list()


def test_disclaimer_is_added_to_assistant_turns_when_asked(gemma_tokenizer):
    config = RunConfig(
        datasets=[DataSource(name="medqa", path="sample:medqa", count=5)], add_disclaimer=True, validation_fraction=0.0
    )
    splits, _ = build_training_data(config, gemma_tokenizer)
    for row in splits["train"]:
        assert all(m["content"].endswith(DISCLAIMER) for m in row["messages"] if m["role"] == "assistant")


def test_rows_longer_than_max_seq_length_are_dropped_and_counted(gemma_tokenizer):
    config = RunConfig(datasets=[DataSource(name="medical_o1")], max_seq_length=200, validation_fraction=0.0)
    splits, report = build_training_data(config, gemma_tokenizer)
    assert report.removed["too_long"] > 0
    assert len(splits["train"]) == 30 - report.removed["too_long"]
    assert max(report.token_lengths) <= 200


def test_no_validation_fraction_gives_an_empty_validation_split_with_the_same_columns(gemma_tokenizer):
    config = RunConfig(datasets=[DataSource(name="synthetic", count=9)], validation_fraction=0.0)
    splits, _ = build_training_data(config, gemma_tokenizer)
    assert len(splits["validation"]) == 0 and splits["validation"].column_names == splits["train"].column_names


def test_skip_mode_reports_skipped_rows(gemma_tokenizer, tmp_path):
    rows = [json.loads(line) for line in sample_path("medqa").read_text(encoding="utf-8").splitlines()][:8]
    rows[3]["answer_idx"] = "Q"
    path = tmp_path / "medqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = RunConfig(datasets=[DataSource(name="medqa", path=str(path))], validation_fraction=0.0)
    splits, report = build_training_data(config, gemma_tokenizer, on_error="skip")
    assert len(splits["train"]) == 7 and report.sources[0].skipped == 1
    assert report.skipped == ["medqa.jsonl row 4, field 'answer_idx': 'Q' is not one of the options A, B, C, D"]


def test_validation_folds_are_disjoint_cover_every_row_and_keep_the_source_mix():
    rows = [{"id": f"a{i}", "source": "a"} for i in range(23)] + [{"id": f"b{i}", "source": "b"} for i in range(7)]
    folds = [split_train_validation(rows, 0.2, seed=5, fold=k) for k in range(5)]
    held = [[row["id"] for row in validation] for _, validation in folds]
    assert sorted(sum(held, [])) == sorted(row["id"] for row in rows)  # each row validates exactly once
    for (train, _), ids in zip(folds, held, strict=True):
        assert {row["id"] for row in train}.isdisjoint(ids) and len(train) + len(ids) == len(rows)
        assert 4 <= sum(i.startswith("a") for i in ids) <= 5 and 1 <= sum(i.startswith("b") for i in ids) <= 2
    assert held != [[row["id"] for row in split_train_validation(rows, 0.2, seed=6, fold=k)[1]] for k in range(5)]
