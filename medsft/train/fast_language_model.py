"""`FastLanguageModel` for machines Unsloth cannot run on: transformers + peft behind Unsloth's two calls, with
Unsloth's argument names, so a notebook cell reads the same on a CPU as on a GPU.

```python
model, tokenizer = FastLanguageModel.from_pretrained(model_name=..., max_seq_length=..., load_in_4bit=..., dtype=None)
model = FastLanguageModel.get_peft_model(model, r=..., lora_alpha=..., lora_dropout=..., target_modules=...,
                                         bias="none", use_gradient_checkpointing=False, random_state=...)
```

`model_name` is a hub id, a local folder or a LoRA adapter folder (its base is loaded and the adapter put on it).
4-bit loading needs CUDA and bitsandbytes; elsewhere the model loads in 16/32-bit with a warning. On a multimodal
checkpoint LoRA adapts the language model only, as Unsloth's FastModel does with finetune_vision_layers=False.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

from medsft.models import resolve_model
from medsft.train import distributed
from medsft.train.backend import (
    is_multimodal,
    language_model_only,
    load_tokenizer,
    lora_target_modules,
    read_adapter_config,
    resolve_dtype,
)

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
        """The model and its tokenizer (right padding for training, a pad token); `random_weights`: a tiny random
        model of the same architecture and tokenizer (a dry run checks a recipe without the weights)."""
        import torch
        from transformers import AutoModelForCausalLM

        source = resolve_model(model_name)
        token = token or os.environ.get("HF_TOKEN")
        if random_weights:
            return tiny_random_model_and_tokenizer(source.location, random_state)
        adapter = read_adapter_config(source)
        base_location = resolve_model(adapter["base_model_name_or_path"]).location if adapter else source.location
        tokenizer = load_tokenizer(source.location if adapter else base_location)
        has_cuda = torch.cuda.is_available()
        torch_dtype = resolve_dtype(str(dtype).removeprefix("torch.") if dtype is not None else "auto", has_cuda)
        kwargs: dict[str, Any] = {"dtype": torch_dtype}
        if load_in_4bit:
            kwargs |= four_bit_arguments(torch_dtype, has_cuda)
        model = AutoModelForCausalLM.from_pretrained(base_location, token=token, **kwargs)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source.location, is_trainable=False)
        log.info("loaded %s with transformers (%s)", source.location, str(torch_dtype).removeprefix("torch."))
        return model, tokenizer

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
        # module paths keeps the adapter on the language model.
        if is_multimodal(model.config):
            target_modules = language_model_only(lora_target_modules(model, target_modules))
        lora = LoraConfig(
            r=r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=target_modules,
            bias=bias,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora)


def tiny_random_model_and_tokenizer(location: str, seed: int) -> tuple[Any, Any]:
    """A dry run's model: the architecture and tokenizer of `location`, two small layers of random weights."""
    from medsft.models import tiny_random_model

    log.info("dry run: tiny random model with the architecture and tokenizer of %s", location)
    try:
        return tiny_random_model(location, seed=seed), load_tokenizer(location)
    except OSError as err:  # a hub id with no network and nothing in the Hugging Face cache
        raise RuntimeError(
            f"dry run needs the config and tokenizer of {location} (a few MB, no weights), but they could not "
            f"be read ({err}); connect once to cache them, or use model: embedded or a local folder"
        ) from err


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

    arguments: dict[str, Any] = {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    }
    if distributed.launched_processes() > 1 and not distributed.fsdp_requested():
        # A 4-bit model cannot be moved once loaded, so under DDP each process loads onto its own GPU.
        arguments["device_map"] = {"": distributed.state().local_process_index}
    return arguments
