"""The world's side of a world-model environment: tool schemas, argument checks, ground truth, scoring.

What stays in the world (never in the world model's hands), for :class:`simrl.wm.env.WorldModelEnv`:
the tool list (:func:`tool_list`), the environment's own rejection of unknown tools and
schema-invalid arguments (:class:`CallValidator`), the per-episode ground truth — the search index,
or a shadow copy of the records that writes are applied to with the record server's own semantics
(:class:`EpisodeTruth`) — and the score of a final answer or of the records state (:func:`score`).
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import itertools
import shutil
from pathlib import Path
from typing import Any

from simrl import scratch
from simrl.envs.base import WorldModelAdapter, find_spec, specs, write_tools
from simrl.envs.registry import wm_adapter_of
from simrl.errors import SimrlError
from simrl.types import ToolCall
from simrl.world.schema import Task

_scratch: Path | None = None
_episodes = itertools.count(1)


def _episode_db() -> Path:
    """A fresh path for one episode's ground truth (``episode_truth``'s ``db_path``), in one scratch folder per
    process (removed at exit): a folder per environment cost a mkdir and an rmdir per episode."""
    global _scratch
    if _scratch is None or not _scratch.is_dir():
        _scratch = scratch.mkdtemp("simrl-wm-env-")
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch / f"episode-{next(_episodes)}.sqlite"


def adapter(env_id: str) -> WorldModelAdapter:
    """The world-model adapter of ``env_id`` (its spec's ``wm_adapter``, else the generic one:
    :func:`simrl.envs.registry.wm_adapter_of`).

    Raises:
        SimrlError: unknown id, or an environment without a world-model version (lists those with one).
    """
    found = find_spec(env_id)
    env_adapter = wm_adapter_of(found) if found is not None else None
    if env_adapter is None or env_adapter.tool_list is None:
        raise SimrlError(f"no world-model version of env {env_id!r}; supported: {', '.join(supported())}")
    return env_adapter


def _adapters() -> dict[str, WorldModelAdapter]:
    return {k: a for k, s in specs().items() if (a := wm_adapter_of(s)) is not None and a.tool_list is not None}


def supported() -> list[str]:
    """Ids of the registered environments that have a world-model version."""
    return list(_adapters())


def has_truth(env_adapter: WorldModelAdapter) -> bool:
    """Whether the adapter offers a ground truth (the world's, shared or per episode, or the real
    environment itself): the oracle can render it."""
    return env_adapter.shared_truth is not None or env_adapter.episode_truth is not None or env_adapter.real_truth


def oracle_envs() -> list[str]:
    """Ids of the registered environments whose observations a ground truth can produce (the oracle's)."""
    return [k for k, a in _adapters().items() if has_truth(a)]


async def tool_list(env_id: str, world: Path | None, tools: list[dict[str, Any]],
                    server: tuple[str | list[str] | None, str | None]) -> list[dict[str, Any]]:
    """The real environment's tool schemas, from its adapter (search's, the record server's, an MCP server's).

    Args:
        env_id: a registered id with a world-model version.
        world: the world folder (where the environment needs one).
        tools: schemas given up front (``mcp``: used as they are when non-empty).
        server: ``mcp``: ``(server_command, server_url)`` listed when ``tools`` is empty.
    """
    lister = adapter(env_id).tool_list
    assert lister is not None  # adapter() checked it
    return await lister(world, tools, server)


class CallValidator:
    """The environment's own error for an unknown tool or (world models only) schema-invalid arguments.

    Args:
        env_id: decides the error wording (the adapter's ``unknown_tool`` / ``invalid_arguments``).
        check_arguments: validate arguments against the tool's JSON schema (False for the oracle,
            whose real tools validate their own arguments).
    """

    def __init__(self, env_id: str, check_arguments: bool) -> None:
        self.env_id, self.check_arguments = env_id, check_arguments
        self._adapter = adapter(env_id)
        self._validators: dict[str, Any] = {}

    def reject(self, call: ToolCall, tools: list[dict[str, Any]]) -> str | None:
        """The error text for ``call`` given the environment's ``tools``; None when the call is valid."""
        known = [t["function"]["name"] for t in tools]
        if call.name not in known:
            return self._adapter.unknown_tool(call.name, known)
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
        return self._adapter.invalid_arguments(call.name, reason)


class EpisodeTruth:
    """The ground truth of each episode, opened at ``reset`` and closed at the next one or at the end.

    From the environment's adapter: its ``episode_truth`` when it has one (``mcp-world``: a fresh copy
    of the world's records per episode, in memory; ``db_path`` is a fresh ``episode-N.sqlite`` in one scratch
    folder per process, deleted when the episode closes); else, with the oracle, its ``shared_truth``
    (``search``: the world's shared index); otherwise none.

    Args:
        env_id: the environment id.
        world: the world folder.
        oracle_backend: the observations come from the oracle (not a world model).
    """

    def __init__(self, env_id: str, world: Path | None, oracle_backend: bool) -> None:
        self.env_id, self.world, self.oracle_backend = env_id, world, oracle_backend
        self._adapter = adapter(env_id)
        self.current: Any = None
        self._db: Path | None = None

    async def open(self, task: Task, seed: int = 0) -> Any:
        """Open (and return) the next episode's ground truth; None where the environment keeps none."""
        if self._adapter.real_truth and self._adapter.episode_truth is None and self._adapter.shared_truth is None:
            from simrl.envs.truth import RealTruth

            self.current = await RealTruth(self.env_id, self.world).start(task, seed)
        elif self._adapter.episode_truth is not None:
            self._db = _episode_db()
            self.current = await asyncio.to_thread(self._adapter.episode_truth, self.world, self._db, self.oracle_backend)
        elif self._adapter.shared_truth is not None and self.oracle_backend:
            self.current = await asyncio.to_thread(self._adapter.shared_truth, self.world)
        else:
            self.current = None
        return self.current

    async def reference(self, call: ToolCall) -> str | None:
        """The real observation of a read ``call`` now (the leakage guard's ground truth), or None.

        The adapter's ``shared_truth`` answers it (``search``: the world's index); else the episode's
        truth (``mcp-world``: the records copy; a read changes nothing, a write's real result is the
        caller's, from applying it). None without ground truth (``mcp``), for an oracle episode (whose
        observations are the truth) or a write.
        """
        no_world = self.world is None and not self._adapter.real_truth
        if self.oracle_backend or no_world or call.name in write_tools():
            return None
        if self._adapter.shared_truth is not None:
            return (await self._adapter.shared_truth(self.world).call(call)).content
        if self.current is not None:
            return (await self.current.call(call)).content
        return None

    async def close(self) -> None:
        """Close the current episode's ground truth and delete its records copy (if any)."""
        truth, self.current = self.current, None
        if truth is not None:
            closing = truth.close()
            if inspect.isawaitable(closing):  # the real environment (RealTruth) closes asynchronously
                await closing
        if self._db is not None:
            self._db.unlink(missing_ok=True)  # what the episode's truth wrote there, if anything
            self._db = None


def score(task: Task, answer: str, truth: Any, scorer: Any = None) -> tuple[float, dict[str, Any]]:
    """The reward and info of a final ``answer``; a records write task is scored on ``truth``'s records.

    ``scorer``: the environment's ``score_final(task, answer, read)`` (its spec's; default
    :func:`simrl.reward.task.score_final`).

    Returns:
        ``(reward, {"success", "metrics"})``, or ``(0.0, {"score_error"})`` for a write task
        without records (not ``mcp-world``).
    """
    from simrl.reward.task import is_records_write, score_final

    own = getattr(truth, "score_final", None)  # the real environment as the truth scores by its own rule
    if own is not None and (scored := own(answer)) is not None:
        return scored
    store = getattr(truth, "store", None)
    if is_records_write(task) and store is None:
        return 0.0, {"score_error": "a records write task needs the world's records (env mcp-world)"}
    return (scorer or score_final)(task, answer, store.read if store is not None else None)
