"""Synthetic-task format and label accuracy, and the accuracy plot."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")  # no display in tests

from medsft.data import synthetic_eval_cases  # noqa: E402
from medsft.evaluate.compare import compare_results  # noqa: E402
from medsft.evaluate.results import TaskResult  # noqa: E402
from medsft.evaluate.synthetic import format_compliance, score_synthetic_replies, summarize_synthetic  # noqa: E402
from medsft.plots import accuracy_bars  # noqa: E402
from medsft.stages.evaluate import label_frame  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return synthetic_eval_cases(6, seed=0)  # two of each domain


def test_reference_completions_are_fully_compliant_and_correct(cases):
    records = score_synthetic_replies(cases, [case.completion for case in cases])
    summary = summarize_synthetic(records)
    assert summary["overall"]["format_compliance"] == 1.0
    assert summary["overall"]["acc"] == 1.0
    assert set(summary["domains"]) == {"triage", "drug_interaction", "lab_interpretation"}
    assert sum(group["n"] for group in summary["overall"]["by_severity"].values()) == 6
    for domain in summary["domains"].values():
        assert domain["n"] == 2
        assert all(value == 1.0 for value in domain["label_accuracy"].values())


def test_a_wrong_risk_level_is_wrong_only_for_that_label(cases):
    triage = next(c for c in cases if c.domain == "triage")
    wrong = "LOW" if triage.expected["risk"] != "LOW" else "HIGH"
    reply = triage.completion.replace(f"Risk level: {triage.expected['risk']}", f"Risk level: {wrong}")
    (record,) = score_synthetic_replies([triage], [reply])
    assert record["labels"] == {"risk": False, "diagnosis": True}
    assert record["correct"] is False and record["parsed"] is True and record["compliant"] is True


def test_a_reply_without_the_label_line_is_unparseable_and_not_compliant(cases):
    (record,) = score_synthetic_replies(cases[:1], ["<think>\n1. a\n2. b\n3. c\n4. d\n5. e\n</think>\nSee a doctor."])
    assert record["parsed"] is False and record["correct"] is False
    assert record["format"] == {"think": True, "steps": True, "final_answer": False}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<think>\n1. a\n2. b\n3. c\n4. d\n5. e\n</think>\nRisk level: LOW", (True, True, True)),
        ("<think>\n1. a\n2. b\n3. c\n4. d\n</think>\nRisk level: LOW", (True, False, True)),  # four steps
        ("<think>\n1. a\n2. b\n3. c\n4. d\n5. e\n</think>", (True, True, False)),  # no final answer
        ("1. a\n2. b\n3. c\n4. d\n5. e\nRisk level: LOW", (False, False, False)),  # no think block
    ],
)
def test_format_compliance_checks_think_five_steps_and_a_final_answer(reply, expected):
    checks = format_compliance(reply)
    assert (checks["think"], checks["steps"], checks["final_answer"]) == expected


def result(model: str, task: str, outcomes: list[bool]) -> TaskResult:
    acc = sum(outcomes) / len(outcomes)
    questions = [{"id": str(i), "pred": 0, "gold": 0, "correct": ok} for i, ok in enumerate(outcomes)]
    return TaskResult(
        task, model, "loglikelihood", len(outcomes), {"acc": acc, "acc_ci": [acc - 0.1, acc + 0.1]}, questions
    )


def test_accuracy_bars_draw_one_bar_per_model_and_task_with_whiskers():
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

    results = [result(m, t, [True, False, True, True]) for m in ("base", "tuned") for t in ("medqa", "pubmedqa")]
    figure = accuracy_bars(results, chance=0.25)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert len(axes.patches) == 4
    bar_groups = [c for c in axes.containers if isinstance(c, BarContainer)]
    assert len(bar_groups) == 2  # one group per model, each with CI whiskers
    assert all(group.errorbar is not None for group in bar_groups)


def test_each_label_stands_beside_its_constant_answer_per_domain():
    cases = synthetic_eval_cases(30, seed=1)
    records = score_synthetic_replies(cases, [case.completion for case in cases])
    triage = summarize_synthetic(records)["domains"]["triage"]
    risks = [str(case.expected["risk"]).lower() for case in cases if case.domain == "triage"]
    constant = triage["label_constant"]["risk"]
    assert constant["acc"] == risks.count(constant["answer"]) / len(risks) == max(map(risks.count, risks)) / len(risks)
    assert set(triage["label_constant"]) == set(triage["label_accuracy"]) == {"risk", "diagnosis"}
    summary = summarize_synthetic(records)
    result = TaskResult(task="synthetic", model="m", mode="synthetic", n=len(records), metrics=summary["overall"],
                        questions=records, breakdown=summary["domains"])  # fmt: skip
    frame = label_frame(compare_results([result]))
    row = frame[(frame["domain"] == "triage") & (frame["label"] == "risk")].iloc[0]
    assert row["m"] == 1.0 and row["constant acc"] == triage["label_constant"]["risk"]["acc"] < 1.0
