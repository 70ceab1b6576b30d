"""``simrl env``: list environments and run the environment checker on them."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="List registered environments and check them with the environment checker.",
                  no_args_is_help=True)


@app.command("list")
def list_envs() -> None:
    """List the registered environment ids."""
    from simrl.envs.base import registered

    for env_id, description in registered().items():
        typer.echo(f"{env_id:12s} {description}")


@app.command()
def check(
    env_ids: Annotated[list[str], typer.Argument(help="Environment ids to check (see `simrl env list`).")],
) -> None:
    """Run the environment checker (determinism, types, close twice, errors as observations)."""
    raise typer.Exit(1)
