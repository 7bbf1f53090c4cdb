"""Offline chat with a GGUF file through llama.cpp: the model's own chat template, streamed tokens, the
`<think>` block shown apart from the answer, and the research-only disclaimer after every reply."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsft import DISCLAIMER
from medsft.cli_errors import error_line
from medsft.export.gguf import LLAMA_CPP_TYPES, REJECTED_SUFFIX
from medsft.export.llamacpp_toolchain import ToolchainError
from medsft.runs import check_run_folder, find_artifact

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_stream(chunks: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Streamed text as ("think"|"answer", text) parts; text that may start a tag cut across chunks waits for more."""
    section, pending = "answer", ""
    for chunk in chunks:
        pending += chunk
        while (at := pending.find(tag := THINK_OPEN if section == "answer" else THINK_CLOSE)) >= 0:
            if pending[:at]:
                yield section, pending[:at]
            pending, section = pending[at + len(tag) :], "think" if tag == THINK_OPEN else "answer"
        keep = next((n for n in range(len(tag) - 1, 0, -1) if pending.endswith(tag[:n])), 0)
        if ready := pending[: len(pending) - keep]:
            yield section, ready
        pending = pending[len(ready) :]
    if pending:
        yield section, pending


@dataclass
class GgufChat:
    """A conversation with a GGUF model; `ask` streams ("think"|"answer", text) parts and keeps the history."""

    path: str | Path
    system: str | None = None
    n_ctx: int = 4096
    max_tokens: int = 768
    temperature: float = 0.0  # greedy: the same question gets the same answer
    seed: int = 0
    history: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from medsft.evaluate.gguf_scorer import load_gguf

        self.llm = load_gguf(self.path, n_ctx=self.n_ctx, seed=self.seed)

    def ask(self, question: str) -> Iterator[tuple[str, str]]:
        turn = {"role": "user", "content": question}
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [*self.history, turn]
        top_k = 1 if self.temperature == 0 else 40
        stream = self.llm.create_chat_completion(
            messages=messages, max_tokens=self.max_tokens, temperature=self.temperature, top_k=top_k, seed=self.seed,
            stream=True,
        )  # fmt: skip
        parts, raw = {"think": "", "answer": ""}, []
        yield from collect(split_stream(delta_texts(stream, raw)), parts)
        self.last_reply_tokens = len(self.llm.tokenize("".join(raw).encode("utf-8"), add_bos=False, special=True))
        # Keep only the answer in the history: earlier reasoning would eat the context window.
        self.history += [turn, {"role": "assistant", "content": parts["answer"].strip()}]


def delta_texts(stream: Iterable[dict[str, Any]], raw: list[str]) -> Iterator[str]:
    """The text of each streamed chunk, also added to `raw`."""
    for event in stream:
        text = event["choices"][0]["delta"].get("content")
        if text:
            raw.append(text)
            yield text


def print_reply(parts: Iterable[tuple[str, str]]) -> None:
    """Stream a reply: reasoning under a dim "thinking" heading, then the answer, then the disclaimer."""
    out = sys.stdout  # looked up per call: a stream bound at import would outlive a replaced stdout
    shown = None
    dim, reset = ("\033[2m", "\033[0m") if out.isatty() else ("", "")
    for kind, text in parts:
        if kind != shown:
            if shown is not None:
                out.write(reset + "\n")
            out.write(f"{dim}[thinking]\n" if kind == "think" else "[answer]\n")
            shown, text = kind, text.lstrip("\n")  # the template's newline after a tag, not content
        out.write(text)
        out.flush()
    out.write(f"{reset}\n\n{DISCLAIMER}\n")
    out.flush()


def collect(stream: Iterable[tuple[str, str]], parts: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Pass a reply's parts through while adding them up in `parts`."""
    for kind, text in stream:
        parts[kind] += text
        yield kind, text


def find_gguf(run_dir: str | Path, quantization: str = "q8_0") -> Path:
    """The run's (or its parent run's) GGUF of that quantization, else its first; never a `*.rejected.gguf`."""
    folder = find_artifact(run_dir, "gguf")
    every = sorted(folder.glob("*.gguf")) if folder else []
    files = [f for f in every if not f.name.endswith(REJECTED_SUFFIX)]
    if not files and every:
        raise FileNotFoundError(
            f"every GGUF in {folder} failed its export check (see export.json); export another quantization"
        )
    if not files:
        raise FileNotFoundError(f"no GGUF file in {run_dir}/gguf; run the export first: medsft export {run_dir}")
    suffix = f"-{LLAMA_CPP_TYPES.get(quantization.lower(), quantization.upper())}.gguf"
    return next((f for f in files if f.name.endswith(suffix)), files[0])


def resolve_gguf(run_dir: Path | None, gguf: Path | None, quantization: str = "q8_0") -> Path:
    """`--gguf FILE`, or the run's file of that quantization; ValueError with one line saying what to run."""
    if (run_dir is None) == (gguf is None):
        raise ValueError("give a RUN_DIR or --gguf FILE (exactly one)")
    if gguf is not None:
        if not gguf.is_file():
            raise ValueError(f"--gguf {gguf}: file not found; export one with: medsft export RUN_DIR")
        if gguf.name.endswith(REJECTED_SUFFIX):
            raise ValueError(f"--gguf {gguf}: this file failed its export check (see export.json); use one that passed")
        return gguf
    check_run_folder(run_dir)
    if not any(find_artifact(run_dir, name) for name in ("gguf", "adapter", "merged")):
        raise ValueError(f"{run_dir} holds no trained model (no adapter/, merged/ or gguf/); train first: medsft run")
    try:
        return find_gguf(run_dir, quantization)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None


def run_chat(gguf: Path, prompt: str | None = None, system: str | None = None, max_tokens: int = 768,
             temperature: float = 0.0, n_ctx: int = 4096) -> int:  # fmt: skip
    """One question (`prompt`) or an interactive session with a GGUF; 2 when the file cannot be loaded."""
    try:
        chat = GgufChat(gguf, system=system, n_ctx=n_ctx, max_tokens=max_tokens, temperature=temperature)
    except (ToolchainError, ValueError) as err:
        error_line(f"cannot load {gguf}: {err}")
        return 2
    if prompt:
        print_reply(chat.ask(prompt))
        return 0
    print(f"Chatting with {gguf.name} offline. Empty line or Ctrl-D to quit.\n{DISCLAIMER}\n")
    with contextlib.suppress(EOFError):
        while question := input("you> ").strip():
            print_reply(chat.ask(question))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medsft.export.chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, required=True, help="the GGUF file to chat with")
    parser.add_argument("--prompt", help="ask one question and exit (default: interactive)")
    parser.add_argument("--system", help="a system message")
    parser.add_argument("--max-tokens", type=int, default=768)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--serve", action="store_true", help="run the OpenAI-compatible server (= medsft serve)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if not args.gguf.is_file():
        error_line(f"GGUF file not found: {args.gguf} (export one with: medsft export RUN_DIR)")
        return 2
    if args.serve:
        from medsft.export.server import serve

        return serve(args.gguf, args.host, args.port, args.n_ctx)
    return run_chat(args.gguf, args.prompt, args.system, args.max_tokens, args.temperature, args.n_ctx)


if __name__ == "__main__":
    sys.exit(main())
