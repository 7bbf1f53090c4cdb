from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from medsft.config import build_config
from medsft.train.backend import BackendError, TransformersBackend, select_backend, staged_folder


def test_cpu_machine_picks_transformers_and_says_why(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="medsft"):
        backend = select_backend("auto")
    assert backend.name == "transformers"
    assert "no CUDA device" in backend.reason
    assert "backend: transformers (no CUDA device" in caplog.text


def test_asking_for_unsloth_without_a_gpu_is_a_clear_error():
    with pytest.raises(BackendError, match="backend=unsloth was asked for, but no CUDA device"):
        select_backend("unsloth")


def _config(model_dir: Path, **extra):
    return build_config({"model": str(model_dir), "lora_r": 4, "lora_alpha": 8, **extra})


def test_4bit_on_cpu_falls_back_with_a_warning_not_a_traceback(tiny_gemma_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="medsft"):
        model, tokenizer = TransformersBackend("test").load(_config(tiny_gemma_dir, load_in_4bit=True))
    assert model.dtype == torch.float32
    assert "load_in_4bit=True needs CUDA and bitsandbytes" in caplog.text and "float32 instead" in caplog.text
    assert tokenizer.padding_side == "right"


def _lora_model(tiny_gemma_dir: Path, **extra):
    backend = TransformersBackend("test")
    config = _config(tiny_gemma_dir, **extra)
    model, tokenizer = backend.load(config)
    model = backend.add_lora(model, config)
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; make the adapter change the output so merging is testable
            torch.nn.init.normal_(param, std=0.02)
    return backend, model, tokenizer


def test_lora_trains_only_adapter_weights_on_the_chosen_modules(tiny_gemma_dir):
    _, model, _ = _lora_model(tiny_gemma_dir, lora_target="attention")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_saved_adapter_reloads_to_the_same_logits(tiny_gemma_dir, tmp_path):
    backend, model, tokenizer = _lora_model(tiny_gemma_dir)
    ids = torch.tensor([[2, 105, 2364, 107, 1596, 106]])
    expected = model(input_ids=ids).logits
    path = backend.save_adapter(model, tokenizer, tmp_path / "adapter")
    assert (path / "adapter_config.json").is_file() and (path / "adapter_model.safetensors").is_file()
    reloaded, _ = backend.load(_config(path))
    torch.testing.assert_close(reloaded(input_ids=ids).logits, expected)


def test_merged_16bit_matches_the_adapter_and_leaves_the_model_trainable(tiny_gemma_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    backend, model, tokenizer = _lora_model(tiny_gemma_dir)
    ids = torch.tensor([[2, 105, 2364, 107, 1596, 106]])
    expected = model(input_ids=ids).logits
    path = backend.save_merged(model, tokenizer, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(path)
    assert merged.dtype == torch.bfloat16
    assert not any("lora" in k for k in merged.state_dict())
    torch.testing.assert_close(merged.float()(input_ids=ids).logits, expected, atol=0.05, rtol=0.05)
    torch.testing.assert_close(model(input_ids=ids).logits, expected)  # unmerged again afterwards
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


def test_a_quantized_model_is_merged_into_its_base_reloaded_in_16bit(tiny_gemma_dir, tmp_path):
    """The QLoRA route (a 4-bit model cannot be cast to bf16): reload the base in bf16, merge the adapter."""
    from medsft.train.fast_language_model import is_quantized, merged_16bit_reload

    backend, model, _ = _lora_model(tiny_gemma_dir)
    ids = torch.tensor([[2, 105, 2364, 107, 1596, 106]])
    expected = model(input_ids=ids).logits
    assert not is_quantized(model)  # bitsandbytes needs CUDA; the reload itself is plain transformers + peft
    merged = merged_16bit_reload(model)
    assert merged.dtype == torch.bfloat16 and not any("lora" in k for k in merged.state_dict())
    torch.testing.assert_close(merged.float()(input_ids=ids).logits, expected, atol=0.05, rtol=0.05)


def test_saving_never_silently_replaces_an_existing_folder(tiny_gemma_dir, tmp_path):
    backend, model, tokenizer = _lora_model(tiny_gemma_dir)
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        backend.save_adapter(model, tokenizer, target)
    assert (target / "mine.txt").read_text() == "user data"


def test_a_failed_save_leaves_no_partial_folder(tmp_path):
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "out") as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_lora_on_a_multimodal_checkpoint_adapts_the_language_model_only():
    """Gemma 3 12B's shape: its SigLIP vision tower has q/k/v projections too; the adapter must skip them, as
    Unsloth's FastModel(finetune_vision_layers=False) does on a GPU."""
    import transformers
    from local_hub import gemma3_multimodal

    model = transformers.Gemma3ForConditionalGeneration._from_config(
        transformers.AutoConfig.for_model(**gemma3_multimodal()), dtype=torch.float32
    )
    assert any("vision" in name and name.endswith("q_proj") for name, _ in model.named_modules())
    peft = TransformersBackend("test").add_lora(model, build_config({"lora_r": 4, "lora_alpha": 8}))
    adapted = {name.split(".lora_A")[0] for name, _ in peft.named_parameters() if ".lora_A" in name}
    assert adapted and all(".language_model." in name for name in adapted)
    assert len(adapted) == 2 * 7  # every all-linear projection of both language layers
