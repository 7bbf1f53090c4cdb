"""Baselines next to every score: the best constant answer on the real gold answers, the answer distributions,
the paired differences vs base and vs the constant answer, and lm-eval's table and stderr."""

from __future__ import annotations

import pytest

from medsft.evaluate.compare import compare_results
from medsft.evaluate.multiple_choice import subject_breakdown
from medsft.evaluate.report import baseline_lines, baselines, discipline_rows, lm_eval_table, mean_stderr
from medsft.evaluate.results import TaskResult
from medsft.tasks import load_items


def result_for(task: str, model: str, preds: list[int], limit: int | None = None) -> TaskResult:
    """A result whose predictions are given (the gold answers are the real ones)."""
    items = load_items(task, limit)
    questions = [
        {"id": item.id, "subject": item.subject, "gold": item.answer, "pred": pred, "correct": pred == item.answer,
         "correct_norm": pred == item.answer, "scores": [0.0] * len(item.choices)}
        for item, pred in zip(items, preds, strict=True)
    ]  # fmt: skip
    acc = sum(q["correct"] for q in questions) / len(questions)
    return TaskResult(task, model, "loglikelihood", len(questions), {"acc": acc}, questions,
                      breakdown=subject_breakdown(questions))  # fmt: skip


@pytest.mark.parametrize(
    ("task", "answer", "acc"),
    [("medqa", "A", 353 / 1273), ("pubmedqa", "yes", 276 / 500), ("medmcqa", "A", 1348 / 4183)],
)
def test_the_best_constant_answer_on_the_real_gold_answers(task, answer, acc):
    golds = [item.answer for item in load_items(task)]
    found = baselines([result_for(task, "always-b", [1] * len(golds))])
    assert (found["constant"]["answer"], found["constant"]["acc"]) == (answer, pytest.approx(acc))
    low, high = found["constant"]["acc_ci"]
    assert low < acc < high
    assert sum(found["distribution"]["gold"].values()) == len(golds)
    assert found["distribution"]["always-b"][found["constant"]["answer"]] == 0  # it never answers A / yes


def test_tuned_vs_base_and_vs_the_prior_are_separate_lines():
    golds = [item.answer for item in load_items("pubmedqa")]
    base = result_for("pubmedqa", "base", [1] * 500)  # always "no"
    tuned = result_for("pubmedqa", "tuned", [0] * 500)  # always "yes": beats base, equals the prior
    comparison = compare_results([base, tuned])
    vs_constant = {row["model"]: row for row in comparison.baselines["vs_constant"]}
    assert vs_constant["tuned"]["diff"] == 0.0 and vs_constant["tuned"]["diff_ci"] == [0.0, 0.0]
    assert comparison.pairs[0]["diff"] == pytest.approx((golds.count(0) - golds.count(1)) / 500)
    lines = baseline_lines(comparison)
    assert lines[0].startswith("pubmedqa: best constant answer 'yes' scores 0.552")
    assert any(line.startswith("  tuned vs base base: +0.214") for line in lines)
    assert any("tuned vs always 'yes': +0.000" in line and "within the prior's noise" in line for line in lines)
    assert any("base vs always 'yes'" in line and "below the prior" in line for line in lines)


def test_stderr_is_lm_evals_and_the_table_has_its_columns():
    metrics = pytest.importorskip("lm_eval.api.metrics")
    outcomes = [True, False, False, True, True, False, False]
    assert mean_stderr(outcomes) == pytest.approx(metrics.mean_stderr(outcomes))
    table = lm_eval_table([result_for("mmlu_anatomy", "m", [0] * 135)]).splitlines()
    assert table[0] == "|Tasks|Model|Version|Filter|n-shot|Metric| |Value| |Stderr|n|95% CI|"
    assert table[2].startswith("|mmlu_anatomy|m|1.0|none|0|acc|↑|") and "|135|" in table[2]


def test_the_discipline_rows_are_medmcqa_subjects_and_mmlu_subjects():
    medmcqa = result_for("medmcqa", "m", [0] * 4183)
    mmlu = result_for("mmlu_medical_genetics", "m", [0] * 100)
    rows = discipline_rows([medmcqa, mmlu])
    subjects = [row["subject"] for row in rows if row["task"] == "medmcqa"]
    assert len(subjects) == 21 and sum(row["n"] for row in rows if row["task"] == "medmcqa") == 4183
    assert [row["subject"] for row in rows if row["task"] == "mmlu_medical_genetics"] == ["medical_genetics"]
    assert all(row["ci"][0] <= row["acc"] <= row["ci"][1] for row in rows)


def test_the_chat_view_draws_its_items_over_the_whole_split_not_the_sorted_head() -> None:
    """PubMedQA's test file lists its "yes" items first: a first-200 chat view would be all "yes"."""
    from medsft.evaluate.compare import view_items

    items = load_items("pubmedqa")
    assert {item.answer for item in items[:200]} == {0}  # why the head will not do
    drawn = view_items(items, 200)
    positions = [items.index(item) for item in drawn]
    assert len(drawn) == 200 and positions == sorted(positions)  # a subset, in file order
    assert {item.answer for item in drawn} == {0, 1, 2}
    assert [item.id for item in view_items(items, 200)] == [item.id for item in drawn]  # the same draw every run
    assert view_items(items, None) == items and view_items(items, 10_000) == items
