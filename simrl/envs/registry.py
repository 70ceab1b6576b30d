"""The environment registry: one :class:`EnvSpec` per environment id, registered by the environment's module.

Modelled on Gymnasium's ``EnvSpec`` + ``register`` / ``make`` (``gymnasium/envs/registration.py``):
a spec names the environment (``id``, ``factory``, ``description``) and declares what the rest of
simrl needs to know about it, so no other module branches on an id:

* ``task_types``: the task types it serves (``rollout``, recipes and eval pick tasks with it);
  ``load_tasks`` when its tasks do not come from a world folder;
* ``tools`` (static schemas, when known without a server), ``write_tools`` (tools that change
  state), ``render`` (how a step's tool results become the observation text: the environment,
  the perturbation wrapper and the world-model version all lay results out with it);
* ``score_final(task, answer, read=None)``: its reward for a final answer;
* optional hooks: ``world_model`` (``"module:function"`` making its world-model version, loaded
  lazily so :mod:`simrl.envs` never imports :mod:`simrl.wm`), ``wm_adapter`` (what a world model
  needs from the environment: tool listing, ground truth, error wording, prompt domain) and
  ``expert`` (``"module:function"`` making its scripted expert policy).

Built-in modules register themselves on first use (:data:`BUILTIN_MODULES`).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from simrl.errors import SimrlError
from simrl.types import ToolCall, ToolResult

if TYPE_CHECKING:
    from simrl.envs.base import Environment
    from simrl.world.schema import Task

BUILTIN_MODULES = ("simrl.envs.search", "simrl.envs.mcp_env", "simrl.envs.bfcl")
"""The modules of the built-in environments (each registers its specs when imported)."""


def render_tagged(results: list[ToolResult]) -> str:
    """Tool results as the text of an observation, MCP layout: ``[NAME]`` or ``[NAME error]`` then the
    content, one block per result, blank lines between (the default renderer)."""
    return "\n\n".join(f"[{r.name}{' error' if r.is_error else ''}]\n{r.content}" for r in results)


def render_contents(results: list[ToolResult]) -> str:
    """Tool results as the text of an observation: the contents only, blank lines between (search's layout)."""
    return "\n\n".join(r.content for r in results)


def _default_score(task: Task, answer: str, read: Callable[[str, str], object] | None = None) -> tuple[float, dict]:
    from simrl.reward.task import score_final

    return score_final(task, answer, read)


class Truth(Protocol):
    """Ground truth as tools: the real result of a call (errors as ``is_error`` results), then ``close()``."""

    async def call(self, call: ToolCall) -> ToolResult: ...

    def close(self) -> None: ...


def _mcp_unknown_tool(name: str, known: list[str]) -> str:
    return f"unknown tool {name!r}; available tools: {', '.join(known)}"


def _mcp_invalid_arguments(name: str, reason: str) -> str:
    return f"Error executing tool {name}: {reason}"


@dataclass(frozen=True)
class WorldModelAdapter:
    """What the world-model version of an environment takes from the environment.

    Attributes:
        domain: the prompt domain of its world model (:data:`simrl.wm.prompts.DOMAIN_PROMPTS`, or ``bfcl``
            for transition data); ``generic`` by default.
        tool_list: ``async (world, tools, (server_command, server_url)) -> schemas``: the real tool list
            (``tools``: schemas given up front by the caller, possibly empty); None: no world-model
            environment (the adapter only names the domain of recorded transitions).
        shared_truth: ``(world) -> Truth``: read-only ground truth shared by all episodes (a search index),
            the reference of reads and the oracle's observations; None when the world has none.
        episode_truth: ``(world, db_path, unpaged) -> Truth``: a fresh per-episode ground truth that writes
            are applied to (a records copy at ``db_path``; ``unpaged`` for the oracle); None when none.
        unknown_tool, invalid_arguments: the environment's own error texts ``(tool, known names)`` /
            ``(tool, reason)`` for a call it rejects.
        default_max_turns: the real environment's default turn limit (None: no limit).
    """

    domain: str = "generic"
    tool_list: Callable[[Path | None, list[dict[str, Any]], tuple[Any, Any]], Awaitable[list[dict[str, Any]]]] | None = None
    shared_truth: Callable[[Path], Truth] | None = None
    episode_truth: Callable[[Path, Path, bool], Truth] | None = None
    unknown_tool: Callable[[str, list[str]], str] = _mcp_unknown_tool
    invalid_arguments: Callable[[str, str], str] = _mcp_invalid_arguments
    default_max_turns: int | None = None


@dataclass(frozen=True)
class EnvSpec:
    """One registered environment (see the module docstring for what each field is used for).

    Attributes:
        id: the environment id (``make(id)``).
        factory: ``factory(**options) -> Environment``.
        description: one line for ``simrl env list``.
        task_types: task types it serves (``Task.type`` values); empty: any task given to it.
        tools: its tool schemas when they are static (OpenAI function format); empty when listed at reset.
        write_tools: names of its tools that change state.
        render: ``(results) -> text``: the observation text of a step's tool results.
        score_final: ``(task, answer, read=None) -> (reward, info)``; None when the environment scores
            in its own way (BFCL's checker).
        load_tasks: ``(world, split, n) -> tasks`` when its tasks do not come from a world folder.
        probe_task: ``() -> Task``: the task ``simrl env check`` uses when its tasks are not in a world.
        needs_world: the factory needs ``world=`` (a world folder).
        needs_server: the factory needs ``server_command=`` or ``server_url=`` (a real MCP server).
        world_model: ``"module:function"`` making the world-model version:
            ``function(env_id, world_model, **options) -> Environment``; None: none.
        wm_adapter: what the world-model version needs (:class:`WorldModelAdapter`).
        expert: ``"module:function"``: ``function(world, tasks) -> Policy``, its scripted expert.
    """

    id: str
    factory: Callable[..., Environment]
    description: str
    task_types: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    write_tools: frozenset[str] = frozenset()
    render: Callable[[list[ToolResult]], str] = render_tagged
    score_final: Callable[..., tuple[float, dict[str, Any]]] | None = _default_score
    load_tasks: Callable[[Path | None, str, int | None], list[Task]] | None = None
    probe_task: Callable[[], Task] | None = None
    needs_world: bool = False
    needs_server: bool = False
    world_model: str | None = None
    wm_adapter: WorldModelAdapter | None = None
    expert: str | None = None


_REGISTRY: dict[str, EnvSpec] = {}


def register(env_spec: EnvSpec) -> EnvSpec:
    """Register ``env_spec`` under its id (a later registration of the same id replaces it)."""
    _REGISTRY[env_spec.id] = env_spec
    return env_spec


def specs() -> dict[str, EnvSpec]:
    """Every registered spec by id, sorted by id (built-in modules loaded first)."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def registered() -> dict[str, str]:
    """Registered environment ids -> one-line descriptions."""
    return {k: s.description for k, s in specs().items()}


def spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``.

    Raises:
        SimrlError: unknown id (the message lists the known ones).
    """
    known = specs()
    if env_id not in known:
        raise SimrlError(f"unknown environment {env_id!r}; known: {', '.join(known)}")
    return known[env_id]


def find_spec(env_id: str) -> EnvSpec | None:
    """The spec of ``env_id``, or None when it is not registered (a test's stand-in environment)."""
    return specs().get(env_id)


def write_tools() -> frozenset[str]:
    """The names of every registered environment's state-changing tools."""
    return frozenset().union(*(s.write_tools for s in specs().values()))


def load_entry(entry: str) -> Any:
    """The object a ``"module:attribute"`` string names (imported now).

    Raises:
        SimrlError: not of that form, or the module or attribute does not exist.
    """
    module, _, attr = entry.partition(":")
    if not module or not attr:
        raise SimrlError(f"entry point {entry!r} must be 'module:attribute'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise SimrlError(f"cannot load entry point {entry!r}: {err}") from None


def make(env_id: str, **kwargs: Any) -> Environment:
    """Make the environment registered as ``env_id``.

    With ``world_model=`` a backend name other than ``real`` (:data:`simrl.wm.factory.BACKENDS`) or a
    backend object, the world-model version of the same id is made instead, through the spec's
    ``world_model`` entry point (its ``wm_*`` options configure the backend).

    Raises:
        SimrlError: unknown id (the message lists the known ones); no world-model version of the id;
            ``wm_*`` options without a world model.
    """
    env_spec = spec(env_id)
    world_model = kwargs.pop("world_model", None)
    if world_model is not None and world_model != "real":
        if env_spec.world_model is None:
            supported = [k for k, s in specs().items() if s.world_model is not None]
            raise SimrlError(f"no world-model version of env {env_id!r}; supported: {', '.join(supported)}")
        return load_entry(env_spec.world_model)(env_id, world_model, **kwargs)
    stray = sorted(k for k in kwargs if k.startswith("wm_"))
    if stray:
        raise SimrlError(f"{', '.join(stray)}: world-model options need world_model= (not 'real')")
    return env_spec.factory(**kwargs)


def _load_builtin() -> None:
    """Import the built-in environment modules so they register themselves (lazily, on first use)."""
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a module not written yet must not hide the others
            if err.name != module:
                raise
