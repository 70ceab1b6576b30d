"""Progress displays of long work: a rich bar with a remaining-time estimate, or plain lines off a terminal.

:func:`progress_bar` is the one place every command makes its bar: description, bar, done / total,
elapsed and remaining time (rich's ``TimeRemainingColumn``, from the speed over the last
``speed_estimate_period`` seconds), plus the caller's own columns (:func:`field_column`). On a wide
terminal the caller's columns wrap when space runs out, never the standard ones, so the remaining
time always shows. When the console is not a terminal (``nohup``, SLURM, CI, a log file) a live bar
would print nothing until the end, and on a terminal narrower than :data:`NARROW` columns it would
squeeze the estimate out, so :class:`LineProgress` prints plain lines instead, the remaining time
before the caller's text: one as soon as the task is added, one per step with ``per_step`` (as TRL
and verl log each step), else every ``SIMRL_PROGRESS_EVERY`` seconds (default 30), and one at the end::

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
from rich.table import Column

EVERY_ENV = "SIMRL_PROGRESS_EVERY"
"""Environment variable: seconds between plain progress lines off a terminal (default 30)."""
SPEED_WINDOW = 600.0
"""Seconds of progress the remaining-time estimate averages over (slow steps need a long window)."""
NARROW = 100
"""Terminals narrower than this many columns get plain lines: the live bar's standard columns need ~90."""


def field_column(name: str) -> TextColumn:
    """A column showing the task's text field ``name`` that wraps when the line is too long (rich's text
    columns do not wrap: they would push the remaining time off the line)."""
    return TextColumn(f"{{task.fields[{name}]}}", table_column=Column(no_wrap=False))


def progress_bar(*extra: ProgressColumn | str, console: Console | None = None, count: bool = True,
                 every: float | None = None, per_step: bool = False, **kwargs: Any) -> Progress:
    """A progress display with remaining-time estimates: a rich bar on a wide terminal, plain lines elsewhere.

    Args:
        extra: columns after the standard ones (e.g. ``field_column("line")``).
        console: where it goes (default: stderr).
        count: show ``done/total`` (False for stages without a count).
        every: seconds between plain lines (default ``$SIMRL_PROGRESS_EVERY`` or 30).
        per_step: plain lines also each time a task advances or its fields change (a training run's steps).
        kwargs: further ``rich.progress.Progress`` options (e.g. ``transient``).
    """
    console = console or Console(stderr=True)
    def keep() -> Column:  # the standard columns are never wrapped nor cut: the caller's give way
        return Column(no_wrap=True)

    columns = [TextColumn("{task.description}", table_column=keep()), BarColumn(table_column=keep()),
               *([MofNCompleteColumn(table_column=keep())] if count else []), TimeElapsedColumn(table_column=keep()),
               TextColumn("eta", table_column=keep()), TimeRemainingColumn(table_column=keep()), *extra]
    if console.is_terminal and not console.is_dumb_terminal and console.width >= NARROW:
        return Progress(*columns, console=console, speed_estimate_period=SPEED_WINDOW, **kwargs)
    return LineProgress(*columns, console=console, every=every, per_step=per_step)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def remaining(task: Task, origin: tuple[float, float] | None = None) -> float | None:
    """Seconds left: rich's estimate (the speed over the last :data:`SPEED_WINDOW` s), else, before rich has
    two samples (after the first step), the mean speed since ``origin`` ``(time.monotonic() then,
    completed then)``, the last update before the first step; None before any progress, 0 when finished."""
    if task.finished:
        return 0.0
    if task.time_remaining is not None or origin is None or not task.total:
        return task.time_remaining
    seconds, done = time.monotonic() - origin[0], task.completed - origin[1]
    return seconds / done * (task.total - task.completed) if done > 0 and seconds > 0 else None


def plain_line(task: Task, origin: tuple[float, float] | None = None) -> str:
    """One line for a task: time, description, done / total (percent), elapsed, eta (:func:`remaining`;
    ``?`` before any progress), then its text fields."""
    done = f"{task.completed:g}" + (f"/{task.total:g} ({task.percentage:.0f}%)" if task.total else "")
    fields = "  ".join(str(v) for v in task.fields.values() if str(v).strip())
    return (f"[{time.strftime('%H:%M:%S')}] {task.description}: {done} elapsed {_clock(task.elapsed)} "
            f"eta {_clock(remaining(task, origin))}" + (f" | {fields}" if fields else ""))


class LineProgress(Progress):
    """A :class:`rich.progress.Progress` for consoles that are not terminals or are narrow: plain lines.

    A line per task when it is added, per step with ``per_step`` (when it advances or its fields
    change), every ``every`` seconds without one, and at the end (see the module docstring). Markup in
    descriptions and fields is printed as is.
    """

    def __init__(self, *columns: Any, console: Console, every: float | None = None, per_step: bool = False) -> None:
        super().__init__(*columns, console=console, disable=True, speed_estimate_period=SPEED_WINDOW)
        self.every = every if every is not None else float(os.environ.get(EVERY_ENV) or 30)
        self.per_step = per_step
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._origin: dict[TaskID, tuple[float, float]] = {}  # (when, completed) the speed is measured from
        self._shown: dict[TaskID, tuple[float, Any]] = {}  # (when, what) the last line printed of a task

    def _state(self, task: Task) -> Any:
        return task.completed, task.total, tuple(map(str, task.fields.values()))

    def _print(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.visible:
                self.console.print(plain_line(task, self._origin.get(task.id)), markup=False, highlight=False,
                                   soft_wrap=True)
                self._shown[task.id] = (time.monotonic(), self._state(task))
        self.console.file.flush()

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:  # noqa: D102
        task_id = super().add_task(description, *args, **kwargs)
        self._origin[task_id] = (time.monotonic(), self._tasks[task_id].completed)
        self._print([self._tasks[task_id]])  # at once: a log shows the work has started
        return task_id

    def reset(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().reset(task_id, *args, **kwargs)
        self._origin[task_id] = (time.monotonic(), self._tasks[task_id].completed)  # e.g. the steps of a resume
        self._stepped(task_id)

    def update(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().update(task_id, *args, **kwargs)
        if self._tasks[task_id].completed == self._origin.get(task_id, (0.0, None))[1]:
            self._origin[task_id] = (time.monotonic(), self._tasks[task_id].completed)  # no step yet: not yet timed
        self._stepped(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:  # noqa: D102
        super().advance(task_id, advance)
        self._stepped(task_id)

    def _stepped(self, task_id: TaskID) -> None:
        """With ``per_step``: a line when the task's count or fields changed since its last line."""
        task = self._tasks[task_id]
        if self.per_step and self._shown.get(task_id, (0.0, None))[1] != self._state(task):
            self._print([task])

    def start(self) -> None:  # noqa: D102
        def tick() -> None:
            while not self._stop.wait(min(self.every, 1.0)):
                now = time.monotonic()
                with self._lock:
                    tasks = [t for t in self._tasks.values() if not t.finished
                             and now - self._shown.get(t.id, (0.0, None))[0] >= self.every]
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
