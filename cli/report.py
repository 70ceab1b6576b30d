"""``simrl report``: re-render an ablation's report.md and plots from its report.json and run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    folder: Annotated[Path, typer.Argument(help="An ablation folder (`simrl ablate --out`), holding report.json.")],
) -> None:
    """Re-render report.md and the PNG plots of an ablation folder."""
    from simrl.experiment.report import render_report

    for path in render_report(folder):
        typer.echo(str(path))
