"""The environment checker: small ``check_*`` functions run on every registered environment.

Modelled on Gymnasium's ``utils/env_checker.py`` (docs/design.md §5): each check takes a factory that makes
a fresh environment and a task, runs a short scripted interaction, and raises
:class:`EnvCheckError` with a message saying what the environment did wrong. ``check_env`` runs them
all and returns one :class:`CheckOutcome` per check; ``simrl env check`` prints them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simrl.envs.base import Environment
from simrl.types import Action, Observation, Step
from simrl.world.schema import Task

EnvFactory = Callable[[], Environment]


class EnvCheckError(AssertionError):
    """An environment broke the contract; the message says how."""


@dataclass(frozen=True)
class CheckOutcome:
    """Result of one check: its name, whether it passed, and the reason when it did not."""

    name: str
    passed: bool
    detail: str = ""


def probe_action(obs: Observation, task: Task) -> Action:
    """A plausible call of the environment's first tool, with required arguments filled from the task.

    Strings get the task prompt's first words, numbers 1, booleans False, arrays one string; the call
    may still be rejected by the tool, which is fine: rejections must come back as observations.
    """
    if not obs.tools:
        return Action.final("probe")
    fn = obs.tools[0]["function"]
    params = fn.get("parameters", {}) or {}
    args = {}
    words = " ".join(task.prompt.split()[:4])
    for name in params.get("required", []):
        kind = (params.get("properties", {}).get(name) or {}).get("type", "string")
        args[name] = {"integer": 1, "number": 1, "boolean": False, "array": [words],
                      "object": {}}.get(kind, words)
    return Action.call(fn["name"], **args)


async def _episode(make: EnvFactory, task: Task, seed: int) -> tuple[Observation, Step, Step]:
    env = make()
    try:
        first = await env.reset(task, seed=seed)
        probe = await env.step(probe_action(first, task))
        final = await env.step(Action.final("no answer"))
        return first, probe, final
    finally:
        await env.close()


async def check_types(make: EnvFactory, task: Task) -> None:
    """reset returns an Observation with OpenAI-format tool schemas; step returns a Step; rewards are floats."""
    first, probe, final = await _episode(make, task, 0)
    if not isinstance(first, Observation):
        raise EnvCheckError(f"reset returned {type(first).__name__}, expected Observation")
    for tool in first.tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(fn, dict) or "name" not in fn:
            raise EnvCheckError(f"tool schema is not in OpenAI function format: {tool!r}")
    for step in (probe, final):
        if not isinstance(step, Step):
            raise EnvCheckError(f"step returned {type(step).__name__}, expected Step")
        step.model_dump_json()  # serialisable
    if not final.terminated:
        raise EnvCheckError("a final answer did not terminate the episode")
    if not 0.0 <= final.reward <= 1.0:
        raise EnvCheckError(f"final reward {final.reward} is outside [0, 1]")


async def check_determinism(make: EnvFactory, task: Task) -> None:
    """Two fresh environments, same task, seed and actions -> identical observations and rewards."""
    a = await _episode(make, task, 7)
    b = await _episode(make, task, 7)
    for x, y, what in zip(a, b, ("reset", "probe step", "final step")):
        if x.model_dump(exclude={"info"}) != y.model_dump(exclude={"info"}):
            raise EnvCheckError(f"{what} differs between two runs with seed 7")


async def check_errors_are_observations(make: EnvFactory, task: Task) -> None:
    """An unknown tool and malformed arguments come back as error observations, not exceptions."""
    env = make()
    try:
        obs = await env.reset(task, seed=0)
        bad_calls = [Action.call("no_such_tool_xyz", q="x")]
        if obs.tools:
            bad_calls.append(Action.call(obs.tools[0]["function"]["name"], unexpected_argument=object.__name__))
        for action in bad_calls:
            try:
                step = await env.step(action)
            except Exception as err:  # noqa: BLE001 - the point of the check
                raise EnvCheckError(f"{action.tool_calls[0].name}: step raised {type(err).__name__}: {err}") from err
            if not step.observation.results or not step.observation.results[0].is_error:
                raise EnvCheckError(f"{action.tool_calls[0].name}: expected an error result, got "
                                    f"{step.observation.text[:120]!r}")
    finally:
        await env.close()


async def check_close_twice(make: EnvFactory, task: Task) -> None:
    """close() may be called twice (and before any reset)."""
    env = make()
    await env.close()
    env = make()
    await env.reset(task, seed=0)
    await env.close()
    await env.close()


CHECKS: dict[str, Callable[[EnvFactory, Task], Awaitable[None]]] = {
    "types": check_types,
    "determinism": check_determinism,
    "errors_are_observations": check_errors_are_observations,
    "close_twice": check_close_twice,
}


async def check_env(make: EnvFactory, task: Task) -> list[CheckOutcome]:
    """Run every check of :data:`CHECKS`; never raises for a failing check (see the outcomes)."""
    outcomes = []
    for name, check in CHECKS.items():
        try:
            await check(make, task)
            outcomes.append(CheckOutcome(name, True))
        except EnvCheckError as err:
            outcomes.append(CheckOutcome(name, False, str(err)))
        except Exception as err:  # noqa: BLE001 - a crash is a failed check, reported as such
            outcomes.append(CheckOutcome(name, False, f"crashed: {type(err).__name__}: {err}"))
    return outcomes
