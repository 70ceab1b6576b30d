"""Child processes that die with their parent: ``simrl ablate``'s ``simrl train`` subprocesses.

Each child runs in its own process group (so stopping it stops what it started too, e.g. MCP servers)
and, on Linux, asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, see
prctl(2)): a ``kill -9`` of the parent, which runs no handler, still ends every child, and no orphaned
trainer goes on writing a run folder that a re-run is about to resume. Elsewhere only the parent's
own stop (Ctrl-C, SIGTERM) ends them, through :func:`stop`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the calling process gets when its parent thread dies (linux/prctl.h)."""


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _arm(prctl: Callable[..., int], parent: int) -> None:
    """Ask for SIGTERM when the parent dies; stop now if ``parent`` is already gone (we are an orphan)."""
    prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` setting PR_SET_PDEATHSIG to SIGTERM (Linux; None elsewhere).

    libc is resolved here, in the parent, so the child only makes two system calls between fork and exec.
    If the parent died before the child asked, the child is already an orphan: it stops itself.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    return lambda: _arm(prctl, parent)


def die_with(parent: int) -> None:
    """In a child already running (a process pool's worker): get SIGTERM when ``parent`` dies (Linux; a
    no-op elsewhere), and stop now if it already has."""
    prctl = _prctl()
    if prctl is not None:
        _arm(prctl, parent)


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)`` in a new process group, dying with this process (see module)."""
    return subprocess.Popen(argv, process_group=0, preexec_fn=_die_with_parent(), **kwargs)


def stop(procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGTERM each child's process group, wait up to ``timeout`` s for each, then SIGKILL the group."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the child and what it started
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
