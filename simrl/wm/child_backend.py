"""A world-model backend whose model runs in a child process, so that a native crash costs a retry, not the run.

A native library (llama.cpp) that crashes (SIGSEGV, SIGILL, SIGABRT) kills the process it runs in; run in
the process of a rollout, an evaluation or a training run, it would end that run and lose it. Here the
model runs in a child process (``python -m simrl.wm.child_backend ENGINE OPTIONS``) that the parent drives
over a pipe, one JSON line per request and per reply:

* request: ``{"messages": [...], "sampling": {...}}``;
* reply: ``{"ok": true, "text": str, "stats": {...}}`` or ``{"ok": false, "error": str, "retryable": bool}``.

The child's own standard output is redirected to its standard error before the engine loads, so nothing a
native library prints can corrupt the replies. An *engine* is any class ``module:Class`` whose instance has
``generate(messages, sampling) -> (text, stats)`` (may raise :class:`~simrl.wm.backend.BackendError`) and
``close()``; it is built in the child from JSON options, so it keeps its model loaded between requests
(llama.cpp then reuses the key/value state of the longest common token prefix of consecutive prompts).

Failures: a child killed by a signal (a crash, or a kill from outside) is restarted and the request sent
again, at most ``max_restarts`` times per request; what remains is a *retryable*
:class:`~simrl.wm.backend.BackendError`, which :class:`~simrl.wm.env.WorldModelEnv` records as an
environment failure of that episode (the run goes on; the next request starts a fresh child). A child that
exits by itself (e.g. an import error) is a non-retryable error carrying the last line of its stderr.

Lifetime: the child ends when :meth:`ChildBackend.close` closes its pipe, and by itself within
:data:`WATCH_INTERVAL` seconds when its parent dies (it polls ``getppid``; a thread, since ctypes releases
the GIL during native calls), so a ``kill -9`` of the run leaves no model process behind. SIGINT is ignored
in the child: the parent decides when it stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from simrl.wm.backend import BackendError, Sampling, WorldModelBackend

WATCH_INTERVAL = 0.5
"""Seconds between the child's checks that its parent is still alive."""
STDERR_LINES = 20
"""Lines of the child's stderr kept to explain a failure."""


def signal_name(returncode: int) -> str:
    """``-11`` -> ``SIGSEGV``; a non-negative code -> ``exit code N``."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
        return f"signal {-returncode}"
    return f"exit code {returncode}"


class ChildBackend(WorldModelBackend):
    """Generate completions with an engine that lives in a child process (see the module docstring).

    Args:
        engine: ``"module:Class"`` of the engine, importable in the child.
        options: the engine's keyword arguments (JSON-serialisable).
        max_restarts: times one request is sent again to a restarted child after a crash (>= 0).

    Attributes:
        last_stats: the ``stats`` of the last reply (engine-defined: token counts, timings).
        crashes: child crashes seen so far (each one restarted).
        pid: the running child's process id, or None.
    """

    def __init__(self, engine: str, options: dict[str, Any], *, max_restarts: int = 1) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self.engine, self.options, self.max_restarts = engine, dict(options), max_restarts
        self.last_stats: dict[str, Any] = {}
        self.crashes = 0
        self._proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- the child ----------------------------------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        """Start the child (call with the lock held)."""
        root = str(Path(__file__).resolve().parents[2])  # the folder holding `simrl`, for the child's imports
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        proc = subprocess.Popen([sys.executable, "-m", "simrl.wm.child_backend", self.engine,
                                 json.dumps(self.options)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        lines = self._stderr
        lines.clear()
        threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True).start()
        self._proc = proc
        return proc

    def _ask(self, request: bytes) -> dict[str, Any] | int:
        """Send one request; the reply, or the child's return code when it died (call with the lock held)."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if line:
            return json.loads(line)
        code = proc.wait()
        self._proc = None
        return code

    def _generate_sync(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        request = (json.dumps({"messages": messages, "sampling": sampling.model_dump()}) + "\n").encode()
        with self._lock:
            for attempt in range(self.max_restarts + 1):
                reply = self._ask(request)
                if isinstance(reply, dict):
                    break
                why = f"the {self.name or 'model'} child process died ({signal_name(reply)})"
                tail = f"; its last words: {self._stderr[-1]}" if self._stderr else ""
                if reply >= 0:  # it exited by itself: a restart would do the same
                    raise BackendError(f"{why}{tail}", retryable=False)
                self.crashes += 1
                if attempt == self.max_restarts:
                    raise BackendError(f"{why} {attempt + 1} time(s) on this request{tail}", retryable=True)
        if not reply.get("ok"):
            raise BackendError(str(reply.get("error")), retryable=bool(reply.get("retryable")))
        self.last_stats = dict(reply.get("stats") or {})
        return str(reply.get("text") or "")

    async def generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """The engine's reply to ``messages``, computed in the child (the wait runs in a thread).

        Raises:
            BackendError: no messages (not retryable); the engine's own errors; the child crashed on every
                try (retryable); the child exited by itself (not retryable).
        """
        if not messages:
            raise BackendError("no messages to complete", retryable=False)
        return await asyncio.to_thread(self._generate_sync, messages, sampling)

    def _stop_sync(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the child's loop ends at EOF
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            proc.stdout.close()

    async def close(self) -> None:
        """Stop the child (idempotent); a later call starts a new one."""
        await asyncio.to_thread(self._stop_sync)


def _drain(stream: Any, lines: collections.deque[str]) -> None:
    """Keep the last lines of the child's stderr (read until it closes)."""
    with contextlib.suppress(OSError, ValueError):
        for raw in stream:
            text = raw.decode("utf-8", "replace").strip()
            if text:
                lines.append(text[:500])


def _watch_parent(parent: int) -> None:
    """End this process as soon as its parent is gone (it was re-parented)."""
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    os._exit(0)


def _reply(engine: Any, line: bytes) -> dict[str, Any]:
    """The reply to one request line."""
    try:
        request = json.loads(line)
        text, stats = engine.generate(request["messages"], Sampling(**request["sampling"]))
        return {"ok": True, "text": text, "stats": stats}
    except BackendError as err:
        return {"ok": False, "error": str(err), "retryable": err.retryable}
    except Exception as err:  # noqa: BLE001 - the parent gets every failure as a reply
        return {"ok": False, "error": f"{type(err).__name__}: {err}", "retryable": False}


def serve(engine_spec: str, options: str) -> None:
    """The child's loop: build the engine, answer request lines from stdin until EOF."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what native code prints goes to stderr, never into the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    module, _, cls = engine_spec.partition(":")
    engine = getattr(importlib.import_module(module), cls)(**json.loads(options))
    try:
        for line in sys.stdin.buffer:
            replies.write((json.dumps(_reply(engine, line)) + "\n").encode())
            replies.flush()
    finally:
        engine.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
