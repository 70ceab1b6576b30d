"""MCP environments: any MCP server as tools (``mcp``), and a world's record server (``mcp-world``).

:class:`MCPEnv` connects to an MCP server by command (stdio transport: the server is a subprocess
started for each episode) or by URL (streamable HTTP), lists its tools and offers them to the
policy as OpenAI function schemas (``parameters`` = the MCP tool's ``inputSchema``). Tool calls go
through the ``mcp`` SDK's :class:`mcp.Client`. Per the MCP spec, a tool's own failure is a result
with ``isError`` true: it becomes a :class:`~simrl.types.ToolResult` with ``is_error=True``.
Transport failures (the server died, a call timed out) also become ``is_error`` results, with
``info["env_failure"] = True`` on the step, never an exception out of ``step``.

The SDK keeps its connection in anyio task groups, which must be entered and left by one task. The
connection therefore lives in its own background task (:class:`_Connection`) and ``reset`` /
``step`` / ``close`` talk to it, so callers may use any task of the same event loop.

:class:`WorldMCPEnv` starts ``simrl serve mcp --world W --db <copy>`` for every episode on a fresh
copy of the world's record database, and scores ``records`` write tasks on the final database state
(:func:`simrl.reward.task.score_state`); reads (and any other task) are scored by
:func:`simrl.reward.task.score_answer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
import sys
import weakref
from pathlib import Path
from typing import Any

from simrl import scratch
from simrl.envs import truth
from simrl.envs.base import Environment
from simrl.envs.prompts import MCP_PROMPT
from simrl.envs.registry import EnvSpec, WorldModelAdapter, register, render_tagged
from simrl.errors import SimrlError
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.world.schema import Task


class _Connection:
    """An ``mcp.Client`` owned by one background task: entered and exited there, used from anywhere."""

    def __init__(self, target: Any, call_timeout: float) -> None:
        self._target, self._call_timeout = target, call_timeout
        self.client: Any = None
        self.error: BaseException | None = None
        self._task: asyncio.Task | None = None

    async def open(self, timeout: float) -> None:
        """Connect (initialize / discover handshake); raises SimrlError if that fails or takes too long."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future = loop.create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._main(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except Exception as err:
            await self.close(cancel=True)
            reason = "timed out" if isinstance(err, asyncio.TimeoutError) else _describe(err)
            raise SimrlError(f"could not connect to the MCP server: {reason}") from None

    async def _main(self, ready: asyncio.Future) -> None:
        from mcp import Client

        try:
            async with Client(self._target, read_timeout_seconds=self._call_timeout) as client:
                self.client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as err:  # reported to open() or kept for step()
            self.error = err
            if isinstance(err, asyncio.CancelledError):
                ready.cancel()
                raise
            if not ready.done():
                ready.set_exception(err)
        finally:
            self.client = None

    async def close(self, cancel: bool = False) -> None:
        """Leave the client's contexts (stops a stdio server); idempotent. ``cancel``: don't wait for it."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._stop.set()
        if cancel:
            task.cancel()
        if task.done() or cancel:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return
        try:
            await asyncio.wait_for(task, 10)
        except asyncio.TimeoutError:  # a hung shutdown: wait_for has cancelled the task
            pass


def _describe(err: BaseException) -> str:
    """A one-line reason; unwraps exception groups raised out of anyio task groups."""
    while getattr(err, "exceptions", None):  # BaseExceptionGroup (Python 3.11+)
        err = err.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def tool_schema(tool: Any) -> dict[str, Any]:
    """An MCP ``Tool`` as an OpenAI function schema ``{"type": "function", "function": {...}}``."""
    params = dict(tool.input_schema or {})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return {"type": "function", "function": {"name": tool.name, "description": tool.description or "",
                                             "parameters": params}}


def content_text(result: Any) -> str:
    """Text of a ``CallToolResult``: text blocks joined, other blocks as JSON, else structured content."""
    parts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else block.model_dump_json(exclude_none=True))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class MCPEnv(Environment):
    """Any MCP server as an environment.

    Args:
        server_command: command line of a stdio server (a string is split like a shell would);
            started for every episode and stopped at its end.
        server_url: URL of a streamable-HTTP server (``http://host:port/mcp``); its state is the
            server's own, not reset between episodes.
        env: extra environment variables for a stdio server.
        call_timeout: seconds a tool call may take before it fails as a timeout (``env_failure``).
        connect_timeout: seconds ``reset`` waits for the connection and the tool list.
        records_db: a record database the server writes (``RecordStore``), for scoring write tasks.

    Raises:
        SimrlError: neither or both of ``server_command`` / ``server_url``; ``reset`` raises it
            when the server cannot be reached.
    """

    env_id = "mcp"

    def __init__(self, server_command: str | list[str] | None = None, server_url: str | None = None, *,
                 env: dict[str, str] | None = None, call_timeout: float = 30.0, connect_timeout: float = 60.0,
                 records_db: str | Path | None = None) -> None:
        if (server_command is None) == (server_url is None):
            raise SimrlError("give exactly one of server_command (stdio) or server_url (streamable HTTP)")
        try:
            command = shlex.split(server_command) if isinstance(server_command, str) else server_command
        except ValueError as err:  # an unbalanced quote
            raise SimrlError(f"--server-command: cannot split {server_command!r} into words ({err}); "
                             "balance its quotes") from None
        if command is not None and not command:
            raise SimrlError("server_command is empty")
        self.server_command, self.server_url = command, server_url
        self.server_env = env
        self.call_timeout, self.connect_timeout = call_timeout, connect_timeout
        self.records_db = Path(records_db) if records_db is not None else None
        self.tools: list[dict[str, Any]] = []
        self._conn: _Connection | None = None
        self._task: Task | None = None

    def _target(self) -> Any:
        if self.server_url is not None:
            return self.server_url
        from mcp import StdioServerParameters

        from simrl.deathsig import wrap

        assert self.server_command is not None
        command = wrap(self.server_command)  # the server dies with this process, kill -9 included
        return StdioServerParameters(command=command[0], args=command[1:], env=self.server_env)

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Connect afresh, list the server's tools; the observation is the task prompt and the schemas.

        Raises:
            SimrlError: the server cannot be started or reached, or lists no tools.
        """
        await self._disconnect()
        self._task = task
        conn = _Connection(self._target(), self.call_timeout)
        await conn.open(self.connect_timeout)
        self._conn = conn
        try:
            tools, cursor = [], None
            for _ in range(100):
                page = await asyncio.wait_for(conn.client.list_tools(cursor=cursor), self.connect_timeout)
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
        except BaseException as err:
            await self._disconnect()
            raise SimrlError(f"the MCP server did not list its tools: {_describe(err)}") from None
        self.tools = [tool_schema(t) for t in tools]
        return Observation(text=task.policy_view()["prompt"], tools=self.tools)

    async def step(self, action: Action) -> Step:
        """Call the action's tools in order, or score its final answer (which ends the episode); a lost
        connection truncates the episode."""
        if action.is_final:
            reward, info = self.score_final(action.answer or "")
            await self._disconnect()
            return Step(observation=Observation(text="episode finished"), reward=reward, terminated=True,
                        info=info)
        results, failures, fatal = [], [], False
        for call in action.tool_calls:
            result, failure, lost = await self._call(call)
            results.append(result)
            fatal = fatal or lost
            if failure:
                failures.append(f"{call.name}: {failure}")
        info: dict[str, Any] = {"env_failure": True, "failures": failures} if failures else {}
        text = render_tagged(results) if results else \
            "no tool call and no final answer: call a tool or give the final answer"
        return Step(observation=Observation(text=text, results=results), truncated=fatal, info=info)

    async def _call(self, call: ToolCall) -> tuple[ToolResult, str | None, bool]:
        """One tool call -> (result, transport-failure reason or None, connection lost)."""
        def result(text: str, error: bool = True) -> ToolResult:
            return ToolResult(name=call.name, content=text, is_error=error, call_id=call.call_id)

        known = [t["function"]["name"] for t in self.tools]
        if call.name not in known:
            return result(f"unknown tool {call.name!r}; available tools: {', '.join(known)}"), None, False
        conn = self._conn
        if conn is None or conn.client is None:
            reason = f"the MCP server is unavailable ({_describe(conn.error) if conn and conn.error else 'closed'})"
            return result(reason), reason, True
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        try:
            out = await asyncio.wait_for(conn.client.call_tool(call.name, dict(call.arguments)),
                                         self.call_timeout + 5)
        except MCPError as err:
            reason = f"MCP error {err.code}: {err.message}"
            if err.code == CONNECTION_CLOSED:
                return result(f"the MCP server connection was lost ({reason})"), reason, True
            if err.code == REQUEST_TIMEOUT:
                return result(f"the tool call timed out after {self.call_timeout:g}s"), reason, False
            return result(reason), None, False  # a protocol-level rejection of the call itself
        except asyncio.TimeoutError:
            reason = f"the tool call timed out after {self.call_timeout:g}s"
            return result(reason), reason, False
        except Exception as err:  # broken pipe, closed streams, HTTP errors, ...
            reason = f"the MCP connection failed ({_describe(err)})"
            return result(reason), reason, True
        return result(content_text(out), bool(out.is_error)), None, False

    def score_final(self, answer: str) -> tuple[float, dict[str, Any]]:
        """Reward of the final answer: score_state for records writes, score_answer otherwise.

        Returns ``(reward, info)`` (info: ``success``, ``metrics``). Callable mid-episode: the verl adapters
        read a write task's record state after each call (:func:`simrl.trainers.verl.sessions.records_state`).
        """
        from simrl.reward.task import is_records_write, score_final

        task = self._task
        assert task is not None
        if not is_records_write(task):
            return score_final(task, answer)
        if self.records_db is None or not self.records_db.is_file():
            return 0.0, {"score_error": "a records write task needs the server's record database to score"}
        from simrl.records.store import RecordStore

        with RecordStore.open(self.records_db) as store:
            return score_final(task, answer, store.read)

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        """Stop the server connection (and a stdio server process); safe to call twice."""
        await self._disconnect()
        self._task = None


class WorldMCPEnv(MCPEnv):
    """A world's record server (``simrl serve mcp``) over stdio, on a fresh database every episode.

    Args:
        world: a world folder.
        fault_rate: probability of an operational error per tool call (timeout, 429, 503).
        fault_delay: seconds a simulated timeout waits.
        call_timeout, connect_timeout: as for :class:`MCPEnv`.

    Raises:
        SimrlError: ``world`` is not a world folder.
    """

    env_id = "mcp-world"

    def __init__(self, world: str | Path, fault_rate: float = 0.0, *, fault_delay: float = 1.0,
                 call_timeout: float = 30.0, connect_timeout: float = 60.0) -> None:
        from simrl.records.store import RecordStore

        if not 0.0 <= fault_rate <= 1.0:
            raise SimrlError(f"fault_rate must be in [0, 1], got {fault_rate}")
        self.world, self.fault_rate, self.fault_delay = Path(world), fault_rate, fault_delay
        self._workdir: Path | None = scratch.mkdtemp("simrl-mcp-world-")
        try:
            RecordStore.create(self.world, self._workdir / "base.sqlite").close()
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        self._episodes = 0
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)  # also if never closed
        super().__init__(server_command=[sys.executable], call_timeout=call_timeout,
                         connect_timeout=connect_timeout)

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Copy the world's records into a fresh episode database and start a server on it."""
        from simrl.records.store import RecordStore

        assert self._workdir is not None, "reset after close (make() wraps it in OrderEnforcing)"
        await self._disconnect()
        if self.records_db is not None:
            self.records_db.unlink(missing_ok=True)
        self._episodes += 1
        db = self._workdir / f"episode-{self._episodes}.sqlite"
        with RecordStore.open(self._workdir / "base.sqlite") as base:
            base.copy_to(db).close()
        self.records_db = db
        self.server_command = [sys.executable, "-m", "simrl.cli.main", "serve", "mcp", "--world", str(self.world),
                               "--db", str(db), "--fault-rate", str(self.fault_rate), "--seed", str(seed),
                               "--fault-delay", str(self.fault_delay)]
        return await super().reset(task, seed)

    async def close(self) -> None:
        """Stop the server and delete the episode databases; safe to call twice."""
        await super().close()
        self._workdir = None
        self._cleanup()


def make_world_env(transport: str = "stdio", **options: Any) -> Environment:
    """The ``mcp-world`` factory: :class:`WorldMCPEnv` (``transport="stdio"``, the real MCP transport) or
    :class:`~simrl.envs.records_local.LocalRecordsEnv` (``"inprocess"``: the same server called in process).

    Raises:
        SimrlError: another transport; options the transport's class does not take.
    """
    from simrl.envs.registry import check_options

    if transport == "inprocess":
        from simrl.envs.records_local import LocalRecordsEnv

        check_options("mcp-world", LocalRecordsEnv, options)
        return LocalRecordsEnv(**options)
    if transport != "stdio":
        raise SimrlError(f"mcp-world transport must be 'stdio' or 'inprocess', got {transport!r}")
    check_options("mcp-world", WorldMCPEnv, options)
    return WorldMCPEnv(**options)


MCP_DOMAIN: dict[str, Any] = {"domain": "mcp", "prompt": MCP_PROMPT, "free_text": False,
                              "error_line": r"^Error executing tool [\w.-]+: \S"}
"""The world-model domain of ``mcp`` and ``mcp-world``: its name, prompt and observation rules (MCP error lines)."""

WRITE_TOOLS = frozenset({"update_record", "add_membership", "end_membership", "appoint_ceo"})
"""The record server's tools that change state (:mod:`simrl.records.writes`)."""

register(EnvSpec(
    id="mcp", factory=MCPEnv, needs_server=True,
    description="any MCP server as tools: stdio command (server_command=...) or streamable HTTP URL (server_url=...)",
    wm_adapter=WorldModelAdapter(tool_list=truth.mcp_tool_list, **MCP_DOMAIN)))
register(EnvSpec(
    id="mcp-world", factory=make_world_env,
    description="a world's record server (simrl serve mcp): paged search, validated writes, "
                "fresh records per episode (world=...; transport=stdio | inprocess)",
    task_types=("records",), write_tools=WRITE_TOOLS, needs_world=True,
    options=frozenset({"transport", "fault_rate", "fault_delay", "call_timeout", "connect_timeout"}),
    wm_adapter=WorldModelAdapter(tool_list=truth.records_tool_list, truth=truth.records_truth, **MCP_DOMAIN),
    expert="simrl.policies.records_expert:RecordsExpert"))
