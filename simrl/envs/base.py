"""The environment contract, the :class:`Wrapper` base and the registry of :class:`EnvSpec`.

An :class:`Environment` is async: ``reset(task, seed) -> Observation``, ``step(action) -> Step``,
``close()`` (safe to call twice). Errors of tools (bad arguments, unknown ids, server faults) come
back as error observations, never as exceptions out of ``step``. Besides those three it declares
``tools``, ``backend_name``, ``controllable`` / ``set_control`` and ``score_final`` (defaults for a
real environment that takes no control instructions); a layer over another environment (the perturbation
wrapper) subclasses :class:`Wrapper`, which forwards all of them, and ``unwrapped`` reaches the
innermost one (Gymnasium's ``Wrapper`` / ``unwrapped``).

Episode bookkeeping is in wrappers, as in Gymnasium (``gymnasium/wrappers/common.py``), so an environment
keeps only its own logic: :func:`make` puts every environment in :class:`OrderEnforcing` (no step before
``reset``, after the episode ended or after ``close``; no ``reset`` after ``close``) and, when the spec's
or the caller's ``max_turns`` is set, :class:`TimeLimit` (the episode is truncated after ``max_turns`` steps).

Environments are made by id with :func:`make` from the :class:`EnvSpec` each environment module
registers next to its own code (Gymnasium's ``EnvSpec`` + registry, docs/design.md §6); the
world-model version keeps the same id and is found through the spec. The spec types and the
registry live in :mod:`simrl.envs.registry`; they are re-exported here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

from simrl.errors import SimrlError
from simrl.types import Action, Observation, Step
from simrl.world.schema import Task


class Environment(abc.ABC):
    """Base class of every simrl environment.

    Subclasses set ``env_id`` and implement the three async methods. ``tools`` lists the tool
    schemas (OpenAI function format: ``{"type": "function", "function": {"name", "description",
    "parameters"}}``) available after ``reset`` (an environment may assign it; default: none).

    Attributes:
        env_id: the registered id (:func:`make`).
        backend_name: ``real`` for a real environment; a world-model environment's backend name.
        controllable: True when :meth:`set_control` takes per-call control instructions (a world model).
    """

    env_id: str = ""
    backend_name: str = "real"
    controllable: bool = False

    @abc.abstractmethod
    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode on ``task``; returns the first observation (prompt + tool schemas)."""

    @abc.abstractmethod
    async def step(self, action: Action) -> Step:
        """Apply ``action``; tool errors are returned as observations with ``is_error`` results."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources; calling it twice is a no-op."""

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tool schemas of the current episode (empty before ``reset`` or when none are declared)."""
        return self.__dict__.get("_declared_tools", [])

    @tools.setter
    def tools(self, value: list[dict[str, Any]]) -> None:
        self.__dict__["_declared_tools"] = list(value)

    @property
    def unwrapped(self) -> Environment:
        """The innermost environment (itself, for an environment that wraps none)."""
        return self

    def set_control(self, instructions: dict[int, str], *, checks: dict[int, Callable[[str], bool]] | None = None,
                    retries: int = 0, no_effect: Iterable[int] = ()) -> None:
        """Control instructions for the calls of the next step (world-model environments; see
        :meth:`simrl.wm.env.WorldModelEnv.set_control`). An environment may ignore ``checks``/``retries``.

        Raises:
            SimrlError: the environment takes no control instructions (``controllable`` is False).
        """
        raise SimrlError(f"environment {self.env_id!r} takes no control instructions (no set_control); "
                         "use mode inject, or a world-model environment")

    def score_final(self, answer: str) -> tuple[float, dict[str, Any]]:
        """The reward and info of ``answer`` on the current episode, callable mid-episode.

        Raises:
            NotImplementedError: the environment scores only at its final step.
        """
        raise NotImplementedError(f"environment {self.env_id!r} scores only at its final step")

    async def __aenter__(self) -> Environment:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class Wrapper(Environment):
    """An environment over another one (``self.env``): forwards the whole contract unless overridden.

    ``env_id``, ``tools``, ``backend_name``, ``controllable``, ``set_control``, ``score_final``,
    ``reset``, ``step`` and ``close`` go to the wrapped environment; ``unwrapped`` is the innermost.
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.env_id = env.env_id

    @property
    def tools(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The wrapped environment's tool schemas."""
        return self.env.tools

    @property
    def backend_name(self) -> str:  # type: ignore[override]
        """The wrapped environment's backend (``real`` for a real one), for trajectories."""
        return self.env.backend_name

    @property
    def controllable(self) -> bool:  # type: ignore[override]
        """Whether the wrapped environment takes control instructions."""
        return self.env.controllable

    @property
    def unwrapped(self) -> Environment:
        """The innermost environment."""
        return self.env.unwrapped

    def set_control(self, instructions: dict[int, str], **options: Any) -> None:
        """Forwarded to the wrapped environment."""
        self.env.set_control(instructions, **options)

    def score_final(self, answer: str) -> tuple[float, dict[str, Any]]:
        """Forwarded to the wrapped environment."""
        return self.env.score_final(answer)

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Forwarded to the wrapped environment."""
        return await self.env.reset(task, seed)

    async def step(self, action: Action) -> Step:
        """Forwarded to the wrapped environment."""
        return await self.env.step(action)

    async def close(self) -> None:
        """Closes the wrapped environment."""
        await self.env.close()


class OrderEnforcing(Wrapper):
    """Refuses what the episode's order does not allow (Gymnasium's ``OrderEnforcing``), so no environment
    keeps these guards itself: ``reset`` after ``close`` raises; ``step`` before ``reset``, after ``close``
    or after a step that ended the episode (``terminated`` or ``truncated``) returns the error observation of
    :func:`unavailable_step` without reaching the environment (an error observation, never an exception).
    :func:`make` puts it around every environment.

    Args:
        env: the environment to guard.
    """

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        self._started, self._done, self._closed = False, False, False

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode on the environment.

        Raises:
            SimrlError: the environment is closed.
        """
        if self._closed:
            raise SimrlError(f"environment {self.env_id!r} is closed; make a new one")
        observation = await self.env.reset(task, seed)
        self._started, self._done = True, False
        return observation

    async def step(self, action: Action) -> Step:
        """The environment's step, or the error step of an episode that cannot act."""
        if (over := unavailable_step(self._closed, self._started, self._done)) is not None:
            return over
        step = await self.env.step(action)
        self._done = step.terminated or step.truncated
        return step

    async def close(self) -> None:
        """Close the environment once (a second call does nothing)."""
        if not self._closed:
            self._closed = True
            await self.env.close()


class TimeLimit(Wrapper):
    """Truncates an episode after ``max_turns`` steps (Gymnasium's ``TimeLimit``): the step that reaches
    the limit without ending the episode comes back ``truncated`` with ``info["truncated_reason"] =
    "max_turns"``. Every step counts (tool calls and answers). :func:`make` puts it around an environment
    whose ``max_turns`` (the spec's, or the caller's) is set.

    Args:
        env: the environment to limit.
        max_turns: steps per episode (at least 1).

    Raises:
        SimrlError: ``max_turns`` below 1.
    """

    def __init__(self, env: Environment, max_turns: int) -> None:
        if max_turns < 1:
            raise SimrlError(f"max_turns must be >= 1, got {max_turns}")
        super().__init__(env)
        self.max_turns, self._turns = max_turns, 0

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode (the turn count restarts)."""
        observation = await self.env.reset(task, seed)
        self._turns = 0
        return observation

    async def step(self, action: Action) -> Step:
        """The environment's step, truncated when it is the ``max_turns``-th and did not end the episode."""
        step = await self.env.step(action)
        self._turns += 1
        if self._turns >= self.max_turns and not (step.terminated or step.truncated):
            step = step.model_copy(update={"truncated": True, "info": step.info | {"truncated_reason": "max_turns"}})
        return step


def unavailable_step(closed: bool, started: bool, done: bool) -> Step | None:
    """The step an environment returns instead of acting when it cannot act, else None.

    Closed, not reset yet, or the episode already ended: an error observation with ``truncated=True``
    and ``info["episode_over"]`` (an error observation, never an exception).
    """
    if not (closed or not started or done):
        return None
    why = "closed" if closed else "no episode: call reset first" if not started else "the episode has ended: call reset"
    return Step(observation=Observation(text=f"Error: {why}"), truncated=True, info={"error": why, "episode_over": True})


from simrl.envs.registry import (  # noqa: E402 - re-exported: the contract and the registry in one import
    EnvSpec,
    WorldModelAdapter,
    find_spec,
    make,
    register,
    registered,
    render_contents,
    render_tagged,
    spec,
    specs,
    write_tools,
)

__all__ = ["EnvSpec", "Environment", "OrderEnforcing", "TimeLimit", "WorldModelAdapter", "Wrapper", "find_spec", "make",
           "register", "registered", "render_contents", "render_tagged", "spec", "specs", "unavailable_step",
           "write_tools"]
