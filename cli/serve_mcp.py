"""``simrl serve mcp``: the world record server (a real MCP server over SQLite)."""

from __future__ import annotations

import typer


def mcp() -> None:
    """Serve a world's records as an MCP server (stdio or streamable HTTP)."""
    raise typer.Exit(1)
