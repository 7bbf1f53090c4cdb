"""What `medsft serve` accepts: its limits, and each request field's type and range, a `BadRequest` naming a bad
one (llama-cpp-python 0.3.36 checks little; docs/serving.md). Nothing here loads a model."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant", "tool", "function")
MAX_STOP = 4  # as OpenAI: every stop string is searched for in the whole reply after every token
SEED_MAX = 2**32 - 1  # llama.cpp's sampler seed is a uint32
LOGIT_BIAS_MAX = 100.0  # as OpenAI; ±100 already bans or forces a token


@dataclass(frozen=True)
class Limits:
    """What one request may take from the server (`medsft serve` options in brackets)."""

    max_tokens: int = 2048  # the largest max_tokens a request may ask for [--max-tokens]
    default_max_tokens: int = 768  # for a request that gives none, as `medsft chat` [--default-max-tokens]
    time_limit_s: float = 60.0  # one reply's generation, then finish_reason "length" [--time-limit]
    queue_wait_s: float = 120.0  # the longest a request waits for the model before a 503 [--queue-wait]

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if not 1 <= self.default_max_tokens <= self.max_tokens:
            raise ValueError(
                f"--default-max-tokens must be from 1 to --max-tokens ({self.max_tokens}), "
                f"got {self.default_max_tokens}"
            )
        if not (math.isfinite(self.time_limit_s) and self.time_limit_s > 0):
            raise ValueError(f"--time-limit must be a positive number of seconds, got {self.time_limit_s}")
        if not (math.isfinite(self.queue_wait_s) and self.queue_wait_s >= 0):
            raise ValueError(f"--queue-wait must be 0 or more seconds, got {self.queue_wait_s}")


class BadRequest(ValueError):
    """A request the server refuses: `status`, and a message that starts with its field (`param`)."""

    def __init__(self, problem: str, param: str | None = None, code: str = "invalid_request", status: int = 400):
        self.message = f"{param}: {problem}" if param else problem
        super().__init__(self.message)
        self.param, self.code, self.status = param, code, status


@dataclass(frozen=True)
class Number:
    """A JSON number field's range (inclusive; a high of None: unbounded), and whether it must be an integer."""

    low: float
    high: float | None = None
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.high is None:
            return f"{kind} of at least {plain(self.low)}"
        return f"{kind} from {plain(self.low)} to {plain(self.high)}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else int | float):
            return False
        inside = value >= self.low and (self.high is None or value <= self.high)
        # An int is finite; math.isfinite() would raise OverflowError on one too big for a float (a 500, not a 400).
        return (isinstance(value, int) or math.isfinite(value)) and inside


def plain(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


# `n` and `best_of`: llama-cpp-python ignores them and always makes one reply, so only 1 is honest.
ONE = Number(1, 1, integer=True)
ONE_REPLY = "1 (the server makes one reply per request)"


# Ranges are OpenAI's where it has the field, else llama-cpp-python's own (its request types).
SAMPLING = {
    "temperature": Number(0, 2),
    "top_p": Number(0, 1),
    "min_p": Number(0, 1),
    "top_k": Number(0, None, integer=True),
    "repeat_penalty": Number(0, None),
    "presence_penalty": Number(-2, 2),
    "frequency_penalty": Number(-2, 2),
    "mirostat_mode": Number(0, 2, integer=True),
    "mirostat_tau": Number(0, 10),
    "mirostat_eta": Number(0.001, 1),
    "seed": Number(0, SEED_MAX, integer=True),
}


def shown(value: Any) -> str:
    """A request value as JSON, cut short (an error never echoes a huge body)."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse(param: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"must be {expected}; got {shown(value)}", param)


def first_non_finite(value: Any, path: str = "") -> str | None:
    """Where a NaN or infinity sits in parsed JSON (Python's json reads NaN and Infinity, which JSON lacks)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "the body"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = first_non_finite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}".lstrip("."))
        if where:
            return where
    return None


def check_number(data: Mapping[str, Any], name: str, spec: Number, expected: str | None = None) -> None:
    if name in data and not spec.accepts(data[name]):
        raise refuse(name, expected or spec.describe(), data[name])


def check_common(data: Mapping[str, Any], limits: Limits, vocab_size: int) -> None:
    for name, spec in SAMPLING.items():
        check_number(data, name, spec)
    cap = Number(1, limits.max_tokens, integer=True)
    check_number(data, "max_tokens", cap, f"{cap.describe()} (this server's --max-tokens)")
    check_number(data, "min_tokens", Number(0, limits.max_tokens, integer=True))
    check_number(data, "n", ONE, ONE_REPLY)
    check_kinds(data, {"stream": bool, "model": str, "user": str})
    check_stop(data)
    check_logit_bias(data, vocab_size)


def check_kinds(data: Mapping[str, Any], kinds: dict[str, type]) -> None:
    for name, kind in kinds.items():
        if name in data and not isinstance(data[name], kind):
            raise refuse(name, "true or false" if kind is bool else "a string", data[name])


def check_stop(data: Mapping[str, Any]) -> None:
    stop = data.get("stop", [])
    texts = [stop] if isinstance(stop, str) else stop
    if not (isinstance(texts, list) and len(texts) <= MAX_STOP and all(isinstance(t, str) and t for t in texts)):
        raise refuse("stop", f"a non-empty string or a list of 0 to {MAX_STOP} non-empty strings", stop)


def check_logit_bias(data: Mapping[str, Any], vocab_size: int) -> None:
    kind = data.get("logit_bias_type", "input_ids")
    if kind not in ("input_ids", "tokens"):
        raise refuse("logit_bias_type", '"input_ids" or "tokens"', kind)
    bias = data.get("logit_bias", {})
    if not isinstance(bias, dict):
        raise refuse("logit_bias", "an object of token: bias", bias)
    weight = Number(-LOGIT_BIAS_MAX, LOGIT_BIAS_MAX)
    for token, value in bias.items():
        if not weight.accepts(value):
            raise refuse(f"logit_bias[{token}]", weight.describe(), value)
        if kind == "input_ids" and not (token.isdigit() and int(token) < vocab_size):
            raise refuse("logit_bias", f"keyed by token ids from 0 to {vocab_size - 1}", token)


def check_messages(data: Mapping[str, Any]) -> None:
    messages = data.get("messages")
    if messages is None:
        raise BadRequest('required; a non-empty list of {"role": ..., "content": ...} objects', "messages")
    if not isinstance(messages, list) or not messages:
        raise refuse("messages", 'a non-empty list of {"role": ..., "content": ...} objects', messages)
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise refuse(where, 'an object {"role": ..., "content": ...}', message)
        if message.get("role") not in ROLES:
            raise refuse(f"{where}.role", f"one of {', '.join(ROLES)}", message.get("role"))
        content = message.get("content")
        parts = isinstance(content, list) and all(
            isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            for part in content
        )
        if not (isinstance(content, str) or parts):
            raise refuse(f"{where}.content", 'a string or a list of {"type": "text", "text": "..."} parts', content)


def check_chat(data: Mapping[str, Any], limits: Limits, vocab_size: int) -> None:
    check_messages(data)
    check_common(data, limits, vocab_size)
    if data.get("logprobs", False) is not False:
        raise refuse("logprobs", "false (this server keeps no per-token log-probabilities)", data["logprobs"])
    check_number(data, "top_logprobs", Number(0, 20, integer=True))


def check_completion(data: Mapping[str, Any], limits: Limits, vocab_size: int) -> None:
    prompt = data.get("prompt", "")
    one_string = isinstance(prompt, list) and len(prompt) <= 1 and all(isinstance(item, str) for item in prompt)
    if not (isinstance(prompt, str) or one_string):
        raise refuse("prompt", "a string, or a list of at most one string", prompt)
    check_common(data, limits, vocab_size)
    check_kinds(data, {"suffix": str, "echo": bool})
    if "logprobs" in data:
        raise refuse("logprobs", "null (this server keeps no per-token log-probabilities)", data["logprobs"])
    check_number(data, "best_of", ONE, ONE_REPLY)


def check_tokenize(data: Mapping[str, Any], limits: Limits, vocab_size: int) -> None:
    if not isinstance(data.get("input"), str):
        raise refuse("input", "a string", data.get("input"))


def check_detokenize(data: Mapping[str, Any], limits: Limits, vocab_size: int) -> None:
    """Token ids in the vocabulary: llama.cpp aborts the whole process on one outside it."""
    ids = Number(0, vocab_size - 1, integer=True)
    tokens = data.get("tokens")
    if not isinstance(tokens, list) or not all(ids.accepts(token) for token in tokens):
        raise refuse("tokens", f"a list of token ids, each {ids.describe()}", tokens)


def refuse_embeddings(data: Mapping[str, Any], limits: Limits, vocab_size: int) -> None:
    message = "this server does not compute embeddings: medsft serve loads the model for generation only"
    raise BadRequest(message, None, "unsupported_endpoint", 404)


# By path suffix, longest first (llama_cpp.server also serves text completions under a Copilot path).
CHECKS: dict[str, Callable[[Mapping[str, Any], Limits, int], None]] = {
    "/chat/completions": check_chat,
    "/completions": check_completion,
    "/tokenize/count": check_tokenize,
    "/tokenize": check_tokenize,
    "/detokenize": check_detokenize,
    "/embeddings": refuse_embeddings,
}
GENERATION = ("/chat/completions", "/completions")


def route_of(path: str) -> str | None:
    return next((suffix for suffix in CHECKS if path.endswith(suffix)), None)


def normalized(data: Any, path: str, limits: Limits, vocab_size: int) -> dict[str, Any]:
    """The request checked, nulls ("the default", which llama-cpp-python refuses) dropped, max_tokens filled in."""
    if not isinstance(data, dict):
        raise refuse("body", "a JSON object", data)
    where = first_non_finite(data)
    if where:
        raise BadRequest("must be a finite number; NaN and infinity are not JSON numbers", where)
    data = {key: value for key, value in data.items() if value is not None}
    route = route_of(path)
    if route is not None:
        CHECKS[route](data, limits, vocab_size)
    if route in GENERATION:
        data.setdefault("max_tokens", limits.default_max_tokens)
    return data
