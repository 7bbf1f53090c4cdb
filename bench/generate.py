"""Generation speed for synthetic evaluation, side by side in one run, on the same cases and prompts:
transformers' `generate` (what `HFScorer.generate` ran before), medsft's `greedy_generate` at several batch
sizes, and llama.cpp (`LlamaCppScorer`, one sequence at a time) on a GGUF of the same model.

    python bench/generate.py                       # embedded Gemma 3 270M, 64 cases (32 ID + 32 OOD), 224 tokens
    python bench/generate.py --cases 16 --batch-sizes 8 --quant f16

Tokens/s counts the reply tokens (re-tokenized text of each reply, plus its end token when it stopped), so
every method is credited with the same work for the same text. Greedy decoding throughout; the last column
says how many replies equal transformers' `generate` text. Before timing, one short batch is profiled: the
tokens fed per forward (1 per row after the prompt = the KV cache is used) and the LM head's time share.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def lm_head_share(scorer, conversations, steps: int = 32) -> tuple[float, list[int]]:
    """The LM head's share of forward time in greedy generation of one batch, and the tokens fed per row."""
    import torch

    from medsft.evaluate.transformers_scorer import greedy_generate
    from medsft.templates import render_chat

    model, tokenizer = scorer.model, scorer.tokenizer
    spent = {"head": 0.0, "all": 0.0}
    fed: list[int] = []
    marks: dict[str, float] = {}

    def start(name: str) -> Callable:
        def hook(module, args, kwargs=None):
            if name == "all":
                fed.append(int(kwargs["input_ids"].shape[1]))
            marks[name] = time.perf_counter()

        return hook

    def stop(name: str) -> Callable:
        def hook(module, args, *rest):
            spent[name] += time.perf_counter() - marks[name]

        return hook

    head = model.get_output_embeddings()
    handles = [
        head.register_forward_pre_hook(start("head")),
        head.register_forward_hook(stop("head")),
        model.register_forward_pre_hook(start("all"), with_kwargs=True),
        model.register_forward_hook(stop("all")),
    ]
    prompts = [
        tokenizer(render_chat(tokenizer, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        for c in conversations
    ]
    try:
        with torch.inference_mode():
            greedy_generate(model, prompts, steps, batch_size=len(prompts), pad_id=scorer.pad_id)
    finally:
        for handle in handles:
            handle.remove()
    return spent["head"] / spent["all"], fed


def reply_tokens(tokenizer, replies: list[str], limit: int) -> int:
    counts = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies]
    return sum(min(limit, c + (c < limit)) for c in counts)  # + the end token where the reply stopped early


def gguf_of_embedded(folder: Path, quant: str) -> Path:
    from medsft.export.gguf import convert, quantize
    from medsft.export.llamacpp_toolchain import find_toolchain
    from medsft.models import ensure_embedded_checkpoint

    chain = find_toolchain()
    f16 = convert(chain, ensure_embedded_checkpoint(), folder / "embedded-F16.gguf")
    return f16 if quant == "f16" else quantize(chain, f16, folder / f"embedded-{quant.upper()}.gguf", quant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=64, help="half in-distribution, half OOD synthetic cases")
    parser.add_argument("--tokens", type=int, default=224, help="max new tokens per reply")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--plain-batch", type=int, default=8, help="batch size of transformers' generate")
    parser.add_argument("--quant", default="q8_0", choices=["q8_0", "f16", "none"], help="GGUF for llama.cpp")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from medsft.data import synthetic_eval_cases, synthetic_ood_cases
    from medsft.evaluate.synthetic import case_messages
    from medsft.evaluate.transformers_scorer import GenerationSettings, HFScorer

    if args.threads:
        torch.set_num_threads(args.threads)
    cases = synthetic_eval_cases(args.cases // 2) + synthetic_ood_cases(args.cases - args.cases // 2)
    conversations = [case_messages(c) for c in cases]
    scorer = HFScorer.from_spec("embedded")
    tokenizer = scorer.tokenizer

    share, fed = lm_head_share(scorer, conversations[:8])
    print(f"profile (1 batch of 8, 32 steps): tokens fed per row per forward {fed[0]} (prompt), then "
          f"{sorted(set(fed[1:]))} (KV cache used); LM head (262k vocab) {share:.0%} of forward time")  # fmt: skip

    runs: list[tuple[str, Callable[[], list[str]]]] = []

    def hf(batch: int, fast: bool) -> Callable[[], list[str]]:
        def run() -> list[str]:
            scorer.batch_size, scorer.generate_batch_size, scorer.fast_greedy = batch, batch, fast
            return scorer.generate(conversations, GenerationSettings(args.tokens))

        return run

    runs.append((f"transformers generate, batch {args.plain_batch}", hf(args.plain_batch, False)))
    runs += [(f"medsft greedy_generate, batch {b}", hf(b, True)) for b in args.batch_sizes]
    with tempfile.TemporaryDirectory() as folder:
        if args.quant != "none":
            from medsft.evaluate.gguf_scorer import LlamaCppScorer

            gguf = LlamaCppScorer(gguf_of_embedded(Path(folder), args.quant), n_threads=args.threads)
            runs.append((f"llama.cpp {args.quant.upper()}, 1 sequence", lambda: gguf.generate(
                conversations, GenerationSettings(args.tokens))))  # fmt: skip
        rows, reference = [], None
        for name, run in runs:
            started = time.perf_counter()
            replies = run()
            seconds = time.perf_counter() - started
            reference = reference or replies
            tokens = reply_tokens(tokenizer, replies, args.tokens)
            same = sum(a == b for a, b in zip(replies, reference, strict=True))
            rate = tokens / seconds
            rows.append((name, seconds, tokens, rate, same))
            print(f"{name}: {seconds:.1f} s, {tokens} tokens, {rate:.1f} tok/s, same {same}/{len(cases)}", flush=True)

    base = rows[0][3]
    print(f"\n{len(cases)} synthetic cases ({args.cases // 2} ID + {args.cases - args.cases // 2} OOD), "
          f"up to {args.tokens} new tokens, greedy, torch threads {torch.get_num_threads()}")  # fmt: skip
    print("| method | seconds | reply tokens | tokens/s | vs transformers generate | same text |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, seconds, tokens, rate, same in rows:
        print(f"| {name} | {seconds:.1f} | {tokens} | {rate:.1f} | {rate / base:.2f}x | {same}/{len(cases)} |")
    best = max(rows, key=lambda r: r[3])
    print(f"\nfastest: {best[0]} ({best[3]:.1f} tok/s, {best[3] / base:.2f}x transformers generate)")


if __name__ == "__main__":
    main()
