"""The Unsloth path end to end on a CUDA machine with no network.

Loads a local model through Unsloth's FastLanguageModel in 4-bit, adds LoRA with Unsloth's gradient
checkpointing, runs a few SFT steps with response-only labels on synthetic clinical cases, saves the adapter and
a merged 16-bit checkpoint, and prints tokens/s and peak VRAM. Fails loudly if Unsloth cannot run here.

    python scripts/gpu_check.py [--model PATH] [--steps 5] [--out /tmp/medsft-gpu-check]

`--model` defaults to the embedded Gemma 3 270M (converted into ~/.cache/medsft on first use).
"""

from __future__ import annotations

import argparse
import json
import time

from medsft.backend import import_unsloth_if_usable

usable, why = import_unsloth_if_usable()  # before transformers and TRL, which Unsloth patches

import torch  # noqa: E402

from medsft.backend import select_backend  # noqa: E402
from medsft.config import DataSource, build_config  # noqa: E402
from medsft.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="/tmp/medsft-gpu-check")
    args = parser.parse_args()
    if not usable:
        raise SystemExit(f"gpu_check: Unsloth cannot run here: {why}")

    config = build_config(
        {
            "model": args.model,
            "backend": "unsloth",
            "chat_template": "gemma-3" if args.model == "embedded" else None,
            "load_in_4bit": True,
            "max_steps": args.steps,
            "batch_size": 4,
            "optimizer": "adamw_8bit",
            "eval_every_steps": 0,
            "save_every_steps": 0,
            "datasets": [DataSource(name="synthetic", count=64)],
            "eval_tasks": ["synthetic"],
            "output_dir": args.out,
        }
    )
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started

    backend = select_backend("unsloth")
    model, tokenizer = backend.load(build_config({**config.to_dict(), "model": str(result.adapter_dir)}))
    merged = backend.save_merged(model, tokenizer, result.run_dir / "merged")
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(0),
                "backend": backend.name,
                "steps": result.global_step,
                "train_loss": result.train_loss,
                "tokens_per_second": result.tokens_per_second,
                "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "wall_seconds": round(seconds, 1),
                "adapter": str(result.adapter_dir),
                "merged": str(merged),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
