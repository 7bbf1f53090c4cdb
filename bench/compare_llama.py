"""llama.cpp generation under several builds and settings at once, interleaved on one machine.

Each setting is one worker process: its own llama-cpp-python (a folder put first on PYTHONPATH, e.g. a wheel
unpacked with `pip install --target DIR --no-deps WHEEL`), its own environment (OMP_WAIT_POLICY) and its own
`Llama(...)` arguments. The driver asks them in turn for one greedy generation of `--tokens` tokens from the
same prompt, `--rounds` times, so machine noise falls on all of them alike; it prints the best and median
tokens/s of each and whether every setting generated the same tokens as the first one.

    python bench/compare_llama.py MODEL.gguf \\
        --setting 'old=/tmp/llama-omp:OMP_WAIT_POLICY=PASSIVE:{"n_ctx": 4096}' \\
        --setting 'new=/tmp/llama-noomp::{"n_ctx": 4096}'

A setting is NAME=PYTHONPATH:ENV:KWARGS, where ENV is comma-separated VAR=VALUE (empty: OMP_WAIT_POLICY unset)
and KWARGS a JSON object of `Llama` arguments (n_threads defaults to every core this process may use).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = (
    "<start_of_turn>user\nA 58-year-old man has crushing chest pain radiating to his left arm and sweating for 30 "
    "minutes. Walk through the differential diagnosis and the first steps.<end_of_turn>\n<start_of_turn>model\n"
)


def worker(model: str, kwargs: dict, tokens: int) -> None:
    """Reads "gen" / "quit" on stdin; answers {"total": tok/s with the prompt, "decode": tok/s after it, "ids"}."""
    import llama_cpp

    threads = kwargs.pop("n_threads", len(os.sched_getaffinity(0)))
    llm = llama_cpp.Llama(model_path=model, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False, **kwargs)
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    prompt = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    print(json.dumps({"ready": {"openmp": "OPENMP = 1" in info, "file": llama_cpp.__file__}}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            return
        llm.reset()
        ids, first = [], 0.0
        started = time.perf_counter()
        for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):  # greedy; end-of-turn is not a stop
            if not ids:
                first = time.perf_counter()
            ids.append(token)
            if len(ids) == tokens:
                break
        ended = time.perf_counter()
        print(json.dumps({"total": tokens / (ended - started), "decode": (tokens - 1) / (ended - first), "ids": ids}),
              flush=True)  # fmt: skip


def parse_setting(text: str) -> tuple[str, str, dict[str, str], dict]:
    name, rest = text.split("=", 1)
    path, env, kwargs = rest.split(":", 2)
    variables = dict(item.split("=", 1) for item in env.split(",") if item)
    return name, path, variables, json.loads(kwargs or "{}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--setting", action="append", required=True, help="NAME=PYTHONPATH:ENV:KWARGS")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(str(args.model), json.loads(args.worker), args.tokens)
        return

    procs, ready = {}, {}
    for spec in args.setting:
        name, path, variables, kwargs = parse_setting(spec)
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env.update(variables)
        if path:
            env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        command = [sys.executable, __file__, str(args.model), "--setting", "x", "--tokens", str(args.tokens),
                   "--worker", json.dumps(kwargs)]  # fmt: skip
        procs[name] = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       cwd="/tmp", stderr=subprocess.DEVNULL)  # fmt: skip
        ready[name] = json.loads(procs[name].stdout.readline())["ready"]
    rates = {name: {"total": [], "decode": []} for name in procs}
    texts: dict[str, list[int]] = {}
    order = random.Random(0)
    for _ in range(args.rounds):
        names = list(procs)
        order.shuffle(names)
        for name in names:
            time.sleep(args.pause)
            procs[name].stdin.write("gen\n")
            procs[name].stdin.flush()
            answer = json.loads(procs[name].stdout.readline())
            rates[name]["total"].append(answer["total"])
            rates[name]["decode"].append(answer["decode"])
            texts.setdefault(name, answer["ids"])
            if answer["ids"] != texts[name]:
                print(f"{name}: a later round generated other tokens than its first")
    for proc in procs.values():
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait()
    first = next(iter(texts.values()))
    print(f"{args.model.name}: {args.tokens} tokens, {args.rounds} rounds interleaved; best (median) tokens/s")
    print(f"{'setting':<28}{'OpenMP':>7}{'with prompt':>18}{'decode only':>18}  same tokens as first")
    for name, values in rates.items():
        total, decode = values["total"], values["decode"]
        openmp = "yes" if ready[name]["openmp"] else "no"
        print(f"{name:<28}{openmp:>7}{max(total):>9.1f} ({statistics.median(total):5.1f})"
              f"{max(decode):>10.1f} ({statistics.median(decode):5.1f})  {texts[name] == first}")  # fmt: skip
    print(json.dumps({name: {**values, "openmp": ready[name]["openmp"]} for name, values in rates.items()}))


if __name__ == "__main__":
    main()
