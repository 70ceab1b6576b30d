"""A process-wide stop request, seen by work that runs in worker threads.

A signal handler runs in the main thread only. SIGTERM (``simrl.cli.main``) or Ctrl-C unwinds the main thread
as an exception, but ``asyncio.run`` then waits for the threads of its default executor
(``asyncio.to_thread``) to finish what they are doing: preparing a large evaluation set (the scripted expert's
episodes and the expressibility check) went on for minutes after a SIGTERM. The signal handler therefore also
calls :func:`request`, and long loops call :func:`check` before each unit of work (an episode), so a worker
thread ends within one unit. Python's threads cannot be interrupted from outside (``threading`` docs); this is
the cooperative flag its documentation suggests (a :class:`threading.Event`).
"""

from __future__ import annotations

import threading

_requested = threading.Event()


class StopRequested(BaseException):
    """Raised by :func:`check` once a stop was requested. A ``BaseException`` (like ``KeyboardInterrupt``), so
    the ``except Exception`` that turns a failing episode into an environment failure does not swallow it."""


def request() -> None:
    """Ask every loop of this process that calls :func:`check` to stop (idempotent, thread- and signal-safe)."""
    _requested.set()


def terminate(signum: int, frame: object) -> None:
    """A SIGTERM handler (``signal.signal(signal.SIGTERM, terminate)``): :func:`request`, then end the main thread
    as an exception, ``SystemExit(128 + signum)``, so ``finally`` blocks and exit handlers run.

    Raises:
        SystemExit: always.
    """
    request()
    raise SystemExit(128 + signum)


def check() -> None:
    """Raise :class:`StopRequested` if a stop was requested; otherwise return at once (one flag read).

    Raises:
        StopRequested: after :func:`request`.
    """
    if _requested.is_set():
        raise StopRequested("stop requested (SIGTERM or Ctrl-C)")
