from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from medsft.config import build_config
from medsft.export.card import card_text, evaluation_rows
from medsft.run_summary import run_results
from medsft.runs import (
    Run,
    claim_run_dir,
    make_run_id,
    open_run_dir,
    read_json,
    read_json_lines,
    sha256_rows,
    write_json,
)


def test_run_ids_differ_for_different_configs_and_name_the_model():
    first, second = make_run_id(build_config({"lora_r": 8})), make_run_id(build_config({"lora_r": 16}))
    assert first != second and "-embedded-" in first


def test_a_run_never_reuses_another_runs_folder(tmp_path: Path):
    config = build_config({"output_dir": str(tmp_path), "run_id": "mine"})
    run_dir = open_run_dir(claim_run_dir(config), config)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run_id"] == "mine"
    with pytest.raises(FileExistsError, match="resume=True"):
        claim_run_dir(config)
    resumed = build_config({"output_dir": str(tmp_path), "run_id": "mine", "resume": True})
    assert claim_run_dir(resumed) == run_dir


def test_manifest_records_versions_git_hardware_and_merges_sections(tmp_path: Path):
    run = Run(build_config({}), tmp_path)
    run.update_manifest(timings={"data_seconds": 1.5})
    manifest = run.update_manifest(timings={"train_seconds": 9.0}, data={"rows": 3})
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["packages"]["torch"] and manifest["packages"]["transformers"]
    assert manifest["hardware"]["cpu_count"] >= 1 and "cuda" in manifest["hardware"]
    assert len(manifest["git"]["commit"] or "") in (0, 40)
    assert manifest["timings"] == {"data_seconds": 1.5, "train_seconds": 9.0}


def test_data_hash_changes_when_any_row_changes():
    rows = [{"id": "1", "messages": [{"role": "user", "content": "a"}]}]
    changed = [{"id": "1", "messages": [{"role": "user", "content": "b"}]}]
    assert sha256_rows(rows) == sha256_rows(json.loads(json.dumps(rows)))
    assert sha256_rows(rows) != sha256_rows(changed)


def test_a_generated_run_id_gets_a_suffix_and_a_given_one_that_exists_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = build_config({"output_dir": str(tmp_path), "lora_r": 4})
    gmtime = time.gmtime  # the clock stands still, so the two ids collide even on a loaded machine
    monkeypatch.setattr(time, "gmtime", lambda seconds=None: gmtime(1_800_000_000 if seconds is None else seconds))
    first, second = Run.create(config), Run.create(config)  # the same config twice in one second
    assert second.run_dir != first.run_dir and second.run_dir.name.startswith(first.run_dir.name)
    assert second.config.run_id == second.run_dir.name  # the folder's config names its own id
    given = build_config({"output_dir": str(tmp_path), "run_id": "mine"})
    Run.create(given)
    with pytest.raises(FileExistsError, match="never writes into another run's folder"):
        Run.create(given)


def test_training_claims_a_folder_by_the_same_rule(tmp_path: Path):
    generated = build_config({"output_dir": str(tmp_path), "lora_r": 4})
    taken = Run.create(generated).run_dir
    claimed = claim_run_dir(generated)
    assert claimed != taken and not claimed.exists()
    assert open_run_dir(claimed, generated) == claimed
    assert yaml.safe_load((claimed / "config.yaml").read_text())["run_id"] == claimed.name
    assert Run.open(claimed).manifest()["run_id"] == claimed.name


def test_a_run_folder_is_read_once_and_its_config_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made = Run.create(build_config({"output_dir": str(tmp_path), "run_id": "r", "lora_r": 4}))
    reads = []
    read_text = Path.read_text

    def counting(path: Path, *args, **kwargs) -> str:
        reads.extend([path] if path.name == "config.yaml" else [])
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    run = Run.open(made.run_dir)
    assert run.config == made.config and run.config.lora_r == 4
    run_results(run)
    card_text(run.run_dir, {}, config=run.values)
    assert reads == [made.run_dir / "config.yaml"]
    (made.run_dir / "config.yaml").write_text("lora_r: wide\n")
    with pytest.raises(Exception, match="lora_r"):
        Run.open(made.run_dir)


def test_a_run_started_from_another_finds_its_artifacts(tmp_path: Path):
    first = Run.create(build_config({"output_dir": str(tmp_path), "run_id": "a"}))
    (first.path("adapter")).mkdir()
    second = Run.create(build_config({"output_dir": str(tmp_path), "run_id": "b"}), from_run=first.run_dir)
    assert second.manifest()["from_run"] == "../a"
    assert second.find_artifact("adapter") == second.run_dir / ".." / "a" / "adapter"
    assert second.find_artifact("gguf") is None
    with pytest.raises(FileNotFoundError, match="from-run .*run folder"):
        Run.create(build_config({"output_dir": str(tmp_path), "run_id": "c"}), from_run=tmp_path / "nowhere")
    assert not (tmp_path / "c").exists()


def test_json_records_are_never_replaced_unless_asked(tmp_path: Path):
    run = Run.create(build_config({"output_dir": str(tmp_path), "run_id": "j"}))
    write_json(run.path("results.json"), {"acc": 0.5})
    with pytest.raises(FileExistsError, match="results.json already exists"):
        write_json(run.path("results.json"), {"acc": 0.9})
    assert run.read_json("results.json") == {"acc": 0.5}
    write_json(run.path("results.json"), {"acc": 0.9}, overwrite=True)
    assert read_json(run.path("results.json")) == {"acc": 0.9} and run.read_json("missing.json") is None
    with pytest.raises(FileExistsError):
        write_json(run.path("results.json"), {})
    write_json(run.path("results.json"), {"acc": 1.0}, overwrite=True)
    assert run.read_json("results.json") == {"acc": 1.0}


def test_saved_splits_keep_unicode_line_separators_inside_strings(tmp_path: Path):
    """PubMedQA's long answers hold U+2029: `str.splitlines()` cut a saved split there (issue 23's CV runs)."""
    from medsft.stages.common import load_data

    rows = {"train": [{"text": "a\u2029b\u2028c\x85d"}], "validation": [{"text": "e\u2029f"}]}
    (tmp_path / "data").mkdir()
    for split, split_rows in rows.items():
        path = tmp_path / "data" / f"{split}.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in split_rows), encoding="utf-8")
        assert read_json_lines(path) == split_rows
    data = load_data(tmp_path)
    assert data["train"]["text"] == ["a\u2029b\u2028c\x85d"] and data["validation"]["text"] == ["e\u2029f"]


def test_the_card_shows_a_dialogue_comparison_which_has_no_mcnemar_test(tmp_path: Path):
    pair = {"baseline": "embedded", "model": "tuned", "diff": 0.015, "diff_ci": [0.003, 0.029], "mcnemar_p": None}
    table = [{"model": "embedded", "n": 500, "acc": 0.011, "acc_ci": [0.004, 0.019]}]
    (tmp_path / "compare_dialogue.json").write_text(json.dumps({"task": "dialogue", "table": table, "pairs": [pair]}))
    (tmp_path / "compare_medqa.json").write_text(
        json.dumps({"task": "medqa", "table": table, "pairs": [{**pair, "mcnemar_p": 0.0123}]})
    )
    rows, _ = evaluation_rows(tmp_path)
    assert rows[1] == "| dialogue | tuned − embedded | | +0.015 | [+0.003, +0.029] |"
    assert rows[3] == "| medqa | tuned − embedded | | +0.015 | [+0.003, +0.029] (McNemar p=0.0123) |"
