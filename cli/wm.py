"""``simrl wm``: world models — measure their fidelity against real environments, export their training data."""

from __future__ import annotations

import typer
from simrl.cli.wm_data import data
from simrl.cli.wm_eval import eval_
from simrl.cli.wm_train import train

app = typer.Typer(help="World models: score a world model's predicted observations against real ones (eval), "
                       "export real transitions as world-model training data (data), fine-tune a world model on it (train).", no_args_is_help=True)
app.command("eval")(eval_)
app.command("data")(data)
app.command("train")(train)
