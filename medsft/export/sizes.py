"""What each file costs a laptop: its size on disk and the peak memory, measured in a fresh process, that
llama.cpp needs to chat with it (memory-mapped weights once touched, KV cache, buffers, interpreter ~60 MB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MIB = 2**20

PROBE_SCRIPT = """
import json, os, sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=len(os.sched_getaffinity(0)), verbose=False)
llm.create_chat_completion([{"role": "user", "content": "Name one cause of chest pain."}], max_tokens=16)
# VmHWM, not ru_maxrss: the latter survives exec, so it would report the parent's peak instead.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))
"""


def size_row(quantization: str, path: Path, n_ctx: int = 4096) -> dict[str, Any]:
    """The file's size, and the peak RSS in GiB of a process chatting with it at context `n_ctx`."""
    file_mib = round(path.stat().st_size / MIB, 1)
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT, str(path), str(n_ctx)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not load {path} with llama.cpp to measure its memory: {done.stderr[-800:]}")
    peak_kib = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_kib"]
    ram_gib = round(peak_kib / MIB, 3)
    return {"quantization": quantization, "file": path.name, "file_mib": file_mib, "ram_gib": ram_gib, "n_ctx": n_ctx}


def folder_mib(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / MIB, 1)
