"""`medsft serve` over real HTTP: the command is started in a subprocess on a free loopback port with a real
GGUF (a tiny random Gemma 3 with the real tokenizer and chat template, converted by llama.cpp's converter), and
answers like an OpenAI server: health, chat completions streamed and not, ending at the template's end of turn,
clear 400s for malformed JSON and over-long prompts (the server stays up), 8 concurrent requests all answered,
the disclaimer on every response, and a clean stop. Every wait is bounded in count and time."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from medsft import DISCLAIMER

N_CTX = 256  # small, so an over-long prompt is cheap to build
STARTUP_SECONDS = 60
REQUEST_SECONDS = 60


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_gemma_dir: Path) -> Path:
    from medsft.export.gguf import convert
    from medsft.llamacpp_toolchain import find_toolchain

    return convert(find_toolchain(), tiny_gemma_dir, tmp_path_factory.mktemp("serve") / "tiny-F16.gguf")


@pytest.fixture(scope="module")
def end_of_turn(gemma_tokenizer) -> int:
    return gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(gguf: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`medsft serve --gguf FILE` on a free port (default host), polled until /health answers (at most 60 s)."""
    port = free_port()
    command = [sys.executable, "-m", "medsft", "serve", "--gguf", str(gguf), "--port", str(port), "--n-ctx", str(N_CTX)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"medsft serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(process)
    pytest.fail(f"medsft serve was not healthy within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> int:
    """SIGTERM, up to 30 s to finish, then SIGKILL; the exit code (negative when killed)."""
    process.terminate()
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server(tiny_gguf, tmp_path_factory.mktemp("serve-log") / "server.log")
    yield url
    stop_server(process)


def chat(url: str, content: str = "Chest pain: first step?", **extra: Any) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=REQUEST_SECONDS)


def assert_alive(url: str) -> None:
    reply = chat(url, max_tokens=2)
    assert reply.status_code == 200 and reply.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_health_names_the_model_and_carries_the_disclaimer(server: str) -> None:
    reply = httpx.get(f"{server}/health", timeout=REQUEST_SECONDS)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "model": "tiny-F16", "n_ctx": N_CTX, "disclaimer": DISCLAIMER}
    assert reply.headers["x-medsft-disclaimer"] == DISCLAIMER


def test_a_chat_completion_is_answered_with_the_disclaimer(server: str) -> None:
    reply = chat(server)
    assert reply.status_code == 200 and reply.headers["x-medsft-disclaimer"] == DISCLAIMER
    data = reply.json()
    assert data["disclaimer"] == DISCLAIMER and data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert "<end_of_turn>" not in choice["message"]["content"] and "<start_of_turn>" not in choice["message"]["content"]
    assert data["usage"]["completion_tokens"] <= 8


def test_generation_ends_at_the_templates_end_of_turn(server: str, end_of_turn: int) -> None:
    """Biased to say `<end_of_turn>` at once, the reply stops there (finish_reason "stop") without the token
    in the text: the server stops at the GGUF's end-of-generation token, as the export check demands."""
    reply = chat(server, logit_bias={str(end_of_turn): 100.0})
    choice = reply.json()["choices"][0]
    assert (reply.status_code, choice["finish_reason"], choice["message"]["content"]) == (200, "stop", "")


def stream(url: str, **extra: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """A streamed chat completion's events, read until `[DONE]` (at most 100 events)."""
    body = {"messages": [{"role": "user", "content": "Fever and cough?"}], "max_tokens": 8, "stream": True, **extra}
    events = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=REQUEST_SECONDS) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: "):
                if line == "data: [DONE]":
                    return reply, events
                events.append(json.loads(line[len("data: ") :]))
                assert len(events) <= 100, "the stream did not end"
    pytest.fail(f"the stream closed without [DONE] after {len(events)} events")


def test_a_streamed_completion_ends_with_a_finish_reason(server: str, end_of_turn: int) -> None:
    reply, events = stream(server)
    assert reply.status_code == 200 and reply.headers["x-medsft-disclaimer"] == DISCLAIMER
    assert reply.headers["content-type"].startswith("text/event-stream")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length") and "<end_of_turn>" not in text
    assert 1 <= len(events) <= 8 + 2  # a role event, at most 8 tokens, a closing event
    _, biased = stream(server, logit_bias={str(end_of_turn): 100.0})
    assert biased[-1]["choices"][0]["finish_reason"] == "stop"


def test_malformed_json_is_a_400_and_the_server_stays_up(server: str) -> None:
    reply = httpx.post(
        f"{server}/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"},
        timeout=REQUEST_SECONDS,
    )  # fmt: skip
    assert reply.status_code == 400 and reply.headers["x-medsft-disclaimer"] == DISCLAIMER
    error = reply.json()["error"]
    assert error["code"] == "invalid_json" and error["message"].startswith("the request body is not valid JSON")
    wrong = httpx.post(f"{server}/v1/chat/completions", json={"messages": "hi"}, timeout=REQUEST_SECONDS)
    assert wrong.status_code == 400 and wrong.json()["error"]["message"].startswith("invalid chat request: messages")
    assert_alive(server)


@pytest.mark.parametrize("streamed", [False, True])
def test_an_over_long_prompt_is_a_400_and_the_server_stays_up(server: str, streamed: bool) -> None:
    reply = chat(server, content="word " * (2 * N_CTX), stream=streamed)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and f"the context window is {N_CTX}" in error["message"]
    assert_alive(server)


def test_eight_concurrent_requests_are_all_answered(server: str) -> None:
    questions = [f"Case {i}: fever for {i + 1} days. Next step?" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda q: chat(server, content=q, max_tokens=4), questions, timeout=4 * 60))
    assert [r.status_code for r in replies] == [200] * 8
    ids = {r.json()["id"] for r in replies}
    assert len(ids) == 8 and all(r.json()["choices"][0]["finish_reason"] in ("stop", "length") for r in replies)
    assert all(r.json()["usage"]["completion_tokens"] <= 4 for r in replies)


def test_serve_binds_loopback_by_default_and_stops_on_sigterm(tiny_gguf: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    process, url = start_server(tiny_gguf, log)
    assert url.startswith("http://127.0.0.1:")
    assert f"at {url}/v1" in log.read_text()  # the address it announced is the loopback one
    # uvicorn finishes the shutdown, then re-raises SIGTERM so the exit status says how it ended; -9 is a kill
    assert stop_server(process) in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert "Application shutdown complete" in log.read_text()
