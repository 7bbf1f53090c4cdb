"""Generation speed, side by side in one run: transformers (16-bit checkpoint, fp32 compute on CPU) vs
llama.cpp on GGUF files of the same model (Q8_0, Q4_K_M, ...), 128 new tokens from the same chat prompt.

    python bench/infer.py                          # embedded Gemma 3 270M, converted + quantized into a temp dir
    python bench/infer.py --merged outputs/<run>/merged --gguf outputs/<run>/gguf/*.gguf

Each engine generates greedily with end-of-turn ignored (exactly `--tokens` new tokens), `--rounds` times,
alternating; the best round is reported (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROMPT = [{"role": "user", "content": "A 58-year-old man has crushing chest pain radiating to his left arm and "
           "sweating for 30 minutes. Walk through the differential diagnosis and the first steps."}]  # fmt: skip


def hf_rate(folder: Path, tokens: int) -> tuple[Callable[[], float], list[int]]:
    import torch
    from transformers import AutoModelForCausalLM

    from medsft.templates import render_chat
    from medsft.train.fast_language_model import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer.encode(render_chat(tokenizer, PROMPT, True), add_special_tokens=False)])

    def run() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                 top_k=None, top_p=None, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        assert out.shape[1] - ids.shape[1] == tokens
        return tokens / (time.perf_counter() - started)

    return run, ids[0].tolist()


def gguf_rate(path: Path, prompt_ids: list[int], tokens: int) -> Callable[[], float]:
    from medsft.evaluate.gguf_scorer import load_gguf

    llm = load_gguf(path, n_ctx=1024)

    def run() -> float:
        llm.reset()
        started = time.perf_counter()
        # Sampling through `generate` (greedy); end-of-turn is not a stop here, so every round makes `tokens`.
        for count, _ in enumerate(llm.generate(prompt_ids, top_k=1, temp=0.0, reset=True), start=1):
            if count == tokens:
                break
        return tokens / (time.perf_counter() - started)

    return run


def embedded_files(folder: Path) -> tuple[Path, list[Path]]:
    """The embedded checkpoint and Q8_0 / Q4_K_M GGUFs of it, made with the cached llama.cpp toolchain."""
    from medsft.export.gguf import convert, quantize
    from medsft.export.llamacpp_toolchain import find_toolchain
    from medsft.models import ensure_embedded_checkpoint

    merged = ensure_embedded_checkpoint()
    chain = find_toolchain()
    f16 = convert(chain, merged, folder / "embedded-F16.gguf")
    return merged, [quantize(chain, f16, folder / f"embedded-{q.upper()}.gguf", q) for q in ("q8_0", "q4_k_m")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--merged", type=Path, help="16-bit HF checkpoint (default: the embedded model)")
    parser.add_argument("--gguf", type=Path, nargs="*", help="GGUF files of the same model")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        merged, ggufs = (args.merged, args.gguf) if args.merged and args.gguf else embedded_files(Path(tmp))
        hf_run, prompt_ids = hf_rate(merged, args.tokens)
        engines = {"transformers fp32 (HF checkpoint)": hf_run}
        engines.update({f"llama.cpp {p.stem.rsplit('-', 1)[-1]}": gguf_rate(p, prompt_ids, args.tokens) for p in ggufs})
        rates: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, run in engines.items():
                rates[name].append(run())
    base = max(rates["transformers fp32 (HF checkpoint)"])
    print(f"{args.tokens} new tokens, prompt {len(prompt_ids)} tokens, best of {args.rounds} rounds (median)")
    print(f"{'engine':40s} {'tok/s':>8s} {'vs transformers':>16s}")
    for name, values in rates.items():
        print(f"{name:40s} {max(values):8.1f} ({statistics.median(values):6.1f}) {max(values) / base:14.2f}x")


if __name__ == "__main__":
    main()
