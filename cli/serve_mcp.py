"""``simrl serve mcp``: the world record server (a real MCP server over SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def mcp(
    world: Annotated[Path, typer.Option("--world", help="World folder whose records to serve.")],
    transport: Annotated[str, typer.Option(help="'stdio' (for an MCP client that starts this command) or "
                                                "'http' (MCP streamable HTTP at http://HOST:PORT/mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="Address to bind with --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind with --transport http.")] = 8765,
    fault_rate: Annotated[float, typer.Option(help="Probability in [0, 1] that a tool call fails with an "
                                                   "operational error (timeout, 429, 503).")] = 0.0,
    db: Annotated[Path | None, typer.Option(help="Working SQLite database: created from the world if missing, "
                                                 "kept after exit. Default: a temporary copy.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the operational-fault draws.")] = 0,
    fault_delay: Annotated[float, typer.Option(help="Seconds a simulated timeout waits before failing.")] = 1.0,
) -> None:
    """Serve a world's records as an MCP server (stdio or streamable HTTP).

    Tools: search_records, get_record, find_by_name, list_members, list_products, update_record,
    add_membership, end_membership, appoint_ceo. With stdio, stdout carries only the protocol.
    """
    from simrl.errors import SimrlError
    from simrl.records.server import run

    if not world.is_dir():
        raise SimrlError(f"{world} is not a world folder; make one with `simrl world generate`")
    run(world, transport=transport, host=host, port=port, fault_rate=fault_rate, seed=seed, db=db,
        fault_delay=fault_delay)
