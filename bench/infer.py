"""Generation speed, side by side in one run: transformers (16-bit checkpoint, fp32 compute on CPU) vs
llama.cpp on GGUF files of the same model (Q8_0, Q4_K_M, ...), 128 new tokens from the same chat prompt.

    python bench/infer.py                          # embedded Gemma 3 270M, converted + quantized into a temp dir
    python bench/infer.py --merged outputs/<run>/merged --gguf outputs/<run>/gguf/*.gguf

Each engine generates greedily with end-of-turn ignored (exactly `--tokens` new tokens), `--rounds` times,
alternating; the best round is reported (the least disturbed by other work on the machine). Both engines use
`--threads` threads (default: every core this process may use). The goal (README): llama.cpp Q8_0 at least 6x
transformers fp32. Each run is appended to bench/history.json (`--no-record` to skip); `python bench/history.py`
shows the history.

Run it on a quiet machine: llama.cpp's threads wait for each other by spinning at every operation, so a core
taken by another process stalls both (medsft's llama.cpp is built without OpenMP, so OMP_WAIT_POLICY does not
change that; transformers does follow it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GOAL = 6.0  # llama.cpp Q8_0 tokens/s over transformers fp32 tokens/s
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


def gguf_rate(path: Path, prompt_ids: list[int], tokens: int, threads: int) -> Callable[[], float]:
    from medsft.evaluate.gguf_scorer import load_gguf

    llm = load_gguf(path, n_ctx=1024, n_threads=threads)

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


def llama_build() -> str:
    """What the installed llama.cpp was built with, in the words of llama.cpp's own system info."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return "OpenMP" if "OPENMP = 1" in info else "ggml threads (no OpenMP)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--merged", type=Path, help="16-bit HF checkpoint (default: the embedded model)")
    parser.add_argument("--gguf", type=Path, nargs="*", help="GGUF files of the same model")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-record", action="store_true", help="do not append this run to bench/history.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        merged, ggufs = (args.merged, args.gguf) if args.merged and args.gguf else embedded_files(Path(tmp))
        hf_run, prompt_ids = hf_rate(merged, args.tokens)
        engines = {"transformers fp32 (HF checkpoint)": hf_run}
        for path in ggufs:
            quantization = path.stem.rsplit("-", 1)[-1]
            engines[f"llama.cpp {quantization}"] = gguf_rate(path, prompt_ids, args.tokens, args.threads)
        rates: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, run in engines.items():
                rates[name].append(run())
    base = max(rates["transformers fp32 (HF checkpoint)"])
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(
        f"{args.tokens} new tokens, prompt {len(prompt_ids)} tokens, best of {args.rounds} rounds (median); "
        f"{args.threads} threads; llama.cpp built with {llama_build()}; OMP_WAIT_POLICY {policy}"
    )
    print(f"{'engine':40s} {'tok/s':>8s} {'vs transformers':>16s}")
    for name, values in rates.items():
        print(f"{name:40s} {max(values):8.1f} ({statistics.median(values):6.1f}) {max(values) / base:14.2f}x")
    q8 = rates.get("llama.cpp Q8_0")
    if q8:
        ratio = max(q8) / base
        verdict = "met" if ratio >= GOAL else f"not met: {GOAL * base - max(q8):.1f} tok/s short"
        print(f"goal: llama.cpp Q8_0 >= {GOAL:g}x transformers fp32 on {args.threads} threads: {ratio:.2f}x, {verdict}")
    if not args.no_record:
        import history

        figures = {f"{name.split(' (')[0]} tok/s": max(values) for name, values in rates.items()}
        if q8:
            figures["Q8_0 / transformers"] = max(q8) / base
        settings = {"tokens": args.tokens, "rounds": args.rounds, "threads": args.threads, "llama.cpp": llama_build(),
                    "OMP_WAIT_POLICY": policy}  # fmt: skip
        for line in history.record("infer", figures, higher_is_better=list(figures), settings=settings):
            print(f"slower than the last recorded run: {line}")


if __name__ == "__main__":
    main()
