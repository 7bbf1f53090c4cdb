"""`medsft serve`: llama_cpp.server on a GGUF with request checks, limits, /health, disclaimer (docs/serving.md)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from medsft import DISCLAIMER
from medsft.cli_errors import error_line
from medsft.export.server_checks import GENERATION, BadRequest, Limits, normalized, route_of

if TYPE_CHECKING:  # starlette comes with the server's extras, which `serve` checks for
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

DISCLAIMER_HEADER = "X-Medsft-Disclaimer"
MAX_BODY_BYTES = 4 * 1024 * 1024  # far above any prompt that fits a context window
SERVER_EXTRAS = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
HOLD_GRACE_S = 10.0  # past the time limit: the prompt's evaluation is not interrupted, and the reply must be sent


def build_app(gguf: Path, n_ctx: int, limits: Limits) -> Any:
    """llama_cpp.server's app on this GGUF with /health and the guards; ValueError when llama.cpp cannot load it."""
    import llama_cpp.server.app as server_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from medsft.evaluate.gguf_scorer import quiet_stderr
    from medsft.export.llamacpp_toolchain import check_runtime_threads, default_threads

    check_runtime_threads()
    threads = default_threads()  # as GgufChat
    model = ModelSettings(
        model=str(gguf), model_alias=gguf.stem, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0,
        verbose=False,
    )  # fmt: skip
    with quiet_stderr():  # llama.cpp logs the whole model layout on stderr while loading
        app = server_app.create_app(server_settings=ServerSettings(interrupt_requests=False), model_settings=[model])
        vocabulary = Vocabulary(gguf)
    clock = bound_generation(server_app._llama_proxy(), limits)  # the one model the proxy holds (one GGUF)

    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": gguf.stem, "n_ctx": n_ctx, "limits": asdict(limits), "disclaimer": DISCLAIMER}

    app.add_api_route("/health", health, methods=["GET"])
    app.add_middleware(RequestGuard, vocabulary=vocabulary, n_ctx=n_ctx, limits=limits, clock=clock)
    app.add_middleware(DisclaimerLayer)  # added last, so outermost: error replies get the disclaimer too
    return app


class Vocabulary:
    """A prompt's token count as the server renders it, on a vocabulary-only copy (never the generating context)."""

    def __init__(self, gguf: Path) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        self.size = self.vocab.n_vocab()
        template = self.vocab.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{gguf} has no embedded chat template; export it with medsft export (which checks this)")
        eos, bos = self.text(self.vocab.token_eos()), self.text(self.vocab.token_bos())
        self.formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        # A prompt of n bytes has at least n / longest tokens: one far past the window is refused without the
        # 15 s tokenizing 4 MB takes (this costs about 1 s for a 262k vocabulary, once).
        self.longest = max(len(self.vocab.detokenize([token], special=True)) for token in range(self.size))

    def text(self, token: int) -> str:
        return self.vocab.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def prompt_tokens(self, path: str, request: dict[str, Any], enough: int) -> tuple[int, bool]:
        """(tokens, exact): the prompt's length, or a lower bound once `enough`; raises what the template raises."""
        if path.endswith("/chat/completions"):
            rendered = self.formatter(messages=request["messages"], tools=request.get("tools"))
            text, add_bos = rendered.prompt.encode("utf-8"), not rendered.added_special
        else:
            prompt = request.get("prompt", "")
            text, add_bos = ((prompt[0] if prompt else "") if isinstance(prompt, list) else prompt).encode(), True
        if len(text) // self.longest >= enough:
            return len(text) // self.longest, False
        return len(self.vocab.tokenize(text, add_bos=add_bos, special=True)), True

    def parses(self, grammar: str) -> bool:
        """Whether llama.cpp parses this GBNF (llama-cpp-python 0.3.36 segfaults on one it cannot: a null sampler)."""
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab._model.vocab, grammar.encode("utf-8"), b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        return bool(sampler)


def grammars(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, GBNF) of each grammar a chat request makes, as llama-cpp-python 0.3.36's chat handler makes it."""
    from llama_cpp.llama_chat_format import _grammar_for_response_format
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if "grammar" in data:
        yield "grammar", data["grammar"]
    response_format = data.get("response_format")
    if response_format and response_format.get("type") == "json_object":
        yield "response_format", _grammar_for_response_format(response_format)._grammar
    tool = chosen_tool(data)
    if tool is not None:
        try:
            yield "tool_choice", LlamaGrammar.from_json_schema(json.dumps(tool["parameters"]))._grammar
        except Exception:  # the handler falls back on any JSON, as here
            yield "tool_choice", JSON_GBNF


def chosen_tool(data: dict[str, Any]) -> dict[str, Any] | None:
    """The function a chat request forces (tool_choice, or the legacy function_call), if it names one; BadRequest
    where llama-cpp-python would answer a 500 (a missing tool, or one without parameters)."""
    tools = [tool.get("function", {}) for tool in data.get("tools") or []]
    choice = data.get("tool_choice")
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if isinstance(data.get("function_call"), dict):
        tools, name, field = data.get("functions") or [], data["function_call"].get("name"), "function_call"
    else:
        field = "tool_choice"
    if name is None:
        return None
    tool = next((tool for tool in tools if tool.get("name") == name), None)
    if tool is None:
        raise BadRequest(f"names {json.dumps(name)}, which is not among the request's tools", field)
    if "parameters" not in tool:
        raise BadRequest(f"the function {json.dumps(name)} it names has no parameters (a JSON schema)", field)
    return tool


class Deadline:
    """A stopping criterion, true once `seconds` have passed (asked after every token)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end, self.fired = seconds, time.monotonic() + seconds, 0

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        late = time.monotonic() >= self.end
        self.fired += late
        return late

    @property
    def cut(self) -> bool:
        # llama-cpp-python asks once more after the last token whatever ended the reply: only a second true counts
        return self.fired >= 2


@dataclass
class Clock:
    """The deadline of the reply being generated now, made by the model and read by the guard that notes a cut."""

    latest: Deadline | None = None

    def cut(self) -> Deadline | None:
        return self.latest if self.latest is not None and self.latest.cut else None


def bound_generation(llama: Any, limits: Limits) -> Clock:
    """Every generation on `llama` (chat goes through `create_completion` too) under the time limit, a cut reply
    ending "length"; the note is added by RequestGuard, as llama_cpp.server's types drop unknown fields."""
    from llama_cpp import StoppingCriteriaList

    create_completion, clock = llama.create_completion, Clock()

    def bounded(*args: Any, **kwargs: Any) -> Any:
        deadline = clock.latest = Deadline(limits.time_limit_s)
        kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or []), deadline])
        result = create_completion(*args, **kwargs)

        def relabel(reply: dict[str, Any]) -> dict[str, Any]:
            for choice in reply["choices"] if deadline.cut else ():
                choice["finish_reason"] = "length"
            return reply

        # a stream is generated while it is read: its deadline is asked only once the reply has ended
        if isinstance(result, dict):
            return relabel(result)
        return (relabel(chunk) if chunk["choices"][0].get("finish_reason") else chunk for chunk in result)

    llama.create_completion = bounded
    return clock


def with_note(data: dict[str, Any], deadline: Deadline | None) -> dict[str, Any]:
    """A reply (or a stream's last event) with the note of the deadline that cut it."""
    if deadline is None or not any(choice.get("finish_reason") for choice in data.get("choices", [])):
        return data
    note = (
        f"the reply was cut at this server's time limit of {deadline.seconds:g} s per request (medsft serve "
        "--time-limit); ask for fewer max_tokens, or start the server with a longer --time-limit"
    )
    return {**data, "note": note}


def noted_event(body: bytes, deadline: Deadline | None) -> bytes:
    """A server-sent event (`data: {...}`, one per message) with the note if it ends a cut reply, else as it is."""
    if deadline is None or not body.startswith(b"data: {"):
        return body
    payload = body.removeprefix(b"data: ")
    with contextlib.suppress(ValueError):
        noted = json.dumps(with_note(json.loads(payload), deadline)).encode("utf-8")
        return b"data: " + noted + payload[len(payload.rstrip()) :]
    return body


async def send_error(send: Send, error: BadRequest, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """An OpenAI-style error reply: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": openai_error(error.message, error.status, error.param, error.code)}
    start_headers = [(b"content-type", b"application/json"), *(headers or [])]
    await send({"type": "http.response.start", "status": error.status, "headers": start_headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode("utf-8")})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than `limit` bytes or the client went away."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] != "http.request" or len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


def with_body(scope: Scope, body: bytes, receive: Receive) -> tuple[Scope, Receive]:
    """The scope labelled JSON (FastAPI answers any other label with a 500), and a `receive` giving the body once."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def again() -> Message:
        return pending.pop() if pending else await receive()

    return {**scope, "headers": headers}, again


class Gate:
    """One generation at a time, in arrival order, each waiting at most `wait_s` (llama_cpp.server has no bound)."""

    def __init__(self) -> None:
        self.lock = anyio.Lock()

    async def enter(self, wait_s: float) -> bool:
        with contextlib.suppress(anyio.WouldBlock):
            self.lock.acquire_nowait()  # a free model is taken even with a wait of 0
            return True
        with anyio.move_on_after(wait_s):
            await self.lock.acquire()
            return True
        return False


class RequestGuard:
    """Every POST body checked before llama_cpp.server sees it, and generations let through one at a time."""

    def __init__(self, app: ASGIApp, vocabulary: Any, n_ctx: int, limits: Limits, clock: Clock,
                 grace_s: float = HOLD_GRACE_S) -> None:  # fmt: skip
        self.app, self.vocabulary, self.n_ctx, self.limits, self.clock, self.grace_s = (
            app, vocabulary, n_ctx, limits, clock, grace_s
        )  # fmt: skip
        self.gate, self.checking = Gate(), anyio.CapacityLimiter(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # not a POST to a checked route: passed on (an unknown route is FastAPI's 404 or 405, whatever the body)
        if scope["type"] != "http" or scope["method"] != "POST" or route_of(scope["path"]) is None:
            return await self.app(scope, receive, send)
        body = await read_body(receive, MAX_BODY_BYTES)
        if body is None:
            too_large = BadRequest(f"over {MAX_BODY_BYTES} bytes (or cut off)", "body", "too_large", 413)
            return await send_error(send, too_large)
        try:  # in a worker thread, one at a time: on the event loop a large body would stall every client
            body = await anyio.to_thread.run_sync(self.checked, scope, body, limiter=self.checking)
        except BadRequest as error:
            return await send_error(send, error)
        scope, receive = with_body(scope, body, receive)
        if route_of(scope["path"]) not in GENERATION:
            return await self.app(scope, receive, send)
        await self.generate(scope, receive, send)

    def checked(self, scope: Scope, body: bytes) -> bytes:
        """The body to pass on (re-encoded JSON); BadRequest for anything the server would mishandle."""
        try:
            if not body.strip():
                raise ValueError("it is empty")
            data = json.loads(body)  # ValueError too when it is not UTF-8
        except ValueError as err:
            label = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
            media_type = label.split(";")[0].strip().lower()
            if media_type in ("", "application/json") or media_type.endswith("+json"):  # as FastAPI reads bodies
                raise BadRequest(f"not valid JSON: {err}", "body", "invalid_json") from None
            raise BadRequest(
                f"{media_type}, not JSON; send a JSON object with Content-Type: application/json", "body",
                "unsupported_media_type", 415,
            ) from None  # fmt: skip
        data = normalized(data, scope["path"], self.limits, self.vocabulary.size)
        if route_of(scope["path"]) in GENERATION:
            validate_types(scope["path"], data)
            for field, grammar in grammars(data):
                if not self.vocabulary.parses(grammar):
                    raise BadRequest("makes a grammar that llama.cpp cannot parse (GBNF with a root rule)", field)
            self.check_length(scope["path"], data)
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    def check_length(self, path: str, data: dict[str, Any]) -> None:
        try:
            tokens, exact = self.vocabulary.prompt_tokens(path, data, self.n_ctx)
        except Exception as err:  # the template's own refusal (e.g. roles that do not alternate)
            raise BadRequest(f"the chat template cannot render them: {err}", "messages", "invalid_messages") from None
        if tokens >= self.n_ctx:
            raise BadRequest(
                f"the prompt takes {'' if exact else 'at least '}{tokens} tokens, but the context window is "
                f"{self.n_ctx}; shorten it (or start the server with a larger --n-ctx)",
                "messages" if "messages" in data else "prompt", "context_length_exceeded",
            )  # fmt: skip

    async def generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wait at most the queue wait, then hold the model at most the time limit plus the grace, else cut."""
        if not await self.gate.enter(self.limits.queue_wait_s):
            busy = BadRequest(
                f"the server is busy: no turn at the model within {self.limits.queue_wait_s:g} s (medsft serve "
                "--queue-wait); retry later", None, "server_busy", 503,
            )  # fmt: skip
            retry = str(max(1, math.ceil(self.limits.time_limit_s))).encode()
            return await send_error(send, busy, [(b"retry-after", retry)])
        started = False

        async def noted(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body":  # a stream's events; a JSON reply is noted whole, below
                message = {**message, "body": noted_event(message.get("body", b""), self.clock.cut())}
            await send(message)

        json_noted = rewriting_json(noted, lambda data, status: with_note(data, self.clock.cut()))

        self.clock.latest = None  # the deadline this request's reply will make, once it holds the model
        try:
            with anyio.move_on_after(self.limits.time_limit_s + self.grace_s) as hold:
                await self.app(scope, receive, json_noted)
            if hold.cancelled_caught and not started:
                late = BadRequest("the reply did not finish within the server's time limit", None, "timeout", 503)
                with anyio.move_on_after(1):
                    await send_error(send, late)
        finally:
            self.gate.lock.release()


def validate_types(path: str, data: dict[str, Any]) -> None:
    """The rest of the request against llama-cpp-python's own types; the first problem as one line."""
    from llama_cpp.server.types import CreateChatCompletionRequest, CreateCompletionRequest
    from pydantic import ValidationError

    model = CreateChatCompletionRequest if path.endswith("/chat/completions") else CreateCompletionRequest
    try:
        model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(*first_problem(err.errors(), data)) from None


def first_problem(errors: list[dict[str, Any]], data: dict[str, Any]) -> tuple[str, str]:
    """(message, field) of the first error; for a message, its own role's member's error (pydantic reports a
    union against every member: `messages[1].tool_call_id: Field required`, not "role: Input should be ...")."""
    loc = errors[0]["loc"]
    if len(loc) > 2 and loc[0] == "messages" and isinstance(loc[1], int):
        member = f"ChatCompletionRequest{str(data['messages'][loc[1]]['role']).capitalize()}Message"
        first = next((e for e in errors if e["loc"][:3] == ("messages", loc[1], member)), errors[0])
        return first["msg"], ".".join([f"messages[{loc[1]}]", *map(str, first["loc"][3:])])
    return errors[0]["msg"], ".".join(map(str, loc)) or "body"


class DisclaimerLayer:
    """The disclaimer header on every response, the field in JSON bodies under /v1/ and in OpenAI-shaped errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        under_v1 = scope["path"].startswith("/v1/")
        rewritten = rewriting_json(send, with_disclaimer, lambda start: under_v1 or start["status"] >= 400)

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (DISCLAIMER_HEADER.lower().encode(), DISCLAIMER.encode())]
                message = {**message, "headers": headers}
            await rewritten(message)

        await self.app(scope, receive, marked)


def rewriting_json(send: Send, rewrite: Callable[[dict[str, Any], int], dict[str, Any]],
                   holds: Callable[[Message], bool] = lambda start: True) -> Send:  # fmt: skip
    """A `send` that holds a JSON reply (where `holds` says) until its body is whole, a JSON object rewritten."""
    held: Message | None = None
    chunks: list[bytes] = []

    async def rewritten(message: Message) -> None:
        nonlocal held
        headers = message.get("headers", [])
        json_reply = any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers)
        if message["type"] == "http.response.start" and json_reply and holds(message):
            held = message
            return
        if held is None or message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        with contextlib.suppress(ValueError):  # not JSON: passed on unchanged
            data = json.loads(body)
            if isinstance(data, dict):
                body = json.dumps(rewrite(data, held["status"]), ensure_ascii=False).encode("utf-8")
        length = (b"content-length", str(len(body)).encode())
        await send({**held, "headers": [*(h for h in held["headers"] if h[0] != b"content-length"), length]})
        await send({"type": "http.response.body", "body": body})

    return rewritten


def with_disclaimer(data: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """The disclaimer added; FastAPI's own `{"detail": ...}` error made an OpenAI one (its first, in a line)."""
    if status >= 400 and "error" not in data:
        detail = data.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            where = ".".join(str(part) for part in detail[0].get("loc", ()))
            detail = f"{where}: {detail[0].get('msg')}"
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request" if status < 500 else None)
        data = {"error": openai_error(str(detail or f"HTTP {status}"), status, None, code)}
    return {**data, "disclaimer": DISCLAIMER}


def openai_error(message: str, status: int, param: str | None, code: str | None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"message": message, "type": kind, "param": param, "code": code}


def serve(gguf: Path, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 4096,
          limits: Limits | None = None) -> int:  # fmt: skip
    """Run the server until interrupted; 2 when the extras are missing, the port is taken or the file won't load."""
    missing = [name for name in SERVER_EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        error_line(f"the server needs {', '.join(missing)}; run make setup (requirements/cpu.txt)")
        return 2
    try:  # bound now, before the model loads: a port in use (or an address not this host's) fails at once
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        error_line(f"cannot listen on {host}:{port} ({err.strerror}); pass another --port")
        return 2
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):  # loopback
        print(f"medsft: warning: {host} is reachable from other machines and the server has no authentication")
    limits = limits or Limits()
    try:
        app = build_app(gguf, n_ctx, limits)
    except ValueError as err:  # llama.cpp's refusal of a file that is not a (loadable) GGUF
        error_line(f"cannot load {gguf}: {err}")
        return 2
    print(f"serving {gguf.name} at http://{host}:{port}/v1 (OpenAI-compatible; GET /health). {DISCLAIMER}")
    print(
        f"limits: max_tokens {limits.default_max_tokens} by default, at most {limits.max_tokens}; "
        f"{limits.time_limit_s:g} s per reply; {limits.queue_wait_s:g} s at most in the queue"
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
