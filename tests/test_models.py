from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from medsft import models


def test_hub_ids_and_local_folders_resolve(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model("unsloth/gemma-3-1b-it") == models.ModelSource(
        "unsloth/gemma-3-1b-it", "hub", "unsloth/gemma-3-1b-it"
    )
    assert models.resolve_model(str(tmp_path)).kind == "local"


@pytest.mark.parametrize("spec", ["./missing-model", "/nowhere/model", "model.gguf"])
def test_missing_local_paths_say_so(spec: str):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.resolve_model(spec)


def test_folder_without_config_is_rejected(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        models.resolve_model(str(tmp_path))


def test_a_spec_that_is_no_hub_id_is_rejected():
    with pytest.raises(ValueError, match="neither 'embedded'"):
        models.resolve_model("gemma")


def _slow_convert(out_dir: Path) -> None:
    # Records each conversion so the test can count them across processes.
    with open(out_dir.parent / "conversions.log", "a") as log:
        log.write("converted\n")
    time.sleep(1.0)
    (out_dir / "config.json").write_text(json.dumps({"ok": True}))


def _ensure_in_child(cache: str) -> str:
    import os

    os.environ["MEDSFT_CACHE"] = cache
    models.convert_embedded_gguf = _slow_convert  # the cache mechanics are under test, not the converter
    return str(models.ensure_embedded_checkpoint())


def test_two_processes_starting_at_once_convert_once(tmp_path: Path):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        paths = pool.map(_ensure_in_child, [str(tmp_path)] * 2)
    assert paths[0] == paths[1] == str(tmp_path / "models" / models.EMBEDDED_NAME)
    assert (tmp_path / "models" / "conversions.log").read_text().count("converted") == 1
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(f".{models.EMBEDDED_NAME}-")] == []


def test_failed_conversion_leaves_nothing_under_the_final_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setenv("MEDSFT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "convert_embedded_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        models.ensure_embedded_checkpoint()
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_embedded_checkpoint_is_a_plain_checkpoint_with_the_chat_template(embedded_dir: Path):
    config = json.loads((embedded_dir / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["vocab_size"] == 262144
    assert "quantization_config" not in config
    assert (embedded_dir / "model.safetensors").stat().st_size > 500_000_000
    assert "<start_of_turn>" in (embedded_dir / "chat_template.jinja").read_text()
    generation = json.loads((embedded_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]  # <eos> and <end_of_turn> both stop a chat reply


def test_tiny_model_keeps_vocabulary_and_architecture(embedded_dir: Path):
    tiny = models.tiny_random_model(str(embedded_dir), layers=2, hidden=64)
    assert type(tiny).__name__ == "Gemma3ForCausalLM"
    assert tiny.config.vocab_size == 262144 and tiny.config.num_hidden_layers == 2
    assert len(tiny.config.layer_types) == 2
