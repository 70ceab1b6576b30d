"""``simrl train``: train a recipe's arms with its trainer (embedded, trl or verl), or show the plan (--dry-run).

The recipe's ``trainer.kind`` picks the trainer (:data:`simrl.experiment.recipe_training.TRAINERS`): ``embedded`` and ``trl`` train here, one run after
another; ``verl`` writes the verl job (datasets, tool config, reward module, Hydra overrides) and
launches ``verl.trainer.main_ppo`` locally, or submits it to a Ray cluster with ``--ray-address``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from simrl.cli.options import RECIPE_HELP, SetOpt


def train(
    recipe: Annotated[Path, typer.Argument(help=RECIPE_HELP)],
    arm: Annotated[str | None, typer.Option(help="Train only this arm (default: every arm of the recipe, "
                                                 "grid arms included).")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: the recipe's first seed).", min=0)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: runs/<recipe name>); each run goes to "
                                                  "OUT/<arm>/seed-<seed>, worlds to OUT/worlds.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue runs from their newest checkpoint; finished runs are left "
                                              "as they are (--no-resume: an existing run is an error), as in "
                                              "`simrl ablate`.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Print the resolved recipe and the plan; train nothing. For a verl "
                                               "recipe: write the verl job's files and print the exact command.")] = False,
    extend: Annotated[bool, typer.Option(help="Continue started or finished runs whose recipe differs only in a "
                                              "larger budget.steps (their summary and evaluation are redone); "
                                              "any other change of a run's recipe is refused.")] = False,
    evaluate: Annotated[bool, typer.Option(help="Evaluate each trained policy on held-out real tasks.")] = True,
    ray_address: Annotated[str | None, typer.Option(
        help="verl only: submit the job to this Ray cluster (e.g. http://HEAD:8265, as `ray job submit "
             "--address`) instead of running it here.")] = None,
    report_to: Annotated[list[str] | None, typer.Option(
        help="Experiment trackers, overriding the recipe's logging.report_to: tensorboard, trackio, wandb "
             "(several: --report-to tensorboard,wandb; none: no tracker). metrics.jsonl is always written.")] = None,
    overrides: SetOpt = [],  # noqa: B006 - typer default
) -> None:
    """Train arm x seed runs of a recipe, with a progress bar and a summary table.

    embedded (CPU, scorer policy) and trl (one node, llm policy) train here; verl (llm policy, GPUs)
    writes its job under OUT/<arm>/seed-<seed>/verl and runs `python -m verl.trainer.main_ppo` (or
    submits it with --ray-address).
    """
    from rich.console import Console

    from simrl.experiment.recipe import load_recipe, recipe_yaml
    from simrl.experiment.recipe_training import TRAINERS
    from simrl.experiment.tracking import with_report_to
    from simrl.experiment.tracking_report import where
    from simrl.experiment.train_runs import check_ray_address, launch_runs, summary_table
    from simrl.tables import print_table

    rec = with_report_to(load_recipe(recipe, overrides), report_to)
    arms = [arm] if arm is not None else list(rec.all_arms())
    for name in arms:
        rec.arm(name)  # fail fast on an unknown arm
    seeds, out, console = [seed if seed is not None else rec.seeds[0]], out or Path("runs") / rec.name, Console(stderr=True)
    check_ray_address(rec, ray_address, recipe)
    extended = _check_runs(rec, arms, seeds, out, resume=resume, extend=extend)  # before anything runs
    if TRAINERS[rec.trainer.kind].launch is not None:  # a trainer that writes a job and runs or submits it (verl)
        launch_runs(rec, arms, seeds, out, dry_run=dry_run, ray_address=ray_address, resume=resume, console=console,
                    run_eval=evaluate)
        return
    if dry_run:
        typer.echo(recipe_yaml(rec))
        _plan(rec, arms, seeds, out, extended)
        return
    _extend(rec, out, extended, console)
    summaries = _train(rec, arms, seeds, out, resume, evaluate, console)
    print_table(summary_table(rec, summaries, out))
    for line in where(rec, out):  # the trackers: where the files are, the command that opens them
        Console().print(line, markup=False, highlight=False, soft_wrap=True)


def _extend(rec, out: Path, extended: dict[tuple[str, int], list[str]], console) -> None:
    """Continue the runs --extend takes to a larger budget (:func:`simrl.experiment.resume.extend_run`)."""
    from simrl.experiment import runs
    from simrl.experiment.resume import extend_run

    for (name, s), changes in extended.items():
        console.print(f"{name} seed {s}: extended ({'; '.join(changes)})", markup=False, highlight=False)
        extend_run(runs.RunFiles(runs.run_dir(out, name, s)), rec)


def _train(rec, arms: list[str], seeds: list[int], out: Path, resume: bool, evaluate: bool, console) -> list:
    """:func:`simrl.experiment.train_runs.train_runs` with one progress bar line per run."""
    from simrl.experiment.train_runs import train_runs
    from simrl.progress import field_column, progress_bar

    with progress_bar(field_column("line"), console=console, per_step=True) as bar:
        def progress(name: str, s: int):
            job = bar.add_task(f"{name} seed {s}", total=rec.budget.steps, line="preparing the world")
            first = [True]

            def report(done: int, total: int, message: str) -> None:
                if first[0] and done:  # steps done before a resume are no speed: the estimate starts here
                    bar.reset(job, total=total, completed=done, line=message)
                else:
                    bar.update(job, completed=done, total=total, line=message)
                first[0] = False

            return report

        return train_runs(rec, arms, seeds, out, resume=resume, run_eval=evaluate, progress=progress)


def _check_runs(rec, arms: list[str], seeds: list[int], out: Path, *, resume: bool,
                extend: bool) -> dict[tuple[str, int], list[str]]:
    """Refuse (one line) a run folder started with a recipe that changes its run, for --dry-run and the
    real run alike (:func:`simrl.experiment.resume.check_resume`); returns the runs --extend continues."""
    from simrl.experiment import runs
    from simrl.experiment.resume import check_resume

    if not resume:  # --no-resume: a started folder is refused by the trainer itself
        return {}
    found = {}
    for name in arms:
        for s in seeds:
            files = runs.RunFiles(runs.run_dir(out, name, s))
            if changes := check_resume(files, rec, name, extend=extend, started=_state(rec, files) != "new"):
                found[(name, s)] = changes
    return found


def _plan(rec, arms: list[str], seeds: list[int], out: Path, extended: dict[tuple[str, int], list[str]]) -> None:
    """Print what a run would do: each arm x seed, its environment, its folder and its state (``extended``:
    the runs --extend continues, with their changed fields)."""
    from rich.console import Console
    from rich.table import Table

    from simrl.experiment import runs
    from simrl.tables import print_table

    b = rec.budget
    table = Table(title=f"plan: {b.steps} steps x {b.batch} tasks x {b.group_size} episodes = "
                        f"{b.steps * b.batch * b.group_size} episodes per run; trainer {rec.trainer.kind}")
    for col in ("arm", "seed", "environment", "schedule", "run folder", "state"):
        table.add_column(col)
    for name in arms:
        a = rec.arm(name)
        options = ", ".join(f"{k}={v}" for k, v in rec.real.make_options().items())
        env = f"{rec.env.id} real" + (f" ({options})" if options else "") if a.environment == "real" else \
            f"{rec.env.id} world model {a.world_model()}"
        for s in seeds:
            files = runs.RunFiles(runs.run_dir(out, name, s))
            table.add_row(name, str(s), env, f"{a.schedule or '-'} ({a.mode})" if a.schedule else "-",
                          str(files.root), _state(rec, files) + ("; to extend" if (name, s) in extended else ""))
    print_table(table)
    for (name, s), changes in extended.items():
        Console().print(f"{name} seed {s}: --extend continues it ({'; '.join(changes)})", markup=False,
                        highlight=False, soft_wrap=True)
    spec = Path(rec.world.spec)
    size = f", {rec.world.entities} entities" if rec.world.entities else ""
    Console().print(f"world: {spec} seed {rec.world.seed}{size}" + ("" if spec.is_dir() else f" -> {runs.worlds_dir(out)}/")
                    + (f"; held-out worlds: seeds {rec.world.eval_worlds}" if rec.world.eval_worlds else ""))


def _state(rec, files) -> str:
    """A run folder's state for the plan: new, started, resumable at step N, or finished."""
    from simrl.experiment import runs

    if files.summary.exists():
        return "finished"
    from simrl.envs.registry import load_entry
    from simrl.experiment.recipe_training import TRAINERS

    resume_step = TRAINERS[rec.trainer.kind].resume_step
    if resume_step is not None:
        step = load_entry(resume_step)(files)
    else:
        found = runs.latest_checkpoint(files) if files.started() else None
        step = found[0] if found else None
    if step is not None:
        return f"resumable at step {step}"
    return "started, no checkpoint" if files.started() else "new"
