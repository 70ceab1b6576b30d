"""Progress displays of long work: a rich bar with a remaining-time estimate, or plain lines off a terminal.

:func:`progress_bar` is the one place every command makes its bar: description, bar, done / total,
elapsed and remaining time (rich's ``TimeRemainingColumn``, from the speed over the last
``speed_estimate_period`` seconds), plus the caller's own columns. When the console is not a
terminal (``nohup``, SLURM, CI, a log file) a live bar would print nothing until the end, so
:class:`LineProgress` prints one plain line per task instead: as soon as the task is added, every
``SIMRL_PROGRESS_EVERY`` seconds (default 30) and at the end::

    [10:02:31] sim-controlled seed 0: 5/20 (25%) elapsed 0:00:41 eta 0:02:03 | reward 0.412  success 40% ...
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

EVERY_ENV = "SIMRL_PROGRESS_EVERY"
"""Environment variable: seconds between plain progress lines off a terminal (default 30)."""
SPEED_WINDOW = 600.0
"""Seconds of progress the remaining-time estimate averages over (slow steps need a long window)."""


def progress_bar(*extra: ProgressColumn | str, console: Console | None = None, count: bool = True,
                 every: float | None = None, **kwargs: Any) -> Progress:
    """A progress display with remaining-time estimates: a rich bar on a terminal, plain lines elsewhere.

    Args:
        extra: columns after the standard ones (e.g. ``TextColumn("{task.fields[line]}")``).
        console: where it goes (default: stderr).
        count: show ``done/total`` (False for stages without a count).
        every: seconds between plain lines off a terminal (default ``$SIMRL_PROGRESS_EVERY`` or 30).
        kwargs: further ``rich.progress.Progress`` options (e.g. ``transient``).
    """
    console = console or Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), *([MofNCompleteColumn()] if count else []),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), *extra]
    if console.is_terminal and not console.is_dumb_terminal:
        return Progress(*columns, console=console, speed_estimate_period=SPEED_WINDOW, **kwargs)
    return LineProgress(*columns, console=console, every=every)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def plain_line(task: Task) -> str:
    """One line for a task: time, description, done / total (percent), elapsed, eta, its text fields."""
    done = f"{task.completed:g}" + (f"/{task.total:g} ({task.percentage:.0f}%)" if task.total else "")
    eta = "0:00:00" if task.finished else _clock(task.time_remaining)
    fields = "  ".join(str(v) for v in task.fields.values() if str(v).strip())
    return (f"[{time.strftime('%H:%M:%S')}] {task.description}: {done} elapsed {_clock(task.elapsed)} eta {eta}"
            + (f" | {fields}" if fields else ""))


class LineProgress(Progress):
    """A :class:`rich.progress.Progress` for consoles that are not terminals: no live bar, plain lines.

    A line per task when it is added, every ``every`` seconds while running, and at the end (see the
    module docstring). Markup in descriptions and fields is printed as is.
    """

    def __init__(self, *columns: Any, console: Console, every: float | None = None) -> None:
        super().__init__(*columns, console=console, disable=True, speed_estimate_period=SPEED_WINDOW)
        self.every = every if every is not None else float(os.environ.get(EVERY_ENV) or 30)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _print(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.visible:
                self.console.print(plain_line(task), markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:  # noqa: D102
        task_id = super().add_task(description, *args, **kwargs)
        self._print([self._tasks[task_id]])  # at once: a log shows the work has started
        return task_id

    def start(self) -> None:  # noqa: D102
        def tick() -> None:
            while not self._stop.wait(self.every):
                with self._lock:
                    tasks = [t for t in self._tasks.values() if not t.finished]
                self._print(tasks)

        self._stop.clear()
        self._ticker = threading.Thread(target=tick, name="simrl-progress", daemon=True)
        self._ticker.start()

    def stop(self) -> None:  # noqa: D102
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
            self._print(list(self._tasks.values()))
