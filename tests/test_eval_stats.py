"""Wilson and bootstrap intervals, paired differences, McNemar, comparisons and result files on known cases."""

from __future__ import annotations

import json
import math

import pytest

from medsft.evaluate.compare import compare_results
from medsft.evaluate.multiple_choice import summarize
from medsft.evaluate.results import TaskResult, read_result, write_result
from medsft.evaluate.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap, wilson_bounds, wilson_interval


def test_wilson_interval_of_none_correct_still_has_a_positive_upper_bound():
    interval = wilson_interval([False] * 8)  # the bootstrap gives [0, 0] here
    assert (interval.value, interval.low) == (0.0, 0.0)
    assert interval.high == pytest.approx(1.959964**2 / (8 + 1.959964**2), abs=1e-6)  # 0.3244


def test_wilson_interval_matches_known_values():
    interval = wilson_interval([True] * 5 + [False] * 5)
    assert (interval.low, interval.high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_bounds(8, 8) == pytest.approx((0.6756, 1.0), abs=1e-4)
    assert wilson_bounds(1, 10) == pytest.approx((0.0179, 0.4042), abs=1e-4)


def test_wilson_interval_refuses_scores_that_are_not_zero_or_one():
    with pytest.raises(ValueError, match="0/1 outcomes"):
        wilson_interval([0.5, 1.0])


def test_multiple_choice_accuracy_reports_the_wilson_interval():
    records = [{"correct": False, "correct_norm": i < 5} for i in range(8)]
    metrics = summarize(records)
    assert metrics["acc"] == 0.0 and metrics["acc_ci"][1] == pytest.approx(0.3244, abs=1e-4)
    assert metrics["acc_norm_ci"] == pytest.approx(list(wilson_bounds(5, 8)))


def test_all_correct_gives_the_degenerate_interval_one_to_one():
    interval = bootstrap_ci([True] * 25)
    assert (interval.value, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_all_wrong_gives_zero_to_zero():
    interval = bootstrap_ci([False] * 25)
    assert (interval.value, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_interval_width_matches_the_normal_approximation_for_a_large_sample():
    outcomes = [i % 2 == 0 for i in range(400)]  # p = 0.5, n = 400: half-width 1.96 * sqrt(.25 / 400) = 0.049
    interval = bootstrap_ci(outcomes, seed=1)
    assert interval.value == 0.5
    assert interval.low == pytest.approx(0.5 - 0.049, abs=0.01)
    assert interval.high == pytest.approx(0.5 + 0.049, abs=0.01)


def test_the_same_seed_gives_the_same_interval():
    outcomes = [i % 3 == 0 for i in range(60)]
    assert bootstrap_ci(outcomes, seed=7) == bootstrap_ci(outcomes, seed=7)


def test_identical_models_differ_by_exactly_zero():
    outcomes = [i % 3 == 0 for i in range(60)]
    diff = paired_bootstrap(outcomes, outcomes)
    assert (diff.value, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_a_consistent_gain_has_an_interval_above_zero():
    base = [i < 40 for i in range(100)]
    tuned = [i < 70 for i in range(100)]  # right on 30 more questions, wrong on none that base got
    diff = paired_bootstrap(base, tuned)
    assert diff.value == pytest.approx(0.30)
    assert 0 < diff.low < 0.30 < diff.high


def test_pairing_makes_the_interval_narrower_than_independent_resampling():
    base = [i % 2 == 0 for i in range(200)]
    tuned = [i % 2 == 0 or i % 10 == 1 for i in range(200)]  # base plus 20 questions
    paired = paired_bootstrap(base, tuned)
    a, b = bootstrap_ci(base, seed=1), bootstrap_ci(tuned, seed=2)
    independent_half_width = math.hypot((a.high - a.low) / 2, (b.high - b.low) / 2)
    assert (paired.high - paired.low) / 2 < 0.6 * independent_half_width


def test_mcnemar_exact_matches_a_hand_computed_case():
    # Discordant pairs: 1 only-first, 6 only-second. P(X <= 1 | n=7, p=1/2) = (1 + 7) / 128; two-sided 0.125.
    first = [True] + [False] * 6 + [True] * 5 + [False] * 3
    second = [False] + [True] * 6 + [True] * 5 + [False] * 3
    test = mcnemar_exact(first, second)
    assert (test.only_first, test.only_second) == (1, 6)
    assert test.p_value == pytest.approx(0.125)


def test_mcnemar_is_one_without_discordant_pairs_and_capped_at_one_when_balanced():
    assert mcnemar_exact([True, False], [True, False]).p_value == 1.0
    assert mcnemar_exact([True, False], [False, True]).p_value == 1.0  # 2 * P(X <= 1 | n=2) = 1.5, capped


def test_paired_statistics_refuse_outcomes_of_different_lengths():
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap([True, False], [True])
    with pytest.raises(ValueError, match="same questions"):
        mcnemar_exact([True, False], [True])


def make_result(model: str, correct: list[bool], subjects: list[str] | None = None) -> TaskResult:
    questions = [
        {"id": f"q{i}", "gold": 0, "pred": 0 if ok else 1, "correct": ok, "subject": (subjects or [None] * 99)[i]}
        for i, ok in enumerate(correct)
    ]
    interval = bootstrap_ci(correct)
    breakdown: dict[str, dict[str, float]] = {}
    for q in questions:
        if q["subject"]:
            group = breakdown.setdefault(q["subject"], {"n": 0, "hits": 0})
            group["n"] += 1
            group["hits"] += q["correct"]
    breakdown = {k: {"n": v["n"], "acc": v["hits"] / v["n"]} for k, v in breakdown.items()}
    return TaskResult(
        "medqa",
        model,
        "loglikelihood",
        len(correct),
        {"acc": interval.value, "acc_ci": [interval.low, interval.high]},
        questions,
        breakdown=breakdown,
    )


def test_compare_results_reports_each_model_against_the_first():
    base = make_result("base", [True, False, False, False, True, False], ["cardio"] * 3 + ["renal"] * 3)
    tuned = make_result("tuned", [True, True, True, False, True, True], ["cardio"] * 3 + ["renal"] * 3)
    comparison = compare_results([base, tuned])
    assert [row["model"] for row in comparison.table] == ["base", "tuned"]
    assert comparison.table[0]["acc_ci"] == pytest.approx(list(wilson_bounds(2, 6)))  # Wilson, not the file's
    (pair,) = comparison.pairs
    assert pair["diff"] == pytest.approx(3 / 6)
    assert (pair["only_baseline_correct"], pair["only_model_correct"]) == (0, 3)
    assert pair["mcnemar_p"] == pytest.approx(0.25)
    assert comparison.breakdown["cardio"] == {"base": {"n": 3, "acc": 1 / 3}, "tuned": {"n": 3, "acc": 1.0}}


def test_compare_results_refuses_different_question_lists():
    base = make_result("base", [True, False])
    other = make_result("tuned", [True, False, True])
    with pytest.raises(ValueError, match="different questions"):
        compare_results([base, other])


def test_a_result_file_round_trips_and_holds_the_per_question_records(tmp_path):
    result = make_result("embedded", [True, False, True])
    path = write_result(result, tmp_path)
    assert path.name == "eval_medqa_embedded.json"
    again = read_result(path)
    assert again.ids == ["q0", "q1", "q2"]
    assert sum(again.outcomes()) / again.n == pytest.approx(json.loads(path.read_text())["metrics"]["acc"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_an_existing_result_is_never_replaced_silently(tmp_path):
    path = write_result(make_result("embedded", [True]), tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_result(make_result("embedded", [False]), tmp_path)
    assert read_result(path).outcomes() == [True]
    write_result(make_result("embedded", [False]), tmp_path, overwrite=True)
    assert read_result(path).outcomes() == [False]
