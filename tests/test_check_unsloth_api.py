"""scripts/check_unsloth_api.py: what it reads from medsft (runs anywhere), and the whole check where Unsloth is."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from script_loader import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_unsloth_api.py"


@pytest.fixture(scope="module")
def check() -> ModuleType:
    return load_script("scripts/check_unsloth_api.py")  # imports nothing from Unsloth until main() runs


def test_every_recipe_model_has_a_config_offline(check: ModuleType) -> None:
    models = check.recipe_models()
    assert {"embedded", "unsloth/gemma-3-12b-it", "unsloth/gemma-4-E2B-it", "unsloth/Llama-3.2-1B-Instruct"} <= set(
        models
    )
    assert all(m in check.KNOWN_HUB_CONFIGS for m in models if m != "embedded"), "add new recipe models to the table"


def test_reads_the_keywords_medsft_passes(check: ModuleType) -> None:
    from medsft.export.save import save_ggufs
    from medsft.train.backend import UnslothBackend

    loading, _ = check.built_keywords(UnslothBackend.load_arguments)
    assert loading == {"model_name", "max_seq_length", "load_in_4bit", "dtype", "token"}
    common, multimodal = check.built_keywords(UnslothBackend.lora_arguments)
    assert {"r", "lora_alpha", "target_modules", "random_state"} <= common
    assert "finetune_vision_layers" in multimodal and "finetune_vision_layers" not in common
    assert check.call_keywords(UnslothBackend.get_chat_template, "get_chat_template") == {"chat_template"}
    assert check.call_keywords(save_ggufs, "save_pretrained_gguf") == {"quantization_method"}
    assert check.call_keywords(UnslothBackend.save_merged, "save_pretrained_merged") == {"save_method"}


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="Unsloth is not installed here")
def test_medsft_matches_the_installed_unsloth() -> None:
    env = {**os.environ, "UNSLOTH_ALLOW_CPU": "1"}
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout
