"""``simrl report``: re-render an ablation's report.md and plots, or build the report of a ``simrl train`` folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    folder: Annotated[Path, typer.Argument(help="An ablation folder (`simrl ablate --out`, holding report.json), or a "
                                                "`simrl train --out` folder (its ARM/seed-S runs) or one run folder.")],
) -> None:
    """Re-render report.md and the PNG plots of an ablation folder from its report.json; for a `simrl train` folder,
    build report.json, report.md and the plots from its runs' own held-out evaluations (no baselines)."""
    from simrl.experiment.report import render_report
    from simrl.experiment.report_runs import report_train_folder, train_runs

    written = report_train_folder(folder) if train_runs(folder) else render_report(folder)
    for path in written:
        typer.echo(str(path))
