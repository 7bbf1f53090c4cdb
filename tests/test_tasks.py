"""The task registry: every task's items, prompts (plain, k-shot, chat), choices and gold equal lm-eval 0.4.13's
own task built on the carried files' raw rows; bad rows fail with file, row and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsft.config import EVAL_SUITES, EVAL_TASKS, LEADERBOARD_TASKS, build_config
from medsft.data.records import DataError
from medsft.evaluate.harness import raw_rows, write_local_task
from medsft.tasks import SUITES, TASKS, expand_tasks, get_task, load_items, medmcqa, mmlu

COUNTS = {
    "medqa": 1273, "pubmedqa": 500, "medmcqa": 4183, "mmlu_anatomy": 135, "mmlu_clinical_knowledge": 265,
    "mmlu_college_biology": 144, "mmlu_college_medicine": 173, "mmlu_medical_genetics": 100,
    "mmlu_professional_medicine": 272,
}  # fmt: skip


def test_the_registry_and_the_config_name_the_same_tasks():
    assert tuple(TASKS) == EVAL_TASKS and SUITES is EVAL_SUITES
    assert expand_tasks(["suite"]) == list(LEADERBOARD_TASKS) == list(COUNTS)
    assert build_config({"eval_tasks": ["mmlu", "medqa"]}).eval_tasks[-1] == "medqa"
    assert len(build_config({"eval_tasks": ["suite", "medqa"]}).eval_tasks) == 9


def test_each_task_reads_its_whole_carried_split():
    for task, count in COUNTS.items():
        assert len(load_items(task)) == count, task
    subjects = {item.subject for item in load_items("medmcqa")}
    assert len(subjects) == 21 and "Anatomy" in subjects
    assert [item.answer for item in load_items("medmcqa")].count(0) == 1348  # gold A 1,348 (always-A 32.2%)


def lm_eval_task(name: str, items: list, folder: Path):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager, get_task_dict

    local = write_local_task(name, raw_rows(name, items), folder)
    return get_task_dict([local], TaskManager(include_path=str(folder), include_defaults=False))[local]


def fake_template(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Stands in for a tokenizer's chat template: shows exactly which messages lm-eval would render."""
    return json.dumps(messages)


@pytest.mark.parametrize("name", list(COUNTS))
def test_every_prompt_and_gold_equals_lm_evals_own_task_on_the_raw_rows(name, tmp_path):
    """Zero-shot (and MMLU 5-shot) on every item; the chat view's messages on the first 50."""
    items = load_items(name)
    task = lm_eval_task(name, items, tmp_path)
    spec = get_task(name)
    docs = list(task.test_docs())
    assert len(docs) == len(items) == COUNTS[name]
    assert task.config.target_delimiter == " " and task.config.fewshot_delimiter == "\n\n"
    for k in (0, 5) if spec.fewshot else (0,):
        for doc, item in zip(docs, items, strict=True):
            assert spec.context(item, k) == task.fewshot_context(doc, k), (item.id, k)
    for doc, item in zip(docs[:50], items[:50], strict=True):
        chat = task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=fake_template)
        assert json.dumps(spec.messages(item)) == chat, item.id
        target = task.doc_to_target(doc)
        assert item.answer == (target if isinstance(target, int) else spec.choices(item).index(target)), item.id
        assert spec.choices(item) == task.doc_to_choice(doc)
    assert spec.lm_eval_version == str(task.config.metadata.get("version", "Yaml"))


def test_mmlu_description_names_the_subject_and_few_shot_takes_the_first_dev_rows():
    item = load_items("mmlu_clinical_knowledge", 1)[0]
    spec = get_task("mmlu_clinical_knowledge")
    assert spec.context(item).startswith(
        "The following are multiple choice questions (with answers) about clinical knowledge.\n\n"
    )
    dev = mmlu.read_split("clinical_knowledge", "dev")
    assert spec.shots(item, 2) == dev[:2]
    with pytest.raises(ValueError, match="num_fewshot must be 0-5"):
        spec.context(item, 6)
    with pytest.raises(ValueError, match="zero-shot only"):
        get_task("medmcqa").context(load_items("medmcqa", 1)[0], 1)


def test_a_bad_medmcqa_row_names_the_file_row_and_field(tmp_path):
    good = {"question": "Q?", "options": "A. a\nB. b\nC. c\nD. d", "answer": "B. b"}
    path = tmp_path / "Anatomy.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "answer": "B. x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Anatomy.jsonl row 2, field 'answer'|Anatomy.jsonl row 2.*answer"):
        medmcqa.load_items(str(path))
    path.write_text(json.dumps({**good, "options": "A. a\nB. b"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="options"):
        medmcqa.load_items(str(tmp_path))


def test_a_bad_mmlu_row_names_the_file_row_and_field(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_text('Q1,a,b,c,d,A\n"Q2, with a comma",a,b,c,d,E\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"anatomy_test.csv row 2.*answer"):
        get_task("mmlu_anatomy").read(str(path), "test", None)
    path.write_text("Q1,a,b,c,A\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected 6 fields"):
        get_task("mmlu_anatomy").read(str(path), "test", None)
