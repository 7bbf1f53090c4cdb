from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medsft.config import build_config
from medsft.runs import claim_run_dir, make_run_id, open_run_dir, sha256_rows, update_manifest


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
    update_manifest(tmp_path, timings={"data_seconds": 1.5})
    manifest = update_manifest(tmp_path, timings={"train_seconds": 9.0}, data={"rows": 3})
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
