"""``simrl perturb``: inspect perturbation types and schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Perturbations of tool results: the taxonomy and schedules (recipes/schedules/*.yaml).",
                  no_args_is_help=True)


def _fail(err: Exception) -> typer.Exit:
    """Print a user error as one line and give its exit code (2: bad input), as the root app does."""
    typer.secho(f"error: {err}", err=True, fg="red")
    return typer.Exit(getattr(err, "exit_code", 2))


@app.command()
def preview(
    schedule: Annotated[Path, typer.Argument(help="Schedule YAML, or the name of a shipped one (gentle, mcpmark, "
                                                  "fault-heavy).")],
    steps: Annotated[int, typer.Option(help="Training steps the progress runs over (progress = step / steps).",
                                       min=1)] = 1000,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write a PNG plot of the rates here (needs matplotlib).")] = None,
    points: Annotated[int, typer.Option(help="Rows of the table (evenly spaced progress points).", min=2)] = 5,
) -> None:
    """Show the expected rate of each perturbation type over training, as a table (and a plot)."""
    from rich.console import Console

    from simrl.errors import SimrlError
    from simrl.perturb.preview import plot_rates, rate_table
    from simrl.perturb.schedule import load_schedule
    from simrl.tables import print_table

    try:
        sched = load_schedule(schedule)
        table = rate_table(sched, steps, points)
        written = plot_rates(sched, steps, out) if out is not None else None
    except SimrlError as err:
        raise _fail(err) from None
    console = Console()
    print_table(table, console)
    if not sched.perturbations:
        console.print("this schedule has no perturbations")
    if written is not None:
        console.print(f"plot -> {written}")


@app.command()
def types() -> None:
    """List the perturbation types: how an agent recovers, whether it can, and their parameters
    (set in a schedule's `params`; each class's docstring in simrl/perturb/ shows an example)."""
    from rich.table import Table

    from simrl.perturb.taxonomy import all_classes
    from simrl.tables import print_table

    table = Table(title="perturbation types")
    for col in ("type", "recovery", "recoverable", "applied", "parameters (defaults)"):
        table.add_column(col, no_wrap=col == "type")
    for cls in all_classes():
        params = ", ".join(f"{name}={info.default!r}" for name, info in cls.model_fields.items()) or "-"
        table.add_row(cls.kind.value, cls.recovery.value, "yes" if cls.recoverable else "no",
                      "instead of the call" if cls.phase == "before" else "to the result", params)
    print_table(table)
