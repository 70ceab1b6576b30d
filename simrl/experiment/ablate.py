"""Ablations: every arm x seed of a recipe trained in parallel subprocesses (or Ray tasks), evaluated, reported.

:func:`run_ablation` (``simrl ablate RECIPE``) does, in order:

1. writes the resolved recipe to ``OUT/recipe.yaml`` and runs ``simrl train OUT/recipe.yaml --arm A
   --seed S --out OUT [--resume]`` for every arm (grid arms included) x seed, at most ``jobs`` at once,
   each a subprocess logging to ``OUT/logs/<arm>-seed-<S>.log`` (a failed run is reported with the
   end of its log and the others go on); one overall bar counts the steps of every run (their
   ``metrics.jsonl``) with a remaining-time estimate, and the runs done (:mod:`simrl.experiment.jobs`;
   on a Ray cluster, :mod:`simrl.experiment.ray_jobs`). The ablation holds ``OUT/.lock`` and each trainer
   its run folder's (:mod:`simrl.experiment.locks`); the trainers die with this process, ``kill -9``
   included (:mod:`simrl.experiment.children`);
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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.evaluation.results import EvalResult, load_run_eval
from simrl.experiment import locks, runs
from simrl.experiment.baselines import BASELINES
from simrl.experiment.comparisons import comparisons, primary
from simrl.experiment.jobs import Outcome, RunJob, finished, run_evals, run_jobs
from simrl.experiment.recipe import Arm, Recipe, recipe_yaml
from simrl.experiment.report import build_report, read_met_in_training, write_report
from simrl.experiment.tracking_report import log_report

RESERVED = ("logs", "baselines", "plots")
"""Folder names of OUT that arms may not use (beside ``worlds`` and ``cache``)."""


def plan_runs(recipe: Recipe, out_dir: Path) -> list[RunJob]:
    """Every arm (grid arms included) x seed, arm-major."""
    return [RunJob(arm, s, runs.run_dir(out_dir, arm, s), out_dir / "logs" / f"{arm}-seed-{s}.log")
            for arm in recipe.all_arms() for s in recipe.seeds]


def train_command(recipe_file: Path, job: RunJob, out_dir: Path, resume: bool) -> list[str]:
    """The ``simrl train`` command line of one run (a subprocess of this interpreter)."""
    return [sys.executable, "-m", "simrl.cli.main", "train", str(recipe_file), "--arm", job.arm, "--seed",
            str(job.seed), "--out", str(out_dir), *(["--resume"] if resume else [])]


def arm_kind(arm: Arm) -> str:
    """A short description: ``real``, ``world model (oracle)``, ``world model (oracle) + mcpmark (inject)``."""
    if arm.environment == "real":
        return "real"
    kind = f"world model ({arm.world_model()})"
    return kind + (f" + {Path(arm.schedule).stem} ({arm.mode})" if arm.schedule else "")


def environments(recipe: Recipe) -> dict[str, dict[str, str]]:
    """Arm -> ``{kind, description, world_model[, fidelity]}``: :func:`arm_kind`, what the arm's environment is
    in words (:func:`arm_description`), its backend (``real``, ``oracle``, ``openai``...) and, when the arm names
    one, its world model's held-out fidelity (:func:`simrl.experiment.report_fidelity.read_fidelity`)."""
    from simrl.experiment.report_fidelity import read_fidelity

    return {n: {"kind": arm_kind(a), "description": arm_description(recipe, a), "world_model": a.world_model()}
            | ({"fidelity": read_fidelity(a.fidelity)} if a.fidelity else {}) for n, a in recipe.all_arms().items()}


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
        for name in recipe.baselines if ok else ():
            folder, needs = out / "baselines" / name / f"seed-{seed}", BASELINES[name].needs
            file = next((str(f / needs) for f in ok if (f / needs).is_file()), None) if needs else None
            if needs and file is None:  # no run of this seed wrote it (warmstart.pt: no warm start)
                continue
            if resume and (ev := load_run_eval(folder)) is not None:
                base.setdefault(name, {})[seed] = ev
            else:
                todo.append(((name, name, seed), (name, recipe, str(folder), seed, worlds, file)))
    if ray:
        from simrl.experiment import ray_jobs

        results = ray_jobs.run_evals(todo, console)
    else:
        results = run_evals(todo, jobs, console)
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
    base = {b: dict(sorted(base[b].items())) for b in recipe.baselines if b in base}
    return arms, base, failed


def _design(text: str) -> object:
    """A recipe YAML without its ``logging`` block and the arms' report-only fields: what makes two ablations
    the same experiment (fields added to recipes since it was written count with their defaults)."""
    import yaml

    from simrl.experiment.recipe import parse_recipe
    from simrl.experiment.resume import without_report_fields

    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return data
    try:
        data = parse_recipe(data).model_dump(mode="json")
    except SimrlError:  # not a recipe of this simrl: compared as it is
        pass
    return {k: v for k, v in without_report_fields(data).items() if k != "logging"}


def _check(recipe: Recipe, out: Path, resume: bool, jobs: int) -> str:
    """Validate before starting anything; returns the recipe YAML to write to ``OUT/recipe.yaml``."""
    from simrl.experiment.recipe_training import TRAINERS

    if not TRAINERS[recipe.trainer.kind].ablate:
        able = [k for k, t in TRAINERS.items() if t.ablate]
        raise SimrlError(f"trainer.kind {recipe.trainer.kind!r}: ablations run the {' or '.join(able)} trainer "
                         "(they train in the `simrl train` process); train its arms with `simrl train`")
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
    complete = {j for j in plan if resume and finished(j, steps)}
    cmd = command or (lambda j: train_command(out / "recipe.yaml", j, out, resume))
    ran = {o.job: o for o in run_jobs([j for j in plan if j not in complete], cmd, jobs=jobs, steps=steps,
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
    run_dirs = {a: {s: f"{a}/seed-{s}" for s in recipe.seeds} for a in recipe.all_arms()}
    report = build_report(arms, base, comparisons=comparisons(recipe, list(base)), primary=primary(recipe, list(base)),
                          failed=failed, evaluation=evaluation, recipe=recipe.name, environments=environments(recipe),
                          run_dirs=run_dirs, positive=recipe.positive_control, met=read_met_in_training(out, run_dirs))
    written = write_report(report, out)
    log_report(recipe, out, report, [p for p in written if p.suffix == ".png"])  # no trackers: nothing
    return report
