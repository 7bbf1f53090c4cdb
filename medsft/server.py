"""`medsft serve`: llama-cpp-python's OpenAI-compatible server (`llama_cpp.server`) on a GGUF, on 127.0.0.1.

    medsft serve outputs/<run-id>                  # the run's Q8_0 GGUF, http://127.0.0.1:8000/v1
    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"messages": [{"role": "user", "content": "Chest pain radiating to the left arm: first step?"}]}'

What medsft adds around `llama_cpp.server.app.create_app` (two small ASGI layers and one route):
- The disclaimer on every response: an `X-Medsft-Disclaimer` header, and a `disclaimer` field in every JSON
  body under /v1/ (a streamed reply carries the header). The conversation is passed on as the client sent it,
  so the model sees the same prompt as in `medsft chat`.
- Requests checked before the model sees them: a body that is not JSON, a chat request of the wrong shape, or
  messages longer than the context window get a 400 with an OpenAI-style `{"error": {...}}` (llama-cpp-python
  0.3.36 answers the first two with a 500 and breaks a streamed reply on the third).
- `GET /health`: 200 once the model is loaded (it loads before the port opens).
- One request at a time (llama-cpp-python holds one model context); others wait their turn, and
  `interrupt_requests` is off so a new request never cuts a streamed reply short.

A `<think>` block comes back verbatim inside the message content (the server has no reasoning parser for these
templates); `medsft.chat.split_stream` splits it from the answer, as `medsft chat` does. Generation stops at the
template's end-of-turn token, which is not part of the content.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from medsft import DISCLAIMER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DISCLAIMER_HEADER = "X-Medsft-Disclaimer"
MAX_BODY_BYTES = 4 * 1024 * 1024  # far above any prompt that fits a context window
SERVER_EXTRAS = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def missing_extras() -> list[str]:
    """The server's modules that are not installed (`make setup` installs them all)."""
    return [name for name in SERVER_EXTRAS if importlib.util.find_spec(name) is None]


def check_port(host: str, port: int) -> None:
    """Raise OSError now, before the model loads, if the address cannot be bound (in use, or not this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def build_app(gguf: Path, n_ctx: int = 4096, n_threads: int | None = None) -> Any:
    """The FastAPI app: llama_cpp.server's routes on this GGUF (its embedded chat template), plus /health, the
    request checks and the disclaimer. Loads the model."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from medsft.evaluate.gguf_scorer import quiet_stderr
    from medsft.llamacpp_toolchain import check_runtime_threads

    check_runtime_threads()
    threads = n_threads or len(os.sched_getaffinity(0))  # as GgufChat: every core this process may use
    model = ModelSettings(
        model=str(gguf), model_alias=gguf.stem, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0,
        verbose=False,
    )  # fmt: skip
    with quiet_stderr():  # llama.cpp logs the whole model layout on stderr while loading
        app = create_app(server_settings=ServerSettings(interrupt_requests=False), model_settings=[model])
        counter = prompt_counter(gguf)

    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": gguf.stem, "n_ctx": n_ctx, "disclaimer": DISCLAIMER}

    app.add_api_route("/health", health, methods=["GET"])
    app.add_middleware(RequestGuard, count_prompt=counter, n_ctx=n_ctx)
    app.add_middleware(DisclaimerLayer)  # added last, so outermost: error replies get the disclaimer too
    return app


def prompt_counter(gguf: Path) -> Callable[[dict[str, Any]], int]:
    """Tokens of a chat request's prompt, rendered as the server renders it (the GGUF's chat template). Uses a
    vocabulary-only copy of the model, so counting never touches the context a request is generating in."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    template = vocab.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError(f"{gguf} has no embedded chat template; export it with medsft export (which checks this)")

    def text(token: int) -> str:
        return vocab.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    formatter = Jinja2ChatFormatter(template, eos_token=text(vocab.token_eos()), bos_token=text(vocab.token_bos()))

    def count(request: dict[str, Any]) -> int:
        rendered = formatter(messages=request["messages"], tools=request.get("tools"))
        ids = vocab.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        return len(ids)

    return count


async def send_error(send: Send, status: int, message: str, code: str) -> None:
    """An OpenAI-style error reply: {"error": {"message", "type", "param", "code"}}."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode("utf-8")})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than `limit` bytes or the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body over once, then the client's own messages (disconnects)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


class RequestGuard:
    """Checks POST bodies before llama_cpp.server sees them; a bad request is a 400 naming what is wrong."""

    def __init__(self, app: ASGIApp, count_prompt: Callable[[dict[str, Any]], int], n_ctx: int) -> None:
        self.app, self.count_prompt, self.n_ctx = app, count_prompt, n_ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = await read_body(receive, MAX_BODY_BYTES)
        if body is None:
            return await send_error(send, 413, f"request body over {MAX_BODY_BYTES} bytes (or cut off)", "too_large")
        problem = self.problem(scope["path"], body)
        if problem:
            return await send_error(send, 400, *problem)
        await self.app(scope, replay(body, receive), send)

    def problem(self, path: str, body: bytes) -> tuple[str, str] | None:
        """(message, code) for a body the server would mishandle, else None."""
        try:
            data = json.loads(body)
        except ValueError as err:
            return f"the request body is not valid JSON: {err}", "invalid_json"
        if not path.endswith("/chat/completions"):
            return None
        from llama_cpp.server.types import CreateChatCompletionRequest
        from pydantic import ValidationError

        try:
            CreateChatCompletionRequest.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return f"invalid chat request: {where}: {first['msg']}", "invalid_request"
        try:
            tokens = self.count_prompt(data)
        except Exception as err:  # the template's own refusal (e.g. roles that do not alternate)
            return f"the chat template cannot render these messages: {err}", "invalid_messages"
        if tokens >= self.n_ctx:
            return (
                f"the messages take {tokens} tokens, but the context window is {self.n_ctx}; shorten them "
                "(or start the server with a larger --n-ctx)",
                "context_length_exceeded",
            )
        return None


class DisclaimerLayer:
    """Adds the research-only disclaimer to every response: a header always, and a `disclaimer` field in JSON
    bodies under /v1/ (streamed replies are passed through untouched, with the header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: Message | None = None  # the start of a JSON reply, sent once its body is complete
        chunks: list[bytes] = []

        async def marked(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (DISCLAIMER_HEADER.lower().encode(), DISCLAIMER.encode())]
                message = {**message, "headers": headers}
                if scope["path"].startswith("/v1/") and is_json(headers):
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = with_disclaimer(b"".join(chunks))
                length = (b"content-length", str(len(body)).encode())
                await send({**held, "headers": [*(h for h in held["headers"] if h[0] != b"content-length"), length]})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, marked)


def is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers)


def with_disclaimer(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    return json.dumps({**data, "disclaimer": DISCLAIMER}, ensure_ascii=False).encode("utf-8")


def serve(gguf: Path, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 4096) -> int:
    """Run the server until interrupted (Ctrl-C or SIGTERM); 2 when the extras are missing or the port is taken."""
    missing = missing_extras()
    if missing:
        print(f"medsft: the server needs {', '.join(missing)}; run make setup (requirements/cpu.txt)", file=sys.stderr)
        return 2
    try:
        check_port(host, port)
    except OSError as err:
        print(f"medsft: cannot listen on {host}:{port} ({err.strerror}); pass another --port", file=sys.stderr)
        return 2
    import uvicorn

    if host not in LOOPBACK:
        print(f"medsft: warning: {host} is reachable from other machines and the server has no authentication")
    app = build_app(gguf, n_ctx)
    print(f"serving {gguf.name} at http://{host}:{port}/v1 (OpenAI-compatible; GET /health). {DISCLAIMER}")
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
