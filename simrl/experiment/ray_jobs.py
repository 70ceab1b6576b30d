"""An ablation on a Ray cluster: each training run and each evaluation a Ray task (``simrl ablate --ray-address``).

Ray schedules; simrl only says what each task needs (:data:`RESOURCES`) and keeps ablate's semantics:

* a training run is the same ``simrl train RECIPE --arm A --seed S --out OUT --resume`` command a local
  ablation runs, started by a Ray task (:func:`train_task`) on whichever node has a free CPU, writing
  the same run folder and log; so OUT must be on a filesystem every node sees (one machine: any folder),
  and every node needs simrl installed (the same version). Ray retries a task whose worker or node
  died (``max_retries``), and the retried command resumes the run from its newest checkpoint;
* an evaluation (a run without one, a baseline) is :func:`simrl.experiment.jobs.eval_job` in a task;
* interrupting the ablation (Ctrl-C, SIGTERM) cancels its tasks (``ray.cancel(force=True)``: the workers
  are killed, and the trainers they started get SIGTERM from the kernel, :mod:`simrl.experiment.children`).
  A ``kill -9`` of the ablation ends its Ray job: Ray kills the job's workers and drops its queued
  tasks, and the trainers die with their workers (a test checks it).

Ray is optional (``pip install 'simrl[ray]'``); local subprocesses stay the default.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError

RESOURCES = {"train": {"num_cpus": 1}, "eval": {"num_cpus": 1}}
"""Ray resources one task declares: a training run of the embedded CPU trainer and an evaluation each
take one CPU (their torch threads are set to match)."""
RETRIES = 2
"""Times Ray re-runs a task whose worker or node died (a failed command is not retried: it is reported)."""


def connect(address: str) -> int:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``); returns its CPUs.

    Raises:
        SimrlError: ray is not installed, or no cluster answers at ``address``.
    """
    try:
        import ray
    except ImportError:
        raise SimrlError("--ray-address needs ray: pip install 'simrl[ray]'") from None
    if not ray.is_initialized():
        _probe(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except Exception as err:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise SimrlError(f"--ray-address {address}: no Ray cluster there ({first[:200]}); start one with "
                             "`ray start --head` or give its HOST:PORT") from None
    return int(ray.cluster_resources().get("CPU", 1))


def _probe(address: str, timeout: float = 5.0) -> None:
    """Raise :class:`SimrlError` when nothing listens at ``HOST:PORT`` within ``timeout`` seconds (``ray.init``
    would wait minutes); ``auto`` and other forms are left to Ray."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise SimrlError(f"--ray-address {address}: no Ray cluster there ({err.strerror or err}); start one with "
                         "`ray start --head` or give its HOST:PORT") from None


def train_task(argv: Sequence[str], log: str, env: dict[str, str], driver_python: str) -> int:
    """Run one training command on this Ray worker, its output to ``log``; returns its exit code.

    ``argv`` starting with the driver's interpreter runs under this worker's instead. The command dies
    with this worker (:func:`simrl.experiment.children.popen`); a cancelled task stops it.
    """
    from simrl.experiment import children

    argv = [sys.executable, *argv[1:]] if argv and argv[0] == driver_python else list(argv)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        proc = children.popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
                              stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:  # cancelled (KeyboardInterrupt in this task): the trainer goes too
            children.stop([proc])


def eval_task(*args: Any) -> Any:
    """One evaluation (:func:`simrl.experiment.jobs.eval_job`) on this Ray worker, one torch thread."""
    import torch

    from simrl.experiment.jobs import eval_job

    torch.set_num_threads(1)
    return eval_job(*args)


class RayLauncher:
    """Starts ablate's training commands as Ray tasks: ``start``, ``wait`` (exit code), ``stop`` (cancel).

    The same interface as :class:`simrl.experiment.jobs.LocalLauncher`, so ablate's job loop, progress
    display and outcomes are the same for both.
    """

    def __init__(self, env: dict[str, str]) -> None:
        import ray

        self.env = env
        self.remote = ray.remote(max_retries=RETRIES, **RESOURCES["train"])(train_task)

    def start(self, argv: list[str], log: Path) -> Any:  # noqa: D102
        return self.remote.remote(argv, str(log), self.env, sys.executable)

    def wait(self, ref: Any) -> int:  # noqa: D102
        import ray

        try:
            return int(ray.get(ref))
        except ray.exceptions.TaskCancelledError:
            return -15
        except ray.exceptions.RayError as err:  # the task could not run (e.g. its node died RETRIES times)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            print(f"ray task failed: {first[:300]}", file=sys.stderr)
            return -1

    def stop(self, refs: list[Any], timeout: float = 30.0) -> None:  # noqa: D102
        import ray

        for ref in refs:
            ray.cancel(ref, force=True)
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=timeout)


def run_evals(todo: list[tuple[tuple, tuple]], console: Any) -> dict[tuple, Any]:
    """:func:`simrl.experiment.jobs.eval_job` for each ``(key, args)`` as Ray tasks; key -> result or the
    exception it raised. Interrupted, the tasks not done are cancelled."""
    import ray

    from simrl.progress import progress_bar

    remote = ray.remote(max_retries=RETRIES, **RESOURCES["eval"])(eval_task)
    refs = {remote.remote(*args): key for key, args in todo}
    out: dict[tuple, Any] = {}
    pending = list(refs)
    try:
        with progress_bar(console=console) as bar:
            task = bar.add_task("held-out evaluations on Ray (baselines, runs without one)", total=len(todo))
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    try:
                        out[refs[ref]] = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the evaluation raised: reported, the others go on
                        out[refs[ref]] = getattr(err, "cause", None) or err
                    bar.advance(task)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return out
