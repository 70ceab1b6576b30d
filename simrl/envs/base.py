"""The environment contract and the registry.

An :class:`Environment` is async: ``reset(task, seed) -> Observation``, ``step(action) -> Step``,
``close()`` (safe to call twice). Errors of tools (bad arguments, unknown ids, server faults) come
back as error observations, never as exceptions out of ``step``. Environments are made by id with
:func:`make` (Gymnasium's ``make`` + registry, docs/design.md §5); the world-model version of an
environment keeps the same id and is chosen by keyword options.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from simrl.errors import SimrlError
from simrl.types import Action, Observation, Step
from simrl.world.schema import Task


class Environment(abc.ABC):
    """Base class of every simrl environment.

    Subclasses set ``env_id`` and implement the three async methods. ``tools`` lists the tool
    schemas (OpenAI function format: ``{"type": "function", "function": {"name", "description",
    "parameters"}}``) available after ``reset``.
    """

    env_id: str = ""

    @abc.abstractmethod
    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode on ``task``; returns the first observation (prompt + tool schemas)."""

    @abc.abstractmethod
    async def step(self, action: Action) -> Step:
        """Apply ``action``; tool errors are returned as observations with ``is_error`` results."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources; calling it twice is a no-op."""

    async def __aenter__(self) -> Environment:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def unavailable_step(closed: bool, started: bool, done: bool) -> Step | None:
    """The step an environment returns instead of acting when it cannot act, else None.

    Closed, not reset yet, or the episode already ended: an error observation with ``truncated=True``
    and ``info["episode_over"]`` (an error observation, never an exception).
    """
    if not (closed or not started or done):
        return None
    why = "closed" if closed else "no episode: call reset first" if not started else "the episode has ended: call reset"
    return Step(observation=Observation(text=f"Error: {why}"), truncated=True, info={"error": why, "episode_over": True})


_REGISTRY: dict[str, tuple[Callable[..., Environment], str]] = {}


def register(env_id: str, factory: Callable[..., Environment], description: str) -> None:
    """Register an environment factory under ``env_id`` (``factory(**kwargs) -> Environment``)."""
    _REGISTRY[env_id] = (factory, description)


def registered() -> dict[str, str]:
    """Registered environment ids -> one-line descriptions."""
    _load_builtin()
    return {k: d for k, (_, d) in sorted(_REGISTRY.items())}


def make(env_id: str, **kwargs: Any) -> Environment:
    """Make the environment registered as ``env_id``.

    With ``world_model=`` a backend name other than ``real`` (``oracle``, ``openai``,
    ``transformers``, ``llamacpp``) or a backend object, the world-model version of the same id is
    made instead (:func:`simrl.wm.factory.make_wm_env`; its ``wm_*`` options configure the backend).

    Raises:
        SimrlError: unknown id (the message lists the known ones); ``wm_*`` options without a world model.
    """
    _load_builtin()
    if env_id not in _REGISTRY:
        raise SimrlError(f"unknown environment {env_id!r}; known: {', '.join(sorted(_REGISTRY))}")
    world_model = kwargs.pop("world_model", None)
    if world_model is not None and world_model != "real":
        from simrl.wm.factory import make_wm_env

        return make_wm_env(env_id, world_model, **kwargs)
    stray = sorted(k for k in kwargs if k.startswith("wm_"))
    if stray:
        raise SimrlError(f"{', '.join(stray)}: world-model options need world_model= (not 'real')")
    return _REGISTRY[env_id][0](**kwargs)


def _load_builtin() -> None:
    """Import the built-in environment modules so they register themselves (lazily, on first use)."""
    import importlib

    for module in ("simrl.envs.search", "simrl.envs.mcp_env", "simrl.envs.bfcl"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a module not written yet must not hide the others
            if err.name != module:
                raise
