"""A vLLM engine behind the `Scorer` calls, fed `HFScorer`'s ids (optional, CUDA only; docs/scoring.md, docs/gpu.md)."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medsft.config import RunConfig, build_config
from medsft.evaluate.transformers_scorer import GREEDY, chat_prompt_ids, hf_tokenize, model_name

if TYPE_CHECKING:
    from medsft.evaluate.transformers_scorer import ChoiceRequest, GenerationSettings, Messages

INSTALL_HINT = "pip install -e '.[vllm]' on a CUDA machine (vLLM has no CPU wheel on PyPI)"
# vLLM 0.33's `MaxLoRARanks`: the engine reserves LoRA slots of these ranks only.
LORA_RANK_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# One generated token is required; the scores are the prompt's own log-probabilities.
SCORING_ARGUMENTS: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1, "detokenize": False}


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def lora_rank_slot(rank: int) -> int:
    """The smallest LoRA slot vLLM offers that holds an adapter of `rank`."""
    for slot in LORA_RANK_SLOTS:
        if rank <= slot:
            return slot
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest slot ({LORA_RANK_SLOTS[-1]})")


def engine_arguments(spec: str, config: RunConfig) -> tuple[dict[str, Any], str | None]:
    """`LLM(...)` arguments for a spec, and its adapter folder: an adapter is served on its base, its own tokenizer."""
    from medsft.models import resolve_model
    from medsft.train.fast_language_model import read_adapter_config

    source = resolve_model(spec)
    adapter = read_adapter_config(source)
    base = resolve_model(adapter["base_model_name_or_path"]).location if adapter else source.location
    arguments: dict[str, Any] = {
        "model": base,
        "tokenizer": source.location if adapter else base,
        "dtype": config.dtype,  # "auto" lets vLLM take the checkpoint's 16-bit dtype
        "seed": config.seed,
        # Chat prompts share their start; scoring skips the cache (vLLM needs every prompt log-probability).
        "enable_prefix_caching": True,
    }
    if adapter:
        arguments.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank_slot(int(adapter["r"])))
    return arguments, source.location if adapter else None


def sampling_arguments(settings: GenerationSettings, row: int, stop_token_ids: Sequence[int]) -> dict[str, Any]:
    """`SamplingParams(...)` for one reply (greedy: temperature 0); top-k/top-p replace the generation_config's."""
    return {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if settings.do_sample else 0.0,
        "top_p": settings.top_p if settings.do_sample else 1.0,
        "top_k": 0,  # 0: all tokens
        "seed": settings.seed + row,
        "stop_token_ids": list(stop_token_ids),
        "detokenize": False,  # medsft's tokenizer decodes the ids, exactly as HFScorer does
    }


def continuation_logprob(prompt_logprobs: Sequence[dict[int, Any] | None], tokens: Sequence[int], start: int) -> float:
    """The summed log-probability of `tokens[start:]` from vLLM's `prompt_logprobs` (per position, id -> `Logprob`)."""
    if start < 1:
        raise ValueError("a continuation needs at least one context token before it")
    total = 0.0
    for position in range(start, len(tokens)):
        ranked = prompt_logprobs[position]
        if ranked is None or tokens[position] not in ranked:
            raise ValueError(f"vLLM returned no log-probability for prompt position {position}")
        total += float(ranked[tokens[position]].logprob)
    return total


class VLLMScorer:
    """A model on a vLLM engine (plain, or a base with a LoRA adapter) for the evaluation tasks."""

    def __init__(self, llm: Any, tokenizer: Any, name: str = "model", lora_request: Any = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.name = name
        self.lora_request = lora_request
        self.stop_token_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    @classmethod
    def from_spec(cls, spec: str, config: RunConfig | None = None) -> VLLMScorer:
        """Start an engine for a model spec (`embedded`, a folder, an adapter folder, a hub id)."""
        if not vllm_available():
            raise ImportError(f"vLLM is not installed; {INSTALL_HINT}")
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from medsft.train.fast_language_model import load_tokenizer

        run = dataclasses.replace(config, model=spec) if config is not None else build_config({"model": spec})
        arguments, adapter = engine_arguments(spec, run)
        tokenizer = load_tokenizer(arguments["tokenizer"], run.chat_template)
        llm = LLM(**arguments)
        lora = LoRARequest(lora_name="adapter", lora_int_id=1, lora_path=adapter) if adapter else None
        return cls(llm, tokenizer, name=model_name(spec), lora_request=lora)

    def tokenize(self, text: str) -> list[int]:
        return hf_tokenize(self.tokenizer, text)

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[list[float]]:
        """As lm-eval's vLLM backend: the continuation's summed `prompt_logprobs` (raw log-softmax, any rank)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        flat = [(i, r.context + c, len(r.context)) for i, r in enumerate(requests) for c in r.continuations]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=tokens) for _, tokens, _ in flat],
                                    SamplingParams(**SCORING_ARGUMENTS), use_tqdm=True,
                                    lora_request=self.lora_request)  # fmt: skip
        scores: list[list[float]] = [[] for _ in requests]
        for (i, tokens, start), output in zip(flat, outputs, strict=True):
            scores[i].append(continuation_logprob(output.prompt_logprobs, tokens, start))
        return scores

    def generate(self, conversations: Sequence[Messages], settings: GenerationSettings = GREEDY) -> list[str]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = chat_prompt_ids(self.tokenizer, conversations)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=prompt) for prompt in ids],
                                    [SamplingParams(**sampling_arguments(settings, row, self.stop_token_ids))
                                     for row in range(len(ids))], use_tqdm=True,
                                    lora_request=self.lora_request)  # fmt: skip
        return [self.tokenizer.decode(o.outputs[0].token_ids, skip_special_tokens=True) for o in outputs]
