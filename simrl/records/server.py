"""The world record server: a real MCP server (``mcp`` SDK ``MCPServer``) over a :class:`RecordStore`.

Tools (results are JSON text; invalid ids or arguments come back as MCP tool errors, ``isError``
true, per the MCP spec's tool-result rules, never as protocol errors):

======================  ===========================================================================
``search_records``      one page of records of a type matching ``filters`` (``records``,
                        ``next_cursor``, ``total``); page size = the world's ``tasks.page_size``
                        by default, at most 50
``get_record``          one record by id
``find_by_name``        entities by exact or case-insensitive prefix name
``list_members``        membership records of an organization, paged
``list_products``       products of an organization, paged
``update_record``       set fields of a record (validated: names, types, referenced ids)
``add_membership``      record that a person joined an organization
``end_membership``      record that a person left an organization
``appoint_ceo``         make a person chief executive (the current term ends the day before)
======================  ===========================================================================

Limits: a string argument over :data:`MAX_STRING_CHARS` characters, a list or object over
:data:`MAX_ITEMS` items, an integer outside SQLite's 64-bit range or nesting deeper than 4 levels is
refused with a tool error that says which argument and why (so is a value the database rejects).

Operational faults (off by default): with ``fault_rate`` > 0 each call fails, before touching the
records, with that probability, drawn per call index from ``random.Random(f"...-{seed}-{index}")``
(:class:`Faults`: known in advance, whatever the agent calls): a timeout (the server sleeps
``fault_delay`` seconds, then errors), ``429 Too Many Requests`` (with a retry-after) or
``503 Service Unavailable``. They are ordinary ``isError`` results, like a flaky production service.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import signal
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool

from simrl.errors import SimrlError
from simrl.records.store import MAX_PAGE_SIZE, RecordError, RecordStore

MAX_STRING_CHARS = 1_000
"""Longest string argument (ids, names, cursors, field values) a record tool accepts."""
MAX_ITEMS = 200
"""Most items of a list or object argument (``filters``, ``fields``, a filter's list of values)."""
INT_RANGE = (-(2 ** 63), 2 ** 63 - 1)
"""Integers a record tool accepts (SQLite's 64-bit integers)."""
FAULT_KINDS = ("timeout", "rate_limit", "unavailable")
"""Operational fault kinds drawn when ``fault_rate`` > 0."""
MAX_READ_CHARS = 20_000_000
"""Characters of read answers a server remembers (:func:`build_server`) before it forgets them all."""


class Faults:
    """Seeded operational faults: ``await faults.maybe_fail()`` raises a ToolError with probability ``rate``.

    The outcome of the ``i``-th call (counted from 0, every call that reaches ``maybe_fail``) is a pure
    function of ``(rate, seed, i)`` (:meth:`draw`), not of the calls before it, so the faults an episode
    will meet are known before it runs (:func:`fault_plan`) and are the same whatever the agent calls.
    """

    def __init__(self, rate: float = 0.0, seed: int = 0, delay: float = 1.0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise SimrlError(f"fault rate must be in [0, 1], got {rate}")
        self.rate, self.seed, self.delay = rate, seed, delay
        self.calls = 0

    def draw(self, index: int) -> tuple[str, int] | None:
        """``(kind, retry-after seconds)`` of the fault of call ``index``, or None (no fault)."""
        if self.rate <= 0.0:
            return None
        rng = random.Random(f"simrl-records-faults-{self.seed}-{index}")
        if rng.random() >= self.rate:
            return None
        return rng.choice(FAULT_KINDS), rng.randint(1, 5)

    async def maybe_fail(self) -> None:
        """Raise a ToolError describing a timeout, 429 or 503 (the fault of this call's index), or return."""
        fault = self.draw(self.calls)
        self.calls += 1
        if fault is None:
            return
        kind, wait = fault
        if kind == "timeout":
            await asyncio.sleep(self.delay)
            raise ToolError(f"504 Gateway Timeout: the record service did not answer within {self.delay:g}s; "
                            "the request was not applied, retry it")
        if kind == "rate_limit":
            raise ToolError(f"429 Too Many Requests: rate limit exceeded; retry after {wait} s "
                            f"(Retry-After: {wait})")
        raise ToolError("503 Service Unavailable: the record service is temporarily unavailable; retry later")


def fault_plan(rate: float, seed: int, calls: int) -> list[int]:
    """The indices (from 0) among the first ``calls`` calls of a server with ``fault_rate`` / ``seed`` that fail."""
    faults = Faults(rate, seed)
    return [i for i in range(calls) if faults.draw(i) is not None]


class RecordServer(MCPServer):
    """The record server's ``MCPServer``, whose tools can also be called in process for their text (:meth:`call_text`).

    Args:
        tools: the record tools (``mcp`` SDK ``Tool``), registered with the server as :meth:`MCPServer.add_tool`
            would, and kept by name for :meth:`call_text`.
        *args, **kwargs: the rest of ``MCPServer``'s arguments.
    """

    def __init__(self, *args: Any, tools: list[Tool], **kwargs: Any) -> None:
        super().__init__(*args, tools=tools, **kwargs)
        self._record_tools = {t.name: t for t in tools}
        self._call_context: Context = Context(mcp_server=self)

    async def call_text(self, name: str, arguments: dict[str, Any]) -> str:
        """The text of tool ``name``'s result: what :meth:`call_tool` runs (the tool's ``Tool.run``: the same argument
        validation, body and errors), without what a record tool does not use: a request context made per call
        (no record tool takes one) and the result's envelope (``call_tool`` wraps the tool's one text in a single
        text block; :func:`simrl.envs.mcp_env.content_text` of it is this text). The in-process environments'
        call path; MCP clients go through :meth:`call_tool` (a test checks that the two give the same texts and errors).

        Raises:
            ToolError: as :meth:`call_tool`: unknown tool (``Unknown tool: NAME``), invalid arguments, the tool's
                own error (``Error executing tool NAME: reason``), a crash (``UnexpectedToolError``).
        """
        tool = self._record_tools.get(name)
        if tool is None:
            raise ToolError(f"Unknown tool: {name}")
        return await tool.run(arguments, self._call_context)


def build_server(store: RecordStore, *, fault_rate: float = 0.0, seed: int = 0,
                 fault_delay: float = 1.0) -> RecordServer:
    """A :class:`RecordServer` (an ``MCPServer``) named ``simrl-records`` exposing the record tools over ``store``."""
    faults = Faults(fault_rate, seed, fault_delay)
    reads: dict[tuple, str] = {}  # (store's read state, repr of the read) -> its answer
    held = [0]  # characters in reads

    async def call(op: Callable[[], Any], read: tuple | None = None) -> str:
        """``op()``'s answer as JSON text. A read (``read``: the tool and its arguments) of records nobody writes
        (:meth:`RecordStore.read_state`) is answered once per process: the same records and arguments give the
        same text, and the episodes of a group (and later steps) read the same records again and again."""
        await faults.maybe_fail()
        state = store.read_state() if read is not None else None
        key = (state, repr(read)) if state is not None else None
        if key is not None and (text := reads.get(key)) is not None:
            return text
        try:
            text = json.dumps(op(), ensure_ascii=False)
        except RecordError as err:
            raise ToolError(str(err)) from None
        except (OverflowError, sqlite3.Error) as err:  # a value the database cannot take: the caller's input
            raise ToolError(f"the arguments cannot be used ({err}); check their values") from None
        if key is not None:
            if held[0] + len(text) > MAX_READ_CHARS:
                reads.clear()
                held[0] = 0
            reads[key] = text
            held[0] += len(text)
        return text

    def tool(fn: Callable[..., Any]) -> Tool:
        @functools.wraps(fn)
        async def bounded(**kwargs: Any) -> str:
            for name, value in kwargs.items():
                if (reason := input_problem(value)) is not None:
                    raise ToolError(f"argument `{name}`: {reason}")
            return await fn(**kwargs)

        return Tool.from_function(bounded, structured_output=False)  # as MCPServer.add_tool makes it

    async def search_records(type: str, filters: dict[str, Any] | None = None, limit: int | None = None,
                             cursor: str | None = None) -> str:
        """Search records of one type (entity type such as 'organization', 'person', 'city', 'product', or a
        relation table: member_of, ceo_of, founded_by, participated_in, acquired). `filters` maps field names to
        values (equality; a list matches any item; null matches empty). Returns {records, next_cursor, total};
        pass next_cursor as `cursor` (same type and filters) for the next page."""
        return await call(lambda: store.search(type, filters, limit, cursor),
                          ("search_records", type, filters, limit, cursor))

    async def get_record(id: str) -> str:
        """Get one record by id, e.g. 'organization:000012' or 'member_of:person:000001:organization:000002'."""
        return await call(lambda: store.get(id), ("get_record", id))

    async def find_by_name(name: str, type: str | None = None) -> str:
        """Find entities by name: exact (any case) matches first, then names starting with `name`."""
        return await call(lambda: store.find_by_name(name, type), ("find_by_name", name, type))

    async def list_members(org_id: str, cursor: str | None = None, limit: int | None = None) -> str:
        """List membership records (past and present members) of an organization, one page at a time."""
        return await call(lambda: _require(store, org_id, "organization")
                          or store.search("member_of", {"org": org_id}, limit, cursor),
                          ("list_members", org_id, cursor, limit))

    async def list_products(org_id: str, cursor: str | None = None, limit: int | None = None) -> str:
        """List products made by an organization (with release dates), one page at a time."""
        return await call(lambda: _require(store, org_id, "organization")
                          or store.search("product", {"produced_by": org_id}, limit, cursor),
                          ("list_products", org_id, cursor, limit))

    async def update_record(id: str, fields: dict[str, Any]) -> str:
        """Set fields of a record, e.g. {"employees": 120} or {"headquartered_in": "city:000004"}; returns the
        updated record. Field names, value types and referenced ids are validated."""
        return await call(lambda: store.update(id, fields))

    async def add_membership(person_id: str, org_id: str, start: str) -> str:
        """Record that a person became a member of an organization on `start` (YYYY-MM-DD)."""
        return await call(lambda: store.add_membership(person_id, org_id, start))

    async def end_membership(person_id: str, org_id: str, end: str) -> str:
        """Record that a person's membership of an organization ended on `end` (YYYY-MM-DD)."""
        return await call(lambda: store.end_membership(person_id, org_id, end))

    async def appoint_ceo(person_id: str, org_id: str, start: str) -> str:
        """Make a person chief executive of an organization from `start` (YYYY-MM-DD); the current chief
        executive's term ends the day before."""
        return await call(lambda: store.appoint_ceo(person_id, org_id, start))

    tools = [tool(fn) for fn in (search_records, get_record, find_by_name, list_members, list_products,
                                 update_record, add_membership, end_membership, appoint_ceo)]
    return RecordServer("simrl-records", instructions=(
        f"Records of a fictional world. Record ids look like 'organization:000012'; relation records like "
        f"'member_of:person:000001:organization:000002'. Lists are paged ({store.page_size} per page by default, "
        f"at most {MAX_PAGE_SIZE}): pass next_cursor back as cursor until it is null."), log_level="WARNING",
        tools=tools)


def input_problem(value: Any, depth: int = 0) -> str | None:
    """Why an argument value is outside the tools' limits (:data:`MAX_STRING_CHARS`, :data:`MAX_ITEMS`,
    :data:`INT_RANGE`, nesting 4 levels), or None when it is within them."""
    if depth > 4:
        return "nested too deeply (at most 4 levels)"
    if type(value) is str and len(value) <= MAX_STRING_CHARS:  # the common case, answered first: within limits
        return None
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return f"a string of {len(value)} characters; at most {MAX_STRING_CHARS}"
    if isinstance(value, int) and not isinstance(value, bool) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        return "an integer outside the 64-bit range [-2**63, 2**63 - 1]"
    if isinstance(value, dict | list) and len(value) > MAX_ITEMS:
        return f"{len(value)} items; at most {MAX_ITEMS}"
    items = list(value.keys()) + list(value.values()) if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        return next((r for v in items if (r := input_problem(v, depth + 1)) is not None), None)
    return None


def _require(store: RecordStore, record_id: str, etype: str) -> None:
    record = store.get(record_id)
    if record["type"] != etype:
        raise RecordError(f"{record_id!r} is a {record['type']}, not a {etype}")


def open_store(world: Path, db: Path | None, workdir: Path) -> RecordStore:
    """The store to serve: ``db`` if it exists (checked against ``world``), else built from ``world``.

    With no ``db``, a fresh database is built inside ``workdir`` (a temporary folder), so a plain
    ``simrl serve mcp --world W`` starts from the world's state and never writes into ``W``.

    Raises:
        SimrlError: ``world`` is not a world folder, or ``db`` was built from another world.
    """
    from simrl.world.io import load_manifest

    manifest = load_manifest(world)
    if db is None:
        return RecordStore.create(world, workdir / "records.sqlite")
    if not db.exists():
        return RecordStore.create(world, db)
    store = RecordStore.open(db)
    if store.meta.get("graph_sha256") != manifest.files.get("graph.json"):
        store.close()
        raise SimrlError(f"{db} holds the records of another world than {world}; pass another --db")
    return store


def run(world: str | Path, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765,
        fault_rate: float = 0.0, seed: int = 0, db: str | Path | None = None, fault_delay: float = 1.0) -> None:
    """Serve the records of ``world`` until interrupted (blocking).

    Args:
        world: a world folder.
        transport: ``stdio`` (stdout carries only the protocol; logs go to stderr) or ``http``
            (MCP streamable HTTP at ``http://{host}:{port}/mcp``).
        fault_rate, seed, fault_delay: operational faults (see :class:`Faults`).
        db: the working database (created from the world if missing; kept afterwards); ``None``:
            a temporary copy, deleted on exit.

    Raises:
        SimrlError: bad transport or fault rate, not a world folder, a db of another world.
    """
    if transport not in ("stdio", "http"):
        raise SimrlError(f"transport must be 'stdio' or 'http', got {transport!r}")
    if not 0.0 <= fault_rate <= 1.0:
        raise SimrlError(f"--fault-rate must be in [0, 1], got {fault_rate}")
    if threading.current_thread() is threading.main_thread():  # SIGTERM: unwind, delete the temp db
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="simrl-records-") as tmp:
        store = open_store(Path(world), Path(db) if db is not None else None, Path(tmp))
        try:
            server = build_server(store, fault_rate=fault_rate, seed=seed, fault_delay=fault_delay)
            if transport == "stdio":
                server.run("stdio")
            else:
                print(f"simrl records MCP server: http://{host}:{port}/mcp (db {store.path})", file=sys.stderr)
                server.run("streamable-http", host=host, port=port)
        finally:
            store.close()
