"""Decontamination: planted test items are caught and dropped; stock phrasing and distinct rows are not."""

from __future__ import annotations

import json
import re

import pytest

from medsft.config import LEADERBOARD_TASKS, DataSource, RunConfig
from medsft.data import (
    EvalText,
    OverlapIndex,
    decontaminate,
    generate_synthetic,
    load_instructions,
    load_medical_o1,
    load_medqa,
    load_messages,
    load_pubmedqa,
    synthetic_eval_cases,
)
from medsft.data.decontaminate import NGRAM
from medsft.data.records import make_example
from medsft.tasks import config_eval_texts, load_eval_texts
from medsft.tasks.medqa import load_items as load_medqa_eval
from medsft.tasks.pubmedqa import test_records as pubmedqa_test_records


def chat(question: str, answer: str = "I would need more information.", id: str = "train-1") -> dict:
    return make_example(id, "test", [{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


@pytest.fixture(scope="module")
def eval_texts():
    return load_eval_texts(["medqa", "pubmedqa", "synthetic"], seed=0, synthetic_n=200)


def test_a_planted_medqa_test_question_is_caught(eval_texts):
    item = load_medqa_eval()[3]
    rows = [chat("What is the capital of France?", id="clean"), chat(item.question, id="planted")]
    kept, removed, hits = decontaminate(rows, eval_texts)
    assert [r["id"] for r in kept] == ["clean"]
    assert [(r.id, r.step) for r in removed] == [("planted", "contaminated")]
    assert (hits[0].task, hits[0].eval_id, hits[0].coverage) == ("medqa", item.id, 1.0)


def test_a_lightly_edited_test_question_inside_a_longer_answer_is_still_caught(eval_texts):
    item = next(item for item in load_medqa_eval()[10:] if re.search(r"\b\d+-year-old", item.question))
    edited = re.sub(r"\b(\d+)-year-old", lambda m: f"{int(m.group(1)) + 1}-year-old", item.question, count=1)
    assert edited != item.question
    row = chat("Here is a practice question for you.", f"Consider this: {edited} The answer is {item.choices[0]}.")
    kept, removed, _ = decontaminate([row], eval_texts)
    assert kept == [] and len(removed) == 1


def test_a_planted_pubmedqa_abstract_or_conclusion_is_caught(eval_texts):
    record = pubmedqa_test_records()[0]
    rows = [
        chat(f"Summarise: {record['context']}", id="abstract"),
        chat("Conclusion?", record["long_answer"], id="answer"),
    ]
    _, removed, hits = decontaminate(rows, eval_texts)
    assert [r.id for r in removed] == ["abstract", "answer"]
    assert {(h.task, h.part) for h in hits} == {("pubmedqa", "context"), ("pubmedqa", "long_answer")}


def test_a_planted_synthetic_test_case_is_caught(eval_texts):
    case = synthetic_eval_cases(200, 0)[17]
    _, removed, hits = decontaminate([case.to_example()], eval_texts)
    assert len(removed) == 1 and hits[0].task == "synthetic" and hits[0].eval_id == case.id


def test_stock_exam_phrasing_alone_is_not_contamination(eval_texts):
    row = chat(
        "A 30-year-old woman comes to the clinic with a rash. Which of the following is the most likely diagnosis? "
        "Which of the following is the most appropriate next step in management?"
    )
    kept, removed, _ = decontaminate([row], eval_texts)
    assert len(kept) == 1 and removed == []


def test_self_written_samples_do_not_overlap_the_test_sets(eval_texts):
    loaders = {
        "medical_o1": load_medical_o1, "medqa": load_medqa, "pubmedqa": load_pubmedqa,
        "instructions": load_instructions, "messages": load_messages,
    }  # fmt: skip
    rows = [e for name, load in loaders.items() for e in load(f"sample:{name}").examples]
    _, removed, _ = decontaminate(rows, eval_texts)
    assert removed == []


def test_carried_training_sets_do_not_overlap_the_carried_test_sets(eval_texts):
    rows = [e for load in (load_medqa, load_pubmedqa, load_instructions) for e in load().examples]
    # MedQA dev, PubMedQA outside the test split, ChatDoctor less its 500 held-out dialogues and 18 rewordings
    assert len(rows) == 1272 + 500 + 5452 - 518
    _, removed, _ = decontaminate(rows, eval_texts)
    assert removed == []


def test_training_synthetic_cases_rarely_overlap_the_synthetic_test_set(eval_texts):
    _, removed, hits = decontaminate(generate_synthetic(256, seed=0), eval_texts)
    assert len(removed) <= 0.03 * 256  # only near-copies: same drug pair, indications and wording, another age
    assert {h.task for h in hits} <= {"synthetic"}


def test_texts_shorter_than_the_ngram_are_not_indexed():
    index = OverlapIndex([EvalText("medqa", "q1", "question", "Which drug is used?")])
    assert index.texts == [] and index.matches("Which drug is used? Metformin.") == []
    assert NGRAM == 8


def test_eval_texts_cover_every_task_in_use():
    texts = load_eval_texts(["medqa", "pubmedqa"], seed=0)
    assert {t.task for t in texts} == {"medqa", "pubmedqa"}
    assert {t.part for t in texts if t.task == "pubmedqa"} == {"question", "context", "long_answer"}
    assert len([t for t in texts if t.task == "medqa"]) == 1273  # the whole carried test split
    assert len({t.id for t in texts if t.task == "pubmedqa"}) == 500  # the official test split
    with pytest.raises(ValueError, match="unknown evaluation task"):
        load_eval_texts(["mmlu_virology"])


def test_synthetic_texts_are_the_cases_evaluation_draws_with_the_run_seed_and_count():
    from medsft.tasks import item_limit, load_items

    config = RunConfig(seed=11, data_seed=0, eval_tasks=["synthetic"], eval_limit=50, eval_generate_limit=6)
    texts = config_eval_texts(config)
    evaluated = load_items("synthetic", item_limit(config, "synthetic"), config.seed)
    assert [t.id for t in texts] == [case.id for case in evaluated]
    assert [t.text for t in texts] == [case.prompt for case in evaluated]


def test_every_registered_synthetic_eval_set_is_indexed_under_its_task():
    from medsft.tasks import TASKS

    generated = {name: task.generate for name, task in TASKS.items() if task.generate is not None}
    assert set(generated) == {"synthetic", "synthetic_ood"}
    texts = load_eval_texts(list(generated), seed=1, synthetic_n=4)
    for task, draw in generated.items():
        assert [t.id for t in texts if t.task == task] == [case.id for case in draw(4, 1)]


def test_pipeline_drops_and_counts_a_planted_test_question(gemma_tokenizer, tmp_path):
    from medsft.data.build import build_training_data

    item = load_medqa_eval()[0]
    rows = [{"instruction": "Answer this exam question.", "input": item.question, "output": item.choices[item.answer]}]
    rows += [{"instruction": f"Define term number {i}.", "input": "", "output": f"Definition {i}."} for i in range(5)]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = RunConfig(
        datasets=[DataSource(name="instructions", path=str(path))], validation_fraction=0.0,
        eval_tasks=["medqa", "pubmedqa", "synthetic", "synthetic_ood"],
    )  # fmt: skip
    splits, report = build_training_data(config, gemma_tokenizer)
    assert report.contamination == {"medqa": 1, "pubmedqa": 0, "synthetic": 0, "synthetic_ood": 0}
    reasons = {"medqa": {"question": 1}, "pubmedqa": {}, "synthetic": {}, "synthetic_ood": {}}
    assert report.contamination_reasons == reasons
    assert report.eval_items == {"medqa": 1273, "pubmedqa": 500, "synthetic": 200, "synthetic_ood": 200}
    assert report.to_dict()["contamination_reasons"]["medqa"] == {"question": 1}
    assert report.removed["contaminated"] == 1 and len(splits["train"]) == 5
    assert all(item.question not in m["content"] for row in splits["train"] for m in row["messages"])
    off = RunConfig(datasets=config.datasets, validation_fraction=0.0, decontaminate=False)
    assert RunConfig().eval_tasks == [*LEADERBOARD_TASKS, "synthetic", "synthetic_ood"]  # all nine by default
    assert len(build_training_data(off, gemma_tokenizer)[0]["train"]) == 6
