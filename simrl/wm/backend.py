"""The world-model backend interface: chat messages in, raw completion text out.

A backend only generates text; the world-model environment (:mod:`simrl.wm.env`) builds the
Qwen-AgentWorld-layout messages, parses the ``<predicted_observation>`` block, caches responses and
retries. Backends: ``openai`` (any OpenAI-compatible endpoint), ``transformers`` (local HF model, in this
process), ``llamacpp`` (local GGUF, in a child process: :mod:`simrl.wm.child_backend`, so that a native crash
is a retryable failure, not the end of the run); the ``oracle`` is not an LLM and is handled by the
environment itself.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Sampling(BaseModel):
    """Sampling parameters of one world-model call (part of the response-cache key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=0.0, ge=0, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=1024, ge=1, description="Most tokens to generate.")
    seed: int | None = Field(default=None, description="Sampling seed, where the backend supports one.")
    open_within: int | None = Field(
        default=None, ge=1, le=262144,
        description="llamacpp only: a reply that has not opened its <predicted_observation> block once this many "
                    "tokens are generated is cut there (it is then unparsed); None: no cut. Output that opens the "
                    "block in time is unchanged, token for token.")

    def key_fields(self) -> dict:
        """The fields that key a cached response: all, ``open_within`` only when set (so keys made before the
        field existed still hold)."""
        return self.model_dump(exclude={"open_within"} if self.open_within is None else None)


class BackendError(Exception):
    """A backend call failed.

    Attributes:
        retryable: True for transient failures (timeouts, 5xx, 429, refused connections) that a
            bounded retry with backoff may fix; False for errors a retry cannot fix (bad request,
            unknown model).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class WorldModelBackend(abc.ABC):
    """Generates the world model's completion for a chat.

    Attributes:
        name: backend name (``openai``, ``transformers``, ``llamacpp``), part of the cache key.
        model: model id or path, part of the cache key.
    """

    name: str = ""
    model: str = ""

    @abc.abstractmethod
    async def generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """Return the assistant completion text for ``messages`` (OpenAI chat format).

        Raises:
            BackendError: the call failed (``retryable`` says whether to try again).
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (idempotent)."""


class LocalBackend(WorldModelBackend):
    """A backend whose model runs in this process (``transformers``; native code that may crash runs in a
    child process instead: :class:`simrl.wm.child_backend.ChildBackend`).

    Subclasses implement :meth:`_generate_sync` (blocking; serialised by the subclass's own lock) and
    :meth:`_free_sync`; generation runs in a worker thread so the event loop keeps serving other
    episodes while the model computes.
    """

    @abc.abstractmethod
    def _generate_sync(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """The reply to ``messages`` (blocking). Raises BackendError."""

    @abc.abstractmethod
    def _free_sync(self) -> None:
        """Release the model (idempotent; a later call loads it again)."""

    async def generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """The model's reply to ``messages`` (OpenAI chat format; ``content`` strings), computed in a thread.

        Raises:
            BackendError: (not retryable) no messages, or what :meth:`_generate_sync` raises: the model
                does not load, the prompt cannot fit its context, or generation fails.
        """
        if not messages:
            raise BackendError("no messages to complete", retryable=False)
        return await asyncio.to_thread(self._generate_sync, messages, sampling)

    async def close(self) -> None:
        """Free the model (idempotent); a later call loads it again."""
        await asyncio.to_thread(self._free_sync)
