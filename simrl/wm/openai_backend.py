"""The ``openai`` world-model backend: any OpenAI-compatible chat-completions endpoint.

Works with vLLM (``vllm serve Qwen/Qwen-AgentWorld-35B-A3B ... --reasoning-parser qwen3``, docs/design.md
§4), SGLang and hosted APIs. Transient failures (timeouts, refused or dropped connections, HTTP 408,
409, 429 and 5xx) are retried ``max_retries`` times by the ``openai`` SDK itself (exponential backoff
with jitter from 0.5 s up to 8 s; a ``Retry-After`` of up to 60 s is honoured); :attr:`OpenAIBackend.retries`
counts them. What still fails maps to :class:`~simrl.wm.backend.BackendError` (``retryable`` says
whether the failure was transient); any other 4xx (bad request, unknown model, authentication) fails
at once.

One backend may serve many environments at once (hundreds of rollouts share an endpoint): requests
in flight are bounded by ``max_concurrency`` (a semaphore), and the client and semaphore are made per
event loop, so the same backend object also works across several ``asyncio.run`` calls. Requests go
through the client's ``post("/chat/completions", ...)`` with a plain JSON body (the SDK's documented
route for raw requests): same transport, auth and errors as ``chat.completions.create``, without its
per-call parameter transformation, which costs about 2 ms of CPU per request on long chats.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

from simrl.config import ENDPOINT_RETRIES
from simrl.wm.backend import BackendError, Sampling, WorldModelBackend

RETRYABLE_STATUS = frozenset({408, 409, 429})


class OpenAIBackend(WorldModelBackend):
    """Chat completions from an OpenAI-compatible endpoint.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model id (``/v1/models``), e.g. ``Qwen/Qwen-AgentWorld-35B-A3B``.
        api_key: bearer token (``EMPTY`` for local servers; default ``$OPENAI_API_KEY`` or ``EMPTY``).
        timeout: seconds one request may take (connect + generate) before it fails as retryable.
        max_concurrency: requests in flight at once, per event loop.
        max_retries: the SDK's retries of a transient failure (so ``1 + max_retries`` requests at most).
        extra_body: extra JSON fields for every request (e.g. vLLM's ``{"top_k": 20}``).
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0,
                 max_concurrency: int = 64, extra_body: dict[str, Any] | None = None, max_retries: int = ENDPOINT_RETRIES) -> None:
        self.base_url, self.model = base_url, model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout, self.max_concurrency = timeout, max(1, int(max_concurrency))
        self.extra_body = dict(extra_body or {})
        self.max_retries = max(0, int(max_retries))
        self.retries = 0  # requests the SDK re-sent (its x-stainless-retry-count header > 0)
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, asyncio.Semaphore]] = \
            weakref.WeakKeyDictionary()

    def _client(self) -> tuple[Any, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        pair = self._per_loop.get(loop)
        if pair is None:
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            async def count_retry(request: Any) -> None:
                if request.headers.get("x-stainless-retry-count", "0") != "0":
                    self.retries += 1

            client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                                 max_retries=self.max_retries,
                                 http_client=DefaultAsyncHttpxClient(event_hooks={"request": [count_retry]}))
            pair = self._per_loop[loop] = (client, asyncio.Semaphore(self.max_concurrency))
        return pair

    async def generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """One chat completion; returns the assistant message content (``""`` if it has none).

        Raises:
            BackendError: see the module docstring for which failures are retryable.
        """
        import openai
        from openai.types.chat import ChatCompletion

        client, gate = self._client()
        args: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                                "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}
        if sampling.seed is not None:
            args["seed"] = sampling.seed
        args.update(self.extra_body)
        async with gate:
            try:  # POST /chat/completions through the client; skips the SDK's per-call params transform (~2 ms)
                response = await client.post("/chat/completions", body=args, cast_to=ChatCompletion)
            except openai.APITimeoutError:
                raise BackendError(f"{self.base_url}: no answer within {self.timeout:g}s", retryable=True) from None
            except openai.APIConnectionError as err:
                raise BackendError(f"{self.base_url}: connection failed ({err})", retryable=True) from None
            except openai.APIStatusError as err:
                status = err.status_code
                retry = status >= 500 or status in RETRYABLE_STATUS
                raise BackendError(f"{self.base_url}: HTTP {status}: {_message(err)}", retryable=retry) from None
            except openai.OpenAIError as err:  # malformed responses and the like
                raise BackendError(f"{self.base_url}: {type(err).__name__}: {err}", retryable=True) from None
        if not response.choices:
            raise BackendError(f"{self.base_url}: the response has no choices", retryable=True)
        return response.choices[0].message.content or ""

    async def close(self) -> None:
        """Close the client of the running event loop (idempotent); clients of other loops are dropped."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._per_loop.clear()
            return
        pair = self._per_loop.pop(loop, None)
        self._per_loop.clear()
        if pair is not None:
            await pair[0].close()


def _message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(err, "message", err))
