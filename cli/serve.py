"""``simrl serve``: run simrl's real tool servers (search over a world, the world record MCP server) and world models."""

from __future__ import annotations

import typer
from simrl.cli.serve_mcp import mcp
from simrl.cli.serve_search import search
from simrl.cli.serve_wm import world_model

app = typer.Typer(help="Serve a world's real tools: search engine (HTTP) and record server (MCP); "
                       "serve a world model with vLLM (world-model).",
                  no_args_is_help=True)
app.command("search")(search)
app.command("mcp")(mcp)
app.command("world-model")(world_model)
