"""The real notebooks through papermill on the embedded Gemma 3 270M, with small settings, and their JSON."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from medsft.__main__ import main
from medsft.config import LEADERBOARD_TASKS

pytestmark = pytest.mark.integration

# A few real steps and a handful of questions: every stage runs for real, in about a minute and a half.
SMALL = {
    "datasets": "[{name: synthetic, count: 24}]",
    "max_steps": "3",
    "eval_every_steps": "3",
    "save_every_steps": "3",
    "select_checkpoint_by": "eval_loss",  # the recipe scores PubMedQA validation rows; these rows are synthetic only
    "eval_limit": "4",
    "eval_generate_limit": "2",
    "eval_max_new_tokens": "16",
}


def small_args(output_dir: Path, **extra: str) -> list[str]:
    pairs = {**SMALL, "output_dir": str(output_dir), **extra}
    return [arg for key, value in pairs.items() for arg in ("-p", key, value)]


def errors_in(notebook: Path) -> list[str]:
    cells = nbformat.read(notebook, as_version=4).cells
    return [o.get("ename", "") for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def outputs_of(notebook: Path) -> list[dict]:
    cells = nbformat.read(notebook, as_version=4).cells
    return [o for c in cells if c.cell_type == "code" for o in c.outputs]


def text_of(output: dict) -> str:
    """What a reader sees of an output without widgets: a stream's text, or the text/plain of a display."""
    text = output.get("text") if output["output_type"] == "stream" else output.get("data", {}).get("text/plain", "")
    return "".join(text or "")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory, embedded_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("pipeline")
    code = main(["run", *small_args(out, run_id="small"), "--stages", "data,train,evaluate", "--no-progress"])
    assert code == 0
    return out / "small"


def test_pipeline_renders_each_notebook_with_only_run_dir_injected(pipeline_run: Path):
    for name in ("01_data", "02_train", "03_evaluate"):
        notebook = nbformat.read(pipeline_run / f"{name}.ipynb", as_version=4)
        assert errors_in(pipeline_run / f"{name}.ipynb") == []
        injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and injected[0].source.strip().startswith("# Parameters\nrun_dir = ")
        assert "HF_TOKEN" not in json.dumps(notebook)
    assert not (pipeline_run / "04_export.ipynb").exists()


@pytest.fixture(scope="module")
def shipped_run(pipeline_run: Path) -> Path:
    """Export (Q8_0 only, a few check items) and chat from the small run, as `medsft run --from-run` does."""
    args = ["run", "--from-run", str(pipeline_run), "--stages", "export,chat", "--no-progress", "-p", "run_id",
            "shipped", "-p", "export_quantizations", "[q8_0]", "-p", "export_check_items", "4"]  # fmt: skip
    assert main(args) == 0
    return pipeline_run.parent / "shipped"


def test_export_and_chat_notebooks_render_the_checked_files_and_the_transcript(shipped_run: Path):
    for name in ("04_export", "05_chat"):
        assert errors_in(shipped_run / f"{name}.ipynb") == []
    export = read(shipped_run / "export.json")
    [gguf] = export["files"]
    verdict = "passed" if gguf["passed"] else "FAILED"
    assert gguf["quantization"] == "q8_0" and Path(gguf["path"]).is_file() and gguf["verification"]["template_matches"]
    # The size table and the check table show the file with the verdict that export.json holds.
    shown = "\n".join(text_of(o) for o in outputs_of(shipped_run / "04_export.ipynb"))
    assert Path(gguf["path"]).name in shown and "merged 16-bit (safetensors)" in shown
    assert re.search(rf"q8_0\s.*\b{verdict}\b", shown)
    chat = read(shipped_run / "chat.json")
    assert chat["gguf"] == Path(gguf["path"]).name and len(chat["turns"]) == 2  # the notebook's two questions
    assert all(turn["answer"] and turn["tokens"] > 0 for turn in chat["turns"]) and chat["disclaimer"]
    transcript = "".join(text_of(o) for o in outputs_of(shipped_run / "05_chat.ipynb") if o.get("name") == "stdout")
    assert [turn["question"] for turn in chat["turns"]] == re.findall(r"^you> (.*)$", transcript, re.M)
    assert chat["turns"][0]["answer"][:40] in transcript and chat["disclaimer"] in transcript
    results = read(shipped_run / "results.json")
    assert results["status"] == "complete" and read(shipped_run / "manifest.json")["from_run"] == "../small"


# tqdm's `{n}/{total} [{elapsed}<...` part, e.g. `Loading weights:   0%|          | 0/236 [00:00<?, ?it/s]`
PROGRESS_BAR = re.compile(r"(\d+)/(\d+) \[\d")


def test_rendered_notebooks_hold_no_warnings_and_no_half_drawn_progress_bars(pipeline_run: Path, shipped_run: Path):
    """What a saved notebook shows, checked on every output of all five stage notebooks:

    - no stderr text holds `Warning` (case-sensitive: a Python warning as printed, `FutureWarning: ...`, never
      medsft's own `[medsft] WARNING` log lines, which report results);
    - no output holds a carriage return: a frame that the next one overdrew live is kept in the file;
    - no output is a widget: without a live kernel it is saved as its first frame (`0%| | 0/236`);
    - every progress bar shown (tqdm's `n/total [elapsed`) is finished: n == total.
    """
    notebooks = [pipeline_run / f"{name}.ipynb" for name in ("01_data", "02_train", "03_evaluate")]
    notebooks += [shipped_run / f"{name}.ipynb" for name in ("04_export", "05_chat")]
    bars = 0
    for notebook in notebooks:
        for output in outputs_of(notebook):
            text = text_of(output)
            where = f"{notebook.name}: {text[:300]!r}"
            assert not (output.get("name") == "stderr" and "Warning" in text), where
            assert "\r" not in text, where
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), where
            for done, total in PROGRESS_BAR.findall(text):
                assert done == total, where
                bars += 1
    assert bars >= 2  # the evaluation's scoring bars (base and tuned) are kept, each as its last frame


def test_pipeline_results_hold_sane_data_training_and_evaluation_numbers(pipeline_run: Path):
    results = read(pipeline_run / "results.json")
    assert results["status"] == "complete" and results["run_id"] == "small"
    data = results["data"]
    assert data["train_rows"] + data["validation_rows"] <= 24 and data["train_rows"] >= 16
    train = results["train"]
    assert train["global_step"] == 3 and train["trained_tokens"] > 1000
    assert math.isfinite(train["train_loss"]) and 0 < train["final_eval_loss"] < train["first_eval_loss"]
    assert train["tokens_per_second"] > 0
    tasks = results["evaluate"]
    views = {f"{task}{suffix}" for task in LEADERBOARD_TASKS for suffix in ("", "_chat")}  # raw and chat views
    assert set(tasks) == {*views, "synthetic", "synthetic_ood"}  # the pipeline recipe's tasks: the nine and more
    for task, entry in tasks.items():
        expected_n = 2 if task.startswith("synthetic") else 4
        assert entry["base"]["model"] == "embedded" and entry["tuned"]["model"] == "small-adapter"
        for role in ("base", "tuned"):
            low, high = entry[role]["acc_ci"]
            assert entry[role]["n"] == expected_n and 0 <= low <= entry[role]["acc"] <= high <= 1
        assert entry["diff"] == pytest.approx(entry["tuned"]["acc"] - entry["base"]["acc"])
    synthetic = read(pipeline_run / "eval_synthetic_small-adapter.json")
    assert all(q["output"] for q in synthetic["questions"]) and synthetic["settings"]["max_new_tokens"] == 16


def test_pipeline_manifest_records_status_timings_and_the_data_trained_on(pipeline_run: Path):
    manifest = read(pipeline_run / "manifest.json")
    assert manifest["status"] == "complete" and manifest["skipped_stages"] == []
    assert set(manifest["timings"]["notebooks"]) == {"01_data", "02_train", "03_evaluate"}
    assert all(seconds > 0 for seconds in manifest["timings"]["notebooks"].values())
    assert manifest["timings"]["train_seconds"] > 0 and manifest["backend"] == "transformers"
    report = read(pipeline_run / "data_report.json")
    # Training read the data notebook's splits: the hashes it recorded are those of the saved files.
    assert manifest["data"]["train_sha256"] == report["train_sha256"]
    assert yaml.safe_load((pipeline_run / "config.yaml").read_text())["max_steps"] == 3


def test_from_run_evaluates_the_earlier_adapter_in_a_new_folder(pipeline_run: Path):
    before = sorted(p.name for p in pipeline_run.iterdir())
    args = ["run", "--from-run", str(pipeline_run), "--stages", "evaluate", "--no-progress"]
    assert main([*args, "-p", "run_id", "again", "-p", "eval_tasks", "[medqa]", "-p", "eval_limit", "3"]) == 0
    again = pipeline_run.parent / "again"
    assert sorted(p.name for p in pipeline_run.iterdir()) == before
    medqa = read(again / "results.json")["evaluate"]["medqa"]
    assert medqa["tuned"]["model"] == "small-adapter" and medqa["tuned"]["n"] == 3
    assert read(again / "manifest.json")["from_run"] == "../small"


def test_sweep_runs_a_two_point_grid_and_the_summary_compares_them(tmp_path: Path, tiny_gemma_dir: Path):
    # The runner, the skip rule and the summary are the same for any model; the tiny Gemma 3 keeps it quick.
    base = {key: yaml.safe_load(value) for key, value in SMALL.items()}
    base |= {
        "model": str(tiny_gemma_dir),
        "max_steps": 2,
        "eval_every_steps": 2,
        "save_every_steps": 2,
        "eval_tasks": ["medqa"],
        "output_dir": str(tmp_path / "out"),
    }
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "ranks", "stages": "data,train,evaluate", "base": base,
                                    "grid": {"lora_r": [4, 8]}}))  # fmt: skip
    assert main(["sweep", str(grid), "--no-progress"]) == 0
    sweep_dir = tmp_path / "out" / "ranks"
    assert errors_in(sweep_dir / "10_summary.ipynb") == []
    summary = read(sweep_dir / "summary.json")
    table = summary["table"]
    assert [row["run_id"] for row in table] == ["lora_r-4", "lora_r-8"] and [row["lora_r"] for row in table] == [4, 8]
    for row, run in zip(table, summary["runs"], strict=True):
        assert row["status"] == "complete" and row["steps"] == 2 and row["train_seconds"] > 0
        assert 0 <= row["medqa_tuned_acc"] <= 1 and row["medqa_base_acc"] == table[0]["medqa_base_acc"]
        assert run["config"]["lora_r"] == row["lora_r"] and run["evaluate"]["medqa"]["tuned"]["n"] == 4
    runs = ("lora_r-4", "lora_r-8")
    assert [read(sweep_dir / r / "adapter" / "adapter_config.json")["r"] for r in runs] == [4, 8]
    manifests = {r: (sweep_dir / r / "manifest.json").read_bytes() for r in runs}
    assert main(["sweep", str(grid), "--no-progress"]) == 0  # complete runs are skipped, the summary re-rendered
    assert {r: (sweep_dir / r / "manifest.json").read_bytes() for r in manifests} == manifests
