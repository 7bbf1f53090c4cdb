"""Serving speed: first-token latency and tokens/s of `medsft serve` (llama-cpp-python's OpenAI-compatible server,
over HTTP) with 1 and 4 concurrent clients, side by side with the in-process `GgufChat` on the same GGUF.

    python bench/serve.py                          # embedded Gemma 3 270M as Q8_0, converted into a temp dir
    python bench/serve.py outputs/<run-id>         # the run's Q8_0 GGUF (or give a .gguf file)
    python bench/serve.py -n 2 --tokens 32         # a quick smoke run

Every reply is a streamed, greedy chat completion of the same clinical questions, at most `--tokens` new tokens.
First token: from sending the question to the first text of the reply. Tokens are counted by re-tokenizing the
reply text with the model's tokenizer, the same way for every engine. Decode tokens/s is one reply's tokens
after the first over the time after the first; aggregate tokens/s is all tokens over the wall time of the whole
setting. The server answers one request at a time (one model context), so with 4 clients a request's first
token includes its wait behind the others. Engines run one after another, never at the same time; each is
warmed up with one untimed question.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

QUESTIONS = [
    "A 58-year-old man has crushing chest pain radiating to his left arm and sweating. First steps?",
    "A 24-year-old woman has fever, neck stiffness and a petechial rash. What is the most likely diagnosis?",
    "A 70-year-old man has sudden weakness of the right arm and slurred speech for 40 minutes. Next step?",
    "A 6-year-old has wheeze, cough at night and symptoms after exercise. How should this be assessed?",
    "A 45-year-old woman has polyuria, polydipsia and weight loss; glucose is 18 mmol/L. What next?",
    "A 33-year-old man has pleuritic chest pain and dyspnoea after a long flight. What should be considered?",
    "A 67-year-old woman has sudden painless vision loss in one eye. What is the next step?",
    "A 52-year-old man has epigastric pain, vomiting and a lipase three times normal. How is he managed?",
]


@dataclass
class Reply:
    first_token_s: float
    seconds: float
    text: str


def timed(chunks: Iterator[str], started: float) -> Reply:
    """Drain a stream of text pieces, noting when the first non-empty one arrived."""
    first, parts = None, []
    for text in chunks:
        if text and first is None:
            first = time.perf_counter() - started
        parts.append(text)
    seconds = time.perf_counter() - started
    return Reply(first if first is not None else seconds, seconds, "".join(parts))


def in_process(gguf: Path, tokens: int) -> tuple[Callable[[str], Reply], Callable[[str], int]]:
    """`GgufChat` (the notebook's and `medsft chat`'s code), a new conversation per question."""
    from medsft.export.chat import GgufChat

    chat = GgufChat(gguf, max_tokens=tokens)

    def ask(question: str) -> Reply:
        chat.history.clear()
        started = time.perf_counter()
        return timed((text for _, text in chat.ask(question)), started)

    def count(text: str) -> int:
        return len(chat.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    return ask, count


def over_http(url: str, tokens: int) -> Callable[[str], Reply]:
    import httpx

    def ask(question: str) -> Reply:
        body = {"messages": [{"role": "user", "content": question}], "max_tokens": tokens, "temperature": 0,
                "top_k": 1, "stream": True}  # fmt: skip
        started = time.perf_counter()
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
            response.raise_for_status()
            return timed(sse_texts(response.iter_lines()), started)

    return ask


def sse_texts(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line == "data: [DONE]":
            return
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])["choices"][0]["delta"].get("content") or ""


def run_setting(ask: Callable[[str], Reply], clients: int, per_client: int) -> tuple[list[Reply], float]:
    """`clients` threads, each asking `per_client` questions in turn; the replies and the wall time."""

    def client(index: int) -> list[Reply]:
        return [ask(QUESTIONS[(index + i * clients) % len(QUESTIONS)]) for i in range(per_client)]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        replies = [r for batch in pool.map(client, range(clients)) for r in batch]
    return replies, time.perf_counter() - started


def summarize(name: str, clients: int, replies: list[Reply], wall: float, count: Callable[[str], int]) -> dict:
    counts = [count(r.text) for r in replies]
    decode = [(n - 1) / (r.seconds - r.first_token_s) for n, r in zip(counts, replies, strict=True)
              if n > 1 and r.seconds > r.first_token_s]  # fmt: skip
    return {
        "engine": name,
        "clients": clients,
        "replies": len(replies),
        "first_token_median_s": statistics.median(r.first_token_s for r in replies),
        "first_token_max_s": max(r.first_token_s for r in replies),
        "decode_tokens_per_s": statistics.median(decode) if decode else float("nan"),
        "aggregate_tokens_per_s": sum(counts) / wall,
        "tokens": sum(counts),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(gguf: Path, log: Path, wait_s: float = 180) -> tuple[subprocess.Popen, str]:
    """`medsft serve --gguf FILE` on a free loopback port, polled until /health answers."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "medsft", "serve", "--gguf", str(gguf), "--port", str(port)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.25)
    stop_server(process)
    raise SystemExit(f"medsft serve did not become healthy:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def target_gguf(target: str | None, folder: Path) -> Path:
    """A .gguf file as given, a run folder's Q8_0 GGUF, or (no target) the embedded model converted to Q8_0."""
    if target is None:
        from medsft.export.gguf import convert, quantize
        from medsft.export.llamacpp_toolchain import find_toolchain
        from medsft.models import ensure_embedded_checkpoint

        chain = find_toolchain()
        f16 = convert(chain, ensure_embedded_checkpoint(), folder / "embedded-F16.gguf")
        return quantize(chain, f16, folder / "embedded-Q8_0.gguf", "q8_0")
    from medsft.export.chat import resolve_gguf

    path = Path(target)
    try:
        return resolve_gguf(None, path) if path.suffix == ".gguf" else resolve_gguf(path, None, "q8_0")
    except ValueError as err:
        raise SystemExit(f"bench/serve.py: {err}") from None


def print_table(rows: list[dict]) -> None:
    base = rows[0]
    print(f"{'engine':34s} {'clients':>7s} {'replies':>7s} {'1st token s (max)':>18s} {'decode tok/s':>12s} "
          f"{'total tok/s':>11s} {'1st token x':>11s} {'total tok/s x':>13s}")  # fmt: skip
    for row in rows:
        print(
            f"{row['engine']:34s} {row['clients']:7d} {row['replies']:7d} "
            f"{row['first_token_median_s']:8.3f} ({row['first_token_max_s']:6.3f}) {row['decode_tokens_per_s']:12.1f} "
            f"{row['aggregate_tokens_per_s']:11.1f} {row['first_token_median_s'] / base['first_token_median_s']:11.2f} "
            f"{row['aggregate_tokens_per_s'] / base['aggregate_tokens_per_s']:13.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="a .gguf file or a run folder (default: the embedded model, Q8_0)")
    parser.add_argument("-n", type=int, default=8, help="questions per client (default 8)")
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens per reply (default 128)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gguf = target_gguf(args.target, Path(tmp))
        ask, count = in_process(gguf, args.tokens)
        ask(QUESTIONS[0])  # warm-up
        rows = [summarize("in-process GgufChat", 1, *run_setting(ask, 1, args.n), count)]
        # The in-process model stays loaded (idle) for its tokenizer, which counts every engine's tokens.
        process, url = start_server(gguf, Path(tmp) / "server.log")
        try:
            http = over_http(url, args.tokens)
            http(QUESTIONS[0])  # warm-up
            for clients in (1, 4):
                replies, wall = run_setting(http, clients, args.n)
                rows.append(summarize("medsft serve (HTTP, streamed)", clients, replies, wall, count))
        finally:
            stop_server(process)
    print(f"{gguf.name}: {args.n} questions per client, at most {args.tokens} new tokens, greedy; x = vs in-process")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"gguf": gguf.name, "tokens": args.tokens, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
