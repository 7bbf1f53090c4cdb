"""Which FastLanguageModel, and each call's arguments from the config: `UnslothBackend` (CUDA, one process) or
`TransformersBackend` (transformers + peft). Unsloth patches transformers, trl and peft, so it is imported first."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from medsft.config import RunConfig
from medsft.models import resolve_model
from medsft.templates import apply_chat_template_name
from medsft.train import distributed
from medsft.train.fast_language_model import MULTIMODAL_NAME_HINTS, is_multimodal, lora_target_modules, with_savers

log = logging.getLogger("medsft")


class BackendError(RuntimeError):
    """The asked-for backend cannot run here; the message says why and what to do."""


def unsloth_status(has_cuda: bool) -> tuple[bool, str]:
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
    """Unsloth reads llama.cpp settings at import: the offline toolchain's, if built (no clone), the user's kept."""
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
    import torch  # torch may be imported before unsloth; only transformers/trl/peft may not

    return unsloth_status(torch.cuda.is_available())


def select_backend(preference: str = "auto") -> Backend:
    """The backend for `preference` (auto|unsloth|transformers), its reason logged."""
    plain = preference == "transformers"
    ok, reason = (False, "asked for backend=transformers") if plain else import_unsloth_if_usable()
    if not ok and preference == "unsloth":
        raise BackendError(f"backend=unsloth was asked for, but {reason}; use backend=auto or transformers")
    backend = UnslothBackend(reason) if ok else TransformersBackend(reason)
    log.info("backend: %s (%s)", backend.name, backend.reason)
    return backend


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
    """`fast_language_model()`'s `from_pretrained` / `get_peft_model` take `load_arguments` / `lora_arguments`."""

    reason: str
    name: str = "base"
    # get_peft_model's `use_gradient_checkpointing`: on a CPU memory is not the limit; recomputing costs a third more
    gradient_checkpointing: ClassVar[bool | str] = False

    def load_arguments(self, config: RunConfig) -> dict[str, Any]:
        import torch

        return {
            "model_name": resolve_model(config.model).location,
            "max_seq_length": config.max_seq_length,
            "load_in_4bit": config.load_in_4bit,
            # None: the library picks (bf16 or fp16 on CUDA, fp32 on a CPU)
            "dtype": None if config.dtype == "auto" else getattr(torch, config.dtype),
            "token": os.environ.get("HF_TOKEN"),
        }

    def lora_arguments(self, model: Any, config: RunConfig) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "r": config.lora_r,
            "lora_alpha": config.lora_alpha,
            "lora_dropout": config.lora_dropout,
            "target_modules": lora_target_modules(model, config.lora_target_modules),
            "bias": "none",
            "use_gradient_checkpointing": self.gradient_checkpointing,
            "random_state": config.seed,
        }
        if self.name == "unsloth" and is_multimodal(model.config):
            # As Unsloth's Gemma 3 (4B+) / Gemma 4 notebooks: LoRA on the language model only (docs/training.md).
            arguments |= {
                "finetune_vision_layers": False,
                "finetune_language_layers": True,
                "finetune_attention_modules": True,
                "finetune_mlp_modules": True,
            }
        return arguments

    def load(self, config: RunConfig) -> tuple[Any, Any]:
        arguments = self.load_arguments(config)
        model, tokenizer = self.fast_language_model(arguments["model_name"]).from_pretrained(**arguments)
        return model, self.get_chat_template(tokenizer, config.chat_template)

    def add_lora(self, model: Any, config: RunConfig) -> Any:
        return self.fast_language_model(model.name_or_path).get_peft_model(model, **self.lora_arguments(model, config))

    def save_adapter(
        self, model: Any, tokenizer: Any, path: str | Path, overwrite: bool = False, state_dict: dict | None = None
    ) -> Path:
        """The LoRA weights and the tokenizer (a few MB); `state_dict`: weights gathered from FSDP shards."""
        with staged_folder(path, overwrite) as tmp:
            model.save_pretrained(str(tmp), state_dict=state_dict)
            tokenizer.save_pretrained(str(tmp))
        return Path(path)

    def save_merged(self, model: Any, tokenizer: Any, path: str | Path, overwrite: bool = False) -> Path:
        if not hasattr(model, "save_pretrained_merged"):  # a model built outside FastLanguageModel
            with_savers(model)
        with staged_folder(path, overwrite) as tmp:
            model.save_pretrained_merged(str(tmp), tokenizer, save_method="merged_16bit")
        return Path(path)


@dataclass
class UnslothBackend(Backend):
    name: str = "unsloth"
    gradient_checkpointing: ClassVar[bool | str] = "unsloth"  # Unsloth's offloaded checkpointing: less VRAM, same speed

    def fast_language_model(self, model_name: str) -> Any:
        return unsloth_loader(model_name)  # FastModel for multimodal checkpoints, as Unsloth's notebooks do

    def get_chat_template(self, tokenizer: Any, chat_template: str | None) -> Any:
        # FastModel returns a multimodal checkpoint's processor; the labels need a tokenizer's offsets.
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        if not chat_template:
            return tokenizer
        from unsloth.chat_templates import get_chat_template

        return get_chat_template(tokenizer, chat_template=chat_template)


@dataclass
class TransformersBackend(Backend):
    name: str = "transformers"

    def fast_language_model(self, model_name: str) -> Any:
        from medsft.train.fast_language_model import FastLanguageModel

        return FastLanguageModel

    def load_arguments(self, config: RunConfig) -> dict[str, Any]:
        arguments = super().load_arguments(config)
        if config.dry_run:  # checks a recipe on any machine: the architecture and tokenizer, random weights
            arguments |= {"random_weights": True, "random_state": config.seed}
        return arguments

    def get_chat_template(self, tokenizer: Any, chat_template: str | None) -> Any:
        apply_chat_template_name(tokenizer, chat_template)
        return tokenizer


@contextlib.contextmanager
def staged_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary sibling, renamed into place only if the block succeeds (docs/training.md#the-backend)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} already exists and is not empty; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
