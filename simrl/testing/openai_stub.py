"""A real, local OpenAI-compatible endpoint whose replies come from a Python function.

Used by the tests and benchmarks of everything that talks to OpenAI-compatible servers (the ``openai``
world-model backend, the ``openai`` policy, the LLM judge): it is a genuine HTTP server (Starlette on
uvicorn, bound to 127.0.0.1 only) speaking ``POST /v1/chat/completions`` and ``GET /v1/models``, so
the client code under test runs unchanged. It records every request and can fail on purpose
(HTTP 5xx / 429, or a delay) to exercise retries.

Example::

    with StubEndpoint(lambda req: "hello") as ep:
        client = openai.OpenAI(base_url=ep.url, api_key="x")
        client.chat.completions.create(model="stub", messages=[...])
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StubEndpoint:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, run in a background thread.

    Args:
        responder: ``responder(request_json) -> str | dict``; a string becomes the assistant message's
            ``content``; a dict is used as the assistant message (e.g. with ``tool_calls``).
        model: the model id reported by ``/v1/models`` and in responses.
        delay: seconds to wait before each reply (simulates generation time).

    Attributes:
        requests: every chat-completion request body received, in order.
        url: base URL for OpenAI clients (``http://127.0.0.1:PORT/v1``), valid after ``start()``.
    """

    def __init__(self, responder: Responder, *, model: str = "stub-model", delay: float = 0.0) -> None:
        self.responder, self.model, self.delay = responder, model, delay
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.arrivals: list[float] = []  # time.monotonic() of each chat request (retry delays)
        self._server = None
        self._thread: threading.Thread | None = None

    def fail_next(self, n: int, status: int = 503, headers: dict[str, str] | None = None) -> None:
        """Make the next ``n`` chat requests fail with HTTP ``status`` (e.g. 503, 429 with retry-after)."""
        with self._lock:
            self._failures += [(status, headers or {})] * n

    def _app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            with self._lock:
                self.requests.append(body)
                self.arrivals.append(time.monotonic())
                failure = self._failures.pop(0) if self._failures else None
            if failure:
                status, headers = failure
                return JSONResponse({"error": {"message": f"stub failure {status}", "code": status}},
                                    status_code=status, headers=headers)
            if self.delay:
                await asyncio.sleep(self.delay)
            reply = self.responder(body)
            message = {"role": "assistant", "content": reply} if isinstance(reply, str) else {"role": "assistant", **reply}
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            return JSONResponse({
                "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(json.dumps(body.get("messages", []))) // 4,
                          "completion_tokens": len(str(message.get("content") or "")) // 4, "total_tokens": 0},
            })

        async def models(request: Request) -> JSONResponse:
            return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "simrl"}]})

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                                 Route("/v1/models", models, methods=["GET"])])

    def start(self) -> StubEndpoint:
        """Start serving; returns when the server accepts connections (or raises after 10 s)."""
        import uvicorn

        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"stub endpoint did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> StubEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
