"""A world's records: the SQLite record store and the MCP record server over it.

:mod:`simrl.records.store` opens and queries the database (:mod:`~simrl.records.schema` its table
layout and value checks, :mod:`~simrl.records.build` building it from the graph,
:mod:`~simrl.records.writes` the write tools' operations, :mod:`~simrl.records.paging` list cursors);
:mod:`simrl.records.server` serves it as a real MCP server (``simrl serve mcp``), which
:class:`simrl.envs.mcp_env.WorldMCPEnv` talks to.
"""

from simrl.records.store import MAX_PAGE_SIZE, RecordError, RecordStore

__all__ = ["MAX_PAGE_SIZE", "RecordError", "RecordStore"]
