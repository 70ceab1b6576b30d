"""A stub engine for :class:`simrl.wm.child_backend.ChildBackend` tests: echoes the last message, and crashes
for real (a NULL read through ctypes: SIGSEGV) or exits when told to.

Its call counter lives in a file, so it survives the restarts of the child it runs in.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from simrl.wm.backend import BackendError


class StubEngine:
    """Reply ``<predicted_observation>echo N: <first line of the last message></predicted_observation>``.

    Args:
        counter: a file holding the number of calls so far (made if absent).
        crash_at: call numbers (1-based, over every child) that segfault instead of replying.
        crash_on: a text that makes a call segfault whenever the last message contains it.
        exit_on: a text that makes the child exit with code 3.
        error_on: a text that makes the call raise a non-retryable BackendError.
        garble_at: call numbers that answer garbage without a <predicted_observation> block (unparsed).
    """

    def __init__(self, counter: str, crash_at: tuple[int, ...] = (), crash_on: str | None = None,
                 exit_on: str | None = None, error_on: str | None = None, garble_at: tuple[int, ...] = ()) -> None:
        self.counter, self.crash_at, self.garble_at = Path(counter), set(crash_at), set(garble_at)
        self.crash_on, self.exit_on, self.error_on = crash_on, exit_on, error_on

    def generate(self, messages: list[dict[str, Any]], sampling: Any) -> tuple[str, dict[str, Any]]:
        n = (int(self.counter.read_text()) if self.counter.exists() else 0) + 1
        self.counter.write_text(str(n))
        last = str(messages[-1].get("content") or "")
        if n in self.crash_at or (self.crash_on and self.crash_on in last):
            ctypes.string_at(0)  # SIGSEGV, a real native crash
        if self.exit_on and self.exit_on in last:
            print("stub engine: exiting as told", flush=True)  # goes to stderr (the child redirects stdout)
            os._exit(3)
        if self.error_on and self.error_on in last:
            raise BackendError("stub engine: refused", retryable=False)
        if n in self.garble_at:
            return "}{ <predicted_obs garbled", {"calls": n, "pid": os.getpid()}
        return (f"<predicted_observation>echo {n}: {last.splitlines()[0] if last else ''}</predicted_observation>",
                {"calls": n, "pid": os.getpid()})

    def close(self) -> None:
        """Nothing to free."""
