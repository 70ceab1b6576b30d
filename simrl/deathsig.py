"""Processes that die with their parent, ``kill -9`` included: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``.

Linux sends a process the signal it asked for with ``PR_SET_PDEATHSIG`` when the thread that created it
ends (prctl(2)); the setting survives ``execve`` and is not inherited by a fork, so every process that
must not outlive its parent asks for itself:

* a child started with :func:`preexec` as its ``preexec_fn`` (``simrl ablate``'s trainers,
  :mod:`simrl.experiment.children`), or that calls :func:`die_with` once running (a process pool's
  worker, in its initializer);
* any command, run through :func:`wrap`: a few lines of Python that ask for it and ``exec`` the command
  (same pid), for children that a library starts with no ``preexec_fn`` (MCP stdio servers, which the
  MCP SDK starts in a session of their own, out of the parent's process group).

The signal is SIGKILL: a parent killed with ``kill -9`` ran no handler and will stop no one, so its
children stop at once, as if killed themselves (everything simrl writes survives that: atomic
checkpoints, resume). A parent that stops normally stops its children itself, gracefully. A child
whose parent was already gone when it asked (its ``getppid`` is no longer the parent's pid) stops
itself. Elsewhere than Linux every function here is a no-op: only a stop the parent sees ends children.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the calling process gets when its parent thread dies (linux/prctl.h)."""

_TRAMPOLINE = ("import ctypes, os, sys\n"
               f"ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, {int(signal.SIGKILL)}, 0, 0, 0)\n"
               "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"
               "os.execvp(sys.argv[2], sys.argv[2:])\n")
"""What :func:`wrap` runs before the command: ask for SIGKILL on the parent's death, stop if the parent
(``argv[1]``) is already gone, then become the command (``argv[2:]``)."""


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _arm(prctl: Callable[..., int], parent: int) -> None:
    """Ask for SIGKILL when the parent dies; stop now if ``parent`` is already gone (we are an orphan)."""
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child dies with this process (Linux; None elsewhere).

    libc is resolved here, in the parent, so the child only makes two system calls between fork and exec.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    return lambda: _arm(prctl, parent)


def die_with(parent: int) -> None:
    """In a child already running (a process pool's worker): die when ``parent`` dies (Linux; a no-op
    elsewhere), and stop now if it already has."""
    prctl = _prctl()
    if prctl is not None:
        _arm(prctl, parent)


def wrap(argv: list[str]) -> list[str]:
    """``argv`` run so that it dies with this process (Linux; ``argv`` unchanged elsewhere): this
    interpreter (``-I -S``: no site, no environment; about 20 ms) asks for SIGKILL on this process's
    death and execs ``argv`` (same pid, same environment).

    >>> wrap(["server", "--port", "0"])[-3:] if sys.platform.startswith("linux") else ["server", "--port", "0"]
    ['server', '--port', '0']
    """
    if _prctl() is None:
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), *argv]
