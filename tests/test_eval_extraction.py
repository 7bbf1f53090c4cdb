"""Answer extraction from free-text replies, on a table of real-looking outputs; unparseable stays unparseable."""

from __future__ import annotations

import pytest

from medsft.data import MultipleChoiceItem
from medsft.evaluate.generative import cot_messages, score_replies, summarize_replies
from medsft.tasks.extraction import extract_letter, extract_yes_no_maybe

OPTIONS = ["Metformin", "Insulin glargine", "Lifestyle advice only", "Gliclazide"]
ITEM = MultipleChoiceItem(id="q1", question="First-line drug for type 2 diabetes?", choices=OPTIONS, answer=0)
PUBMED = MultipleChoiceItem(
    id="p1", question="Do statins help?", choices=["yes", "no", "maybe"], answer=1, context="Passage one."
)

LETTER_REPLIES = [
    ("<think>\n1. Type 2 diabetes, new diagnosis.\n2. ...\n5. Metformin is first line.\n</think>\nFinal answer: A", 0),
    ("Let's think step by step. HbA1c is 7.4%, no contraindication. The answer is (A).", 0),
    ("The correct answer is B", 1),
    ("Answer: C", 2),
    ("**Final Answer:** **D**", 3),
    ("**Final Answer**: D", 3),
    ("D", 3),
    ("(B)", 1),
    ("B.", 1),
    ("C. Lifestyle advice only, because the HbA1c is near target.", 2),
    ("Final answer: b", 1),
    ("The answer is: C.", 2),
    ("Final answer: Gliclazide", 3),  # the option's text instead of its letter
    ("Option A is tempting, B is wrong. The answer is C. On reflection, the answer is D.", 3),  # last statement
    ("<think>so the answer is B</think>", 1),  # nothing after </think>: the reasoning's answer
    ("<think>the answer is A</think>\nFinal answer: (c)", 2),  # the final answer wins over the reasoning
]
UNPARSEABLE = [
    "The answer is a difficult one; I would need more history.",  # the article, not option A
    "I am not sure which option is right.",
    "Bacteria are the usual cause.",  # a capital B starting a word
    "The final answer is E",  # no option E in a 4-option question
    "<think>\n1. Consider metformin.\n2. Consider insulin.",  # cut off by the token budget
    "",
]
YES_NO_MAYBE = [
    ("Final answer: yes", "yes"),
    ("The answer is No.", "no"),
    ("Maybe.", "maybe"),
    ("Yes, statins reduced post-operative AF in this cohort.", "yes"),
    ("<think>\n1. The abstract reports ...\n</think>\nno", "no"),
    ("Answer: **maybe**", "maybe"),
    ("It is unclear from the abstract.", None),
    ("Nobody measured it.", None),  # "No" only as part of a word
]


@pytest.mark.parametrize(("reply", "expected"), LETTER_REPLIES)
def test_letter_is_extracted_from_a_real_looking_reply(reply, expected):
    assert extract_letter(reply, OPTIONS) == expected


@pytest.mark.parametrize("reply", UNPARSEABLE)
def test_reply_without_a_clear_letter_is_unparseable(reply):
    assert extract_letter(reply, OPTIONS) is None


@pytest.mark.parametrize(("reply", "expected"), YES_NO_MAYBE)
def test_yes_no_maybe_is_extracted(reply, expected):
    assert extract_yes_no_maybe(reply) == expected


def test_the_extracted_choice_maps_a_pubmedqa_word_to_the_choice_index():
    assert score_replies("pubmedqa", [PUBMED], ["Final answer: no"])[0]["pred"] == 1
    assert score_replies("medqa", [ITEM], ["Final answer: D"])[0]["pred"] == 3


def test_unparseable_replies_are_reported_apart_not_counted_right():
    records = score_replies("medqa", [ITEM, ITEM, ITEM], ["Final answer: A", "Final answer: B", "I cannot say."])
    assert [r["pred"] for r in records] == [0, 1, None]
    assert [r["parsed"] for r in records] == [True, True, False]
    metrics = summarize_replies(records)
    assert metrics["n_unparseable"] == 1
    assert metrics["unparseable"] == pytest.approx(1 / 3)
    assert metrics["acc"] == pytest.approx(1 / 3)
    assert metrics["acc_parsed"] == pytest.approx(1 / 2)


def test_cot_prompt_lists_lettered_options_and_asks_for_a_final_answer_line():
    (message,) = cot_messages("medqa", ITEM)
    assert message["role"] == "user"
    assert "A. Metformin\nB. Insulin glargine\nC. Lifestyle advice only\nD. Gliclazide" in message["content"]
    assert "Final answer: <letter>" in message["content"]
    assert "Abstract: Passage one." in cot_messages("pubmedqa", PUBMED)[0]["content"]
