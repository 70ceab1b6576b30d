"""Child processes that die with their parent: ``simrl ablate``'s ``simrl train`` subprocesses.

Each child runs in its own process group (so stopping it stops what it started too) and, on Linux, asks
the kernel for SIGKILL when its parent dies (:mod:`simrl.deathsig`, ``prctl(PR_SET_PDEATHSIG)``): a
``kill -9`` of the parent, which runs no handler, still ends every child at once, and no orphaned
trainer goes on writing a run folder that a re-run is about to resume (a run killed so resumes from its
checkpoint). What the children start dies with them the same way: the evaluation workers ask in their
initializer (:func:`die_with`), MCP stdio servers through :func:`simrl.deathsig.wrap`, and
multiprocessing's resource tracker ends when the last of them is gone (it exits when its pipe closes).
A stop the parent sees (Ctrl-C, SIGTERM) stops each child's group gracefully, through :func:`stop`;
elsewhere than Linux only that ends them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

from simrl.deathsig import die_with, preexec

__all__ = ["die_with", "popen", "stop"]


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)`` in a new process group, dying with this process (see module)."""
    return subprocess.Popen(argv, process_group=0, preexec_fn=preexec(), **kwargs)


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
