"""`Scorer` and `HFScorer`: lm-eval's exact predictions, fast (docs/evaluation.md#parity-and-speed-measured)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medsft import DISCLAIMER
from medsft.config import RunConfig, build_config
from medsft.evaluate.results import Scored, TaskResult, slug
from medsft.templates import render_chat

Messages = list[dict[str, str]]
GENERATE_BATCH_SIZE = 32  # one decoded token is a thin matmul: wider batches use the CPU better (bench/generate.py)


@dataclass(frozen=True)
class ChoiceRequest:
    """One question: its context tokens (with `<bos>` when the model adds one) and each choice's tokens."""

    context: list[int]
    continuations: list[list[int]]


@dataclass(frozen=True)
class GenerationSettings:
    """How every scorer decodes replies: greedy by default; a scorer sampling row by row seeds `seed + row`."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def record(self) -> dict[str, Any]:
        """What a result records: the sampling knobs only when sampling (greedy ignores them)."""
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
                "temperature": self.temperature if self.do_sample else None,
                "top_p": self.top_p if self.do_sample else None, "seed": self.seed}  # fmt: skip


GREEDY = GenerationSettings()


class Scorer(Protocol):
    """What task code needs from a model (`HFScorer`, `LlamaCppScorer`, `VLLMScorer`)."""

    name: str

    def tokenize(self, text: str) -> list[int]: ...
    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[list[float]]: ...
    def generate(self, conversations: Sequence[Messages], settings: GenerationSettings = GREEDY) -> list[str]: ...


def encode_pair(tokenize: Callable[[str], list[int]], context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's `TemplateLM._encode_pair`: the context's trailing spaces move into the continuation, whose tokens are
    what follows the context's in `encode(context + continuation)` (alone, a boundary token or `<bos>` could differ)."""
    if not context:
        raise ValueError("context must not be empty (lm-eval substitutes a prefix token; medsft never needs one)")
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    context_ids = tokenize(context)
    return context_ids, tokenize(context + continuation)[len(context_ids) :]


def hf_tokenize(tokenizer: Any, text: str) -> list[int]:
    """lm-eval's `HFLM.tok_encode` (`add_bos_token` unset): default special tokens, none if the text starts with bos."""
    bos = getattr(tokenizer, "bos_token", None)
    return list(tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos))))


def generated_result(scorer: Scorer, task: str, mode: str, conversations: Sequence[Messages],
                     generation: GenerationSettings, score: Callable[[list[str]], Scored],
                     **settings: Any) -> TaskResult:  # fmt: skip
    """Every generated task's path: the replies, scored by `score`, with the generation settings and seconds."""
    if not conversations:
        raise ValueError(f"{task}: no {dict(dialogue='dialogues', synthetic='cases').get(mode, 'items')} to evaluate")
    started = time.perf_counter()
    replies = scorer.generate(conversations, generation)
    seconds = round(time.perf_counter() - started, 3)
    records, metrics, breakdown = score(replies)
    return TaskResult(task=task, model=scorer.name, mode=mode, n=len(records), metrics=metrics, questions=records,
                      settings={**generation.record(), "seconds": seconds, **settings},
                      model_spec={"name": scorer.name}, breakdown=breakdown,
                      disclaimer=DISCLAIMER)  # fmt: skip


def chat_prompt_ids(tokenizer: Any, conversations: Sequence[Messages]) -> list[list[int]]:
    """Each conversation's chat prompt as ids (the text holds `<bos>`); `HFScorer` and `VLLMScorer` both feed these."""
    prompts = [render_chat(tokenizer, list(m), add_generation_prompt=True) for m in conversations]
    return [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]


def padded(sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> Any:
    """Sequences padded into a long tensor; right-padded needs no attention mask (causal), as in lm-eval's batches."""
    import torch

    rows = [torch.tensor(list(s), dtype=torch.long) for s in sequences]
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id, padding_side=side)


class HFScorer:
    """A transformers causal LM (plain or with a PEFT adapter) behind the `Scorer` calls."""

    def __init__(self, model: Any, tokenizer: Any, name: str = "model", batch_size: int = 8, fast_greedy: bool = True,
                 generate_batch_size: int = GENERATE_BATCH_SIZE, progress: bool = True, eager: bool = True,
                 on_batch: Callable[[dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        from transformers import modeling_utils

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size  # scoring, and sampled generation
        self.fast_greedy = fast_greedy  # greedy replies through `greedy_generate`; False: transformers' generate
        self.generate_batch_size = generate_batch_size  # rows per `greedy_generate` batch
        self.progress = progress  # a bar of its own (off inside training, whose bar already shows the progress)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.eager = eager  # scoring forwards with torch.compile off (`compile_free`); False: as the model is
        self.on_batch = on_batch  # called after each batched forward with its rows, width and seconds
        # 5.23 keeps per-row positions of a 2-D `logits_to_keep`; 5.17 (the GPU pin) gives (B, B, 1, vocab): docs/gpu.md
        self.per_row_logits = hasattr(modeling_utils, "slice_logits_to_keep")

    @classmethod
    def from_spec(
        cls, spec: str, name: str | None = None, batch_size: int = 8, config: RunConfig | None = None
    ) -> HFScorer:
        """Load a model spec through the CPU/GPU backend with `config`'s loading knobs."""
        from medsft.train.backend import select_backend

        run = dataclasses.replace(config, model=spec) if config is not None else build_config({"model": spec})
        model, tokenizer = select_backend(run.backend).load(run)
        if hasattr(model, "merge_and_unload") and not run.load_in_4bit:
            # Merged once: no adapter matmuls per forward (not in 4-bit, which would round the adapter into it).
            model = model.merge_and_unload()
        return cls(model, tokenizer, name=name or model_name(spec), batch_size=batch_size)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def tokenize(self, text: str) -> list[int]:
        return hf_tokenize(self.tokenizer, text)

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[list[float]]:
        """Summed log-probabilities per continuation; one-token choices batched, longer ones via the KV cache."""
        from tqdm.auto import tqdm

        results: dict[int, list[float]] = {}
        single = [i for i, r in enumerate(requests) if all(len(c) == 1 for c in r.continuations)]
        # Two tokens each, the first shared (the chat view): batched where transformers keeps several positions per row.
        shared = [
            i
            for i, r in enumerate(requests)
            if self.per_row_logits and all(len(c) == 2 and c[0] == r.continuations[0][0] for c in r.continuations)
        ]
        # Progress in questions, with the time left; the longest batches come first, so the estimate is high.
        bar = {"total": len(requests), "desc": f"scoring ({self.name})", "unit": "q", "mininterval": 5}
        with tqdm(**bar, disable=not self.progress) as progress, compile_free(self.eager):
            for i in sorted(set(range(len(requests))) - set(single) - set(shared)):
                results[i] = self._score_with_cache(requests[i])
                progress.update(1)
            for batched in (shared, single):
                # Longest first, as lm-eval does: rows of a batch have similar lengths, so little padding is computed.
                batched.sort(key=lambda i: -len(requests[i].context))
                for start in range(0, len(batched), self.batch_size):
                    chunk = batched[start : start + self.batch_size]
                    # each row: the context, then every token of a continuation but its last (the shared prefix)
                    sequences = [[*requests[i].context, *requests[i].continuations[0][:-1]] for i in chunk]
                    if batched is shared:
                        rows = self._positions_logprobs(sequences, 2)
                    else:
                        rows = self._last_position_logprobs(sequences)[:, None]
                    for i, row in zip(chunk, rows, strict=True):
                        prefix = requests[i].continuations[0][:-1]
                        common = sum(float(row[j, token]) for j, token in enumerate(prefix))
                        results[i] = [common + float(row[len(prefix), c[-1]]) for c in requests[i].continuations]
                    progress.update(len(chunk))
        return [results[i] for i in range(len(requests))]

    def _last_position_logprobs(self, contexts: list[list[int]]) -> Any:
        """Log-probabilities of the next token after each context: one batched forward, one LM-head row each."""
        import torch

        started = time.perf_counter()
        ids = padded(contexts, self.pad_id)
        width = ids.shape[1]
        positions = torch.tensor([len(c) - 1 for c in contexts], device=self.device)
        keep = positions_to_keep(positions, self.per_row_logits)
        # CPU only: on a GPU it saves nothing, and Unsloth's fused LoRA q/k/v/o may skip the hooked projections.
        trim = last_layer_only_at(self.model, positions) if self.device.type == "cpu" else contextlib.nullcontext()
        with torch.inference_mode(), trim:
            # No KV cache: nothing follows this forward, so storing keys and values would be wasted copies.
            logits = self.model(input_ids=ids.to(self.device), logits_to_keep=keep, use_cache=False).logits
        rows = torch.log_softmax(logits_at(logits, positions, keep, width).float(), dim=-1).cpu()
        if self.on_batch is not None:  # after `.cpu()`, which waits for the GPU, so the seconds are real
            self.on_batch({"rows": len(contexts), "width": width, "seconds": time.perf_counter() - started})
        return rows

    def _positions_logprobs(self, sequences: list[list[int]], count: int) -> Any:
        """Log-probabilities (B, count, vocab) at each sequence's last `count` positions, the LM head only there."""
        import torch

        ids = padded(sequences, self.pad_id).to(self.device)
        keep = torch.tensor([[len(s) - count + j for j in range(count)] for s in sequences], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        if tuple(logits.shape[:2]) != (len(sequences), count):
            raise RuntimeError(f"expected logits for {count} positions per row, got shape {tuple(logits.shape)}")
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _score_with_cache(self, request: ChoiceRequest) -> list[float]:
        """Multi-token continuations: the context once, then all continuations on copies of its KV cache."""
        import torch

        context = torch.tensor([request.context], device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=context, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            scores = [float(first[c[0]]) for c in request.continuations]
            longer = [i for i, c in enumerate(request.continuations) if len(c) > 1]
            if not longer:
                return scores
            out.past_key_values.batch_repeat_interleave(len(longer))
            # Feed each continuation except its last token; right padding is invisible to earlier positions.
            ids = padded([request.continuations[i][:-1] for i in longer], self.pad_id).to(self.device)
            logits = self.model(input_ids=ids, past_key_values=out.past_key_values, use_cache=True).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(longer):
                rest = request.continuations[i][1:]
                scores[i] += float(sum(logprobs[row, t, token] for t, token in enumerate(rest)))
        return scores

    def generate(self, conversations: Sequence[Messages], settings: GenerationSettings = GREEDY) -> list[str]:
        """Batched chat generation: greedy through `greedy_generate`, sampling through transformers' `generate`."""
        import torch

        ids = chat_prompt_ids(self.tokenizer, conversations)
        if not settings.do_sample and self.fast_greedy:
            outputs = greedy_generate(self.model, ids, settings.max_new_tokens, self.generate_batch_size, self.pad_id)
            return self.tokenizer.batch_decode(outputs, skip_special_tokens=True)
        replies: list[str] = []
        for start in range(0, len(ids), self.batch_size):
            # Left padding: generation appends on the right, so the prompts must end together.
            batch = self.tokenizer.pad({"input_ids": ids[start : start + self.batch_size]}, return_tensors="pt",
                                       padding_side="left").to(self.device)  # fmt: skip
            torch.manual_seed(settings.seed + start)
            # Explicit values override the generation_config (Gemma's top_k=64, top_p=0.95); greedy: None.
            knobs = settings.record()
            with torch.inference_mode():
                output = self.model.generate(**batch, max_new_tokens=settings.max_new_tokens,
                                             do_sample=settings.do_sample, pad_token_id=self.pad_id, top_k=None,
                                             temperature=knobs["temperature"], top_p=knobs["top_p"])  # fmt: skip
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            replies.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return replies


def greedy_generate(
    model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int = 32, pad_id: int = 0
) -> list[list[int]]:
    """Greedy reply tokens (an end token included) as `model.generate(do_sample=False)`, faster (docs/scoring.md)."""
    import torch

    # the token ids that end a reply, as `generate` reads them from the model's generation config
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    stop = torch.tensor([] if eos is None else [eos] if isinstance(eos, int) else list(eos), dtype=torch.long)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), list(prompts[i])))
    outputs: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids = padded([prompts[i] for i in chunk], pad_id, side="left").to(device)  # the prompts end together
        mask = padded([[1] * len(prompts[i]) for i in chunk], 0, side="left").to(device)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        rows = torch.tensor(chunk)
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
            cache, position = out.past_key_values, positions[:, -1:] + 1
            for step in range(max_new_tokens):
                token = out.logits[:, -1].argmax(-1)
                for i, t in zip(rows.tolist(), token.tolist(), strict=True):
                    outputs[i].append(t)
                running = ~torch.isin(token.cpu(), stop)
                if step == max_new_tokens - 1 or not running.any():
                    break
                if not running.all():  # finished rows leave the batch and the cache
                    keep = running.nonzero()[:, 0]
                    rows, keep = rows[keep], keep.to(device)
                    cache.batch_select_indices(keep)
                    token, mask, position = token[keep], mask[keep], position[keep]
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
                out = model(
                    input_ids=token[:, None], attention_mask=mask, position_ids=position,
                    past_key_values=cache, use_cache=True, logits_to_keep=1,
                )  # fmt: skip
                position = position + 1
    return outputs


def compile_free(enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """Compiled regions run eagerly: Unsloth's recompile per scoring shape (docs/gpu.md#the-4-bit-scoring-stall)."""
    import torch

    return torch.compiler.set_stance("force_eager") if enabled else contextlib.nullcontext()


def positions_to_keep(positions: Any, per_row: bool) -> Any:
    """`logits_to_keep` at each row's position: (B, 1) per row, else the distinct positions (1-D: any version)."""
    import torch

    return positions[:, None] if per_row else torch.unique(positions, sorted=True)


def logits_at(logits: Any, positions: Any, kept: Any, width: int) -> Any:
    """Row b's logits at `positions[b]` from (B, 1, V), (B, K, V) or, as Unsloth's Llama, every position (B, T, V)."""
    import torch

    rows = torch.arange(logits.shape[0], device=logits.device)
    positions = positions.to(logits.device)
    if logits.dim() == 3 and logits.shape[0] == len(positions):
        if logits.shape[1] == width:  # every position (when K == T, kept is arange(T): the same columns)
            return logits[rows, positions]
        if kept.dim() == 2 and logits.shape[1] == 1:
            return logits[:, 0]
        if kept.dim() == 1 and logits.shape[1] == len(kept):
            return logits[rows, torch.searchsorted(kept.to(logits.device), positions)]
    raise RuntimeError(
        f"the model returned logits of shape {tuple(logits.shape)} for logits_to_keep of shape {tuple(kept.shape)} "
        f"(batch {len(positions)}, width {width}); expected one row per kept position"
    )


# Position-wise parts of a decoder layer: what each position computes there reaches no other position.
POSITIONWISE = ("mlp", "self_attn.q_proj", "self_attn.o_proj")


@contextlib.contextmanager
def last_layer_only_at(model: Any, positions: Any) -> Iterator[None]:
    """The last layer's position-wise parts only at `positions[b]` per row (the LM head reads only those): ~5%."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT wrapper
    layers = getattr(base.get_decoder(), "layers", None) if hasattr(base, "get_decoder") else None
    modules = []
    for name in POSITIONWISE if layers is not None and len(layers) else ():
        with contextlib.suppress(AttributeError):
            modules.append(layers[-1].get_submodule(name))
    rows = torch.arange(len(positions), device=positions.device)
    shapes: dict[Any, Any] = {}

    def gather(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        shapes[module] = args[0].shape[:2]
        return (args[0][rows, positions].unsqueeze(1), *args[1:])

    def scatter(module: Any, args: tuple[Any, ...], output: Any) -> Any:
        full = output.new_zeros((*shapes[module], output.shape[-1]))
        full[rows, positions] = output[:, 0]
        return full

    handles = [m.register_forward_pre_hook(gather) for m in modules]
    handles += [m.register_forward_hook(scatter) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def model_name(spec: str) -> str:
    """A file-safe name for a model spec; a run's `adapter`, `merged` or `checkpoint-N` is named with its run."""
    path = Path(spec.rstrip("/"))
    name = path.name or spec
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if (name in ("adapter", "merged") or name.startswith("checkpoint-")) and run.name:
        name = f"{run.name}-{name}"
    return slug(name)
