"""The world's side of a world-model environment: tool schemas, argument checks, ground truth, scoring.

What stays in the world (never in the world model's hands), for :class:`simrl.wm.env.WorldModelEnv`:
the tool list (:func:`tool_list`), the environment's own rejection of unknown tools and
schema-invalid arguments (:class:`CallValidator`), the per-episode ground truth — the search index,
or a shadow copy of the records that writes are applied to with the record server's own semantics
(:class:`EpisodeTruth`) — and the score of a final answer or of the records state (:func:`score`).
"""

from __future__ import annotations

import asyncio
import shutil
import weakref
from pathlib import Path
from typing import Any

from simrl import scratch
from simrl.types import ToolCall
from simrl.wm import oracle
from simrl.world.schema import Task


async def tool_list(env_id: str, world: Path | None, tools: list[dict[str, Any]],
                    server: tuple[str | list[str] | None, str | None]) -> list[dict[str, Any]]:
    """The real environment's tool schemas: search's, the record server's, or an MCP server's.

    Args:
        env_id: ``search``, ``mcp-world`` or ``mcp``.
        world: the world folder (``search``, ``mcp-world``).
        tools: ``mcp``: schemas given up front (used as they are when non-empty).
        server: ``mcp``: ``(server_command, server_url)`` listed when ``tools`` is empty.
    """
    if env_id == "search":
        from simrl.envs.search import SEARCH_TOOLS

        return SEARCH_TOOLS
    if env_id == "mcp-world":
        return await oracle.record_tools(world)
    if tools:
        return tools
    return await oracle.list_mcp_tools(*server)


class CallValidator:
    """The environment's own error for an unknown tool or (world models only) schema-invalid arguments.

    Args:
        env_id: decides the error wording (search's ``Error: ...`` or the MCP servers').
        check_arguments: validate arguments against the tool's JSON schema (False for the oracle,
            whose real tools validate their own arguments).
    """

    def __init__(self, env_id: str, check_arguments: bool) -> None:
        self.env_id, self.check_arguments = env_id, check_arguments
        self._validators: dict[str, Any] = {}

    def reject(self, call: ToolCall, tools: list[dict[str, Any]]) -> str | None:
        """The error text for ``call`` given the environment's ``tools``; None when the call is valid."""
        known = [t["function"]["name"] for t in tools]
        if call.name not in known:
            if self.env_id == "search":
                return f"Error: unknown tool {call.name!r}; available: {', '.join(known)}"
            return f"unknown tool {call.name!r}; available tools: {', '.join(known)}"
        if not self.check_arguments:
            return None
        import jsonschema

        if call.name not in self._validators:
            schema = next(t for t in tools if t["function"]["name"] == call.name)["function"]
            params = schema.get("parameters") or {"type": "object"}
            self._validators[call.name] = jsonschema.validators.validator_for(params)(params)
        error = jsonschema.exceptions.best_match(self._validators[call.name].iter_errors(dict(call.arguments)))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        reason = f"invalid arguments{f' at {where}' if where else ''}: {error.message}"
        return f"Error: {reason}" if self.env_id == "search" else f"Error executing tool {call.name}: {reason}"


class EpisodeTruth:
    """The ground truth of each episode, opened at ``reset`` and closed at the next one or at the end.

    ``search`` with the oracle: the world's shared search index; ``mcp-world``: a fresh copy of the
    world's records per episode (``episode-N.sqlite`` in a temporary folder removed by
    :meth:`cleanup`, or when this object is collected); otherwise none.

    Args:
        env_id: the environment id.
        world: the world folder.
        oracle_backend: the observations come from the oracle (not a world model).
    """

    def __init__(self, env_id: str, world: Path | None, oracle_backend: bool) -> None:
        self.env_id, self.world, self.oracle_backend = env_id, world, oracle_backend
        self.current: Any = None
        self._workdir: Path | None = None
        self._cleanup: Any = None
        self._episodes = 0

    async def open(self) -> Any:
        """Open (and return) the next episode's ground truth; None where the environment keeps none."""
        if self.env_id == "search" and self.oracle_backend:
            self.current = oracle.SearchTruth(await asyncio.to_thread(oracle.shared_index, self.world))
        elif self.env_id == "mcp-world":
            if self._workdir is None:
                self._workdir = scratch.mkdtemp("simrl-wm-env-")
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
            self._episodes += 1
            db = self._workdir / f"episode-{self._episodes}.sqlite"
            store = await asyncio.to_thread(oracle.episode_store, self.world, db, self.oracle_backend)
            self.current = oracle.RecordsTruth(store)
        else:
            self.current = None
        return self.current

    async def reference(self, call: ToolCall) -> str | None:
        """The real observation of a read ``call`` now (the leakage guard's ground truth), or None.

        ``search``: the world's search index answers it; ``mcp-world``: the episode's records copy
        (a read changes nothing; a write's real result is the caller's, from applying it). None for
        ``mcp`` (no ground truth), an oracle episode (whose observations are the truth) or a write.
        """
        from simrl.wm.oracle import WRITE_TOOLS

        if self.oracle_backend or self.world is None or call.name in WRITE_TOOLS:
            return None
        if self.env_id == "search":
            return (await oracle.SearchTruth(oracle.shared_index(self.world)).call(call)).content
        if self.current is not None:
            return (await self.current.call(call)).content
        return None

    def close(self) -> None:
        """Close the current episode's ground truth and delete its records copy (if any)."""
        truth, self.current = self.current, None
        if truth is not None:
            truth.close()
            store = getattr(truth, "store", None)
            if store is not None:
                Path(store.path).unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Remove the episodes' temporary folder (after :meth:`close`)."""
        if self._cleanup is not None:
            self._cleanup()


def score(task: Task, answer: str, truth: Any) -> tuple[float, dict[str, Any]]:
    """The reward and info of a final ``answer``; a records write task is scored on ``truth``'s records.

    Returns:
        ``(reward, {"success", "metrics"})``, or ``(0.0, {"score_error"})`` for a write task
        without records (not ``mcp-world``).
    """
    from simrl.reward.task import is_records_write, score_final

    store = getattr(truth, "store", None)
    if is_records_write(task) and store is None:
        return 0.0, {"score_error": "a records write task needs the world's records (env mcp-world)"}
    return score_final(task, answer, store.read if store is not None else None)
