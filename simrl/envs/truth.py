"""Ground truth of the built-in environments as in-process tools: what their world-model adapters offer.

The world-model version of an environment (:mod:`simrl.wm.env`) and its ``oracle`` backend take the
world's ground truth from here, through each spec's :class:`~simrl.envs.registry.WorldModelAdapter`:

* ``search``: the real :class:`~simrl.envs.search_index.SearchIndex` tools (``web_search``,
  ``web_extractor``), one index per world shared by the process (:func:`shared_index`, :class:`SearchTruth`).
* ``mcp-world``: the record server's own tools (:func:`simrl.records.server.build_server`, called
  in process) on an episode's copy of the records (:class:`RecordsTruth`); for the oracle on an
  :class:`UnpagedStore`: every list returns all its results in one page (``next_cursor`` null).
  The JSON layout and the error texts are the server's.
* ``mcp``: any MCP server's tool list (:func:`list_mcp_tools`); no ground truth.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import shutil
import threading
from pathlib import Path
from typing import Any

from simrl import scratch
from simrl.envs.registry import Truth
from simrl.envs.search_index import SearchIndex
from simrl.envs.search_tools import call_tool
from simrl.memo import resolved
from simrl.records.page import NEXT_CURSOR, RECORDS, TOTAL
from simrl.records.store import MAX_PAGE_SIZE, RecordStore
from simrl.types import ToolCall, ToolResult

_lock = threading.Lock()
_indexes: dict[Path, SearchIndex] = {}
_bases: dict[Path, Path] = {}
_tools: dict[Path, list[dict[str, Any]]] = {}
_mcp_tools: dict[tuple, list[dict[str, Any]]] = {}


class UnpagedStore(RecordStore):
    """A :class:`RecordStore` whose lists come in one page: all matches, ``next_cursor`` None.

    ``search`` ignores a valid ``limit`` (an invalid one fails as in the real store) and, given a
    cursor, continues from it to the end; ``find_by_name`` returns up to ``MAX_PAGE_SIZE`` matches.
    """

    def search(self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None,
               cursor: str | None = None) -> dict[str, Any]:
        """All records of a type matching ``filters`` (see :meth:`RecordStore.search` for the layout)."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            return super().search(type_name, filters, limit, cursor)  # raises the store's own error
        page = super().search(type_name, filters, MAX_PAGE_SIZE, cursor)
        records = list(page[RECORDS])
        while page[NEXT_CURSOR]:
            page = super().search(type_name, filters, MAX_PAGE_SIZE, page[NEXT_CURSOR])
            records += page[RECORDS]
        return {RECORDS: records, NEXT_CURSOR: None, TOTAL: page[TOTAL]}

    def find_by_name(self, name: str, type_name: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """Entities by exact or prefix name, up to ``MAX_PAGE_SIZE`` of them."""
        return super().find_by_name(name, type_name, MAX_PAGE_SIZE)


def shared_index(world: Path) -> SearchIndex:
    """The search index of ``world``, opened once per process and shared (read-only, thread-safe)."""
    key = resolved(world)
    with _lock:
        if key not in _indexes:
            _indexes[key] = SearchIndex.open(key)
        return _indexes[key]


def base_records(world: Path) -> Path:
    """A records database built from ``world`` once per process (a temporary file; never written to)."""
    key = resolved(world)
    with _lock:
        if key not in _bases or not _bases[key].is_file():  # a run's tmp/ is emptied when the run ends
            folder = scratch.mkdtemp("simrl-wm-records-")
            atexit.register(shutil.rmtree, folder, True)
            RecordStore.create(key, folder / "base.sqlite").close()
            _bases[key] = folder / "base.sqlite"
        return _bases[key]


def episode_store(world: Path, unpaged: bool) -> RecordStore:
    """A fresh copy of ``world``'s records for one episode, opened as an UnpagedStore or a RecordStore.

    Kept in memory and copied on write (:func:`simrl.envs.records_local.memory_store`, as the real in-process
    environment does), since a file per episode cost a commit with fsync per write and an unlink per episode
    (about 20 ms an episode).
    """
    from simrl.envs.records_local import memory_store

    return memory_store(Path(world), store_class=UnpagedStore if unpaged else RecordStore)


async def record_tools(world: Path) -> list[dict[str, Any]]:
    """The record server's tool list (OpenAI function format), read from the server once per world.

    The server is :func:`simrl.records.server.build_server`, the same object ``simrl serve mcp``
    runs; its tools are listed in process, through the MCP SDK's ``list_tools``.
    """
    from simrl.envs.mcp_env import tool_schema
    from simrl.records.server import build_server

    key = resolved(world)
    if key not in _tools:
        with RecordStore.open(base_records(key)) as store:
            tools = await build_server(store).list_tools()
        _tools[key] = [tool_schema(t) for t in tools]
    return _tools[key]


async def list_mcp_tools(server_command: str | list[str] | None, server_url: str | None) -> list[dict[str, Any]]:
    """The tool list of any real MCP server, read once per server through :class:`~simrl.envs.mcp_env.MCPEnv`
    (a stdio command is started, listed and stopped)."""
    from simrl.envs.mcp_env import MCPEnv
    from simrl.world.schema import Evidence, QAGold, Task

    key = (tuple(server_command) if isinstance(server_command, list) else server_command, server_url)
    if key not in _mcp_tools:
        env = MCPEnv(server_command=server_command, server_url=server_url)
        probe = Task(task_id="tools", type="qa", split="dev", prompt="list tools", gold=QAGold(answer="-"),
                     evidence=Evidence(), hops=1, difficulty="easy", template="tools")
        try:
            _mcp_tools[key] = (await env.reset(probe)).tools
        finally:
            await env.close()
    return _mcp_tools[key]


class SearchTruth(Truth):
    """The real search tools over a world's index (``web_search``, ``web_extractor``); the index is the
    world's shared one (:func:`shared_index`), opened at the first call."""

    def __init__(self, world: Path) -> None:
        self.world = world

    async def call(self, call: ToolCall) -> ToolResult:
        """Run one call; errors are ``is_error`` results (:func:`simrl.envs.search_tools.call_tool`)."""
        return await asyncio.to_thread(lambda: call_tool(shared_index(self.world), call))


class RecordsTruth(Truth):
    """The record server's tools, in process, on one episode's store (paged or not).

    Results are the server's JSON text; failures are ``is_error`` results with the server's
    message (``Error executing tool NAME: reason``). No operational faults are ever drawn. The server is
    built once per process and store kind (:func:`_truth_server`; building one costs about 10 ms) and each
    call runs on this episode's store. A final answer is scored on this store (write tasks: its state).
    """

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self._server = _truth_server(type(store), store)

    async def call(self, call: ToolCall) -> ToolResult:
        """Run one call of the record tools on the store."""
        from mcp.server.mcpserver.exceptions import ToolError

        def result(text: str, error: bool) -> ToolResult:
            return ToolResult(name=call.name, content=text, is_error=error, call_id=call.call_id)

        token = _TRUTH_STORE.set(self.store)
        try:  # the server's own Tool.run, without the MCP envelope (RecordServer.call_text)
            return result(await self._server.call_text(call.name, dict(call.arguments)), False)
        except ToolError as err:
            return result(str(err), True)
        finally:
            _TRUTH_STORE.reset(token)

    def score_final(self, task: Any, answer: str, scorer: Any) -> tuple[float, dict[str, Any]]:
        """``scorer(task, answer, read)`` with this episode's records as ``read`` (a write task: its state)."""
        return scorer(task, answer, self.store.read)

    async def close(self) -> None:
        """Close the episode's store (idempotent)."""
        self.store.close()


_TRUTH_STORE: contextvars.ContextVar[RecordStore | None] = contextvars.ContextVar("simrl_truth_store", default=None)
_truth_servers: dict[tuple[type, str], Any] = {}


class _TruthStore:
    """Forwards attribute access to the store of the :class:`RecordsTruth` whose call is running."""

    def __getattr__(self, name: str) -> Any:
        store = _TRUTH_STORE.get()
        if store is None:
            raise RuntimeError("the shared ground-truth record server was called outside RecordsTruth.call")
        return getattr(store, name)


def _truth_server(kind: type, store: RecordStore) -> Any:
    """The record server over :class:`_TruthStore`, built once per process per store class and page size
    (what the server's instructions and tool descriptions read from ``store`` at build time)."""
    from simrl.records.server import build_server

    key = (kind, str(store.page_size))
    with _lock:
        if key not in _truth_servers:
            token = _TRUTH_STORE.set(store)
            try:
                _truth_servers[key] = build_server(_TruthStore())  # type: ignore[arg-type]
            finally:
                _TRUTH_STORE.reset(token)
        return _truth_servers[key]


def search_truth(world: Path, oracle: bool = False) -> SearchTruth:
    """The ground truth of ``search`` on ``world`` (its shared index; the same for the oracle)."""
    return SearchTruth(world)


def records_truth(world: Path, oracle: bool = False) -> RecordsTruth:
    """A fresh ground truth of ``mcp-world`` for one episode: an in-memory copy of ``world``'s records
    (:func:`episode_store`; for the ``oracle``, unpaged)."""
    return RecordsTruth(episode_store(world, oracle))


async def search_tool_list(world: Path | None, tools: list[dict[str, Any]], server: tuple[Any, Any]) -> list[dict[str, Any]]:
    """``search``'s tool schemas (static)."""
    from simrl.envs.search_tools import SEARCH_TOOLS

    return SEARCH_TOOLS


async def records_tool_list(world: Path | None, tools: list[dict[str, Any]], server: tuple[Any, Any]) -> list[dict[str, Any]]:
    """``mcp-world``'s tool schemas: the record server's own list for ``world``."""
    assert world is not None
    return await record_tools(world)


async def mcp_tool_list(world: Path | None, tools: list[dict[str, Any]], server: tuple[Any, Any]) -> list[dict[str, Any]]:
    """``mcp``'s tool schemas: ``tools`` when given, else listed from the server ``(command, url)``."""
    if tools:
        return tools
    return await list_mcp_tools(*server)


class RealTruth(Truth):
    """The real environment itself as a ground truth: one instance per episode, reset on its task and seed.

    The generic world-model adapter's ground truth (:func:`simrl.envs.registry.real_truth`): each call is
    one step of the real environment with that call alone, and its result is the truth (an error observation
    stays an ``is_error`` result). Made with no turn limit of its own.

    Args:
        env_spec: the spec of the real environment.
        world: the world folder, given to the factory when the environment needs one.
    """

    def __init__(self, env_spec: Any, world: Path | None) -> None:
        self.env_spec, self.world = env_spec, world
        self._env: Any = None

    async def reset(self, task: Any, seed: int = 0) -> None:
        """Make the real environment and reset it on ``task``."""
        from simrl.envs.registry import make

        world = {"world": self.world} if self.env_spec.needs_world else {}
        self._env = make(self.env_spec.id, max_turns=None, **world)
        await self._env.reset(task, seed)

    async def call(self, call: ToolCall) -> ToolResult:
        """One step of the real environment with ``call`` alone; its result (or its text as the result)."""
        from simrl.types import Action

        step = await self._env.step(Action(tool_calls=[call]))
        results = step.observation.results
        if results:
            return results[0].model_copy(update={"call_id": call.call_id})
        return ToolResult(name=call.name, content=step.observation.text, is_error=True, call_id=call.call_id)

    def score_final(self, task: Any, answer: str, scorer: Any) -> tuple[float, dict[str, Any]]:
        """The real environment's own score of ``answer`` mid-episode; where it scores only at its end
        (``NotImplementedError``), the default (:meth:`Truth.score_final`)."""
        try:
            return self._env.score_final(answer)
        except NotImplementedError:
            return super().score_final(task, answer, scorer)

    async def close(self) -> None:
        """Close the real environment (idempotent)."""
        env, self._env = self._env, None
        if env is not None:
            await env.close()
