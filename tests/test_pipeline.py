"""The notebook runner without a model: config checked before papermill, run folders, failures, sweeps, results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest
import yaml

from medsft import pipeline, sweep
from medsft.__main__ import main
from medsft.config import ConfigError, build_config
from medsft.pipeline import (
    STAGES,
    config_from_run,
    open_notebook_run,
    parse_stages,
    run_pipeline,
)
from medsft.run_summary import cross_validation_frame, run_results, seed_frame, summary_frame
from medsft.runs import Run, check_no_training, find_artifact


@pytest.fixture
def no_papermill(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, Path, dict]]:
    """Replace notebook execution with a recorder that writes the output file (as papermill would)."""
    calls: list[tuple[Path, Path, dict]] = []

    def fake(notebook: Path, output: Path, parameters: dict, progress: bool, log_output: bool) -> None:
        calls.append((notebook, output, dict(parameters)))
        output.write_text("{}", encoding="utf-8")

    monkeypatch.setattr(pipeline, "execute", fake)
    monkeypatch.setattr(sweep, "execute", fake)
    return calls


def write_notebook(path: Path, *sources: str) -> Path:
    """A notebook with a `parameters` cell (run_dir) followed by the given code cells."""
    cells = [nbformat.v4.new_code_cell('run_dir = ""', metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_stage_list_is_the_five_notebooks_in_order_and_names_are_checked():
    assert [name for name, _ in STAGES] == ["data", "train", "evaluate", "export", "chat"]
    assert [notebook for _, notebook in STAGES][-2:] == ["04_export.ipynb", "05_chat.ipynb"]
    assert parse_stages("evaluate,data") == ["data", "evaluate"]
    assert parse_stages(None) == [name for name, _ in STAGES]
    with pytest.raises(ConfigError, match="unknown stage 'trian'; choose from data, train, evaluate, export, chat"):
        parse_stages("data,trian")


def test_unknown_param_fails_before_papermill_and_lists_valid_names(tmp_path, capsys, no_papermill):
    code = main(["run", "-p", "output_dir", str(tmp_path), "-p", "lora_rnk", "8"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown field 'lora_rnk'" in err and "did you mean 'lora_r'" in err
    assert "valid fields: model, backend," in err and "eval_max_new_tokens" in err
    assert no_papermill == [] and list(tmp_path.iterdir()) == []


def test_wrong_type_fails_before_papermill_naming_the_field(tmp_path, capsys, no_papermill):
    assert main(["run", "-p", "output_dir", str(tmp_path), "-p", "max_steps", "many"]) == 2
    assert "max_steps: expected an integer, got 'many'" in capsys.readouterr().err
    assert main(["run", "-p", "output_dir", str(tmp_path), "--stages", "data,evaluat"]) == 2
    assert "unknown stage 'evaluat'" in capsys.readouterr().err
    assert no_papermill == [] and list(tmp_path.iterdir()) == []


def test_runner_passes_only_run_dir_and_records_config_timings_and_status(tmp_path, no_papermill, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "-p", "output_dir", "out", "-p", "run_id", "r1", "-p", "lora_r", "8", "--stages", "data,train"])
    assert code == 0
    run_dir = tmp_path / "out" / "r1"
    assert [(nb.name, out.resolve(), params) for nb, out, params in no_papermill] == [
        ("01_data.ipynb", run_dir / "01_data.ipynb", {"run_dir": "out/r1"}),
        ("02_train.ipynb", run_dir / "02_train.ipynb", {"run_dir": "out/r1"}),
    ]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["lora_r"] == 8 and config["run_id"] == "r1"
    assert config["datasets"][0] == {**config["datasets"][0], "name": "pubmedqa", "style": "answer"}  # the recipe
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["stages"] == ["data", "train"]
    assert set(manifest["timings"]["notebooks"]) == {"01_data", "02_train"}
    assert manifest["packages"]["papermill"] and manifest["git"]["commit"] is not None
    assert json.loads((run_dir / "results.json").read_text())["config"]["lora_r"] == 8


def test_a_rerun_never_overwrites_another_runs_folder(tmp_path, capsys, no_papermill):
    args = ["run", "-p", "output_dir", str(tmp_path), "-p", "run_id", "same", "--stages", "data"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "same").iterdir() if p.is_file()}
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "same").iterdir() if p.is_file()} == before
    assert len(no_papermill) == 1


def test_failing_notebook_keeps_the_partial_render_and_reports_the_cell_error(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_data.ipynb", "print('before the failure')", "raise ValueError('bad row 7')", "1")
    write_notebook(notebooks / "02_train.ipynb", "print('never runs')")
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    code = main(["run", "-p", "output_dir", str(tmp_path / "out"), "-p", "run_id", "f", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "stage data failed in cell 4: ValueError: bad row 7" in err
    run_dir = tmp_path / "out" / "f"
    rendered = nbformat.read(run_dir / "01_data.ipynb", as_version=4)
    outputs = [cell.get("outputs", []) for cell in rendered.cells if cell.cell_type == "code"]
    assert any(o.get("text", "").strip() == "before the failure" for cells in outputs for o in cells)
    assert any(o.get("ename") == "ValueError" and o.get("evalue") == "bad row 7" for cells in outputs for o in cells)
    assert not (run_dir / "02_train.ipynb").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"]["stage"] == "data" and manifest["error"]["ename"] == "ValueError"
    assert "01_data" in manifest["timings"]["notebooks"]


def test_a_stage_whose_notebook_does_not_exist_yet_is_skipped_with_a_warning(tmp_path, caplog, no_papermill):
    config = build_config({"output_dir": str(tmp_path), "run_id": "s"})
    with caplog.at_level("WARNING", logger="medsft"):
        run_dir = run_pipeline(config, "data,chat", notebooks_dir=tmp_path / "none")
    assert no_papermill == []
    assert "stage data: " in caplog.text and "does not exist yet; skipped" in caplog.text
    assert json.loads((run_dir / "manifest.json").read_text())["skipped_stages"] == ["data", "chat"]


def test_notebook_opened_by_hand_starts_a_fresh_run_and_the_runners_folder_is_read_back(tmp_path):
    fresh = open_notebook_run("", "gemma3-270m/pipeline-cpu", {"output_dir": str(tmp_path), "max_steps": 3})
    assert fresh.run_dir.parent == tmp_path and fresh.config.max_steps == 3
    again = open_notebook_run("", "gemma3-270m/pipeline-cpu", {"output_dir": str(tmp_path), "max_steps": 3})
    assert again.run_dir != fresh.run_dir  # the same config started twice in one second gets its own folder
    read = open_notebook_run(str(fresh.run_dir), "ignored/recipe", {"max_steps": 99})
    assert read.config == fresh.config and read.config.run_id == fresh.run_dir.name


def test_from_run_keeps_the_earlier_config_and_finds_its_artifacts(tmp_path):
    first = Run.create(build_config({"output_dir": str(tmp_path), "run_id": "a", "lora_r": 4}))
    (first.run_dir / "adapter").mkdir()
    with pytest.raises(ConfigError, match="'lora_r' cannot change when reusing"):
        config_from_run(first.run_dir, {"lora_r": 8})
    config = config_from_run(first.run_dir, {"eval_limit": 3, "run_id": "b"})
    assert (config.lora_r, config.eval_limit) == (4, 3)
    second = run_pipeline(config, "evaluate", from_run=first.run_dir, notebooks_dir=tmp_path / "none")
    assert find_artifact(second, "adapter") == second / ".." / "a" / "adapter"
    assert find_artifact(second, "data") is None
    with pytest.raises(FileNotFoundError, match="from-run .*run folder"):
        run_pipeline(config, "evaluate", from_run=tmp_path / "nowhere", notebooks_dir=tmp_path / "none")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing created for a bad --from-run


def test_training_writes_into_an_opened_run_folder_once(tmp_path):
    run = Run.create(build_config({"output_dir": str(tmp_path), "run_id": "t"}))
    assert check_no_training(run.run_dir, run.config) == run.run_dir
    (run.run_dir / "train_log.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="already holds training outputs"):
        check_no_training(run.run_dir, run.config)


def write_run(folder: Path, run_id: str, lora_r: int, acc: float, export: bool) -> Path:
    run = Run.create(build_config({"output_dir": str(folder), "run_id": run_id, "lora_r": lora_r}))
    losses = [{"step": 0, "eval_loss": 3.0}, {"step": 2, "eval_loss": 2.5}]
    (run.run_dir / "train_results.json").write_text(json.dumps({
        "global_step": 2, "train_loss": 2.0, "eval_losses": losses, "tokens_per_second": 100.0,
        "runtime_seconds": 20.0, "peak_memory_gib": 4.0, "trained_tokens": 900,
    }))  # fmt: skip
    table = [
        {"model": "embedded", "n": 4, "acc": 0.25, "acc_ci": [0.0, 0.75]},
        {"model": f"{run_id}-adapter", "n": 4, "acc": acc, "acc_ci": [0.0, 1.0]},
    ]
    pairs = [{"model": f"{run_id}-adapter", "diff": acc - 0.25, "diff_ci": [-0.5, 0.5], "mcnemar_p": 1.0}]
    (run.run_dir / "eval_results.json").write_text(json.dumps({
        "models": {"base": "embedded", "tuned": f"{run_id}-adapter"},
        "tasks": {"medqa": {"table": table, "pairs": pairs, "breakdown": {}}},
    }))  # fmt: skip
    if export:
        sizes = [{"quantization": "q8_0", "file_mib": 280.5, "ram_gib": 0.6}]
        (run.run_dir / "export.json").write_text(json.dumps({"size_table": sizes}))
    return run.run_dir


def test_run_results_and_summary_read_the_stage_json_with_or_without_export(tmp_path):
    write_run(tmp_path, "x", 8, 0.5, export=True)
    write_run(tmp_path, "y", 16, 0.75, export=False)
    results = run_results(tmp_path / "x")
    assert results["train"]["first_eval_loss"] == 3.0 and results["train"]["final_eval_loss"] == 2.5
    assert results["evaluate"]["medqa"]["tuned"]["acc"] == 0.5 and results["evaluate"]["medqa"]["diff"] == 0.25
    assert results["export"]["size_table"][0]["file_mib"] == 280.5
    frame = summary_frame([results, run_results(tmp_path / "y")])
    assert list(frame["lora_r"]) == [8, 16] and "run_id" in frame and "seed" not in frame
    assert list(frame["medqa_tuned_acc"]) == [0.5, 0.75] and list(frame["medqa_base_acc"]) == [0.25, 0.25]
    assert frame["gguf_q8_0_mib"].iloc[0] == 280.5 and frame["gguf_q8_0_mib"].isna().iloc[1]


def test_run_results_show_the_config_as_the_run_wrote_it(tmp_path):
    """A run from an older medsft lacks fields added since; its summary shows its file, not today's defaults."""
    run_dir = write_run(tmp_path, "old", 8, 0.5, export=False)
    values = yaml.safe_load((run_dir / "config.yaml").read_text())
    del values["select_checkpoint_by"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    assert run_results(run_dir)["config"] == values


def test_sweep_ids_are_deterministic_and_complete_runs_are_skipped(tmp_path, no_papermill, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "stages": "data", "base": {"max_steps": 2},
                                    "grid": {"lora_r": [4, 8], "learning_rate": [1e-4]}}, sort_keys=False))  # fmt: skip
    assert sweep.combination_id({"lora_r": 4, "learning_rate": 1e-4}) == "lora_r-4_learning_rate-0.0001"
    long_id = sweep.combination_id({"datasets": [{"name": "synthetic", "count": 8}]})
    assert long_id == sweep.combination_id({"datasets": [{"name": "synthetic", "count": 8}]}) and "/" not in long_id
    assert sweep.run_sweep(grid, output_dir=str(tmp_path)) == tmp_path / "g"
    made = [out.parent.name for _, out, _ in no_papermill if out.name == "01_data.ipynb"]
    assert made == ["lora_r-4_learning_rate-0.0001", "lora_r-8_learning_rate-0.0001"]
    assert no_papermill[-1][1] == tmp_path / "g" / "10_summary.ipynb"
    assert yaml.safe_load((tmp_path / "g" / made[0] / "config.yaml").read_text())["max_steps"] == 2
    no_papermill.clear()
    sweep.run_sweep(grid, output_dir=str(tmp_path))
    assert [out.name for _, out, _ in no_papermill] == ["10_summary.ipynb"]  # both runs complete: skipped


def test_sweep_checks_every_combination_before_running_any(tmp_path, no_papermill):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"grid": {"lora_r": [8, "wide"]}}))
    with pytest.raises(ConfigError, match="lora_r: expected an integer"):
        sweep.run_sweep(grid, output_dir=str(tmp_path))
    assert no_papermill == []
    grid.write_text(yaml.safe_dump({"grid": {"lora_r": 8}}))
    with pytest.raises(ConfigError, match="'grid' must map config fields to non-empty lists"):
        sweep.read_sweep(grid)


def test_notebook_opened_in_jupyter_writes_runs_under_the_repository_not_notebooks(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(pipeline, "REPO_DIR", tmp_path)
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    monkeypatch.chdir(tmp_path / "notebooks")  # where Jupyter starts the kernel
    run = open_notebook_run("", "gemma3-270m/pipeline-cpu", {"output_dir": "outs"})
    assert run.run_dir.resolve().parent == tmp_path / "outs"


def test_notebooks_opened_by_hand_chain_through_the_latest_run_of_the_same_config(tmp_path):
    """What a Colab user does: 02_train, then 04_export, each with run_dir "". Export starts from the run that
    holds the adapter; a run of another config, or one without an adapter, is never taken."""
    params = {"output_dir": str(tmp_path), "max_steps": 3}
    trained = open_notebook_run("", "gemma3-270m/pipeline-cpu", params, stage="train")
    (trained.run_dir / "adapter").mkdir()
    other = open_notebook_run("", "gemma3-270m/pipeline-cpu", {**params, "lora_r": 4}, stage="train")
    (other.run_dir / "adapter").mkdir()  # newer, but trained with another rank: not this config's adapter
    open_notebook_run("", "gemma3-270m/pipeline-cpu", params)  # newer still, but holds no adapter
    export = open_notebook_run("", "gemma3-270m/pipeline-cpu", {**params, "export_quantizations": ["f16"]}, "export")
    assert export.find_artifact("adapter").resolve() == (trained.run_dir / "adapter").resolve()
    assert not (trained.run_dir / "export.json").exists() and export.run_dir not in (trained.run_dir, other.run_dir)
    chat = open_notebook_run("", "gemma3-270m/pipeline-cpu", params, stage="chat")
    assert chat.find_artifact("gguf") is None  # nothing exported yet: a fresh run, which says so when it looks


def test_seed_table_gives_mean_sd_and_each_seeds_paired_interval_per_setting(tmp_path):
    runs = []
    for seed, lora_r, acc in ((1, 8, 0.5), (2, 8, 0.75), (3, 8, 1.0), (1, 16, 0.25)):
        run_dir = write_run(tmp_path, f"r{lora_r}s{seed}", lora_r, acc, export=False)
        values = yaml.safe_load((run_dir / "config.yaml").read_text()) | {"seed": seed}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        runs.append(run_results(run_dir))
    frame = seed_frame(runs).set_index("group")
    eight = frame.loc['{"lora_r": 8}']
    assert eight["runs"] == 3 and eight["seed"] == [1, 2, 3] and eight["tuned_per_run"] == [0.5, 0.75, 1.0]
    assert eight["tuned_mean"] == pytest.approx(0.75) and eight["tuned_sd"] == pytest.approx(0.25)
    assert eight["vs_base_mean"] == pytest.approx(0.5) and eight["vs_base_ci_per_run"] == [[-0.5, 0.5]] * 3
    sixteen = frame.loc['{"lora_r": 16}']
    assert sixteen["runs"] == 1 and math.isnan(sixteen["tuned_sd"])  # one seed: no spread to report


def test_cross_validation_table_averages_validation_accuracy_over_folds_beside_the_constant(tmp_path):
    runs = []
    for fold, accuracies in enumerate(([0.4, 0.6], [0.5, 0.7])):
        config = {"output_dir": str(tmp_path), "run_id": f"f{fold}", "validation_fraction": 0.5,
                  "validation_fold": fold, "select_checkpoint_by": "pubmedqa_accuracy",
                  "datasets": [{"name": "pubmedqa"}]}  # fmt: skip
        run = Run.create(build_config(config))
        (run.run_dir / "data").mkdir()
        answers = {"train": ["yes", "yes", "no"], "validation": ["yes", "no"] if fold else ["no", "no"]}
        for split, labels in answers.items():
            rows = [{"source": "pubmedqa", "meta": {"answer": label}} for label in labels]
            rows.append({"source": "synthetic", "meta": {"answer": "no"}})  # another source's rows do not count
            (run.run_dir / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        points = [{"step": step, "eval_pubmedqa_accuracy": a} for step, a in zip((0, 10), accuracies, strict=True)]
        (run.run_dir / "train_results.json").write_text(json.dumps({
            "global_step": 10, "train_loss": 1.0, "eval_losses": [], "tokens_per_second": 1.0, "runtime_seconds": 1.0,
            "peak_memory_gib": 1.0, "trained_tokens": 1, "validation_accuracy": points}))  # fmt: skip
        runs.append(run_results(run.run_dir))
    assert runs[1]["validation_constant"] == {"answer": "yes", "n": 2, "acc": 0.5}
    frame = cross_validation_frame(runs)
    assert list(frame["step"]) == [0, 10] and list(frame["val_acc_mean"]) == pytest.approx([0.45, 0.65])
    assert list(frame["val_acc_per_fold"]) == [[0.4, 0.5], [0.6, 0.7]]
    assert frame["constant_acc_mean"].iloc[0] == pytest.approx(0.25)  # always "yes": 0/2 and 1/2 of the folds
