"""`FastLanguageModel` where Unsloth cannot run: transformers + peft behind Unsloth's calls, argument names and
save methods (`save_pretrained_merged`, `save_pretrained_gguf`), so a notebook cell reads the same on a CPU."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import re
import tempfile
import types
from pathlib import Path
from typing import Any

from medsft.models import ModelSource, resolve_model, tiny_random_model
from medsft.templates import apply_chat_template_name
from medsft.train import distributed

log = logging.getLogger("medsft")


class FastLanguageModel:
    """Unsloth's `FastLanguageModel.from_pretrained` / `get_peft_model`, done by transformers and peft."""

    @staticmethod
    def from_pretrained(
        model_name: str,
        max_seq_length: int = 2048,
        dtype: Any = None,
        load_in_4bit: bool = False,
        token: str | None = None,
        random_weights: bool = False,
        random_state: int = 3407,
    ) -> tuple[Any, Any]:
        """The model and its tokenizer from a hub id, a folder or a LoRA adapter folder (its base loads, the adapter on
        it); `random_weights`: a dry run's tiny random model. 4-bit needs CUDA and bitsandbytes, else a warning."""
        import torch
        from transformers import AutoModelForCausalLM

        source = resolve_model(model_name)
        token = token or os.environ.get("HF_TOKEN")
        if random_weights:
            log.info("dry run: tiny random model with the architecture and tokenizer of %s", source.location)
            try:
                model = tiny_random_model(source.location, seed=random_state)
                return with_savers(model), load_tokenizer(source.location)
            except OSError as err:  # a hub id with no network and nothing in the Hugging Face cache
                raise RuntimeError(
                    f"dry run needs the config and tokenizer of {source.location} (a few MB, no weights), but they "
                    f"could not be read ({err}); connect once to cache them, or use model: embedded or a local folder"
                ) from err
        adapter = read_adapter_config(source)
        base_location = resolve_model(adapter["base_model_name_or_path"]).location if adapter else source.location
        tokenizer = load_tokenizer(source.location)  # an adapter folder holds the tokenizer it was trained with
        has_cuda = torch.cuda.is_available()
        if dtype is not None and dtype != "auto":
            torch_dtype = getattr(torch, str(dtype).removeprefix("torch."))
        elif has_cuda:
            torch_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            torch_dtype = torch.float32  # bf16 matmul is ~100x slower than fp32 on AVX2 CPUs without AMX
        kwargs: dict[str, Any] = {"dtype": torch_dtype}
        if load_in_4bit:
            kwargs |= four_bit_arguments(torch_dtype, has_cuda)
        model = AutoModelForCausalLM.from_pretrained(base_location, token=token, **kwargs)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source.location, is_trainable=False)
        log.info("loaded %s with transformers (%s)", source.location, str(torch_dtype).removeprefix("torch."))
        return with_savers(model), tokenizer

    @staticmethod
    def get_peft_model(
        model: Any,
        r: int = 16,
        target_modules: list[str] | str = "all-linear",
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        bias: str = "none",
        use_gradient_checkpointing: bool | str = False,
        random_state: int = 3407,
    ) -> Any:
        """LoRA adapters on `target_modules` (peft's names or "all-linear"); the base weights are frozen."""
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        set_seed(random_state)  # LoRA's initial weights come from torch's generator: the same in every run
        if use_gradient_checkpointing:
            model.gradient_checkpointing_enable()
        # A multimodal checkpoint's vision and audio towers have their own q_proj/k_proj/...: a regex over whole
        # module paths keeps the adapter on the language model (`model.language_model.layers.3.self_attn.q_proj`).
        if is_multimodal(model.config):
            names = "|".join(re.escape(name) for name in lora_target_modules(model, target_modules))
            target_modules = rf".*\blanguage_model\..*\.({names})"
        lora = LoraConfig(
            r=r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=target_modules,
            bias=bias,
            task_type="CAUSAL_LM",
        )
        return with_savers(get_peft_model(model, lora))


def with_savers(model: Any) -> Any:
    """The model with Unsloth's two save methods (bound to it, as Unsloth binds its own)."""
    model.save_pretrained_merged = types.MethodType(save_pretrained_merged, model)
    model.save_pretrained_gguf = types.MethodType(save_pretrained_gguf, model)
    return model


def save_pretrained_merged(
    model: Any, save_directory: str | Path, tokenizer: Any, save_method: str = "merged_16bit"
) -> None:
    """LoRA folded into a copy (the model stays as it was), saved in bf16 with the tokenizer; a 4-bit model is merged
    the QLoRA way (docs/training.md#the-backend)."""
    import torch
    from peft import PeftModel

    if save_method != "merged_16bit":
        raise ValueError(f"save_method={save_method!r}: the CPU stand-in saves merged_16bit only")
    merged = merged_16bit_reload(model) if is_quantized(model) else copy.deepcopy(model)  # a copy: one model of RAM
    if isinstance(merged, PeftModel):
        merged = merged.merge_and_unload()
    merged.to(torch.bfloat16).save_pretrained(str(save_directory))
    tokenizer.save_pretrained(str(save_directory))


def save_pretrained_gguf(
    model: Any, save_directory: str | Path, tokenizer: Any, quantization_method: str | list[str] = "q8_0"
) -> dict[str, Any]:
    """As Unsloth's: the merged 16-bit checkpoint, llama.cpp's `convert_hf_to_gguf.py` to F16, `llama-quantize` to
    each type (never from another quantization) as `<folder>/<folder name>.<TYPE>.gguf`; `{"gguf_files": [...]}`."""
    from medsft.export.gguf import LLAMA_CPP_TYPES, check_quantizations, convert, quantize
    from medsft.export.llamacpp_toolchain import find_toolchain

    quants = check_quantizations([quantization_method] if isinstance(quantization_method, str) else quantization_method)
    toolchain = find_toolchain()
    folder = Path(save_directory)
    save_pretrained_merged(model, folder, tokenizer)
    named = lambda quant: folder / f"{folder.name}.{LLAMA_CPP_TYPES[quant]}.gguf"  # noqa: E731
    f16 = convert(toolchain, folder, named("f16"))
    files = [f16 if quant == "f16" else quantize(toolchain, f16, named(quant), quant) for quant in quants]
    if "f16" not in quants:
        f16.unlink()
    return {"gguf_files": [str(path) for path in files]}


def four_bit_arguments(dtype: Any, has_cuda: bool) -> dict[str, Any]:
    """bitsandbytes NF4 on CUDA (under DDP each process on its own GPU); elsewhere nothing, with a warning."""
    if not has_cuda or importlib.util.find_spec("bitsandbytes") is None:
        log.warning(
            "load_in_4bit=True needs CUDA and bitsandbytes; %s, so the model loads in %s instead",
            "no CUDA device here" if not has_cuda else "bitsandbytes is not installed",
            str(dtype).removeprefix("torch."),
        )
        return {}
    from transformers import BitsAndBytesConfig

    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    arguments: dict[str, Any] = {"quantization_config": nf4}
    if distributed.launched_processes() > 1 and not distributed.fsdp_requested():
        # A 4-bit model cannot be moved once loaded, so under DDP each process loads onto its own GPU.
        arguments["device_map"] = {"": distributed.state().local_process_index}
    return arguments


# Multimodal checkpoints (FastModel in Unsloth's notebooks) by name, when the config cannot be read (offline).
MULTIMODAL_NAME_HINTS = ("gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "gemma-3n", "gemma-4")


def is_multimodal(config: Any) -> bool:
    """Whether a model config (object or dict) has a vision or audio tower."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    return get("vision_config") is not None or get("audio_config") is not None


def lora_target_modules(model: Any, targets: list[str] | str) -> list[str]:
    """The module names LoRA adapts: "all-linear" resolved as peft does, within a multimodal model's language model."""
    import torch

    if targets != "all-linear":
        return list(targets)
    head = model.get_output_embeddings()
    in_scope = (lambda path: ".language_model." in f".{path}.") if is_multimodal(model.config) else (lambda path: True)
    names = {
        path.rsplit(".", 1)[-1]
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head and in_scope(path)
    }
    return sorted(names)


def load_tokenizer(location: str, chat_template: str | None = None) -> Any:
    """The model's tokenizer with a chat template, right padding for training and `<end_of_turn>`-style eos."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, token=os.environ.get("HF_TOKEN"))
    apply_chat_template_name(tokenizer, chat_template)
    # Llama 3's config asks for clean_up_tokenization_spaces: ignored for BPE (same output), with a warning per decode.
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def read_adapter_config(source: ModelSource) -> dict[str, Any] | None:
    path = Path(source.location) / "adapter_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if source.kind == "local" and path.is_file() else None


def is_quantized(model: Any) -> bool:
    return any(type(module).__name__ in ("Linear4bit", "Linear8bitLt") for module in model.modules())


def merged_16bit_reload(model: Any) -> Any:
    """The base model reloaded in bf16 with this LoRA adapter merged in (for a model trained in 4-bit)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    location = model.peft_config["default"].base_model_name_or_path
    with tempfile.TemporaryDirectory(prefix="medsft-adapter-") as adapter:
        model.save_pretrained(adapter)
        base = AutoModelForCausalLM.from_pretrained(location, dtype=torch.bfloat16, token=os.environ.get("HF_TOKEN"))
        return PeftModel.from_pretrained(base, adapter).merge_and_unload()
