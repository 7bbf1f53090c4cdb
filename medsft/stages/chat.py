"""05 chat: ask the exported GGUF questions offline, streaming the replies, and keep the transcript."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medsft import DISCLAIMER
from medsft.export.chat import GgufChat, collect, find_gguf, print_reply
from medsft.runs import write_json


def chat_stage(
    run_dir: str | Path, questions: list[str], quantization: str = "q8_0", max_tokens: int = 512
) -> dict[str, Any]:
    """Ask each question in one conversation, streaming the replies, and record them in `chat.json`."""
    path = find_gguf(run_dir, quantization)
    chat = GgufChat(path, max_tokens=max_tokens)
    turns = []
    for question in questions:
        print(f"you> {question}")
        started = time.perf_counter()
        parts: dict[str, str] = {"think": "", "answer": ""}
        print_reply(collect(chat.ask(question), parts))
        seconds = time.perf_counter() - started
        turns.append(
            {
                "question": question,
                "think": parts["think"].strip(),
                "answer": parts["answer"].strip(),
                "tokens": chat.last_reply_tokens,
                "seconds": round(seconds, 2),
                "tokens_per_second": round(chat.last_reply_tokens / seconds, 1) if seconds else None,
            }
        )
    result = {"gguf": path.name, "turns": turns, "disclaimer": DISCLAIMER}
    write_json(Path(run_dir) / "chat.json", result, overwrite=True)
    return result
