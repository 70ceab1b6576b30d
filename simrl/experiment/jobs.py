"""The processes of an ablation: its training runs (one command each, a few at once, with one progress bar)
and its evaluations (a process pool), run here or, through a launcher, elsewhere (:mod:`simrl.experiment.ray_jobs`).

:func:`run_jobs` starts each run's command (``simrl train ...``) through a launcher, ``jobs`` at once (a
thread pool: each thread starts one command and waits for it), its output to the run's log, and shows
one overall bar: the steps of every run (their ``metrics.jsonl``) with a remaining-time estimate, and
the runs done (:mod:`simrl.progress`); a failed run is reported with the end of its log and the others
go on. Local commands (:class:`LocalLauncher`) die with this process, ``kill -9`` included
(:mod:`simrl.experiment.children`); Ctrl-C or SIGTERM stops them and starts no queued one.
:func:`run_evals` runs :func:`eval_job` (a run's or a baseline's held-out evaluation) in spawned
processes that die with this one too.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl import stopping
from simrl.evaluation.results import EvalResult
from simrl.experiment import children, runs
from simrl.experiment.heldout import evaluate_baseline, evaluate_run
from simrl.experiment.recipe import Recipe


@dataclass(frozen=True)
class RunJob:
    """One arm x seed training run: its folder (``OUT/<arm>/seed-<S>``) and log file."""

    arm: str
    seed: int
    folder: Path
    log: Path


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``ok`` (``summary.json`` written), else ``reason`` (exit code and end of the log)."""

    job: RunJob
    ok: bool
    reason: str = ""
    seconds: float = 0.0


def finished(job: RunJob, steps: int) -> bool:
    """True when the run wrote its summary for the full budget."""
    import json

    summary = runs.RunFiles(job.folder).summary
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("steps") == steps
    except (OSError, ValueError):
        return False


def logged_steps(job: RunJob) -> int:
    """Lines of the run's ``metrics.jsonl`` (one per training step logged), 0 before the first."""
    path = runs.RunFiles(job.folder).metrics
    try:
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        return 0


def _failure(job: RunJob, code: int) -> str:
    """``exit code N: <the error line of the log, or its last lines>`` (rich boxes stripped)."""
    try:
        text = job.log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    lines = [c for ln in text.splitlines() if (c := ln.strip(" \t│╭╮╰╯─")) and c != "Error"]
    errors = [c for c in lines if c.startswith("error:") or re.match(r"^[\w.]*(Error|Exception)\b|^No such ", c)]
    tail = errors[-1] if errors else " | ".join(lines[-3:]) or "no output"
    return f"exit code {code}: {tail[:300]}"


class LocalLauncher:
    """Starts ablate's training commands as local subprocesses that die with this process
    (:func:`simrl.experiment.children.popen`): ``start``, ``wait`` (exit code), ``stop``. Ray's is
    :class:`simrl.experiment.ray_jobs.RayLauncher`.

    Args:
        env: the children's environment.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def start(self, argv: list[str], log: Path) -> subprocess.Popen:  # noqa: D102
        with log.open("w", encoding="utf-8") as out:
            return children.popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)

    def wait(self, proc: subprocess.Popen) -> int:  # noqa: D102
        return proc.wait()

    def stop(self, procs: list[subprocess.Popen]) -> None:  # noqa: D102
        children.stop(procs)


def run_jobs(todo: Sequence[RunJob], command: Callable[[RunJob], list[str]], *, jobs: int, steps: int,
             console: Any = None, poll: float = 0.3, launcher: Any = None) -> list[Outcome]:
    """Run ``command(job)`` for every job, at most ``jobs`` at once, with a rich progress display.

    Each command's stdout and stderr go to ``job.log``; ``launcher`` starts it (default
    :class:`LocalLauncher`: a subprocess whose torch threads are capped at ``cpu_count / jobs``,
    ``OMP_NUM_THREADS`` unless set). Ctrl-C or SIGTERM stops the running commands (and raises).

    Returns:
        one :class:`Outcome` per job, in ``todo`` order.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():  # a SIGTERM also stops the runs (via finally)
        previous = signal.signal(signal.SIGTERM, stopping.terminate)
    try:
        if launcher is None:
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
            launcher = LocalLauncher(env)
        return _run_jobs(todo, command, launcher, jobs=jobs, steps=steps, console=console, poll=poll)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _run_jobs(todo: Sequence[RunJob], command: Callable[[RunJob], list[str]], launcher: Any, *, jobs: int,
              steps: int, console: Any, poll: float) -> list[Outcome]:
    """Run the jobs, ``jobs`` at once (a thread pool: each thread starts one child and waits for it), with one
    overall bar: steps done over every run (its remaining-time estimate), runs done / total, and a line per
    run as it ends. Interrupted, it starts no further child and stops the running ones."""
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from simrl.progress import field_column, progress_bar

    running: dict[RunJob, Any] = {}
    done: dict[RunJob, Outcome] = {}
    lock, stopping = threading.Lock(), threading.Event()
    progress = {j: min(steps, logged_steps(j)) for j in todo}  # steps logged so far (a resumed run has some)

    def run(job: RunJob) -> Outcome | None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with lock:  # never a child started after the stop collected the running ones
            if stopping.is_set():
                return None
            running[job] = proc = launcher.start(command(job), job.log)  # dies with this process
        t0 = time.monotonic()
        code = launcher.wait(proc)
        with lock:
            running.pop(job, None)
        return Outcome(job, code == 0, "" if code == 0 else _failure(job, code), time.monotonic() - t0)

    def runs_line() -> str:
        failed = sum(not o.ok for o in done.values())
        return (f"runs {len(done)}/{len(todo)} done, {len(running)} running"
                + (f", {failed} failed" if failed else ""))

    with progress_bar(field_column("runs"), console=console) as bar, \
            ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="simrl-run") as pool:
        row = bar.add_task(f"training {len(todo)} runs (steps)", total=max(1, steps * len(todo)),
                           completed=sum(progress.values()), runs=runs_line())
        try:
            pending = {pool.submit(run, job) for job in todo}
            while pending:
                finished, pending = wait(pending, timeout=poll, return_when=FIRST_COMPLETED)
                ended = [o for o in (f.result() for f in finished) if o is not None]
                for o in ended:
                    done[o.job] = o
                    end = f"done in {o.seconds:.0f} s" if o.ok else f"FAILED: {o.reason} (log {o.job.log})"
                    bar.console.print(f"{o.job.arm} seed {o.job.seed}: {end}", markup=False, highlight=False)
                with lock:
                    live = [*running, *(o.job for o in ended)]
                progress.update({j: min(steps, logged_steps(j)) for j in live})
                bar.update(row, completed=sum(progress.values()), runs=runs_line())
        finally:  # interrupted: start nothing more, stop the runs started, and what they started
            with lock:
                stopping.set()
                started = list(running.values())
            launcher.stop(started)
            pool.shutdown(wait=True, cancel_futures=True)
    return [done[j] for j in todo]


def eval_job(kind: str, recipe: Recipe, folder: str, seed: int, worlds: str, warmstart: str | None) -> EvalResult:
    """One evaluation: ``run`` (a run folder's ``final.pt``) or a baseline name."""
    if kind == "run":
        return evaluate_run(folder, recipe, worlds=worlds)
    return evaluate_baseline(recipe, kind, seed, folder, worlds=worlds, warmstart=warmstart)


def _eval_worker(parent: int) -> None:
    """Initialise an evaluation process: it dies with the ablation (``parent``: a ``kill -9`` of it leaves
    no worker behind, :func:`simrl.experiment.children.die_with`), and one torch thread (the scorer
    policy's ops are tiny; more threads only contend with the other evaluations)."""
    import torch

    from simrl.experiment.children import die_with

    die_with(parent)
    torch.set_num_threads(1)


def run_evals(todo: list[tuple[tuple, tuple]], jobs: int, console: Any) -> dict[tuple, EvalResult | Exception]:
    """Run :func:`eval_job` for each ``(key, args)``, ``jobs`` processes at once (spawned: evaluations are
    CPU-bound Python, which threads would run one at a time; each has its own event loop, environments,
    policy and episode seeds, so the results do not depend on how many run at once)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from simrl.progress import progress_bar

    out: dict[tuple, EvalResult | Exception] = {}
    if not todo:
        return out
    workers = max(1, min(jobs, len(todo)))
    pool_of = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_eval_worker, initargs=(os.getpid(),))
    with progress_bar(console=console) as bar, pool_of as pool:
        task = bar.add_task("held-out evaluations (baselines, runs without one)", total=len(todo))
        futures = {pool.submit(eval_job, *args): key for key, args in todo}
        for fut in as_completed(futures):
            try:
                out[futures[fut]] = fut.result()
            except Exception as err:  # noqa: BLE001 - reported, the others go on
                out[futures[fut]] = err
            bar.advance(task)
    return out
