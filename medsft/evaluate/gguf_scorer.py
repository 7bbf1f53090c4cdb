"""GGUF files behind the `Scorer` calls (llama-cpp-python), measured by the same task code (docs/scoring.md)."""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsft.evaluate.transformers_scorer import GREEDY, ChoiceRequest, GenerationSettings, Messages


def load_gguf(path: str | Path, n_ctx: int = 4096, n_threads: int | None = None, seed: int = 0) -> Any:
    """A quiet `llama_cpp.Llama` on CPU; a clear error when the runtime or the file is missing."""
    from medsft.export.llamacpp_toolchain import SETUP_HINT, ToolchainError, check_runtime_threads, default_threads

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise ToolchainError(f"llama-cpp-python is not importable ({err}); {SETUP_HINT}") from err
    check_runtime_threads()
    threads = n_threads or default_threads()
    with quiet_stderr():  # llama.cpp logs context details on stderr even with verbose=False
        llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=seed,
                    verbose=False)  # fmt: skip
    # Close while the interpreter is still whole: Llama.__del__ at shutdown fails with noisy tracebacks.
    weakref.finalize(llm, llm.close)
    return llm


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C code writes there directly), restoring it afterwards."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some notebook front ends): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LlamaCppScorer:
    """A GGUF model (any quantization) for the evaluation tasks and the export checks."""

    def __init__(self, path: str | Path, name: str | None = None, n_ctx: int = 4096, n_threads: int | None = None):
        self.path = Path(path)
        self.name = name or self.path.stem
        self.llm = load_gguf(self.path, n_ctx=n_ctx, n_threads=n_threads)
        self.bos_text = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "replace")

    def tokenize(self, text: str) -> list[int]:
        has_bos = bool(self.bos_text) and text.startswith(self.bos_text)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not has_bos, special=has_bos)

    def next_token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        """Log-probabilities after `tokens`, evaluating only what differs from the cached sequence."""
        llm = self.llm
        if len(tokens) > llm.n_ctx():
            raise ValueError(f"{len(tokens)} tokens do not fit the context of {llm.n_ctx()}; raise n_ctx")
        same = [a == b for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False)]
        common = same.index(False) if False in same else len(same)
        # At least the last token is evaluated again: only the last evaluated position's logits are kept.
        llm.n_tokens = min(common, len(tokens) - 1)
        llm.eval(list(tokens[llm.n_tokens :]))
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        shifted = logits.astype(np.float64) - logits.max()  # log-softmax
        return shifted - np.log(np.exp(shifted).sum())

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[list[float]]:
        results = []
        for request in requests:
            first = self.next_token_logprobs(request.context)
            scores = []
            for continuation in request.continuations:
                total = float(first[continuation[0]])
                for i in range(1, len(continuation)):
                    total += float(self.next_token_logprobs(request.context + continuation[:i])[continuation[i]])
                scores.append(total)
            results.append(scores)
        return results

    def generate(self, conversations: Sequence[Messages], settings: GenerationSettings = GREEDY) -> list[str]:
        replies = []
        for index, messages in enumerate(conversations):
            self.llm.reset()
            out = self.llm.create_chat_completion(
                messages=list(messages), max_tokens=settings.max_new_tokens, seed=settings.seed + index,
                temperature=settings.temperature if settings.do_sample else 0.0,  # 0: greedy
                top_p=settings.top_p if settings.do_sample else 1.0, top_k=0 if settings.do_sample else 1,
            )  # fmt: skip
            replies.append(out["choices"][0]["message"]["content"] or "")
        return replies

    def greedy_tokens(self, prompt_tokens: Sequence[int], count: int) -> list[int]:
        """The first `count` greedy token ids after a prompt, for agreement checks against the 16-bit model."""
        tokens = list(prompt_tokens)
        for _ in range(count):
            tokens.append(int(np.argmax(self.next_token_logprobs(tokens))))
            if self.is_end_of_generation(tokens[-1]):
                break
        return tokens[len(prompt_tokens) :]

    def chat_template(self) -> str | None:
        return self.llm.metadata.get("tokenizer.chat_template")

    def is_end_of_generation(self, token: int) -> bool:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    def close(self) -> None:
        self.llm.close()
