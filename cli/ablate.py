"""``simrl ablate``: every arm x seed of a recipe, trained in parallel, evaluated on held-out real tasks, reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def ablate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (e.g. recipes/mcp-controlled-vs-uncontrolled.yaml).")],
    out: Annotated[Path | None, typer.Option(help="Ablation folder (default: runs/<recipe name>): runs in "
                                                  "OUT/<arm>/seed-<S>, report in OUT/report.md.")] = None,
    jobs: Annotated[int | None, typer.Option(help="Runs trained (and evaluated) at once (default: the CPU count).",
                                             min=1)] = None,
    resume: Annotated[bool, typer.Option(help="Continue unfinished runs from their checkpoints and skip finished "
                                              "ones (--no-resume: existing runs are an error).")] = True,
) -> None:
    """Train all arms x seeds as subprocesses, evaluate runs and baselines, write report.json/.md and plots."""
    from rich.console import Console
    from rich.markdown import Markdown

    from simrl.train.ablate import run_ablation
    from simrl.train.recipe import load_recipe
    from simrl.train.report_md import statements

    rec = load_recipe(recipe)
    folder = out if out is not None else Path("runs") / rec.name
    report = run_ablation(rec, folder, jobs=jobs, resume=resume)
    console = Console()
    console.print(Markdown("\n".join(statements(report))))  # the primary comparison, then the baselines
    console.print(f"report: {folder / 'report.md'} (plots in {folder / 'plots'})")
