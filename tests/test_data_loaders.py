"""Loaders: the carried real sets by default, each format on its self-written sample, JSON/Parquet copies, and
deliberately broken copies."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medsft.config import DataSource, RunConfig
from medsft.data import (
    DataError,
    load_instructions,
    load_medical_o1,
    load_medqa,
    load_messages,
    load_pubmedqa,
    load_source,
    sample_path,
)
from medsft.data.build import validate_sources
from medsft.data.loaders import BENCHMARKS_DIR, PUBMEDQA_TEST_FILE, stratified_test_indices
from medsft.tasks.medqa import load_items as load_medqa_eval
from medsft.tasks.pubmedqa import load_items as load_pubmedqa_eval


def sample_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in sample_path(name).read_text(encoding="utf-8").splitlines() if line]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def broken_copy(tmp_path: Path, sample: str, row: int, change) -> Path:
    """A copy of a bundled sample with one row (1-based) changed by `change(row_dict)`."""
    rows = sample_rows(sample)
    changed = change(rows[row - 1])
    rows[row - 1] = changed if changed is not None else rows[row - 1]
    return write_jsonl(tmp_path / f"{sample}.jsonl", rows)


# Bundled samples ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loader", "sample", "rows"),
    [
        (load_medical_o1, "medical_o1", 30),
        (load_medqa, "medqa", 30),
        (load_pubmedqa, "pubmedqa", 30),
        (load_instructions, "instructions", 29),
        (load_messages, "messages", 24),
    ],
)
def test_each_loader_reads_its_bundled_sample_into_user_then_assistant_chats(loader, sample, rows):
    source = loader(f"sample:{sample}")
    assert len(source.examples) == rows
    assert source.skipped == []
    for example in source.examples:
        roles = [m["role"] for m in example["messages"] if m["role"] != "system"]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(m["content"].strip() for m in example["messages"])
    assert len({e["id"] for e in source.examples}) == rows


def test_medical_o1_assistant_turn_shows_the_reasoning_inside_think_tags():
    row = sample_rows("medical_o1")[0]
    example = load_medical_o1().examples[0]
    assert example["messages"][0]["content"] == row["Question"]
    assert example["messages"][1]["content"] == f"<think>\n{row['Complex_CoT']}\n</think>\n{row['Response']}"


def test_medqa_chat_lists_the_options_and_answers_with_the_correct_letter():
    row = sample_rows("medqa")[1]
    example = load_medqa("sample:medqa").examples[1]
    prompt, answer = example["messages"][0]["content"], example["messages"][1]["content"]
    for letter, text in row["options"].items():
        assert f"{letter}. {text}" in prompt
    assert answer == f"Answer: {row['answer_idx']}. {row['options'][row['answer_idx']]}"


def test_medqa_hf_schema_maps_label_index_to_the_same_chat_format():
    row = sample_rows("medqa_hf")[0]
    example = load_medqa("sample:medqa_hf").examples[0]
    letter, text = "ABCD"[row["label"]], row[f"ending{row['label']}"]
    assert f"{letter}. {text}" in example["messages"][0]["content"]
    assert example["messages"][1]["content"] == f"Answer: {letter}. {text}"


def test_medqa_eval_reads_a_file_as_four_option_items_in_file_order():
    items = load_medqa_eval("sample:medqa_test")
    rows = sample_rows("medqa_test")
    assert len(items) == 30
    assert all(len(item.choices) == 4 for item in items)
    assert [item.answer_letter for item in items] == [row["answer_idx"] for row in rows]
    assert load_medqa_eval("sample:medqa_test", limit=5) == items[:5]


def test_medqa_eval_defaults_to_the_carried_us_test_split_and_dev_on_request():
    test, dev = load_medqa_eval(), load_medqa_eval(split="dev")
    assert (len(test), len(dev)) == (1273, 1272)
    assert [test[0].id, test[-1].id, dev[0].id] == ["medqa:test:1", "medqa:test:1273", "medqa:dev:1"]
    assert Counter(item.answer_letter for item in test) == {"A": 353, "B": 309, "C": 346, "D": 265}
    assert Counter(item.subject for item in test) == {"step1": 679, "step2&3": 594}
    assert load_medqa_eval(limit=5) == test[:5]
    with pytest.raises(DataError, match="no carried MedQA split 'train'"):
        load_medqa_eval(split="train")


def test_medqa_training_default_is_the_dev_split_which_shares_no_question_with_test():
    train = load_medqa()
    assert train.origin == "medqa/dev.jsonl" and len(train.examples) == 1272
    dev = {item.question.strip() for item in load_medqa_eval(split="dev")}
    assert not dev & {item.question.strip() for item in load_medqa_eval()}


def test_bundled_medqa_test_shares_no_question_with_the_training_samples():
    test = {item.question for item in load_medqa_eval("sample:medqa_test")}
    train = {row["question"] for row in sample_rows("medqa")} | {row["sent1"] for row in sample_rows("medqa_hf")}
    assert not test & train


def test_pubmedqa_eval_defaults_to_the_official_500_pmid_test_split_in_its_order():
    items = load_pubmedqa_eval()
    official = json.loads(PUBMEDQA_TEST_FILE.read_text(encoding="utf-8"))
    assert [item.id for item in items] == [f"pubmedqa:{pmid}" for pmid in official]
    assert [item.choices[item.answer] for item in items] == list(official.values())
    assert Counter(item.choices[item.answer] for item in items) == {"yes": 276, "no": 169, "maybe": 55}
    assert load_pubmedqa_eval(limit=3) == items[:3]


def test_pubmedqa_training_default_is_the_other_500_labelled_items_never_a_test_pmid():
    train = load_pubmedqa()
    official = json.loads(PUBMEDQA_TEST_FILE.read_text(encoding="utf-8"))
    ids = {example["id"] for example in train.examples}
    assert len(ids) == 500
    assert not ids & {f"pubmedqa:{pmid}" for pmid in official}


def test_ori_pqal_contexts_are_joined_with_newlines_exactly_like_lm_eval():
    preprocess = pytest.importorskip("lm_eval.tasks.pubmedqa.preprocess_pubmedqa")
    from medsft.tasks.pubmedqa import prompt as pubmedqa_prompt

    raw = json.loads((BENCHMARKS_DIR / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    for item in load_pubmedqa_eval(limit=20):
        doc = raw[item.id.removeprefix("pubmedqa:")]
        assert item.context == "\n".join(doc["CONTEXTS"])
        assert pubmedqa_prompt(item) == preprocess.doc_to_text(doc)


def hub_layout(pmid: str, doc: dict) -> dict:
    """An ori_pqal item in the hub's pqa_labeled layout."""
    return {
        "pubid": int(pmid),
        "question": doc["QUESTION"],
        "context": {"contexts": doc["CONTEXTS"], "labels": doc["LABELS"]},
        "long_answer": doc["LONG_ANSWER"],
        "final_decision": doc["final_decision"],
    }


def test_a_hub_layout_file_with_official_pmids_takes_exactly_those_as_test(tmp_path):
    raw = json.loads((BENCHMARKS_DIR / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    official = list(json.loads(PUBMEDQA_TEST_FILE.read_text(encoding="utf-8")))
    pool = [pmid for pmid in raw if pmid not in set(official)]
    chosen = [official[7], pool[0], official[2], pool[1], official[5]]
    path = write_jsonl(tmp_path / "pqa_labeled.jsonl", [hub_layout(pmid, raw[pmid]) for pmid in chosen])
    test = [item.id for item in load_pubmedqa_eval(str(path))]
    assert test == [f"pubmedqa:{official[i]}" for i in (2, 5, 7)]  # the official order
    assert [e["id"] for e in load_pubmedqa(str(path)).examples] == [f"pubmedqa:{pmid}" for pmid in pool[:2]]
    assert load_pubmedqa_eval()[2].context == load_pubmedqa_eval(str(path))[0].context


def test_a_test_pmid_whose_label_differs_from_the_official_one_is_rejected(tmp_path):
    raw = json.loads((BENCHMARKS_DIR / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    pmid, label = next(iter(json.loads(PUBMEDQA_TEST_FILE.read_text(encoding="utf-8")).items()))
    row = hub_layout(pmid, raw[pmid]) | {"final_decision": "no" if label != "no" else "yes"}
    path = write_jsonl(tmp_path / "relabelled.jsonl", [row])
    with pytest.raises(DataError, match=rf"^relabelled\.jsonl: PMID {pmid}: final_decision .* official test label"):
        load_pubmedqa_eval(str(path))


def test_a_file_of_only_test_items_leaves_nothing_to_train_on(tmp_path):
    raw = json.loads((BENCHMARKS_DIR / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    official = list(json.loads(PUBMEDQA_TEST_FILE.read_text(encoding="utf-8")))[:3]
    path = write_jsonl(tmp_path / "test_only.jsonl", [hub_layout(pmid, raw[pmid]) for pmid in official])
    with pytest.raises(DataError, match=r"^test_only\.jsonl: all 3 rows are in the PubMedQA test split"):
        load_pubmedqa(str(path))


def test_pubmedqa_test_split_is_half_of_a_small_file_stratified_by_label():
    items = load_pubmedqa_eval("sample:pubmedqa")
    assert len(items) == 30
    assert all(item.choices == ["yes", "no", "maybe"] and item.context for item in items)
    # 33 yes / 20 no / 7 maybe overall → 16.5 / 10 / 3.5, largest remainder (ties by name) gives maybe the 30th.
    assert Counter(item.choices[item.answer] for item in items) == {"yes": 16, "no": 10, "maybe": 4}


def test_pubmedqa_split_is_reproducible_and_train_is_the_complement():
    test_ids = [item.id for item in load_pubmedqa_eval("sample:pubmedqa")]
    assert test_ids == [item.id for item in load_pubmedqa_eval("sample:pubmedqa")]
    train_ids = {example["id"] for example in load_pubmedqa("sample:pubmedqa").examples}
    all_ids = {f"pubmedqa:{row['pubid']}" for row in sample_rows("pubmedqa")}
    assert not train_ids & set(test_ids)
    assert train_ids | set(test_ids) == all_ids


def test_stratified_split_of_1000_rows_takes_the_standard_500_in_label_proportion():
    labels = ["yes"] * 552 + ["no"] * 338 + ["maybe"] * 110
    chosen = stratified_test_indices(labels, 500, seed=0)
    assert len(chosen) == 500
    assert Counter(labels[i] for i in chosen) == {"yes": 276, "no": 169, "maybe": 55}
    assert chosen == stratified_test_indices(labels, 500, seed=0)
    assert chosen != stratified_test_indices(labels, 500, seed=1)


def test_messages_loader_reads_openai_and_sharegpt_rows_alike():
    examples = load_messages().examples
    assert any(e["messages"][0]["role"] == "system" for e in examples)
    assert any(len(e["messages"]) > 3 for e in examples)  # multi-turn
    raw = sample_rows("messages")
    sharegpt = next(i for i, row in enumerate(raw) if "conversations" in row)
    assert [m["content"] for m in examples[sharegpt]["messages"]] == [
        t["value"] for t in raw[sharegpt]["conversations"]
    ]


def test_instructions_loader_joins_instruction_and_input():
    row = next(r for r in sample_rows("instructions") if r["input"])
    example = next(
        e
        for e in load_instructions("sample:instructions").examples
        if e["messages"][0]["content"].startswith(row["instruction"])
    )
    assert example["messages"][0]["content"] == f"{row['instruction']}\n\n{row['input']}"


def test_load_source_dispatches_by_name_and_synthetic_uses_count_and_seed():
    assert load_source(DataSource(name="medqa")).examples == load_medqa().examples
    synthetic = load_source(DataSource(name="synthetic", count=12), data_seed=3)
    assert len(synthetic.examples) == 12 and {e["source"] for e in synthetic.examples} == {"synthetic"}
    assert synthetic.examples == load_source(DataSource(name="synthetic", count=12), data_seed=3).examples


# Other file formats -------------------------------------------------------------------------------------


def test_json_array_and_parquet_copies_load_like_the_jsonl_sample(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sample_rows("medqa")
    (tmp_path / "medqa.json").write_text(json.dumps(rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "medqa.parquet")
    expected = [e["messages"] for e in load_medqa("sample:medqa").examples]
    assert [e["messages"] for e in load_medqa(str(tmp_path / "medqa.json")).examples] == expected
    assert [e["messages"] for e in load_medqa(str(tmp_path / "medqa.parquet")).examples] == expected


def test_json_lines_saved_under_a_json_name_are_accepted(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(sample_path("medical_o1").read_text(encoding="utf-8"), encoding="utf-8")
    assert len(load_medical_o1(str(path)).examples) == 30


def test_parquet_errors_name_the_record_index_plus_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sample_rows("medical_o1")[:3]
    rows[1]["Response"] = ""
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "o1.parquet")
    with pytest.raises(DataError, match=r"^o1\.parquet row 2, field 'Response': is empty$"):
        load_medical_o1(str(tmp_path / "o1.parquet"))


def test_unsupported_suffix_and_missing_file_are_clear_errors(tmp_path):
    (tmp_path / "data.csv").write_text("Question,Complex_CoT,Response\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        load_medical_o1(str(tmp_path / "data.csv"))
    with pytest.raises(DataError, match="file not found"):
        load_medical_o1(str(tmp_path / "missing.jsonl"))


# Broken copies ------------------------------------------------------------------------------------------


def test_missing_field_names_file_row_and_field(tmp_path):
    path = broken_copy(tmp_path, "medical_o1", 3, lambda row: row.pop("Complex_CoT") and None)
    with pytest.raises(DataError) as err:
        load_medical_o1(str(path))
    assert str(err.value) == "medical_o1.jsonl row 3, field 'Complex_CoT': missing"
    assert (err.value.row, err.value.field) == (3, "Complex_CoT")


def test_answer_key_outside_the_options_is_rejected(tmp_path):
    path = broken_copy(tmp_path, "medqa", 7, lambda row: {**row, "answer_idx": "E"})
    with pytest.raises(DataError) as err:
        load_medqa(str(path))
    assert str(err.value) == "medqa.jsonl row 7, field 'answer_idx': 'E' is not one of the options A, B, C, D"


def test_fewer_than_four_options_is_rejected_in_both_schemas(tmp_path):
    three = broken_copy(tmp_path, "medqa", 2, lambda row: row["options"].pop("D") and None)
    with pytest.raises(
        DataError, match=r"medqa\.jsonl row 2, field 'options': expected exactly the 4 options A, B, C, D, got A, B, C"
    ):
        load_medqa(str(three))
    hf = broken_copy(tmp_path, "medqa_hf", 4, lambda row: row.pop("ending3") and None)
    with pytest.raises(DataError, match=r"medqa_hf\.jsonl row 4, field 'ending3': missing"):
        load_medqa(str(hf))


def test_hf_label_outside_the_option_indices_is_rejected(tmp_path):
    path = broken_copy(tmp_path, "medqa_hf", 5, lambda row: {**row, "label": 4})
    with pytest.raises(DataError, match=r"row 5, field 'label': 4 is not one of the option indices 0, 1, 2, 3"):
        load_medqa(str(path))


def test_empty_question_is_rejected(tmp_path):
    path = broken_copy(tmp_path, "medqa", 1, lambda row: {**row, "question": "   "})
    with pytest.raises(DataError, match=r"^medqa\.jsonl row 1, field 'question': is empty$"):
        load_medqa(str(path))


def test_field_of_the_wrong_type_is_rejected(tmp_path):
    path = broken_copy(tmp_path, "pubmedqa", 9, lambda row: {**row, "question": 42})
    with pytest.raises(DataError, match=r"pubmedqa\.jsonl row 9, field 'question': expected a string, got number"):
        load_pubmedqa(str(path))


def test_row_that_is_not_an_object_is_rejected(tmp_path):
    rows = sample_rows("instructions")[:4]
    path = tmp_path / "instructions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + '["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"^instructions\.jsonl row 3: expected a JSON object, got array$"):
        load_instructions(str(path))


def test_non_utf8_line_names_its_line_number(tmp_path):
    lines = sample_path("medical_o1").read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"year", b"ye\xffar", 1)
    path = tmp_path / "medical_o1.jsonl"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"^medical_o1\.jsonl row 5: not valid UTF-8 \(byte 0xff"):
        load_medical_o1(str(path))


def test_non_utf8_json_file_is_a_file_error(tmp_path):
    path = tmp_path / "medqa.json"
    path.write_bytes(json.dumps(sample_rows("medqa")[:2], indent=1).encode().replace(b"hemoglobin", b"h\xe9moglobin"))
    with pytest.raises(DataError, match=r"^medqa\.json: not valid UTF-8 \(byte 0xe9 on line \d+\)$"):
        load_medqa(str(path))


def test_invalid_json_line_is_rejected(tmp_path):
    path = tmp_path / "messages.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n{oops\n'
    )
    with pytest.raises(DataError, match=r"^messages\.jsonl row 2: not valid JSON"):
        load_messages(str(path))


def test_pubmedqa_decision_outside_yes_no_maybe_is_rejected(tmp_path):
    path = broken_copy(tmp_path, "pubmedqa", 12, lambda row: {**row, "final_decision": "probably"})
    with pytest.raises(DataError, match=r"row 12, field 'final_decision': 'probably' is not one of yes, no, maybe"):
        load_pubmedqa(str(path))


def test_messages_that_do_not_alternate_are_rejected_with_the_turn_index(tmp_path):
    path = write_jsonl(
        tmp_path / "messages.jsonl",
        [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}],
    )
    with pytest.raises(DataError, match=r"row 1, field 'messages\[1\]\.role': expected 'assistant'"):
        load_messages(str(path))


def test_sharegpt_unknown_speaker_is_rejected(tmp_path):
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        [{"conversations": [{"from": "doctor", "value": "a"}, {"from": "gpt", "value": "b"}]}],
    )
    with pytest.raises(DataError, match=r"field 'conversations\[0\]\.from': 'doctor' is not one of"):
        load_messages(str(path))


def test_skip_mode_counts_bad_rows_and_keeps_the_good_ones(tmp_path):
    rows = sample_rows("medqa")[:6]
    rows[1]["answer_idx"] = "F"
    del rows[4]["question"]
    path = write_jsonl(tmp_path / "medqa.jsonl", rows)
    source = load_medqa(str(path), on_error="skip")
    assert len(source.examples) == 4
    assert [(e.row, e.field) for e in source.skipped] == [(2, "answer_idx"), (5, "question")]


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_validate_sources_fails_on_a_broken_file_without_any_tokenizer(tmp_path):
    path = broken_copy(tmp_path, "medqa", 4, lambda row: {**row, "answer_idx": "Z"})
    config = RunConfig(datasets=[DataSource(name="synthetic", count=5), DataSource(name="medqa", path=str(path))])
    with pytest.raises(DataError, match=r"medqa\.jsonl row 4, field 'answer_idx'"):
        validate_sources(config)
    assert [len(s.examples) for s in validate_sources(RunConfig(datasets=[DataSource(name="medqa")]))] == [1272]


def test_an_empty_file_is_an_error_naming_it_before_any_model(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    config = RunConfig(datasets=[DataSource(name="instructions", path=str(tmp_path / "empty.jsonl"))])
    with pytest.raises(DataError, match=r"^empty\.jsonl: has no rows$"):
        validate_sources(config)
    (tmp_path / "empty.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DataError, match=r"^empty\.json: has no rows$"):
        load_medqa_eval(str(tmp_path / "empty.json"))


def test_a_file_with_no_valid_rows_is_an_error_even_when_skipping_bad_rows(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x"}, {"output": "y"}])
    config = RunConfig(datasets=[DataSource(name="instructions", path=str(path))])
    with pytest.raises(DataError, match=r"^bad\.jsonl: no rows left after validation: all 2 rows are invalid"):
        validate_sources(config, on_error="skip")


def test_instructions_default_to_the_carried_chatdoctor_dialogues():
    source = load_instructions()
    # 5,452 rows less the 500 held-out test dialogues and 18 rewordings of them (medsft.data.dialogue_split)
    assert source.origin == "chatdoctor/chatdoctor5k.json" and len(source.examples) == 5452 - 518
    assert len(source.held_out) == 518
    assert load_instructions("bundled:chatdoctor").examples[:3] == source.examples[:3]


def test_pubmedqa_answer_style_trains_on_the_decision_line_alone():
    from medsft.config import DataSource
    from medsft.data.loaders import load_source

    reasoning = load_source(DataSource(name="pubmedqa")).examples[0]["messages"][-1]["content"]
    answer = load_source(DataSource(name="pubmedqa", style="answer")).examples[0]["messages"][-1]["content"]
    assert answer in ("Answer: yes", "Answer: no", "Answer: maybe")
    assert reasoning.endswith("\n\n" + answer) and len(reasoning) > len(answer) + 20
