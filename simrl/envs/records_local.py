"""The world record server called in process: ``mcp-world`` fast enough for RL (``transport="inprocess"``).

:class:`~simrl.envs.mcp_env.WorldMCPEnv` starts ``simrl serve mcp`` over stdio for every episode
(about 1.3 s per episode). :class:`LocalRecordsEnv` calls the *same* server object
(:func:`simrl.records.server.build_server`) in process: the same tools and schemas, the same JSON
pages (``{records, next_cursor, total}``), the same error texts (``Error executing tool NAME:
reason``) and the same operational faults (:class:`simrl.records.server.Faults`: 504 timeout, 429,
503; drawn with the same seed as a stdio server started with ``--seed`` = the episode seed and
``--fault-delay 0``, so nothing sleeps). An episode of five calls takes about a millisecond.

How it stays fast: building a server takes ~10 ms, so one server is built per process per
(world, page size) over a *store proxy*; each episode gets its own store (copy-on-write: it reads the
world's records loaded in memory once per process, and its first write copies them into an in-memory
database of its own, :func:`memory_store`) and its own :class:`~simrl.records.server.Faults`, and the proxy routes a call to the episode that is
calling (a :class:`contextvars.ContextVar` set around the call, so concurrent episodes never mix).
The fault is drawn where the server draws it: once per call that passed argument validation,
before the store is touched.

Scoring is :class:`~simrl.envs.mcp_env.MCPEnv`'s: ``records`` write tasks by
:func:`simrl.reward.task.score_state` on the episode's store, everything else by
:func:`simrl.reward.task.score_answer`.
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl.envs.base import Environment
from simrl.envs.mcp_env import tool_schema
from simrl.envs.registry import render_tagged
from simrl.envs.truth import base_records
from simrl.errors import SimrlError
from simrl.memo import resolved
from simrl.records.store import MAX_PAGE_SIZE, RecordStore
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.world.schema import Task

_lock = threading.Lock()
_bases: dict[tuple[Path, int], tuple[RecordStore, bytes]] = {}
_servers: dict[tuple[Path, int | None], tuple[Any, list[dict[str, Any]]]] = {}


@dataclass
class _Episode:
    """What the shared server acts on during one call: an episode's store, its faults, one draw per call."""

    store: RecordStore
    faults: Any
    armed: bool = False


_CURRENT: contextvars.ContextVar[_Episode | None] = contextvars.ContextVar("simrl_records_episode", default=None)


def _draw(faults: Any) -> BaseException | None:
    """Run ``Faults.maybe_fail`` (delay 0) to completion without an event loop; the ToolError or None."""
    from mcp.server.mcpserver.exceptions import ToolError

    coro = faults.maybe_fail()
    try:
        while True:
            coro.send(None)  # a timeout's asyncio.sleep(0) yields once
    except StopIteration:
        return None
    except ToolError as err:
        return err


class _StoreProxy:
    """Forwards attribute access to the calling episode's store; the first access of a call draws its fault."""

    def __getattr__(self, name: str) -> Any:
        episode = _CURRENT.get()
        if episode is None:
            raise RuntimeError("the shared record server was called outside an episode")
        if episode.armed:
            episode.armed = False
            err = _draw(episode.faults)
            if err is not None:
                raise err
        return getattr(episode.store, name)


def _base(world: Path) -> tuple[RecordStore, bytes]:
    """The world's records in memory, loaded once per process: a query-only store shared by every episode's
    reads, and its database image (``Connection.serialize``) that an episode's first write copies. Call under
    the lock.

    One shared store per process where SQLite is built serialized (``sqlite3.threadsafety`` 3: one connection
    may be used from several threads, Python's ``sqlite3`` docs); one per thread otherwise."""
    key = (world, 0 if sqlite3.threadsafety == 3 else threading.get_ident())
    if key not in _bases:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        src = sqlite3.connect(base_records(world))
        try:
            src.backup(conn)
        finally:
            src.close()
        image = conn.serialize()
        conn.execute("PRAGMA query_only = ON")  # a write that bypassed the copy fails instead of reaching every episode
        conn.row_factory = sqlite3.Row
        _bases[key] = (RecordStore(conn, Path(":memory:")), image)
    return _bases[key]


def _private_copy(image: bytes) -> sqlite3.Connection:
    """A writable in-memory database holding ``image`` (one copy of the bytes: ``Connection.deserialize``)."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.deserialize(image)
    conn.row_factory = sqlite3.Row
    return conn


def memory_store(world: Path, page_size: int | None = None, store_class: type[RecordStore] = RecordStore) -> RecordStore:
    """A fresh copy of ``world``'s records for one episode (``page_size`` overrides the spec's default page size),
    opened as ``store_class`` (a :class:`RecordStore` or a subclass such as the oracle's unpaged store).

    Copy-on-write (:meth:`RecordStore.copy_on_write`): it reads the process's shared in-memory records until its
    first write, which copies their image into its own in-memory database first; an episode that only reads
    copies nothing. The same answers as a copy made up front, for a fraction of the cost (a backup per episode
    cost about 0.5 ms, and each episode's queries were prepared again on the new connection).
    """
    with _lock:
        shared, image = _base(world)
    store = store_class.copy_on_write(shared, lambda: _private_copy(image))
    if page_size is not None:
        store.meta["page_size"] = str(page_size)
    return store


async def shared_server(world: Path, page_size: int | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """``(server, tool schemas)``: the record server over a store proxy, built once per process per key."""
    from simrl.records.server import Faults, build_server

    key = (world, page_size)
    if key not in _servers:
        store = memory_store(world, page_size)
        token = _CURRENT.set(_Episode(store, Faults(0.0)))
        try:
            server = build_server(_StoreProxy(), fault_rate=0.0)  # type: ignore[arg-type]
            tools = [tool_schema(t) for t in await server.list_tools()]
        finally:
            _CURRENT.reset(token)
            store.close()
        with _lock:
            _servers.setdefault(key, (server, tools))
    return _servers[key]


class LocalRecordsEnv(Environment):
    """A world's record server in process (``env_id = "mcp-world"``), a fresh record store every episode.

    Args:
        world: a world folder.
        fault_rate: probability of an operational fault per tool call (504 timeout, 429, 503), in [0, 1].
        seed: mixed into the fault seed of every episode (``seed * 1000003 + episode seed``; with 0 the
            faults are those of ``simrl serve mcp --seed <episode seed> --fault-delay 0``).
        page_size: default page size of the list tools (None: the world spec's ``tasks.page_size``).

    Raises:
        SimrlError: not a world folder, a fault rate outside [0, 1], a page size outside [1, 50].
    """

    env_id = "mcp-world"

    def __init__(self, world: str | Path, fault_rate: float = 0.0, seed: int = 0, page_size: int | None = None) -> None:
        from simrl.world.io import load_manifest

        if not 0.0 <= fault_rate <= 1.0:
            raise SimrlError(f"fault_rate must be in [0, 1], got {fault_rate}")
        if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
            raise SimrlError(f"page_size must be in [1, {MAX_PAGE_SIZE}], got {page_size}")
        self.world = resolved(world)  # once per path and process (resolving stats every part of it)
        load_manifest(self.world)
        self.fault_rate, self.seed, self.page_size = fault_rate, seed, page_size
        self.tools: list[dict[str, Any]] = []
        self._server: Any = None
        self._episode: _Episode | None = None
        self._task: Task | None = None

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """A fresh copy of the records and fresh faults; the observation is the prompt and the tool schemas."""
        from simrl.records.server import Faults

        self._drop_store()
        self._server, self.tools = await shared_server(self.world, self.page_size)
        faults = Faults(self.fault_rate, self.seed * 1000003 + seed, delay=0.0)
        self._episode = _Episode(memory_store(self.world, self.page_size), faults)
        self._task = task
        return Observation(text=task.policy_view()["prompt"], tools=self.tools)

    async def step(self, action: Action) -> Step:
        """Call the action's tools in order, or score its final answer (which ends the episode); never raises."""
        if action.is_final:
            reward, info = self.score_final(action.answer or "")
            return Step(observation=Observation(text="episode finished"), reward=reward, terminated=True, info=info)
        results = [await self._call(call) for call in action.tool_calls]
        text = render_tagged(results) if results else \
            "no tool call and no final answer: call a tool or give the final answer"
        return Step(observation=Observation(text=text, results=results))

    async def _call(self, call: ToolCall) -> ToolResult:
        """One call of the shared server on this episode's store; failures are ``is_error`` results."""
        from mcp.server.mcpserver.exceptions import ToolError

        known = [t["function"]["name"] for t in self.tools]
        if call.name not in known:
            return ToolResult(name=call.name, content=f"unknown tool {call.name!r}; available tools: "
                                                      f"{', '.join(known)}", is_error=True, call_id=call.call_id)
        assert self._episode is not None
        self._episode.armed = True
        token = _CURRENT.set(self._episode)
        try:  # the server's own Tool.run, without the MCP envelope (RecordServer.call_text)
            text = await self._server.call_text(call.name, dict(call.arguments))
        except ToolError as err:
            return ToolResult(name=call.name, content=str(err), is_error=True, call_id=call.call_id)
        finally:
            _CURRENT.reset(token)
            self._episode.armed = False
        return ToolResult(name=call.name, content=text, is_error=False, call_id=call.call_id)

    def score_final(self, answer: str) -> tuple[float, dict[str, Any]]:
        """Reward of the final answer: score_state on the episode's store for writes, score_answer otherwise.

        Returns ``(reward, info)`` (info: ``success``, ``metrics``). Callable mid-episode: the verl adapters
        read a write task's record state after each call (:func:`simrl.trainers.verl.sessions.records_state`).
        """
        from simrl.reward.task import score_final

        assert self._task is not None and self._episode is not None
        return score_final(self._task, answer, self._episode.store.read)

    @property
    def store(self) -> RecordStore | None:
        """The current episode's record store (None before the first reset and after close)."""
        return self._episode.store if self._episode is not None else None

    def _drop_store(self) -> None:
        episode, self._episode = self._episode, None
        if episode is not None:
            episode.store.close()

    async def close(self) -> None:
        """Drop the episode's store; safe to call twice."""
        self._drop_store()
        self._task = None
