"""`medsft eval`: bad input is one line `medsft: ...` with exit code 2 before any model loads; a good run
writes per-question predictions, accuracy with n and a Wilson interval, and the data file with its sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medsft.__main__ import main
from medsft.config import LEADERBOARD_TASKS
from medsft.data import sample_path
from medsft.data.loaders import BENCHMARKS_DIR


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything tries to load a model."""
    from medsft.evaluate import gguf_scorer, transformers_scorer

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(transformers_scorer.HFScorer, "from_spec", classmethod(refuse))
    monkeypatch.setattr(gguf_scorer, "load_gguf", refuse)


def run_eval(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(["eval", *args])
    except SystemExit as exit:  # argparse's own errors (an unknown option) exit from inside parsing
        code = exit.code
    err = capsys.readouterr().err.strip()
    return code, err


def broken_medqa(tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in sample_path("medqa_test").read_text(encoding="utf-8").splitlines()][:4]
    del rows[2]["answer_idx"]
    path = tmp_path / "my_medqa.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_unknown_task_is_a_one_line_error(capsys, tmp_path, no_model_load):
    code, err = run_eval(capsys, "--model", "embedded", "--task", "mmlu_virology", "--out", str(tmp_path / "r.json"))
    assert code == 2
    assert err.startswith("medsft: unknown evaluation task 'mmlu_virology'; choose one of medqa, pubmedqa, medmcqa,")
    assert err.endswith("synthetic, synthetic_ood, dialogue, suite, mmlu")


def test_missing_data_file_is_a_one_line_error_naming_it(capsys, tmp_path, no_model_load):
    missing = tmp_path / "missing.jsonl"
    code, err = run_eval(capsys, "--model", "embedded", "--task", "medqa", "--data", str(missing), "--out",
                         str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2
    assert err == f"medsft: DataError: {missing}: file not found"


def test_unreadable_data_file_is_a_one_line_error_naming_it(capsys, tmp_path, no_model_load):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"question": "h\xe9moglobin"}]'.encode("latin-1"))
    code, err = run_eval(capsys, "--model", "embedded", "--task", "medqa", "--data", str(path), "--out",
                         str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2
    assert err.startswith("medsft: DataError: latin1.json: not valid UTF-8 (byte 0xe9 on line 1)")
    assert "\n" not in err


def test_a_row_missing_a_field_names_file_row_and_field(capsys, tmp_path, no_model_load):
    code, err = run_eval(capsys, "--model", "embedded", "--task", "medqa", "--data", str(broken_medqa(tmp_path)),
                         "--out", str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2
    assert err == "medsft: DataError: my_medqa.jsonl row 3, field 'answer_idx': missing"


def test_an_existing_out_file_is_not_replaced_without_overwrite(capsys, tmp_path, no_model_load):
    out = tmp_path / "r.json"
    out.write_text("{}", encoding="utf-8")
    code, err = run_eval(capsys, "--model", "embedded", "--task", "medqa", "--out", str(out))
    assert code == 2
    assert err == f"medsft: --out {out} already exists; pass --overwrite to replace it"
    assert out.read_text(encoding="utf-8") == "{}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "medqa", "--limit", "0"], "medsft: --limit: expected a positive integer, got 0"),
        (["--task", "medqa", "--mode", "sample"], "medsft: --mode: unknown mode 'sample'; choose one of "
                                                   "loglikelihood, generate"),
        (["--task", "pubmedqa", "--split", "dev"], "medsft: pubmedqa: no split 'dev'; use test"),
        (["--task", "synthetic", "--data", "x.jsonl"], "medsft: synthetic: the cases are generated from the seed; "
                                                        "it reads no data file"),
        (["--task", "medqa", "--bogus"], "medsft: unrecognized arguments: --bogus"),
    ],
)  # fmt: skip
def test_other_bad_arguments_are_one_line_errors(capsys, tmp_path, no_model_load, args, message):
    code, err = run_eval(capsys, "--model", "embedded", *args, "--out", str(tmp_path / "r.json"))
    assert code == 2
    assert err == message


def test_a_missing_gguf_or_model_folder_fails_before_loading(capsys, tmp_path, no_model_load):
    code, err = run_eval(capsys, "--model", str(tmp_path / "m.gguf"), "--task", "medqa", "--out",
                         str(tmp_path / "r.json"))  # fmt: skip
    assert (code, err) == (2, f"medsft: --model {tmp_path / 'm.gguf'}: GGUF file not found")
    code, err = run_eval(capsys, "--model", str(tmp_path / "nothing"), "--task", "medqa", "--out",
                         str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2 and err.startswith("medsft: --model: model path")


def test_a_run_on_the_tiny_model_writes_predictions_accuracy_interval_and_data_hash(capsys, tmp_path, tiny_gemma_dir):
    out = tmp_path / "result.json"
    code = main(["eval", "--model", str(tiny_gemma_dir), "--task", "medqa", "--limit", "3", "--out", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["task"], data["mode"], data["n"]) == ("medqa", "loglikelihood", 3)
    assert [q["id"] for q in data["questions"]] == ["medqa:test:1", "medqa:test:2", "medqa:test:3"]
    assert all(len(q["scores"]) == 4 and q["pred"] in range(4) for q in data["questions"])  # one LL per choice
    low, high = data["acc_ci"]
    assert 0 <= low <= data["acc"] <= high <= 1 and high > 0
    test_file = BENCHMARKS_DIR / "medqa" / "test.jsonl"
    assert data["data"]["split"] == "test"
    assert data["data"]["files"] == [
        {"path": str(test_file.resolve()), "sha256": hashlib.sha256(test_file.read_bytes()).hexdigest()}
    ]
    # lm-eval's table (acc and acc_norm rows), the baselines, then one summary line.
    assert printed[0] == "|Tasks|Model|Version|Filter|n-shot|Metric| |Value| |Stderr|n|95% CI|"
    assert printed[2].startswith("|medqa|") and "|Yaml|none|0|acc|↑|" in printed[2] and printed[3].count("acc_norm")
    assert any("best constant answer" in line for line in printed)
    baselines = data["baselines"]
    assert baselines["constant"]["answer"] in "ABCD" and sum(baselines["distribution"]["gold"].values()) == 3
    assert "n=3" in printed[-1] and str(out) in printed[-1]
    # The same command again is refused rather than overwriting the result.
    assert main(["eval", "--model", str(tiny_gemma_dir), "--task", "medqa", "--limit", "3", "--out", str(out)]) == 2


def test_a_suite_run_prints_lm_evals_table_the_disciplines_and_the_baselines(capsys, tmp_path, tiny_gemma_dir):
    out = tmp_path / "suite.json"
    code = main(["eval", "--model", str(tiny_gemma_dir), "--task", "suite", "--limit", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert list(data["tasks"]) == list(LEADERBOARD_TASKS)
    assert all(task["n"] == 2 and task["baselines"]["constant"] for task in data["tasks"].values())
    assert printed.count("|acc|↑|") == 9 and printed.count("|acc_norm|↑|") == 9
    assert "Per discipline:" in printed and "|mmlu_anatomy|anatomy|" in printed and "|medmcqa|Anaesthesia|" in printed
    assert printed.count("best constant answer") == 9


def test_few_shot_is_refused_for_a_task_without_a_few_shot_split(capsys, tmp_path):
    code, err = run_eval(capsys, "--model", "embedded", "--task", "medqa", "--num-fewshot", "2", "--out",
                         str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2 and err == "medsft: --num-fewshot 2: medqa has no few-shot split (zero-shot only)"
    code, err = run_eval(capsys, "--model", "embedded", "--task", "mmlu", "--num-fewshot", "6", "--out",
                         str(tmp_path / "r.json"))  # fmt: skip
    assert code == 2 and err == "medsft: --num-fewshot 6: mmlu_anatomy has 5 few-shot rows"
