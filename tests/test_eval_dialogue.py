"""The dialogue task: a fixed 500-dialogue ChatDoctor split that training never sees (near-duplicates
included), the key-point rule on real references, ROUGE through `evaluate` offline, and `medsft eval`."""

from __future__ import annotations

import json
import random
import socket

import pytest

from medsft.__main__ import main
from medsft.config import DataSource
from medsft.data.dialogue_split import (
    DIALOGUE_TEST_SIZE,
    HELD_OUT_STEP,
    ContentWords,
    NearDuplicateIndex,
    dialogue_split,
    exclude_held_out,
    load_dialogue_eval,
    read_dialogues,
)
from medsft.data.loaders import load_source
from medsft.data.records import make_example
from medsft.evaluate import keypoints
from medsft.evaluate.compare import compare_results
from medsft.evaluate.dialogue import key_points, rouge_scores, score_dialogue_replies, summarize_dialogue
from medsft.evaluate.results import TaskResult

# The split's first five rows (1-based in chatdoctor5k.json) for seed 0: a change to the rule or the seed
# changes the test set, which must be a deliberate, visible decision.
FIRST_ROWS = [row.row for row in load_dialogue_eval(5)]


def chat(user: str, reply: str = "reply", number: int = 1) -> dict:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return make_example(f"instructions:mine:{number}", "instructions", messages)


# The split ----------------------------------------------------------------------------------------------


def test_the_split_is_500_dialogues_fixed_by_the_seed():
    test = load_dialogue_eval()
    assert len(test) == DIALOGUE_TEST_SIZE == 500
    assert len({item.id for item in test}) == 500
    assert [item.row for item in load_dialogue_eval(5)] == FIRST_ROWS
    order = list(range(5452))
    random.Random(0).shuffle(order)
    assert FIRST_ROWS[0] == order[0] + 1  # the first drawn row is the seed's first shuffled row


def test_no_two_held_out_patient_messages_are_near_duplicates():
    split = dialogue_split()
    index = NearDuplicateIndex(split.index.content)
    for item in split.test:
        assert index.match(item.patient) is None, item.id
        index.add(item.id, item.patient)


def test_training_from_the_carried_file_excludes_the_split_and_its_near_duplicates():
    source = load_source(DataSource(name="instructions"))
    held_out = {item.patient for item in load_dialogue_eval()}
    assert len(source.examples) + len(source.held_out) == 5452
    assert not held_out & {m["content"].split("\n\n", 1)[1] for ex in source.examples for m in ex["messages"]
                           if m["role"] == "user"}  # fmt: skip
    # beyond the 500 themselves, other rows repeating them (reworded or verbatim) are left out too
    assert len(source.held_out) > DIALOGUE_TEST_SIZE
    assert {row.step for row in source.held_out} == {HELD_OUT_STEP}
    index = dialogue_split().index
    assert all(index.match(ex["messages"][0]["content"]) is None for ex in source.examples)


def test_a_reworded_copy_of_a_held_out_message_is_excluded_and_an_unrelated_one_kept():
    item = next(i for i in load_dialogue_eval() if len(dialogue_split().index.content(i.patient)) >= 3)
    reworded = "Hi doctor, " + item.patient.replace("?", ".").upper() + " Please help."
    kept, removed = exclude_held_out([chat(reworded, number=1), chat("My cat sneezes at the moon.", number=2)])
    assert [row["id"] for row in kept] == ["instructions:mine:2"]
    assert removed[0].step == HELD_OUT_STEP and item.id in removed[0].reason


def test_near_duplicates_are_judged_on_content_words_not_the_template():
    content = ContentWords(["Doctor, I have been experiencing X, what could be the problem?"] * 20 + ["leg"])
    index = NearDuplicateIndex(content)
    index.add("a", "Doctor, I've been experiencing leg cramps and spasms, what could be the problem?")
    assert index.match("Doctor, I've been having leg cramps and spasms, what could this be?") is not None
    assert index.match("Doctor, I have been experiencing a constant headache, what could be the problem?") is None


def test_the_data_report_documents_the_split(gemma_tokenizer):
    from medsft.config import load_config
    from medsft.data.build import build_training_data

    config = load_config(overrides={"datasets": [{"name": "instructions", "count": 40}], "eval_tasks": ["dialogue"],
                                    "max_seq_length": 512, "chat_template": "gemma-3"})  # fmt: skip
    _, report = build_training_data(config, gemma_tokenizer)
    data = report.to_dict()
    assert data["held_out_dialogues"]["test"] == 500 and data["held_out_dialogues"]["seed"] == 0
    assert data["removed"][HELD_OUT_STEP] == len(dialogue_split().test) + 18
    assert "held-out ChatDoctor test split: 500 dialogues" in report.summary()


# Key points ---------------------------------------------------------------------------------------------


def test_key_points_of_real_references():
    rows = {row.row: row for row in read_dialogues()}
    [panic] = key_points([rows[1]])  # "...you may be suffering from panic disorder. ... psychotherapy ..."
    assert panic.condition == "panic disorder"
    assert {"psychotherapy", "mental health counseling", "electrocardiogram", "depression screen",
            "toxicology screen"} <= set(panic.items)  # fmt: skip
    [polyp] = key_points([rows[2]])
    assert polyp.condition == "vocal cord polyp"
    assert "laryngoscopy" in " ".join(polyp.items)


def test_a_reply_contains_a_key_point_when_all_its_content_words_appear():
    points = keypoints.KeyPoints("panic disorder", ("psychotherapy", "toxicology screen"))
    assert keypoints.hits("Sounds like a panic disorder; try psychotherapy.", points) == [True, True, False]
    assert keypoints.hits("Panic. Disorders run in families; screens help.", points) == [True, False, False]


def test_condition_groups_follow_the_documented_keywords():
    assert keypoints.condition_group("lung cancer") == "cancer and tumours"
    assert keypoints.condition_group("panic disorder") == "mental and behavioural"
    assert keypoints.condition_group(None) == "no condition named"


# ROUGE and scoring --------------------------------------------------------------------------------------


def test_rouge_goes_through_evaluate_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("ROUGE tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    from medsft.evaluate.dialogue import load_rouge

    load_rouge.cache_clear()  # load it here, with the network refused
    scores = rouge_scores(["the cat sat", "a dog"], ["the cat sat", "the cat sat"])
    assert scores["rouge1"] == [1.0, 0.0] and scores["rougeL"][0] == 1.0
    assert abs(rouge_scores(["the cat sat down"], ["the cat sat"])["rouge2"][0] - 0.8) < 1e-9
    assert type(load_rouge()).__name__ == "Rouge"


def test_scores_summary_and_paired_difference_on_real_references():
    items = load_dialogue_eval(20)
    base = score_dialogue_replies(items, ["I do not know."] * 20)
    tuned = score_dialogue_replies(items, [item.reference for item in items])
    assert all(r["rouge1"] == 1.0 for r in tuned) and all(r["rouge1"] < 0.5 for r in base)
    assert all(r["key_point_hit_rate"] in (None, 1.0) for r in tuned)
    results = [
        TaskResult("dialogue", name, "dialogue", 20, summarize_dialogue(records)["overall"], records,
                   breakdown=summarize_dialogue(records)["groups"])
        for name, records in (("base", base), ("tuned", tuned))
    ]  # fmt: skip
    comparison = compare_results(results, seed=0)
    pair = comparison.pairs[0]
    assert pair["rouge1_diff"] > 0.5 and pair["rouge1_diff_ci"][0] > 0
    assert comparison.table[1]["acc"] == comparison.table[1]["key_point_hit_rate"] == 1.0
    low, high = comparison.table[0]["rougeL_ci"]
    assert low <= comparison.table[0]["rougeL"] <= high


# The CLI ------------------------------------------------------------------------------------------------


def test_medsft_eval_task_dialogue_on_the_tiny_model(capsys, tmp_path, tiny_gemma_dir):
    out = tmp_path / "dialogue.json"
    code = main(["eval", "--model", str(tiny_gemma_dir), "--task", "dialogue", "--limit", "3",
                 "--max-new-tokens", "8", "--out", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert result["task"] == "dialogue" and result["n"] == 3
    assert [q["id"] for q in result["questions"]] == [item.id for item in load_dialogue_eval(3)]
    assert result["settings"]["max_new_tokens"] == 8 and result["settings"]["do_sample"] is False
    assert {"rouge1", "rouge2", "rougeL", "key_point_hit_rate"} <= set(result["metrics"])
    assert result["data"]["files"][0]["path"].endswith("chatdoctor5k.json")
    assert "key-point hit rate" in capsys.readouterr().out


def test_medsft_eval_task_dialogue_refuses_a_data_file(capsys, tmp_path):
    code = main(["eval", "--model", "embedded", "--task", "dialogue", "--data", "x.json", "--out",
                 str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2
    assert "fixed held-out split" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["dialogue"])
def test_decontamination_indexes_the_held_out_dialogues(task):
    from medsft.tasks import load_eval_texts

    texts = load_eval_texts([task])
    assert len({t.id for t in texts}) == 500 and {t.part for t in texts} == {"patient", "reference"}


def test_the_notebook_tables_show_every_metric_group_and_reply():
    from medsft.stages import dialogue as dialogue_stage

    items = load_dialogue_eval(12)
    results = []
    for name, replies in (("base", ["No idea."] * 12), ("tuned", [item.reference for item in items])):
        records = score_dialogue_replies(items, replies)
        summary = summarize_dialogue(records)
        results.append(TaskResult("dialogue", name, "dialogue", 12, summary["overall"], records,
                                  breakdown=summary["groups"]))  # fmt: skip
    comparison = compare_results(results)
    table = dialogue_stage.dialogue_frame(comparison)
    assert list(table["model"]) == ["base", "tuned", "tuned − base"]
    assert {"ROUGE-1", "ROUGE-2", "ROUGE-L", "key-point hit rate"} <= set(table.columns)
    groups = dialogue_stage.dialogue_groups_frame(comparison)
    assert groups["dialogues"].sum() == 12
    examples = dialogue_stage.key_point_examples(4)
    assert list(examples["id"]) == [item.id for item in items[:4]]
    side = dialogue_stage.dialogue_side_by_side(comparison, n=3)
    assert len(side) == 3 and side.loc[0, "tuned"].startswith(items[0].reference)


def test_a_bad_dialogue_row_names_the_file_row_and_field(tmp_path):
    from medsft.data.records import DataError

    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"instruction": "Answer.", "output": "Rest."}, {"instruction": "Answer."}]))
    with pytest.raises(DataError) as caught:
        read_dialogues(path)
    assert (caught.value.origin, caught.value.row, caught.value.field) == ("mine.json", 2, "output")
