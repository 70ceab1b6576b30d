"""Ablations: every arm x seed of a recipe trained in parallel subprocesses (or Ray tasks), evaluated, reported.

:func:`run_ablation` (``simrl ablate RECIPE``) does, in order:

1. writes the resolved recipe to ``OUT/recipe.yaml`` and runs ``simrl train OUT/recipe.yaml --arm A
   --seed S --out OUT [--resume]`` for every arm (grid arms included) x seed, at most ``jobs`` at once,
   each a subprocess logging to ``OUT/logs/<arm>-seed-<S>.log`` (a failed run is reported with the
   end of its log and the others go on); one overall bar counts the steps of every run (their
   ``metrics.jsonl``) with a remaining-time estimate, and the runs done (:mod:`simrl.progress`).
   The ablation holds ``OUT/.lock`` and each trainer its run folder's (:mod:`simrl.experiment.locks`); the
   trainers die with this process, ``kill -9`` included (:mod:`simrl.experiment.children`);
2. collects each finished run's held-out evaluation (``simrl train`` writes it; a run without one is
   evaluated here) and evaluates the baselines of every seed on the same tasks with the same episode
   seeds: ``untrained`` (the initial policy) and ``warmstart`` (a run's ``warmstart.pt``), under
   ``OUT/baselines/<name>/seed-<S>/``;
3. writes ``report.json``, ``report.md`` and the plots (:mod:`simrl.experiment.report`), and logs them, the
   held-out results and the baselines to the recipe's trackers (:mod:`simrl.experiment.tracking_report`).

Layout: ``OUT/<arm>/seed-<S>/`` runs and ``OUT/worlds/`` (:mod:`simrl.experiment.runs`), plus ``OUT/logs/``,
``OUT/baselines/``, ``OUT/plots/``, ``OUT/report.{json,md}``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment import children, locks, runs
from simrl.experiment.evaluate import BASELINES, EvalResult, evaluate_baseline, evaluate_run, load_run_eval
from simrl.experiment.recipe import Arm, Recipe, recipe_yaml
from simrl.experiment.report import build_report, write_report
from simrl.experiment.tracking_report import log_report

RESERVED = ("logs", "baselines", "plots")
"""Folder names of OUT that arms may not use (beside ``worlds`` and ``cache``)."""


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


def plan_runs(recipe: Recipe, out_dir: Path) -> list[RunJob]:
    """Every arm (grid arms included) x seed, arm-major."""
    return [RunJob(arm, s, runs.run_dir(out_dir, arm, s), out_dir / "logs" / f"{arm}-seed-{s}.log")
            for arm in recipe.all_arms() for s in recipe.seeds]


def train_command(recipe_file: Path, job: RunJob, out_dir: Path, resume: bool) -> list[str]:
    """The ``simrl train`` command line of one run (a subprocess of this interpreter)."""
    return [sys.executable, "-m", "simrl.cli.main", "train", str(recipe_file), "--arm", job.arm, "--seed",
            str(job.seed), "--out", str(out_dir), *(["--resume"] if resume else [])]


def _finished(job: RunJob, steps: int) -> bool:
    """True when the run wrote its summary for the full budget."""
    import json

    summary = runs.RunFiles(job.folder).summary
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("steps") == steps
    except (OSError, ValueError):
        return False


def _steps_done(job: RunJob) -> int:
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
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if launcher is None:
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
            launcher = LocalLauncher(env)
        return _run_jobs(todo, command, launcher, jobs=jobs, steps=steps, console=console, poll=poll)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


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
    progress = {j: min(steps, _steps_done(j)) for j in todo}  # steps logged so far (a resumed run has some)

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
                progress.update({j: min(steps, _steps_done(j)) for j in live})
                bar.update(row, completed=sum(progress.values()), runs=runs_line())
        finally:  # interrupted: start nothing more, stop the runs started, and what they started
            with lock:
                stopping.set()
                started = list(running.values())
            launcher.stop(started)
            pool.shutdown(wait=True, cancel_futures=True)
    return [done[j] for j in todo]


def arm_kind(arm: Arm) -> str:
    """A short description: ``real``, ``world model (oracle)``, ``world model (oracle) + mcpmark (inject)``."""
    if arm.environment == "real":
        return "real"
    kind = f"world model ({arm.world_model()})"
    return kind + (f" + {Path(arm.schedule).stem} ({arm.mode})" if arm.schedule else "")


def primary(recipe: Recipe, baselines: Sequence[str] = ()) -> dict[str, Any]:
    """The primary comparison ``{a, b, metric, declared}``: the recipe's ``primary`` (``declared`` True), else
    the default: the first controlled world-model arm minus the first uncontrolled one, else a world-model
    arm minus the real arm, else the first arm minus the first baseline present of ``candidates``,
    ``warmstart``, ``untrained`` (``untrained`` when none is), on success.
    """
    if recipe.primary is not None:
        return {**recipe.primary.model_dump(), "declared": True}
    pairs = _arm_pairs(recipe)
    if not pairs:
        base = [b for b in BASELINES if b in baselines] or ["untrained"]
        pairs = [(next(iter(recipe.all_arms())), base[0])]
    return {"a": pairs[0][0], "b": pairs[0][1], "metric": "success", "declared": False}


def _arm_pairs(recipe: Recipe) -> list[tuple[str, str]]:
    """Controlled minus uncontrolled world-model arms, then each world-model arm minus each real arm."""
    arms = recipe.all_arms()
    controlled = [n for n, a in arms.items() if a.environment == "world_model" and a.schedule]
    uncontrolled = [n for n, a in arms.items() if a.environment == "world_model" and not a.schedule]
    real = [n for n, a in arms.items() if a.environment == "real"]
    return [(c, u) for c in controlled for u in uncontrolled] + \
        [(s, r) for s in controlled + uncontrolled for r in real]


def comparisons(recipe: Recipe, baselines: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs reported as ``a - b``: the primary first, then controlled minus uncontrolled, each world-model
    arm minus the real arm, then each arm minus each baseline present (``candidates``, ``warmstart``,
    ``untrained``). All but the primary are secondary (Holm-corrected in the report)."""
    base = [b for b in BASELINES if b in baselines]
    p = primary(recipe, baselines)
    return list(dict.fromkeys([(p["a"], p["b"]), *_arm_pairs(recipe), *((a, b) for a in recipe.all_arms()
                                                                         for b in base)]))


def environments(recipe: Recipe) -> dict[str, dict[str, str]]:
    """Arm -> ``{kind, description, world_model}``: :func:`arm_kind`, what the arm's environment is in
    words (:func:`arm_description`) and its backend (``real``, ``oracle``, ``openai``...), for the report."""
    return {n: {"kind": arm_kind(a), "description": arm_description(recipe, a), "world_model": a.world_model()}
            for n, a in recipe.all_arms().items()}


def arm_description(recipe: Recipe, arm: Arm) -> str:
    """What ``arm`` trains in, in words: the real environment and its options, or the world model (the
    oracle: the ground truth, a perfect simulator) and its schedule's own ``description``."""
    if arm.environment == "real":
        options = ", ".join(f"{k}={v}" for k, v in recipe.real.make_options().items())
        return f"the real {recipe.env.id} environment" + (f" ({options})" if options else "")
    backend = arm.world_model()
    text = ("the oracle: the environment's ground truth served without page limits or faults, a perfect "
            "simulator, not a language model" if backend == "oracle"
            else f"the {backend} world model" + (f" {arm.model}" if arm.model else ""))
    if arm.schedule:
        from simrl.errors import SpecError
        from simrl.perturb.schedule import load_schedule

        try:
            about = " ".join(load_schedule(arm.schedule).description.split())
        except SpecError:
            about = ""
        text += f"; perturbations ({arm.mode}): {about or Path(arm.schedule).stem}"
    return text


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


def _run_evals(todo: list[tuple[tuple, tuple]], jobs: int, console: Any) -> dict[tuple, EvalResult | Exception]:
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


def _evaluations(recipe: Recipe, out: Path, outcomes: Sequence[Outcome], *, jobs: int, resume: bool,
                 console: Any, ray: bool = False) -> tuple[dict, dict, dict]:
    """(arm -> seed -> eval, baseline -> seed -> eval, arm -> seed -> failure reason); the evaluations as
    Ray tasks with ``ray`` (:func:`simrl.experiment.ray_jobs.run_evals`)."""
    arms: dict[str, dict[int, EvalResult]] = {}
    failed: dict[str, dict[int, str]] = {}
    todo: list[tuple[tuple, tuple]] = []
    worlds = str(runs.worlds_dir(out))
    for o in outcomes:
        if o.ok and (dup := locks.duplicated_steps(runs.RunFiles(o.job.folder).metrics)):
            o = Outcome(o.job, False, f"metrics.jsonl logs step(s) {dup[:5]} more than once (two trainers wrote "
                                      f"this run at once): delete {o.job.folder} and run again")
        if not o.ok:
            failed.setdefault(o.job.arm, {})[o.job.seed] = o.reason
        elif (ev := load_run_eval(o.job.folder)) is not None:
            arms.setdefault(o.job.arm, {})[o.job.seed] = ev
        else:
            todo.append((("run", o.job.arm, o.job.seed), ("run", recipe, str(o.job.folder), o.job.seed, worlds, None)))
    base: dict[str, dict[int, EvalResult]] = {}
    for seed in recipe.seeds:
        ok = [o.job.folder for o in outcomes if o.ok and o.job.seed == seed]
        warm = next((str(f / "warmstart.pt") for f in ok if (f / "warmstart.pt").is_file()), None)
        for name in BASELINES if ok else ():
            folder = out / "baselines" / name / f"seed-{seed}"
            if name == "warmstart" and warm is None:
                continue
            if resume and (ev := load_run_eval(folder)) is not None:
                base.setdefault(name, {})[seed] = ev
            else:
                todo.append(((name, name, seed), (name, recipe, str(folder), seed, worlds, warm)))
    if ray:
        from simrl.experiment.ray_jobs import run_evals

        results = run_evals(todo, console)
    else:
        results = _run_evals(todo, jobs, console)
    for (kind, name, seed), result in results.items():
        if isinstance(result, Exception):
            reason = f"evaluation failed: {type(result).__name__}: {result}"
            if kind == "run":
                failed.setdefault(name, {})[seed] = reason
            elif console is not None:
                console.print(f"[yellow]baseline {name} seed {seed}: {reason}[/yellow]")
        else:
            (arms if kind == "run" else base).setdefault(name, {})[seed] = result
    order = {a: i for i, a in enumerate(recipe.all_arms())}
    arms = {a: dict(sorted(arms[a].items())) for a in sorted(arms, key=order.__getitem__)}
    base = {b: dict(sorted(base[b].items())) for b in BASELINES if b in base}
    return arms, base, failed


def _design(text: str) -> object:
    """A recipe YAML without its ``logging`` block: what makes two ablations the same experiment."""
    import yaml

    data = yaml.safe_load(text)
    return {k: v for k, v in data.items() if k != "logging"} if isinstance(data, dict) else data


def _check(recipe: Recipe, out: Path, resume: bool, jobs: int) -> str:
    """Validate before starting anything; returns the recipe YAML to write to ``OUT/recipe.yaml``."""
    from simrl.experiment.recipe_training import TRAINERS

    if not TRAINERS[recipe.trainer.kind].ablate:
        able = [k for k, t in TRAINERS.items() if t.ablate]
        raise SimrlError(f"trainer.kind {recipe.trainer.kind!r}: ablations run the {' or '.join(able)} trainer "
                         "(their baselines and evaluation are the scorer policy's); train its arms with `simrl train`")
    clash = [a for a in recipe.all_arms() if a in RESERVED]
    if clash:
        raise SimrlError(f"arm name(s) {clash} are folder names of an ablation ({', '.join(RESERVED)}); rename them")
    if jobs < 1:
        raise SimrlError(f"--jobs must be at least 1, got {jobs}")
    text = recipe_yaml(recipe)
    old = out / "recipe.yaml"
    if old.is_file() and (was := _design(old.read_text(encoding="utf-8"))) != (now := _design(text)):
        from simrl.experiment.resume import flatten

        a, b = flatten(was), flatten(now)
        fields = [k for k in dict.fromkeys([*b, *a]) if a.get(k) != b.get(k)]
        raise SimrlError(f"{out} holds an ablation of another recipe (its recipe.yaml differs in "
                         f"{', '.join(fields[:6])}); choose another --out")
    started = [str(j.folder) for j in plan_runs(recipe, out) if runs.RunFiles(j.folder).started()]
    if started and not resume:
        raise SimrlError(f"{len(started)} run folder(s) already exist (e.g. {started[0]}); resume them "
                         "(the default) or choose another --out")
    return text


def run_ablation(recipe: Recipe, out_dir: str | Path, jobs: int | None = None, resume: bool = True, *,
                 command: Callable[[RunJob], list[str]] | None = None, console: Any = None,
                 ray_address: str | None = None) -> dict[str, Any]:
    """Train every arm x seed of ``recipe`` in parallel subprocesses, evaluate them and the baselines, report.

    Args:
        recipe: a recipe from :func:`simrl.experiment.recipe.load_recipe` (paths resolved).
        out_dir: the ablation folder (see the module docstring).
        jobs: runs (and evaluations) at once; default ``os.cpu_count()`` (with Ray: the cluster's CPUs).
        resume: continue unfinished runs from their checkpoints and skip finished ones (and finished
            baseline evaluations); without it, existing run folders are an error.
        command: ``command(job) -> argv`` to train one run (default :func:`train_command`).
        console: a rich console for the progress display (default: stderr).
        ray_address: run each training run and evaluation as a task on this Ray cluster (``auto``,
            ``HOST:PORT``; :mod:`simrl.experiment.ray_jobs`) instead of local subprocesses.

    Returns:
        the report (also written as ``report.json``, with ``report.md`` and the plots).

    Raises:
        SimrlError: a non-embedded trainer, an arm named like an ablation folder, ``jobs < 1``, an ``out_dir``
            of another recipe, existing runs without ``resume``, or another process writing ``out_dir``
            (its lock, :func:`simrl.experiment.locks.lock_folder`), no Ray cluster at ``ray_address``. A
            failed run raises nothing: it is listed in the report.
    """
    from rich.console import Console

    out = Path(out_dir)
    launcher = None
    if ray_address is not None:
        from simrl.experiment.ray_jobs import RayLauncher, connect

        cpus = connect(ray_address)
        jobs = jobs if jobs is not None else cpus
        launcher = RayLauncher({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or "1"})
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    console = console or Console(stderr=True)
    _check(recipe, out, resume, jobs)  # bad input creates nothing
    with locks.lock_folder(out, "ablation folder"):  # one ablation writes OUT at a time
        return _ablate(recipe, out, jobs, resume, command, console, launcher)


def _ablate(recipe: Recipe, out: Path, jobs: int, resume: bool, command: Callable[[RunJob], list[str]] | None,
            console: Any, launcher: Any = None) -> dict[str, Any]:
    text = _check(recipe, out, resume, jobs)  # again, now that no other ablation can change OUT
    runs.write_atomic(out / "recipe.yaml", text)
    plan = plan_runs(recipe, out)
    steps = recipe.budget.steps
    finished = {j for j in plan if resume and _finished(j, steps)}
    cmd = command or (lambda j: train_command(out / "recipe.yaml", j, out, resume))
    ran = {o.job: o for o in run_jobs([j for j in plan if j not in finished], cmd, jobs=jobs, steps=steps,
                                      console=console, launcher=launcher)}
    outcomes = [ran.get(j) or Outcome(j, True) for j in plan]
    arms, base, failed = _evaluations(recipe, out, outcomes, jobs=jobs, resume=resume, console=console,
                                      ray=launcher is not None)
    any_eval = next((e for per in [*arms.values(), *base.values()] for e in per.values()), None)
    ev = recipe.evaluation
    evaluation = {"env": recipe.env.id, "real options": recipe.real.make_options() or "defaults", "split": ev.split,
                  "held-out worlds": recipe.world.eval_worlds or "none", "tasks": any_eval.tasks if any_eval else 0,
                  "trials": ev.trials, "greedy": ev.greedy, "max_turns": recipe.budget.max_turns,
                  "seeds": list(recipe.seeds)}
    report = build_report(arms, base, comparisons=comparisons(recipe, list(base)), primary=primary(recipe, list(base)),
                          failed=failed, evaluation=evaluation, recipe=recipe.name, environments=environments(recipe),
                          run_dirs={a: {s: f"{a}/seed-{s}" for s in recipe.seeds} for a in recipe.all_arms()},
                          positive=recipe.positive_control.model_dump() if recipe.positive_control else None)
    written = write_report(report, out)
    log_report(recipe, out, report, [p for p in written if p.suffix == ".png"])  # no trackers: nothing
    return report
