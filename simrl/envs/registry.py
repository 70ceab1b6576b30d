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

Built-in modules register themselves on first use (:data:`BUILTIN_MODULES`); so do plugins: every
entry point of the group ``simrl.envs`` (:data:`ENTRY_POINT_GROUP`; a module, or a function called with
no arguments) and every module named in ``$SIMRL_IMPORT`` (comma-separated; ``simrl --import MODULE``
sets it, so child processes load the same plugins). docs/plugins.md is the worked example.
"""

from __future__ import annotations

import abc
import functools
import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simrl.errors import SimrlError
from simrl.types import ToolCall, ToolResult

if TYPE_CHECKING:
    from simrl.envs.base import Environment
    from simrl.world.schema import Task

BUILTIN_MODULES = ("simrl.envs.search", "simrl.envs.mcp_env", "simrl.envs.bfcl")
"""The modules of the built-in environments (each registers its specs when imported)."""

ENTRY_POINT_GROUP = "simrl.envs"
"""The entry-point group of environment plugins (``[project.entry-points."simrl.envs"]``)."""

IMPORT_ENV_VAR = "SIMRL_IMPORT"
"""Comma-separated modules imported before the registry is read (``simrl --import MODULE``)."""


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


class Truth(abc.ABC):
    """Ground truth as tools: the real result of a tool call, for one episode (the world-model adapter's ``truth``).

    The life of one: made by the adapter's ``truth(world, oracle)``, then :meth:`reset` on the episode's
    task and seed, :meth:`call` per tool call (errors come back as ``is_error`` results, never raised),
    :meth:`score_final` for the episode's final answer, and :meth:`close` at the episode's end.
    Subclasses implement :meth:`call`; the other methods have defaults.
    """

    async def reset(self, task: Task, seed: int = 0) -> None:  # noqa: B027 - an optional hook, no-op default
        """Start the episode on ``task`` (default: nothing to do; the real environment resets itself)."""

    @abc.abstractmethod
    async def call(self, call: ToolCall) -> ToolResult:
        """The real result of ``call`` now (a write changes this episode's state)."""

    def score_final(self, task: Task, answer: str,
                    scorer: Callable[..., tuple[float, dict[str, Any]]]) -> tuple[float, dict[str, Any]]:
        """The reward and info of ``answer`` on this episode's state.

        Default: ``scorer(task, answer, None)`` (:func:`score_without_state`): no state to read, so a records
        write task scores 0 with a ``score_error``. A truth with records passes their reader; the real
        environment scores by its own rule.
        """
        return score_without_state(task, answer, scorer)

    async def close(self) -> None:  # noqa: B027 - an optional hook, no-op default
        """Release the episode's resources (default: nothing to release); calling it twice is a no-op."""


def score_without_state(task: Task, answer: str,
                        scorer: Callable[..., tuple[float, dict[str, Any]]]) -> tuple[float, dict[str, Any]]:
    """``scorer(task, answer, None)``, the score of an episode without records to read; a records write task
    scores ``(0.0, {"score_error"})`` (it is scored on the records state, which only ``mcp-world`` has)."""
    from simrl.reward.task import is_records_write

    if is_records_write(task):
        return 0.0, {"score_error": "a records write task needs the world's records (env mcp-world)"}
    return scorer(task, answer, None)


def _mcp_unknown_tool(name: str, known: list[str]) -> str:
    return f"unknown tool {name!r}; available tools: {', '.join(known)}"


def _mcp_invalid_arguments(name: str, reason: str) -> str:
    return f"Error executing tool {name}: {reason}"


@dataclass(frozen=True)
class WorldModelAdapter:
    """What the world-model version of an environment takes from the environment.

    Attributes:
        domain: the name of its world model's domain (transition data and AgentWorldBench rows name it;
            ``mcp`` and ``mcp-world`` share one); ``generic`` by default.
        prompt: the world model's role prompt (our own wording, :mod:`simrl.envs.prompts`); None: the
            generic one (:data:`simrl.wm.prompts.GENERIC_PROMPT`).
        prompt_template: a whole system-prompt template instead (``{tools}``, ``{facts}``; ``bfcl``'s).
        free_text: observation rule of the fidelity scorer: a plain-text observation is well-formed (False
            where every tool answers in a layout: search results, JSON).
        error_line: observation rule: the layout an error line must have (a regex; ``mcp``: ``Error
            executing tool NAME: reason``); None: any error text is well-formed.
        tool_list: ``async (world, tools, (server_command, server_url)) -> schemas``: the real tool list
            (``tools``: schemas given up front by the caller, possibly empty); None: the spec's static
            ``tools`` (:func:`wm_adapter_of`), or, for a spec with ``world_model`` None, no world-model
            environment (the adapter only names the domain of recorded transitions).
        truth: ``(world, oracle) -> Truth``: a fresh ground truth for one episode (:class:`Truth`; ``oracle``:
            the observations come from it, e.g. the records unpaged), the reference of reads, the oracle's
            observations, and where writes are applied; None when there is none (the oracle is refused).
            The generic adapter's is the real environment itself, reset on each episode's task and seed
            (:class:`simrl.envs.truth.RealTruth`, :func:`wm_adapter_of`); an own adapter has none unless it
            names one. Called on the event loop at every episode's reset, so it should be cheap (slow set-up
            belongs in the truth's async :meth:`Truth.reset`, or once per process).
        unknown_tool, invalid_arguments: the environment's own error texts ``(tool, known names)`` /
            ``(tool, reason)`` for a call it rejects.
    """

    domain: str = "generic"
    prompt: str | None = None
    prompt_template: str | None = None
    free_text: bool = True
    error_line: str | None = None
    tool_list: Callable[[Path | None, list[dict[str, Any]], tuple[Any, Any]], Awaitable[list[dict[str, Any]]]] | None = None
    truth: Callable[[Path | None, bool], Truth] | None = None
    unknown_tool: Callable[[str, list[str]], str] = _mcp_unknown_tool
    invalid_arguments: Callable[[str, str], str] = _mcp_invalid_arguments


GENERIC_WORLD_MODEL = "simrl.wm.factory:make_wm_env"
"""The world-model maker every environment gets unless its spec names another (or None)."""


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
        load_tasks: ``(world, split, n) -> tasks`` when its tasks do not come from a world folder (read them
            with :meth:`tasks`).
        probe_task: ``() -> Task``: the task ``simrl env check`` uses when its tasks are not in a world.
        needs_world: the factory needs ``world=`` (a world folder).
        needs_server: the factory needs ``server_command=`` or ``server_url=`` (a real MCP server).
        options: keyword options of the real factory that a recipe's ``real:`` section and the CLI
            (``--transport``, ``--fault-rate``) may set, beyond ``world`` and ``max_turns`` (``mcp-world``:
            ``transport``, ``fault_rate``, ...); :func:`option_error` checks them.
        max_turns: steps per episode before :func:`make`'s :class:`~simrl.envs.base.TimeLimit` truncates it,
            for the real environment and its world-model version alike (None: no limit of its own; the
            rollout loop's applies); ``make(..., max_turns=N)`` overrides it.
        world_model: ``"module:function"`` making the world-model version:
            ``function(env_spec, world_model, **options) -> Environment``; default: simrl's generic
            :class:`~simrl.wm.env.WorldModelEnv` maker (:data:`GENERIC_WORLD_MODEL`); None: none.
        wm_adapter: what the world-model version needs (:class:`WorldModelAdapter`); None: the generic
            adapter built from ``tools`` (:func:`wm_adapter_of`).
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
    options: frozenset[str] = frozenset()
    max_turns: int | None = None
    world_model: str | None = GENERIC_WORLD_MODEL
    wm_adapter: WorldModelAdapter | None = None
    expert: str | None = None

    def tasks(self, world: Path | None, split: str | None = None, n: int | None = None) -> list[Task]:
        """The tasks of this environment (the one home of "an environment's tasks"): its own (``load_tasks``:
        bfcl's, a plugin's) or the world folder's of its ``task_types`` (every task when it declares none),
        of ``split`` (None: every split, ``train``, ``dev``, ``test``, each task once), at most ``n``, in a
        stable order.

        Raises:
            SimrlError: no ``world`` where the tasks come from a world folder.
        """
        if self.load_tasks is not None:
            if split is not None:
                return self.load_tasks(world, split, n)
            own = {t.task_id: t for s in ("train", "dev", "test") for t in self.load_tasks(world, s, None)
                   if t.split == s}
            return list(own.values())[:n]
        if world is None:
            raise SimrlError(f"environment {self.id!r} takes its tasks from a world folder; give one")
        from simrl.world.io import load_tasks

        return [t for t in load_tasks(world, split=split) if not self.task_types or t.type in self.task_types][:n]


_REGISTRY: dict[str, EnvSpec] = {}


def register(env_spec: EnvSpec) -> EnvSpec:
    """Register ``env_spec`` under its id.

    A later registration of the same id from the same module replaces it (a reloaded module); one from
    another module is refused, so a plugin cannot silently replace a built-in environment or another
    plugin's.

    Raises:
        SimrlError: the id is taken by an environment of another module.
    """
    old = _REGISTRY.get(env_spec.id)
    if old is not None and module_of(old) != module_of(env_spec):
        raise SimrlError(f"environment id {env_spec.id!r} is already registered by {module_of(old)}; "
                         f"{module_of(env_spec)} must register its environment under another id")
    _REGISTRY[env_spec.id] = env_spec
    return env_spec


def module_of(env_spec: EnvSpec) -> str:
    """The module that registered ``env_spec`` (its factory's module; ``?`` for a callable whose module is None)."""
    return env_spec.factory.__module__ or "?"


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
    _load_builtin()
    found = _REGISTRY.get(env_id)  # looked up at every episode and turn: not sorted first as specs() is
    if found is None:
        raise SimrlError(f"unknown environment {env_id!r}; known: {', '.join(specs())}")
    return found


def find_spec(env_id: str) -> EnvSpec | None:
    """The spec of ``env_id``, or None when it is not registered (a test's stand-in environment)."""
    _load_builtin()
    return _REGISTRY.get(env_id)


def option_error(env_id: str, names: list[str] | tuple[str, ...]) -> str | None:
    """Why ``env_id``'s real factory does not take the options ``names`` (None when it takes them all).

    The message names the environments that do take them (from the registry's ``options``).
    """
    env_options = spec(env_id).options | {"max_turns"}  # make() takes max_turns for every environment
    missing = [n for n in names if n not in env_options]
    if not missing:
        return None
    takers = [k for k, s in specs().items() if set(missing) <= s.options]
    return (f"{', '.join(missing)} {'is not an option' if len(missing) == 1 else 'are not options'} of environment "
            f"{env_id!r}" + (f" (they are options of {', '.join(takers)})" if takers else ""))


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
    """Make the environment registered as ``env_id``, in its episode wrappers.

    With ``world_model=`` a backend name other than ``real`` (:data:`simrl.wm.factory.BACKENDS`) or a
    backend object, the world-model version of the same id is made instead, through the spec's
    ``world_model`` entry point (its ``wm_*`` options configure the backend). Either is wrapped as
    Gymnasium's ``make`` does: in :class:`~simrl.envs.base.TimeLimit` when ``max_turns`` (the option, else
    the spec's :attr:`EnvSpec.max_turns`; None: no limit) is set, then in
    :class:`~simrl.envs.base.OrderEnforcing`.

    Raises:
        SimrlError: unknown id (the message lists the known ones); no world-model version of the id;
            ``wm_*`` options without a world model; options the factory does not take (or lacks).
    """
    from simrl.envs.base import OrderEnforcing, TimeLimit

    env_spec = spec(env_id)
    max_turns = kwargs.pop("max_turns", env_spec.max_turns)
    world_model = kwargs.pop("world_model", None)
    if world_model is not None and world_model != "real":
        if env_spec.world_model is None:
            supported = [k for k, s in specs().items() if s.world_model is not None]
            raise SimrlError(f"no world-model version of env {env_id!r}; supported: {', '.join(supported)}")
        env = load_entry(env_spec.world_model)(env_spec, world_model, **kwargs)
    else:
        stray = sorted(k for k in kwargs if k.startswith("wm_"))
        if stray:
            raise SimrlError(f"{', '.join(stray)}: world-model options need world_model= (not 'real')")
        check_options(env_spec.id, env_spec.factory, kwargs)
        env = env_spec.factory(**kwargs)
    return OrderEnforcing(env if max_turns is None else TimeLimit(env, max_turns))


def check_options(env_id: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Check that ``factory(**options)`` binds to the factory's signature (``inspect.signature(...).bind``),
    before it is called: a factory that dispatches (``mcp-world``'s transports) checks the class it picks.

    Raises:
        SimrlError: an option the factory does not take, or a required one missing (the caller's input).
    """
    signature = _signature(factory)
    if signature is None:  # a callable without a signature (a builtin): the factory checks
        return
    try:
        signature.bind(**options)
    except TypeError as err:
        raise SimrlError(f"environment {env_id!r} cannot be made with options {sorted(options)}: {err}") from None


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    """``inspect.signature(factory)``, once per factory (environments are made at every episode), or None when it
    has none."""
    try:
        key = (factory, getattr(factory, "__signature__", None))
        got = _SIGNATURES.get(key, _SIGNATURES)
    except TypeError:  # an unhashable callable: not remembered
        key, got = None, _SIGNATURES
    if got is _SIGNATURES:
        try:
            got = inspect.signature(factory)
        except (TypeError, ValueError):
            got = None
        if key is not None:
            _SIGNATURES[key] = got
    return got  # type: ignore[return-value]


_SIGNATURES: dict[Any, Any] = {}


def wm_adapter_of(env_spec: EnvSpec) -> WorldModelAdapter | None:
    """What the world-model version of ``env_spec`` takes from it: its own ``wm_adapter``, else the generic
    adapter (tools: the spec's static ``tools`` or those the caller gives; ground truth: the real
    environment itself, :func:`real_truth`); an own adapter without ``tool_list`` gets the static tools.
    With ``world_model`` None: the spec's adapter as it is (its ``tool_list`` None: no world-model version).
    """
    if env_spec.world_model is None:
        return env_spec.wm_adapter  # no world-model version (bfcl: the adapter names its transition domain only)
    if env_spec.wm_adapter is None:
        return WorldModelAdapter(tool_list=_static_tools(env_spec), truth=functools.partial(real_truth, env_spec))
    if env_spec.wm_adapter.tool_list is None:  # an adapter without a tool list: the spec's static tools
        return replace(env_spec.wm_adapter, tool_list=_static_tools(env_spec))
    return env_spec.wm_adapter


def adapter_for(name: str | None) -> WorldModelAdapter:
    """The world-model adapter of a domain or an environment id: that of the first registered environment (by
    id) whose adapter names the domain ``name``, else that of the environment ``name``, else the generic one
    (``WorldModelAdapter()``: generic prompt and observation rules; AgentWorldBench's other domains).
    Case-insensitive."""
    name = (name or "").lower()
    adapters = {k: a for k, s in specs().items() if (a := wm_adapter_of(s)) is not None}
    by_domain = next((a for a in adapters.values() if a.domain == name), None)
    return by_domain or adapters.get(name) or WorldModelAdapter()


def real_truth(env_spec: EnvSpec, world: Path | None, oracle: bool = False) -> Truth:
    """The real environment of ``env_spec`` as an episode's ground truth (:class:`simrl.envs.truth.RealTruth`;
    ``oracle`` changes nothing): the generic adapter's ``truth``, and one a plugin's own adapter may name
    (``truth=functools.partial(real_truth, SPEC)``)."""
    from simrl.envs.truth import RealTruth

    return RealTruth(env_spec, world)


def _static_tools(env_spec: EnvSpec) -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    async def tool_list(world: Path | None, tools: list[dict[str, Any]], server: tuple[Any, Any]) -> list[dict[str, Any]]:
        if tools:
            return list(tools)
        if not env_spec.tools:
            raise SimrlError(f"environment {env_spec.id!r} declares no static tool schemas (EnvSpec.tools): its "
                             "world-model version needs tools=[...] or a wm_adapter with a tool_list")
        return list(env_spec.tools)

    return tool_list


_loaded_plugins: set[str] = set()


def import_plugins(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Import environment plugin modules (each registers its specs), plus those of ``$SIMRL_IMPORT``.

    ``modules`` are added to ``$SIMRL_IMPORT``, so the processes simrl starts (ablate's runs) import them
    too. A module already imported is not imported again.

    Raises:
        SimrlError: a module cannot be imported (the message names it and the error).
    """
    named = [m.strip() for m in os.environ.get(IMPORT_ENV_VAR, "").split(",")] + list(modules)
    if modules:
        os.environ[IMPORT_ENV_VAR] = ",".join(dict.fromkeys(m for m in named if m))
    _import_builtin()  # first: an id a plugin takes from a built-in is the plugin's error, not the built-in's
    for module in dict.fromkeys(m for m in named if m):
        if module in _loaded_plugins:
            continue
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any failure of a user's module is one clear line
            raise SimrlError(f"cannot import environment module {module!r} (--import / ${IMPORT_ENV_VAR}): "
                             f"{type(err).__name__}: {err}") from None
        _loaded_plugins.add(module)


def _load_entry_points() -> None:
    """Load every ``simrl.envs`` entry point, once per process (the installed packages are scanned once)."""
    if ENTRY_POINT_GROUP in _loaded_plugins:
        return
    _loaded_plugins.add(ENTRY_POINT_GROUP)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            if callable(loaded):
                loaded()
        except Exception as err:  # noqa: BLE001 - a broken plugin is named, not a traceback
            raise SimrlError(f"environment plugin {entry.name!r} ({entry.value}, entry-point group "
                             f"{ENTRY_POINT_GROUP}) failed to load: {type(err).__name__}: {err}") from None


def _load_builtin() -> None:
    """Import the built-in environment modules and the plugins so they register themselves (lazily,
    on first use)."""
    _import_builtin()
    _load_entry_points()
    import_plugins()


def _import_builtin() -> None:
    for module in BUILTIN_MODULES:
        if module in sys.modules:  # imported already (import_module would find it too, at some cost: every spec())
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a module not written yet must not hide the others
            if err.name != module:
                raise
