"""``simrl wm``: world models — measure their fidelity against real environments, export their training data."""

from __future__ import annotations

import typer
from simrl.cli.wm_data import data
from simrl.cli.wm_eval import eval_

app = typer.Typer(help="World models: score a world model's predicted observations against real ones (eval), "
                       "export real transitions as world-model training data (data).", no_args_is_help=True)
app.command("eval")(eval_)
app.command("data")(data)
