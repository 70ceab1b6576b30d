"""``simrl ablate``: every arm x seed of a recipe, trained in parallel, evaluated on held-out real tasks, reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from simrl.cli.options import RECIPE_HELP, SetOpt


def ablate(
    recipe: Annotated[Path, typer.Argument(help=RECIPE_HELP)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Ablation folder (default: runs/<recipe name>): runs in "
                                                  "OUT/<arm>/seed-<S>, report in OUT/report.md.")] = None,
    jobs: Annotated[int | None, typer.Option(help="Runs trained (and evaluated) at once (default: the CPU count).",
                                             min=1)] = None,
    resume: Annotated[bool, typer.Option(help="Continue unfinished runs from their checkpoints and skip finished "
                                              "ones (--no-resume: existing runs are an error).")] = True,
    report_to: Annotated[list[str] | None, typer.Option(
        help="Experiment trackers for every run, overriding the recipe's logging.report_to: tensorboard, trackio, "
             "wandb (several: --report-to tensorboard,wandb; none: no tracker); the ablation is the group.")] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="Run each training run and evaluation as a task on this Ray cluster: auto (the local one) or "
             "HOST:PORT of its head (`ray start --head`); OUT must be on a filesystem every node sees and every "
             "node needs simrl. Default: local subprocesses.")] = None,
    overrides: SetOpt = [],  # noqa: B006 - typer default
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan and exit: the runs (finished, partly "
                                                            "trained, new), the baselines, the evaluation size and an "
                                                            "estimated time; nothing runs or is written.")] = False,
) -> None:
    """Train all arms x seeds as subprocesses, evaluate runs and baselines, write report.json/.md and plots."""
    from rich.console import Console
    from rich.markdown import Markdown

    from simrl.experiment.ablate import run_ablation
    from simrl.experiment.recipe import load_recipe
    from simrl.experiment.report_md import statements
    from simrl.experiment.tracking import with_report_to
    from simrl.experiment.tracking_report import where

    rec = with_report_to(load_recipe(recipe, overrides), report_to)
    folder = out if out is not None else Path("runs") / rec.name
    if dry_run:
        import os

        from simrl.experiment.ablate_plan import describe, plan

        for line in describe(rec, folder, plan(rec, folder, jobs or os.cpu_count() or 1)):
            typer.echo(line)
        return
    report = run_ablation(rec, folder, jobs=jobs, resume=resume, ray_address=ray_address)
    console = Console()
    console.print(Markdown("\n".join(statements(report))))  # the primary comparison, then the baselines
    console.print(f"report: {folder / 'report.md'} (plots in {folder / 'plots'})")
    for line in where(rec, folder):  # the trackers: where the files are, the command that opens them
        console.print(line, markup=False, highlight=False, soft_wrap=True)
