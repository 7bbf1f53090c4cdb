"""scripts/synthetic_curve.py: a lab value counts as flagged right only when its flag is the one its value and the
range written beside it give; values outside the Comparison step are not counted."""

from __future__ import annotations

from script_loader import load_script


def test_flag_consistency_checks_each_value_against_the_range_the_reply_wrote() -> None:
    reply = (
        "<think>\n1. Context: complete blood count for a 58-year-old man.\n"
        "2. Comparison: Haemoglobin 16.2 (13.5-17.5) normal; White cell count 1.7 (4.0-11.0) HIGH; "
        "Platelets 654 (150-400) HIGH.\n3. Critical limits: Platelets 1091 (150-400) LOW is not compared here.\n"
        "</think>\nFlags: White cell count HIGH"
    )
    assert load_script("scripts/synthetic_curve.py").flag_consistency([reply]) == (2, 3)


def test_flag_consistency_counts_nothing_without_a_comparison_step() -> None:
    assert load_script("scripts/synthetic_curve.py").flag_consistency(["Flags: none\nUrgency: LOW", ""]) == (0, 0)
