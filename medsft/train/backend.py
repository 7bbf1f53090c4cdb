"""One interface shaped like Unsloth's FastLanguageModel, with two real implementations.

- `UnslothBackend`: Unsloth's `FastLanguageModel`, or `FastModel` for multimodal checkpoints as Unsloth's own
  notebooks do (4-bit QLoRA, its gradient checkpointing, its merged and GGUF savers). Chosen when CUDA is
  available, `unsloth` imports and training runs as one process (not several under `accelerate launch`).
- `TransformersBackend`: transformers + peft with the same calls. Chosen otherwise (CPU laptops, CI), and
  what the tests and the CPU demo run.

`select_backend` logs which one it chose and why. Unsloth patches transformers, trl and peft when it is
imported, so it must be imported before them: `select_backend` imports it first (and warns when a notebook
imported transformers earlier), and nothing in `medsft` imports transformers at package import time.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.config import RunConfig
from medsft.models import ModelSource, resolve_model
from medsft.train import distributed

log = logging.getLogger("medsft")


class BackendError(RuntimeError):
    """The asked-for backend cannot run here; the message says why and what to do."""


def cuda_available() -> bool:
    import torch  # torch may be imported before unsloth; only transformers/trl/peft may not

    return torch.cuda.is_available()


def unsloth_status(has_cuda: bool) -> tuple[bool, str]:
    """Whether Unsloth can run here, and the reason in words."""
    if not has_cuda:
        return False, "no CUDA device (Unsloth cannot load a model without an accelerator)"
    processes = distributed.launched_processes()
    if processes > 1:  # not even imported: its patches would also change the transformers path that does train
        return False, f"launched as {processes} processes, and medsft's Unsloth path trains on one GPU only"
    if importlib.util.find_spec("unsloth") is None:
        return False, "CUDA is available but unsloth is not installed (pip install -r requirements.txt)"
    late = [name for name in ("transformers", "trl", "peft") if name in sys.modules and "unsloth" not in sys.modules]
    if late:
        log.warning("%s imported before unsloth; Unsloth's patches may be incomplete. Import medsft first.", late)
    point_unsloth_at_toolchain()
    try:
        import unsloth  # noqa: F401
    except Exception as err:  # unsloth raises many kinds of errors on broken set-ups; report any of them
        return False, f"CUDA is available but `import unsloth` failed: {err}"
    return True, "CUDA is available and unsloth imports"


def point_unsloth_at_toolchain() -> None:
    """Unsloth reads its llama.cpp settings at import: point it at the cached offline toolchain, if built,
    so `save_pretrained_gguf` never tries to clone llama.cpp. Settings the user made are kept."""
    from medsft.export.llamacpp_toolchain import ToolchainError, find_toolchain

    try:
        toolchain = find_toolchain()
    except ToolchainError as err:
        log.info("GGUF export through Unsloth will not work offline: %s", err)
        return
    for key, value in toolchain.unsloth_environment().items():
        os.environ.setdefault(key, value)


@functools.cache
def import_unsloth_if_usable() -> tuple[bool, str]:
    """Import Unsloth now if this machine can use it: call before importing transformers, TRL or peft."""
    return unsloth_status(cuda_available())


def select_backend(preference: str = "auto") -> Backend:
    """Pick the backend for `preference` in auto|unsloth|transformers and log the reason."""
    if preference == "transformers":
        backend: Backend = TransformersBackend("asked for backend=transformers")
    else:
        ok, reason = import_unsloth_if_usable()
        if ok:
            backend = UnslothBackend(reason)
        elif preference == "unsloth":
            raise BackendError(f"backend=unsloth was asked for, but {reason}; use backend=auto or transformers")
        else:
            backend = TransformersBackend(reason)
    log.info("backend: %s (%s)", backend.name, backend.reason)
    return backend


# Checkpoints whose config carries a vision (or audio) tower: Unsloth's notebooks load these with FastModel.
# Names are the fallback when the config cannot be read (a hub id, offline, nothing cached).
MULTIMODAL_NAME_HINTS = ("gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "gemma-3n", "gemma-4")


def is_multimodal(config: Any) -> bool:
    """Whether a model config (object or dict) describes a checkpoint with a vision or audio tower."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    return get("vision_config") is not None or get("audio_config") is not None


def read_model_config(location: str) -> dict[str, Any] | None:
    """config.json of a local folder, or of a hub id if it is cached or reachable; None if neither."""
    local = Path(location) / "config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(location, token=os.environ.get("HF_TOKEN")).to_dict()
    except (OSError, ValueError):
        return None


def unsloth_loader(location: str) -> Any:
    """FastModel for multimodal checkpoints (Gemma 3 4B+, Gemma 3n, Gemma 4), FastLanguageModel otherwise."""
    from unsloth import FastLanguageModel, FastModel

    adapter = Path(location) / "adapter_config.json"
    if adapter.is_file() and not (Path(location) / "config.json").is_file():  # an adapter: its base decides
        location = json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
    config = read_model_config(location)
    multimodal = is_multimodal(config) if config else any(h in location.lower() for h in MULTIMODAL_NAME_HINTS)
    return FastModel if multimodal else FastLanguageModel


@dataclass
class Backend:
    """Load a model, add LoRA, save the adapter, save merged 16-bit — the calls Unsloth users know."""

    reason: str
    name: str = "base"

    def load(self, config: RunConfig) -> tuple[Any, Any]:
        raise NotImplementedError

    def add_lora(self, model: Any, config: RunConfig) -> Any:
        raise NotImplementedError

    def save_adapter(
        self, model: Any, tokenizer: Any, path: str | Path, overwrite: bool = False, state_dict: dict | None = None
    ) -> Path:
        """Write only the LoRA weights and the tokenizer (a few MB); `state_dict`: weights gathered from FSDP shards."""
        with staged_folder(path, overwrite) as tmp:
            model.save_pretrained(str(tmp), state_dict=state_dict)
            tokenizer.save_pretrained(str(tmp))
        return Path(path)

    def save_merged(self, model: Any, tokenizer: Any, path: str | Path, overwrite: bool = False) -> Path:
        raise NotImplementedError


@dataclass
class UnslothBackend(Backend):
    name: str = "unsloth"

    def load(self, config: RunConfig) -> tuple[Any, Any]:
        import torch

        source = resolve_model(config.model)
        loader = unsloth_loader(source.location)
        dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)  # None: Unsloth picks bf16/fp16
        model, tokenizer = loader.from_pretrained(
            model_name=source.location,
            max_seq_length=config.max_seq_length,
            load_in_4bit=config.load_in_4bit,
            dtype=dtype,
            token=os.environ.get("HF_TOKEN"),
        )
        # FastModel returns the multimodal checkpoint's processor; text-only training needs its tokenizer
        # (the label code asks for offsets, which only a tokenizer gives).
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        if config.chat_template:
            from unsloth.chat_templates import get_chat_template

            tokenizer = get_chat_template(tokenizer, chat_template=config.chat_template)
        log.info(
            "loaded %s with Unsloth's %s (%s)",
            source.location,
            loader.__name__,
            "4-bit" if config.load_in_4bit else "16-bit",
        )
        return model, tokenizer

    def add_lora(self, model: Any, config: RunConfig) -> Any:
        from unsloth import FastLanguageModel, FastModel

        common = {
            "r": config.lora_r,
            "lora_alpha": config.lora_alpha,
            "lora_dropout": config.lora_dropout,
            "target_modules": config.lora_target_modules,
            "bias": "none",
            "use_gradient_checkpointing": "unsloth",  # Unsloth's offloaded checkpointing: less VRAM, same speed
            "random_state": config.seed,
        }
        if is_multimodal(model.config):
            # As Unsloth's Gemma 3 (4B+) / Gemma 4 notebooks: LoRA on the language model only.
            return FastModel.get_peft_model(
                model,
                finetune_vision_layers=False,
                finetune_language_layers=True,
                finetune_attention_modules=True,
                finetune_mlp_modules=True,
                **common,
            )
        return FastLanguageModel.get_peft_model(model, **common)

    def save_merged(self, model: Any, tokenizer: Any, path: str | Path, overwrite: bool = False) -> Path:
        with staged_folder(path, overwrite) as tmp:
            model.save_pretrained_merged(str(tmp), tokenizer, save_method="merged_16bit")
        return Path(path)


@dataclass
class TransformersBackend(Backend):
    name: str = "transformers"

    def load(self, config: RunConfig) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM

        source = resolve_model(config.model)
        has_cuda = torch.cuda.is_available()
        dtype = resolve_dtype(config.dtype, has_cuda)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if config.load_in_4bit:
            if has_cuda and importlib.util.find_spec("bitsandbytes") is not None:
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
                )
                if distributed.launched_processes() > 1 and not distributed.fsdp_requested():
                    # A 4-bit model cannot be moved once loaded, so under DDP each process loads onto its own GPU.
                    kwargs["device_map"] = {"": distributed.state().local_process_index}
            else:
                log.warning(
                    "load_in_4bit=True needs CUDA and bitsandbytes; %s, so the model loads in %s instead",
                    "no CUDA device here" if not has_cuda else "bitsandbytes is not installed",
                    str(dtype).removeprefix("torch."),
                )
        adapter = read_adapter_config(source)
        base_location = resolve_model(adapter["base_model_name_or_path"]).location if adapter else source.location
        tokenizer = load_tokenizer(source.location if adapter else base_location, config.chat_template)
        model = AutoModelForCausalLM.from_pretrained(base_location, token=os.environ.get("HF_TOKEN"), **kwargs)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source.location, is_trainable=False)
        log.info("loaded %s with transformers (%s)", source.location, str(dtype).removeprefix("torch."))
        return model, tokenizer

    def add_lora(self, model: Any, config: RunConfig) -> Any:
        from peft import LoraConfig, get_peft_model

        targets = config.lora_target_modules
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            # A multimodal checkpoint's vision and audio towers have their own q_proj/k_proj/...; the adapter
            # belongs on the language model only, as FastModel's finetune_vision_layers=False does on a GPU.
            target_modules=language_model_only(targets) if is_multimodal(model.config) else targets,
            bias="none",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora)

    def save_merged(self, model: Any, tokenizer: Any, path: str | Path, overwrite: bool = False) -> Path:
        """Merge LoRA into a copy of the weights and save it in bf16; the trained model stays as it was.

        A 4-bit (QLoRA) model is not merged into its own weights: folding the adapter into 4-bit blocks rounds
        it away, and a quantized model cannot be cast to bf16. Its base is reloaded in 16-bit instead and the
        adapter merged into that, as QLoRA merges are done.
        """
        import torch

        with staged_folder(path, overwrite) as tmp:
            merged = merged_16bit_reload(model) if is_quantized(model) else merged_copy(model)
            merged.to(torch.bfloat16).save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        return Path(path)


def language_model_only(module_names: list[str]) -> str:
    """A peft `target_modules` regex (matched against whole module paths) for these names inside the language
    model alone, e.g. `model.language_model.layers.3.self_attn.q_proj` but not `model.vision_tower...q_proj`."""
    return r".*\blanguage_model\..*\.(" + "|".join(re.escape(name) for name in module_names) + r")"


def resolve_dtype(name: str, has_cuda: bool) -> Any:
    import torch

    if name != "auto":
        return getattr(torch, name)
    if not has_cuda:
        return torch.float32  # bf16 matmul is ~100x slower than fp32 on AVX2 CPUs without AMX
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_tokenizer(location: str, chat_template: str | None = None) -> Any:
    """The model's tokenizer with a chat template, right padding for training and `<end_of_turn>`-style eos."""
    from transformers import AutoTokenizer

    from medsft.templates import apply_chat_template_name

    tokenizer = AutoTokenizer.from_pretrained(location, token=os.environ.get("HF_TOKEN"))
    apply_chat_template_name(tokenizer, chat_template)
    # Llama 3's tokenizer_config asks for clean_up_tokenization_spaces, which transformers ignores for BPE
    # tokenizers while warning at every decode; turning it off changes no output and silences the warning.
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def read_adapter_config(source: ModelSource) -> dict[str, Any] | None:
    path = Path(source.location) / "adapter_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if source.kind == "local" and path.is_file() else None


def merged_copy(model: Any) -> Any:
    """A plain transformers model with the LoRA folded in, built from a copy (costs one model of RAM)."""
    import copy

    from peft import PeftModel

    duplicate = copy.deepcopy(model)
    return duplicate.merge_and_unload() if isinstance(duplicate, PeftModel) else duplicate


def is_quantized(model: Any) -> bool:
    """Whether any layer holds bitsandbytes-quantized weights (4-bit or 8-bit)."""
    return any(type(module).__name__ in ("Linear4bit", "Linear8bitLt") for module in model.modules())


def merged_16bit_reload(model: Any) -> Any:
    """The base model reloaded in bf16 with this LoRA adapter merged in (for a model trained in 4-bit)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_location = model.peft_config["default"].base_model_name_or_path
    with tempfile.TemporaryDirectory(prefix="medsft-adapter-") as adapter:
        model.save_pretrained(adapter)
        base = AutoModelForCausalLM.from_pretrained(
            base_location, dtype=torch.bfloat16, token=os.environ.get("HF_TOKEN")
        )
        return PeftModel.from_pretrained(base, adapter).merge_and_unload()


class staged_folder:  # noqa: N801 - used as a context manager like tempfile's helpers
    """Write into a temporary sibling and rename into place only if the block succeeds.

    Nothing half-written ever sits under the final name, and an existing folder is never silently replaced.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        if self.path.exists() and any(self.path.iterdir()) and not self.overwrite:
            raise FileExistsError(f"{self.path} already exists and is not empty; pass overwrite=True to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)
