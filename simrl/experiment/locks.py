"""One writer per folder: an OS lock held by the process that writes a run or an ablation folder.

``simrl train`` holds ``<arm>/seed-<S>/.lock`` for as long as it writes the run, and ``simrl ablate``
holds ``OUT/.lock`` for as long as it runs; a second writer (a re-run while an orphaned trainer is still
going, two terminals on one ``--out``) is refused with one line naming the holder's pid instead of
interleaving its steps with the first one's. The lock is ``fcntl.flock`` on the file: the kernel drops
it when the holder exits, however it exits (``kill -9`` included), so a stale lock file never blocks.

:func:`duplicated_steps` finds the damage such a second writer used to do (a step logged twice in
``metrics.jsonl``), so a report is never built from it silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from simrl.errors import SimrlError

LOCK = ".lock"
"""The lock file's name inside a locked folder (holds the holder's pid)."""


def _holder(f) -> str:
    """The pid written in an open lock file (the holder writes it right after locking: retry briefly)."""
    for _ in range(20):
        f.seek(0)
        if text := f.read().strip():
            return text
        time.sleep(0.01)
    return "unknown"


@contextlib.contextmanager
def lock_folder(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive OS lock on ``folder`` (created if missing) while the body writes it.

    Args:
        folder: the folder to lock; the lock file is ``folder/.lock`` and holds this process's pid.
        what: what the folder is, for the error message (``run folder``, ``ablation folder``).

    Yields:
        the lock file's path.

    Raises:
        SimrlError: another process holds the lock (exit code 2; the message names its pid and how
            to stop it).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    f = (root / LOCK).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(f)
            raise SimrlError(f"{what} {root} is being written by another simrl process (pid {pid}); wait for it "
                             f"to finish or stop it (kill {pid}), then run again") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield root / LOCK
    finally:
        f.close()  # closing the descriptor releases the lock


def duplicated_steps(metrics: str | Path) -> list[int]:
    """The training steps logged more than once in a ``metrics.jsonl`` (sorted; empty when none or no file).

    Unreadable lines (a torn last line) are ignored: they are not steps.
    """
    path = Path(metrics)
    if not path.is_file():
        return []
    seen: Counter = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                seen[row["step"]] += 1
    return sorted(s for s, n in seen.items() if n > 1)


def check_no_duplicated_steps(run_dir: str | Path) -> None:
    """Refuse a run whose ``metrics.jsonl`` logs a step twice (two trainers wrote it at once).

    Raises:
        SimrlError: with the file, the first duplicated steps and how to recover.
    """
    path = Path(run_dir) / "metrics.jsonl"
    dup = duplicated_steps(path)
    if dup:
        shown = ", ".join(map(str, dup[:5])) + (", ..." if len(dup) > 5 else "")
        raise SimrlError(f"{path}: step(s) {shown} logged more than once (two trainers wrote this run at once); "
                         f"its results cannot be trusted: delete {Path(run_dir)} and train it again")


@contextlib.contextmanager
def writing_run(root: str | Path) -> Iterator[None]:
    """What every trainer holds while it writes a run folder: its lock (:func:`lock_folder`), and its
    ``tmp/`` as the home of simrl's temporary folders (:func:`simrl.scratch.under`), emptied of what a
    killed writer left there.

    Raises:
        SimrlError: another process writes the run.
    """
    from simrl import scratch

    with lock_folder(root, "run folder"), scratch.under(Path(root) / "tmp"):
        yield
