"""Cleaning: PII scrubbing, exact and near duplicates, length filtering, the disclaimer, and the report."""

from __future__ import annotations

import copy

import pytest

from medsft.data import (
    add_disclaimer,
    drop_exact_duplicates,
    drop_near_duplicates,
    filter_by_length,
    generate_synthetic,
    scrub_pii,
    scrub_text,
)
from medsft.data.records import make_example


def chat(question: str, answer: str = "An answer.", id: str = "x", source: str = "test") -> dict:
    return make_example(id, source, [{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


@pytest.mark.parametrize(
    ("text", "scrubbed", "kind"),
    [
        ("Write to ana.lopez@clinic-mail.org today.", "Write to [EMAIL] today.", "email"),
        ("See https://example.org/results?id=7. Thanks", "See [URL]. Thanks", "url"),
        ("Guidance at www.example-health.net, page 2.", "Guidance at [URL], page 2.", "url"),
        ("Call (555) 123-4567 after 5.", "Call [PHONE] after 5.", "phone"),
        ("Her mobile: 07700 900123.", "Her mobile: [PHONE].", "phone"),
        ("Hi, my number is 07700 900456.", "Hi, my number is [PHONE].", "phone"),
        ("Ring the ward on 020 7946 0958 tonight", "Ring the ward on [PHONE] tonight", "phone"),
        ("Reach us on +44 20 7946 0958.", "Reach us on [PHONE].", "phone"),
        ("Patient phone 555.867.5309", "Patient phone [PHONE]", "phone"),
        ("MRN: 00458213, ward 4.", "MRN: [ID], ward 4.", "id_number"),
        ("NHS number 943 476 5919", "NHS number [ID]", "id_number"),
        ("Patient ID AB12345 admitted.", "Patient ID [ID] admitted.", "id_number"),
        ("SSN 123-45-6789 on file", "SSN [ID] on file", "id_number"),
        ("DOB: 03/14/1962.", "DOB: [DOB].", "date_of_birth"),
        ("Date of birth 14 March 1962", "Date of birth [DOB]", "date_of_birth"),
        ("born on March 14, 1962 in", "born on [DOB] in", "date_of_birth"),
        ("Seen by Dr. Priya Raman today.", "Seen by Dr. [NAME] today.", "name"),
        ("Mrs O'Brien was reviewed.", "Mrs [NAME] was reviewed.", "name"),
        ("Name: John Smith\nAge: 54", "Name: [NAME]\nAge: 54", "name"),
        ("Hello, my name is Alice and I have a cough.", "Hello, my name is [NAME] and I have a cough.", "name"),
    ],
)
def test_pii_is_replaced_with_a_placeholder(text, scrubbed, kind):
    result, counts = scrub_text(text)
    assert result == scrubbed
    assert counts[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "Sodium 131 mmol/L (ref 135-145); potassium 3.5-5.0.",
        "BP 148/94 mmHg, HR 88/min, SpO2 97%, temperature 37.2 C.",
        "Between 2001-2005 140 patients were enrolled; p = 0.001, 95% CI 0.37 to 0.94.",
        "Haemoglobin 12.0-15.5 g/dL; platelets 150-400 x10^9/L; CD4 count 350.",
        "MS patients and Parkinson disease; Drug name: Metformin 500 mg twice daily.",
        "Repeat in 6 weeks; ID 12 is a bed number; case 3 of 10.",
    ],
)
def test_clinical_numbers_and_words_are_left_alone(text):
    assert scrub_text(text) == (text, {})


def test_scrub_pii_counts_rows_and_replacements_without_changing_the_input():
    rows = [chat("Call me on 555-201-3344 or email a.b@example.com"), chat("No personal data here.")]
    original = copy.deepcopy(rows)
    scrubbed, counts, changed = scrub_pii(rows)
    assert rows == original
    assert scrubbed[0]["messages"][0]["content"] == "Call me on [PHONE] or email [EMAIL]"
    assert scrubbed[1] == rows[1]
    assert (dict(counts), changed) == ({"phone": 1, "email": 1}, 1)


def test_exact_duplicates_ignore_case_and_spacing_and_keep_the_first():
    rows = [chat("What is HbA1c?", id="a"), chat("what is  HbA1c? ", id="b"), chat("What is TSH?", id="c")]
    kept, removed = drop_exact_duplicates(rows)
    assert [r["id"] for r in kept] == ["a", "c"]
    assert [(r.id, r.step, r.reason) for r in removed] == [("b", "exact_duplicate", "same as a")]


def test_same_question_with_a_different_answer_is_not_an_exact_duplicate():
    kept, removed = drop_exact_duplicates([chat("Q?", "One.", id="a"), chat("Q?", "Two.", id="b")])
    assert len(kept) == 2 and removed == []


VIGNETTE = (
    "A 58-year-old man has crushing chest pain for 40 minutes radiating to the left arm, with sweating and "
    "nausea. His ECG shows ST elevation in leads II, III and aVF. Which artery is most likely occluded?"
)


def test_near_duplicate_prompts_are_removed_keeping_the_first():
    edited = VIGNETTE.replace("58-year-old", "59-year-old")
    rows = [chat(VIGNETTE, id="a"), chat("What are the side effects of metformin?", id="b"), chat(edited, id="c")]
    kept, removed = drop_near_duplicates(rows)
    assert [r["id"] for r in kept] == ["a", "b"]
    assert removed[0].id == "c" and removed[0].step == "near_duplicate" and "similar to a" in removed[0].reason


def test_prompts_that_only_share_a_theme_are_kept():
    other = (
        "A 61-year-old woman has pleuritic chest pain and breathlessness 10 days after hip surgery. Her heart rate "
        "is 112 and oxygen saturation 91%. What is the most likely diagnosis?"
    )
    kept, removed = drop_near_duplicates([chat(VIGNETTE, id="a"), chat(other, id="b")])
    assert len(kept) == 2 and removed == []


def test_synthetic_cases_from_one_template_are_not_near_duplicates():
    """Sharing a template is not enough to be a near duplicate; two cases that differ in one number only
    (the same drugs, age and sex, another eGFR) are, and at most 1% of the cases may be such pairs."""
    rows = generate_synthetic(240, seed=0)
    kept, removed = drop_near_duplicates(rows)
    assert len(removed) <= len(rows) // 100
    assert all(r.step == "near_duplicate" and "% similar to" in r.reason for r in removed)


def test_minhash_finds_the_same_near_duplicates_as_comparing_every_pair():
    from medsft.data.clean import NEAR_DUPLICATE_THRESHOLD, jaccard, shingle_set

    rows = generate_synthetic(150, seed=2)
    for i in range(0, 150, 10):  # plant one-word edits of every tenth prompt
        prompt = rows[i]["messages"][0]["content"]
        rows.append(chat(prompt.replace("year-old", "yr-old", 1) + " Thanks.", id=f"edit-{i}"))
    shingles = [shingle_set(row["messages"][0]["content"]) for row in rows]
    exhaustive, kept = [], []
    for i, row in enumerate(rows):
        if any(jaccard(shingles[i], shingles[j]) >= NEAR_DUPLICATE_THRESHOLD for j in kept):
            exhaustive.append(row["id"])
        else:
            kept.append(i)
    assert len(exhaustive) >= 10
    assert [r.id for r in drop_near_duplicates(rows)[1]] == exhaustive


def test_near_duplicate_removal_is_deterministic():
    rows = generate_synthetic(60, seed=1) + [chat(VIGNETTE, id="a"), chat(VIGNETTE + " Explain.", id="b")]
    assert drop_near_duplicates(rows) == drop_near_duplicates(rows)


def test_length_filter_drops_rows_over_the_limit_and_keeps_rows_at_it():
    rows = [chat("a", id="short"), chat("b", id="exact"), chat("c", id="long")]
    kept, lengths, removed = filter_by_length(rows, [10, 512, 513], max_tokens=512)
    assert [r["id"] for r in kept] == ["short", "exact"] and lengths == [10, 512]
    assert [(r.id, r.step) for r in removed] == [("long", "too_long")]
    assert "513 tokens > max_seq_length 512" in removed[0].reason


def test_disclaimer_is_appended_once_to_every_assistant_turn():
    row = make_example(
        "m",
        "messages",
        [
            {"role": "system", "content": "Be careful."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"},
        ],
    )
    once = add_disclaimer([row], "Not medical advice.")
    assert add_disclaimer(once, "Not medical advice.") == once
    contents = [m["content"] for m in once[0]["messages"]]
    assert contents == ["Be careful.", "Q1", "A1\n\nNot medical advice.", "Q2", "A2\n\nNot medical advice."]


def test_report_counts_what_cleaning_removed_from_the_bundled_instruction_sample(gemma_tokenizer):
    from medsft.config import DataSource, RunConfig
    from medsft.data.build import build_training_data

    config = RunConfig(datasets=[DataSource(name="instructions", path="sample:instructions")], validation_fraction=0.0)
    splits, report = build_training_data(config, gemma_tokenizer)
    # The sample ships one exact copy, one reworded copy and two rows with fictional contact details.
    assert report.removed["exact_duplicate"] == 1 and report.removed["near_duplicate"] == 1
    assert report.pii_rows == 2 and report.pii == {"name": 3, "date_of_birth": 1, "id_number": 1, "phone": 2}
    assert len(splits["train"]) == 29 - 2
    text = " ".join(m["content"] for row in splits["train"] for m in row["messages"])
    assert "07700 900456" not in text and "00458213" not in text and "Whitfield" not in text
    frame = report.to_frame()
    assert frame.loc[
        frame["source"] == "instructions", ["loaded", "exact_duplicate", "near_duplicate", "train"]
    ].values.tolist() == [[29, 1, 1, 27]]
