"""HF checkpoint -> GGUF with llama.cpp's converter, then its quantizer from the F16 (requantizing is refused and would
compound the error); the names a file has before its check (`.partial`) and after failing it (`.rejected.gguf`)."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

from medsft.config import QUANTIZATIONS
from medsft.export.llamacpp_toolchain import Toolchain

log = logging.getLogger("medsft")

# medsft's names (Unsloth's spelling, config.QUANTIZATIONS) -> llama.cpp's. f16 comes from the converter.
LLAMA_CPP_TYPES = {"f16": "F16", "q8_0": "Q8_0", "q5_k_m": "Q5_K_M", "q4_k_m": "Q4_K_M"}
assert set(LLAMA_CPP_TYPES) == set(QUANTIZATIONS)
REJECTED_SUFFIX = ".rejected.gguf"


class ExportError(RuntimeError):
    """An export step failed; the message names the step, the file and what to do."""


def check_quantizations(names: list[str] | tuple[str, ...]) -> list[str]:
    """Lower-cased, de-duplicated, known names; an unknown one is an error listing the valid ones."""
    for name in names:
        if str(name).strip().lower() not in QUANTIZATIONS:
            raise ExportError(f"unknown quantization '{name}'; choose from {', '.join(QUANTIZATIONS)}")
    wanted = list(dict.fromkeys(str(name).strip().lower() for name in names))
    if not wanted:
        raise ExportError(f"no quantization asked for; choose from {', '.join(QUANTIZATIONS)}")
    return wanted


def partial_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def rejected_name(final: Path) -> Path:
    """Where a file that failed its check is kept: `<name>-Q4_K_M.rejected.gguf`, so no `*-Q4_K_M.gguf` glob,
    `medsft chat` or upload mistakes it for a good file."""
    return final.with_name(f"{final.stem}{REJECTED_SUFFIX}")


def run_tool(command: list[str], step: str, target: Path) -> None:
    """Run a llama.cpp step, its command logged, quietly (the quantizer logs every tensor) but on failure."""
    log.info("$ %s", shlex.join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ExportError(f"{step} failed for {target} (exit {done.returncode}):\n{tail}")


def convert(toolchain: Toolchain, checkpoint: Path, out: Path) -> Path:
    """llama.cpp's `convert_hf_to_gguf.py` (its vendored gguf-py, not PyPI's) on a merged HF folder, to F16."""
    if not (checkpoint / "config.json").is_file():
        raise ExportError(f"{checkpoint} is not a Hugging Face checkpoint (no config.json); export the merged model")
    log.info("converting %s to F16 GGUF", checkpoint)
    command = [sys.executable, str(toolchain.converter), str(checkpoint), "--outfile", str(out), "--outtype", "f16"]
    run_tool(command, "convert_hf_to_gguf.py", out)
    return out


def quantize(toolchain: Toolchain, source: Path, out: Path, name: str) -> Path:
    log.info("quantizing %s to %s", source.name, LLAMA_CPP_TYPES[name])
    command = [sys.executable, str(toolchain.quantize_tool), str(source), str(out), LLAMA_CPP_TYPES[name]]
    run_tool(command, "llama-quantize", out)
    return out
