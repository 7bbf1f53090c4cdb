"""Synthetic cases: deterministic, labels agree with the fact tables, answers parse back, test set disjoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from medsft.data import (
    DOMAINS,
    expected_label,
    generate_cases,
    generate_synthetic,
    parse_synthetic_answer,
    synthetic_eval_cases,
    synthetic_ood_cases,
)
from medsft.data.synthetic import FACTS_DIR, HELD_OUT, TRAIN_TEMPLATES, is_reserved_for_eval

FACTS = {
    name: json.loads((FACTS_DIR / f"{name}.json").read_text()) for name in ("triage", "drug_interactions", "lab_tests")
}


@pytest.fixture(scope="module")
def cases():
    return generate_cases(300, seed=0)


def dump(n: int, seed: int) -> str:
    return json.dumps(generate_synthetic(n, seed), sort_keys=True)


def test_same_seed_gives_byte_identical_data():
    assert dump(60, 7) == dump(60, 7)


def test_different_seeds_give_different_data():
    assert dump(60, 7) != dump(60, 8)


def test_generation_does_not_depend_on_the_process_hash_seed():
    code = "import json; from medsft.data import generate_synthetic; print(json.dumps(generate_synthetic(30, 5)))"
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outputs.add(result.stdout)
    assert outputs == {json.dumps(generate_synthetic(30, 5)) + "\n"}


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    assert generate_synthetic(10, 4) == generate_synthetic(25, 4)[:10]


def test_domains_rotate_and_every_grade_occurs(cases):
    assert Counter(c.domain for c in cases) == {domain: 100 for domain in DOMAINS}
    grades = {domain: {c.severity for c in cases if c.domain == domain} for domain in DOMAINS}
    assert grades["triage"] == grades["lab_interpretation"] == {"LOW", "MEDIUM", "HIGH"}
    assert grades["drug_interaction"] == set(FACTS["drug_interactions"]["severities"])


def test_cases_are_distinct(cases):
    assert len({c.key for c in cases}) == len({c.id for c in cases}) == len(cases)


def test_assistant_turn_is_five_numbered_steps_in_think_then_the_answer(cases):
    for case in cases:
        text = case.to_example()["messages"][1]["content"]
        assert text.startswith("<think>\n")
        reasoning, answer = text.removeprefix("<think>\n").split("\n</think>\n")
        assert [line.split(".")[0] for line in reasoning.split("\n")] == ["1", "2", "3", "4", "5"]
        assert answer == case.answer


def test_example_meta_holds_domain_severity_steps_and_expected_label(cases):
    example = cases[0].to_example()
    assert example["source"] == "synthetic"
    assert example["meta"]["domain"] == cases[0].domain
    assert example["meta"]["severity"] == cases[0].severity
    assert example["meta"]["steps"] == 5
    assert expected_label(example) == cases[0].expected
    assert json.loads(example["meta"]["case"]) == cases[0].inputs


# Labels recomputed here straight from the JSON tables, independently of medsft.data.synthetic ----------


def triage_label(inputs: dict) -> str:
    table = FACTS["triage"]
    cluster = next(c for c in table["clusters"] if c["id"] == inputs["cluster"])
    red_symptom = any(f.get("finding") in inputs["symptoms"] for f in cluster["red_flags"])
    vitals = inputs["vitals"]
    red_vital = any(
        vitals[r["vital"]] >= r["limit"] if r["op"] == ">=" else vitals[r["vital"]] <= r["limit"]
        for r in table["red_vitals"]
    )
    if red_symptom or red_vital or cluster["base_risk"] == "HIGH":
        return "HIGH"
    if cluster["base_risk"] == "MEDIUM" or inputs["age"] >= table["older_age"]:
        return "MEDIUM"
    return "LOW"


def drug_label(inputs: dict) -> str:
    pairs = {frozenset(p["drugs"]): p["severity"] for p in FACTS["drug_interactions"]["pairs"]}
    return pairs[frozenset(inputs["drugs"])]


def lab_label(inputs: dict) -> tuple[str, str]:
    flags, critical = [], False
    for key, value in inputs["values"].items():
        test = FACTS["lab_tests"]["tests"][key]
        low, high = test["range"][inputs["sex"]] if isinstance(test["range"], dict) else test["range"]
        if value < low:
            flags.append(f"{test['name']} LOW")
        elif value > high:
            flags.append(f"{test['name']} HIGH")
        c_low, c_high = test["critical"] or (None, None)
        critical |= (c_low is not None and value < c_low) or (c_high is not None and value > c_high)
    return "; ".join(sorted(flags)) or "none", "HIGH" if critical else "MEDIUM" if flags else "LOW"


def test_triage_risk_agrees_with_the_fact_table(cases):
    for case in (c for c in cases if c.domain == "triage"):
        assert case.expected["risk"] == triage_label(case.inputs) == case.severity


def test_triage_red_flag_puts_its_suggested_condition_first(cases):
    flagged = 0
    for case in (c for c in cases if c.domain == "triage"):
        cluster = next(c for c in FACTS["triage"]["clusters"] if c["id"] == case.inputs["cluster"])
        found = [f for f in cluster["red_flags"] if f.get("finding") in case.inputs["symptoms"]]
        if found:
            flagged += 1
            assert case.expected["diagnosis"] == found[0]["suggests"]
    assert flagged > 5


def test_drug_severity_agrees_with_the_fact_table(cases):
    for case in (c for c in cases if c.domain == "drug_interaction"):
        assert case.expected["severity"] == drug_label(case.inputs) == case.severity


def test_lab_flags_and_urgency_agree_with_the_reference_ranges(cases):
    for case in (c for c in cases if c.domain == "lab_interpretation"):
        flags, urgency = lab_label(case.inputs)
        assert (case.expected["flags"], case.expected["urgency"]) == (flags, urgency)


def test_sampled_drug_pairs_respect_sex_and_age_restrictions(cases):
    drugs = FACTS["drug_interactions"]["drugs"]
    for case in (c for c in cases if c.domain == "drug_interaction"):
        for name in case.inputs["drugs"]:
            assert case.inputs["sex"] in drugs[name].get("sexes", ["man", "woman"])
            low, high = drugs[name].get("ages", [18, 90])
            assert low <= case.inputs["age"] <= high


def test_fact_tables_are_consistent():
    drugs = FACTS["drug_interactions"]["drugs"]
    for pair in FACTS["drug_interactions"]["pairs"]:
        assert set(pair["drugs"]) <= set(drugs)
        assert pair["severity"] in FACTS["drug_interactions"]["severities"]
    for test in FACTS["lab_tests"]["tests"].values():
        ranges = test["range"].values() if isinstance(test["range"], dict) else [test["range"]]
        for low, high in ranges:
            assert low < high
            c_low, c_high = test["critical"] or (None, None)
            assert c_low is None or c_low < low
            assert c_high is None or c_high > high
        assert all(test.get(direction) for direction in test["directions"])  # a meaning for every flag
    for panel in FACTS["lab_tests"]["panels"].values():
        assert set(panel) <= set(FACTS["lab_tests"]["tests"])
    for cluster in FACTS["triage"]["clusters"]:
        assert len(cluster["differential"]) == 3
        assert any("finding" in flag for flag in cluster["red_flags"])


# Parsing answers back -----------------------------------------------------------------------------------


def test_every_generated_answer_parses_back_to_its_expected_label(cases):
    for case in cases:
        assert parse_synthetic_answer(case.domain, case.completion) == case.expected


def test_parser_tolerates_markdown_and_another_flag_order():
    reply = "<think>...</think>\n**Flags:** sodium low, Potassium HIGH\n**Critical**: none\n- Urgency: medium"
    assert parse_synthetic_answer("lab_interpretation", reply) == {
        "flags": "Potassium HIGH; sodium LOW",
        "critical": "none",
        "urgency": "MEDIUM",
    }


def test_parser_leaves_out_what_the_reply_does_not_state():
    assert parse_synthetic_answer("triage", "I think this is serious.") == {}
    assert parse_synthetic_answer("drug_interaction", "Severity: SEVERE") == {}  # not a grade in the table


def test_scoring_marks_each_label_right_or_wrong(cases):
    case = next(c for c in cases if c.domain == "triage" and c.expected["risk"] != "LOW")
    from medsft.evaluate.synthetic import score_synthetic_replies

    low = case.completion.replace(f"Risk level: {case.expected['risk']}", "Risk level: LOW")
    right, wrong = score_synthetic_replies([case, case], [case.completion, low])
    assert all(right["labels"].values()) and right["correct"]
    assert wrong["labels"]["risk"] is False and not wrong["correct"]


# The test set -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_cases_never_equal_a_training_case(seed):
    train = {c.key for c in generate_cases(600, seed)}
    test = synthetic_eval_cases(200, seed)
    assert not train & {c.key for c in test}
    assert all(is_reserved_for_eval(c.key) for c in test)


def test_eval_cases_are_deterministic_and_labelled():
    first, second = synthetic_eval_cases(40, 0), synthetic_eval_cases(40, 0)
    assert [c.to_example() for c in first] == [c.to_example() for c in second]
    assert all(parse_synthetic_answer(c.domain, c.completion) == expected_label(c) for c in first)


# The out-of-distribution test set ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ood():
    return synthetic_ood_cases(300, seed=0)


def held_out_material(case) -> list[str]:
    """What in a case only the OOD set may use: its phrasing, cluster, pair or lab tests."""
    found = [f"template {case.inputs['template']}"] if case.inputs["template"] >= TRAIN_TEMPLATES[case.domain] else []
    if case.domain == "triage" and case.inputs["cluster"] in HELD_OUT["clusters"]:
        found.append(case.inputs["cluster"])
    if case.domain == "drug_interaction" and sorted(case.inputs["drugs"]) in map(sorted, HELD_OUT["drug_pairs"]):
        found.append(" + ".join(case.inputs["drugs"]))
    if case.domain == "lab_interpretation":
        found += sorted(set(case.inputs["values"]) & set(HELD_OUT["lab_tests"]))
    return found


@pytest.mark.parametrize("seed", [0, 1])
def test_training_never_emits_a_held_out_cluster_pair_lab_test_or_phrasing(seed):
    training = generate_cases(5000, seed)
    assert Counter(c.domain for c in training) == dict(zip(DOMAINS, (1667, 1667, 1666), strict=True))
    assert [held_out_material(c) for c in training if held_out_material(c)] == []


def test_the_in_distribution_test_set_holds_nothing_held_out():
    assert [held_out_material(c) for c in synthetic_eval_cases(300, 0) if held_out_material(c)] == []


def test_ood_cases_use_only_held_out_clusters_pairs_tests_and_phrasings(ood):
    assert Counter(c.domain for c in ood) == {domain: 100 for domain in DOMAINS}
    for case in ood:
        assert case.inputs["template"] >= TRAIN_TEMPLATES[case.domain]
        assert len(held_out_material(case)) >= 2, case.prompt  # a held-out phrasing and held-out content
    assert {c.inputs["cluster"] for c in ood if c.domain == "triage"} == set(HELD_OUT["clusters"])
    assert {frozenset(c.inputs["drugs"]) for c in ood if c.domain == "drug_interaction"} == set(
        map(frozenset, HELD_OUT["drug_pairs"])
    )


def test_ood_cases_never_equal_or_reword_a_training_case(ood):
    training = generate_cases(3000, 0)
    assert not {c.key for c in training} & {c.key for c in ood}
    assert not {c.prompt for c in training} & {c.prompt for c in ood}


def test_ood_cases_are_deterministic_by_seed():
    assert [c.to_example() for c in synthetic_ood_cases(40, 3)] == [c.to_example() for c in synthetic_ood_cases(40, 3)]
    assert [c.key for c in synthetic_ood_cases(40, 3)] != [c.key for c in synthetic_ood_cases(40, 4)]
    assert synthetic_ood_cases(10, 3) == synthetic_ood_cases(30, 3)[:10]


def test_ood_labels_agree_with_the_fact_tables_and_parse_back(ood):
    assert len({c.key for c in ood}) == len(ood)
    for case in ood:
        assert parse_synthetic_answer(case.domain, case.completion) == case.expected
        if case.domain == "triage":
            assert case.expected["risk"] == triage_label(case.inputs) == case.severity
        elif case.domain == "drug_interaction":
            assert case.expected["severity"] == drug_label(case.inputs) == case.severity
        else:
            assert (case.expected["flags"], case.expected["urgency"]) == lab_label(case.inputs)
    grades = {domain: {c.severity for c in ood if c.domain == domain} for domain in DOMAINS}
    assert grades["triage"] == grades["lab_interpretation"] == {"LOW", "MEDIUM", "HIGH"}
    assert grades["drug_interaction"] == set(FACTS["drug_interactions"]["severities"])


def test_ood_prompts_give_what_a_held_out_label_follows_from(ood):
    pairs = {frozenset(p["drugs"]): p for p in FACTS["drug_interactions"]["pairs"]}
    tests = FACTS["lab_tests"]["tests"]
    for case in ood:
        if case.domain == "drug_interaction":  # a pair's severity cannot be memorised from training
            pair = pairs[frozenset(case.inputs["drugs"])]
            assert pair["mechanism"] in case.prompt and pair["effect"] in case.prompt
        if case.domain == "lab_interpretation":  # every range shown; a held-out test's critical limits too
            assert case.prompt.count("(ref ") == len(case.inputs["values"])
            for key in set(case.inputs["values"]) & set(HELD_OUT["lab_tests"]):
                low, high = tests[key]["critical"] or (None, None)
                assert low is None or f"below {low}" in case.prompt
                assert high is None or f"above {high}" in case.prompt


def test_cases_fit_a_512_token_context_and_stay_short(gemma_tokenizer, cases, ood):
    from medsft.templates import chat_token_lengths

    lengths = chat_token_lengths(gemma_tokenizer, [c.to_example()["messages"] for c in cases])
    assert max(lengths + chat_token_lengths(gemma_tokenizer, [c.to_example()["messages"] for c in ood])) <= 512
    assert sorted(lengths)[len(lengths) // 2] <= 300


def test_fact_tables_ship_inside_the_package():
    assert {p.name for p in Path(FACTS_DIR).glob("*.json")} == {
        "triage.json",
        "drug_interactions.json",
        "lab_tests.json",
    }
