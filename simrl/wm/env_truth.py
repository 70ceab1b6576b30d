"""The world's side of a world-model environment: tool schemas, argument checks, ground truth, scoring.

What stays in the world (never in the world model's hands), for :class:`simrl.wm.env.WorldModelEnv`:
the tool list (the adapter's ``tool_list``), the environment's own rejection of unknown tools and
schema-invalid arguments (:class:`CallValidator`), the per-episode ground truth — the search index,
or a shadow copy of the records that writes are applied to with the record server's own semantics
(:class:`EpisodeTruth`) — and the score of a final answer or of the records state (:func:`score`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.envs.base import EnvSpec, WorldModelAdapter, specs, write_tools
from simrl.envs.registry import Truth, score_without_state, wm_adapter_of
from simrl.errors import SimrlError
from simrl.types import ToolCall
from simrl.world.schema import Task


def adapter(env_spec: EnvSpec) -> WorldModelAdapter:
    """The world-model adapter of ``env_spec`` (its ``wm_adapter``, else the generic one:
    :func:`simrl.envs.registry.wm_adapter_of`).

    Raises:
        SimrlError: an environment without a world-model version (lists those with one).
    """
    env_adapter = wm_adapter_of(env_spec)
    if env_adapter is None or env_adapter.tool_list is None:
        raise SimrlError(f"no world-model version of env {env_spec.id!r}; supported: {', '.join(supported())}")
    return env_adapter


def _adapters() -> dict[str, WorldModelAdapter]:
    return {k: a for k, s in specs().items() if (a := wm_adapter_of(s)) is not None and a.tool_list is not None}


def supported() -> list[str]:
    """Ids of the registered environments that have a world-model version."""
    return list(_adapters())


def has_truth(env_adapter: WorldModelAdapter) -> bool:
    """Whether the adapter offers a ground truth (its ``truth``: the world's, or the real environment itself):
    the oracle can render it."""
    return env_adapter.truth is not None


def oracle_envs() -> list[str]:
    """Ids of the registered environments whose observations a ground truth can produce (the oracle's)."""
    return [k for k, a in _adapters().items() if has_truth(a)]


class CallValidator:
    """The environment's own error for an unknown tool or (world models only) schema-invalid arguments.

    Args:
        env_adapter: the environment's world-model adapter: its error wording (``unknown_tool`` /
            ``invalid_arguments``).
        check_arguments: validate arguments against the tool's JSON schema (False for the oracle,
            whose real tools validate their own arguments).
    """

    def __init__(self, env_adapter: WorldModelAdapter, check_arguments: bool) -> None:
        self.check_arguments = check_arguments
        self._adapter = env_adapter
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
    """The ground truth of each episode (the adapter's ``truth``), opened at ``reset`` and closed at the next
    one or at the end: ``search``: the world's shared index; ``mcp-world``: a fresh in-memory copy of the
    world's records (unpaged for the oracle); the generic adapter: the real environment itself; ``mcp``: none.

    Args:
        env_adapter: the environment's world-model adapter (its ``truth``).
        world: the world folder.
        oracle_backend: the observations come from the oracle (not a world model).
    """

    def __init__(self, env_adapter: WorldModelAdapter, world: Path | None, oracle_backend: bool) -> None:
        self.world, self.oracle_backend = world, oracle_backend
        self._adapter = env_adapter
        self.current: Truth | None = None

    async def open(self, task: Task, seed: int = 0) -> Truth | None:
        """Open (and return) the next episode's ground truth, reset on ``task`` and ``seed``; None where the
        environment has none. The adapter's ``truth`` is called on the event loop (the built-in ones are cheap: a
        copy-on-write store, an index handle; a thread per episode cost more than they do)."""
        make = self._adapter.truth
        self.current = None if make is None else make(self.world, self.oracle_backend)
        if self.current is not None:
            await self.current.reset(task, seed)
        return self.current

    async def reference(self, call: ToolCall) -> str | None:
        """The real observation of a read ``call`` now (the leakage guard's ground truth), or None.

        The episode's truth answers it (a read changes nothing; a write's real result is the caller's, from
        applying it). None without ground truth (``mcp``), for an oracle episode (whose observations are the
        truth) or a write.
        """
        if self.oracle_backend or self.current is None or call.name in write_tools():
            return None
        return (await self.current.call(call)).content

    async def close(self) -> None:
        """Close the current episode's ground truth (if any)."""
        truth, self.current = self.current, None
        if truth is not None:
            await truth.close()


def score(task: Task, answer: str, truth: Truth | None,
          scorer: Callable[..., tuple[float, dict[str, Any]]] | None = None) -> tuple[float, dict[str, Any]]:
    """The reward and info of a final ``answer``, scored by the episode's ground truth (:meth:`Truth.score_final`:
    a records write task on its records, the real environment by its own rule).

    ``scorer``: the environment's ``score_final(task, answer, read)`` (its spec's; default
    :func:`simrl.reward.task.score_final`).

    Returns:
        ``(reward, {"success", "metrics"})``, or ``(0.0, {"score_error"})`` for a write task
        without records (not ``mcp-world``).
    """
    from simrl.reward.task import score_final

    scorer = scorer or score_final
    return truth.score_final(task, answer, scorer) if truth is not None else score_without_state(task, answer, scorer)
