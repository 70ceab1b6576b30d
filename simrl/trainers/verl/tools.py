"""simrl environments as verl tools: the tool config YAML of an arm, and what verl must be told.

verl 0.9.1's ``ToolAgentLoop`` (``verl/experimental/agent_loop/tool_agent_loop.py``) loads the tools
of ``actor_rollout_ref.rollout.multi_turn.tool_config_path`` once per agent-loop worker
(``verl.tools.tool_registry.initialize_tools_from_config``: ``class_name`` imported in the Ray worker,
``tool_cls(config=..., tool_schema=...)``) and, for every tool call of a trajectory, runs
``create(create_kwargs=tools_kwargs[name]["create_kwargs"])`` -> ``execute(instance_id, arguments,
agent_data=...)`` -> ``release(instance_id)``. Nothing else of the trajectory reaches a tool.

One generic adapter class, :class:`simrl.trainers.verl.adapter.SimrlTool`, is instantiated once per tool
schema of the environment (``search``: ``web_search``, ``web_extractor``; ``mcp-world``: the record
server's tools). The schemas are read from the arm's own environment kind by resetting the REAL
environment on a task (:func:`tool_schemas`); a world-model environment offers the same tools.

Every tool entry carries the same ``config`` (:class:`ToolSettings`): the world folder, the
environment id and real options, the arm (its environment, backend, schedule, mode), the training
length (for curriculum progress) and the seed. That config is the only thing that differs between
arms: the datasets, the reward and every other verl setting are shared (docs/design.md §2). Paths in it
are absolute; the world folder must be readable at that path on every Ray node (a shared file
system, or the same path copied to each node).

Layout written by :func:`write_tool_config` (``out_dir/tools-<arm>.yaml``)::

    tools:
    - class_name: simrl.trainers.verl.adapter.SimrlTool
      config: {type: native, world: /abs/world, env_id: mcp-world, arm_name: real, arm: {...}, ...}
      tool_schema: {type: function, function: {name: find_by_name, description: ..., parameters: {...}}}
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simrl.errors import SimrlError

TOOL_CLASS = "simrl.trainers.verl.adapter.SimrlTool"
"""``class_name`` of every tool entry (importable in Ray workers: simrl must be installed there)."""

REWARD_FILE = str(Path(__file__).resolve().with_name("reward.py"))

_WORKERS_KEY = "actor_rollout_ref.rollout.agent.num_workers"
_VERL_AGENT_WORKERS = 8  # verl 0.9.1's default of rollout.agent.num_workers


def required_overrides(reward_file: str = REWARD_FILE) -> list[str]:
    """:data:`REQUIRED_OVERRIDES` with the reward function at ``reward_file`` (quoted for Hydra: an
    install path may hold a comma or parentheses, which Hydra would otherwise parse as a sweep or a call)."""
    from simrl.trainers.verl.config import hydra_value

    return ["data.return_raw_chat=True",
            "actor_rollout_ref.rollout.multi_turn.enable=True",
            "actor_rollout_ref.rollout.multi_turn.format=hermes",
            "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=8192",
            "actor_rollout_ref.rollout.multi_turn.tool_response_truncate_side=middle",
            "actor_rollout_ref.rollout.agent.default_agent_loop=tool_agent",
            f"reward.custom_reward_function.path={hydra_value(reward_file)}",
            "reward.custom_reward_function.name=compute_score"]


REQUIRED_OVERRIDES: list[str] = required_overrides()
"""Hydra overrides the adapters need (part of every verl launch; part B appends them).

Why each: the agent loop reads the chat messages from ``raw_prompt`` (``return_raw_chat``); tool calls
are parsed as hermes ``<tool_call>`` JSON (the Qwen2.5/Qwen3 template); tool observations are kept up
to 8192 characters (verl's default 256 would cut a search page; the adapter itself cuts an
observation at ``ToolSettings.max_observation_chars``, 6000 by default, so verl never needs to);
``tool_agent`` is the loop of every row (the datasets also name it per row); the reward is
:func:`simrl.trainers.verl.reward.compute_score`. Per arm and recipe, part B also sets
``actor_rollout_ref.rollout.multi_turn.tool_config_path`` (:func:`write_tool_config`'s file; verl's
``data.tool_config_path`` defaults to it, so its prompt-length filter counts the tool schemas),
``...multi_turn.max_assistant_turns`` (``trainer.verl.max_assistant_turns`` or ``budget.max_turns``)
and ``trainer.total_training_steps`` (= ``budget.steps``, the ``steps`` the curriculum progress is
measured against). ``max_parallel_calls`` may stay at verl's default 1: calls of one trajectory share
one environment and the adapter runs them one at a time anyway.
"""


class ToolSettings(BaseModel):
    """The ``config`` of every tool entry of one arm: everything a Ray worker needs to make the arm's
    environment (no recipe file is read on the workers)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: str = Field(default="native", description="verl's tool type (native: a BaseTool subclass).")
    world: str = Field(description="Absolute path of the world folder (tasks, corpus, records).")
    env_id: str = Field(description="Environment id (search or mcp-world).")
    real: dict[str, Any] = Field(default_factory=dict, description="The recipe's `real` options (RealEnv).")
    arm_name: str = Field(description="The arm's name (reported in the trajectory's extra fields).")
    arm: dict[str, Any] = Field(description="The arm (simrl.experiment.recipe.Arm as JSON).")
    steps: int = Field(default=1, ge=1, description="Training steps: progress = global step / steps.")
    trajectories_per_step: int = Field(default=1, ge=1, description="batch x group_size: trajectories per "
                                                                    "step, for the fallback progress estimate.")
    agent_workers: int = Field(default=_VERL_AGENT_WORKERS, ge=1, description="verl agent-loop workers "
                               "(rollout.agent.num_workers), for the fallback progress estimate.")
    seed: int = Field(default=0, ge=0, description="Seed mixed into every episode's seed.")
    max_sessions: int = Field(default=1024, ge=1, description="Open environments per worker process at most "
                                                              "(the oldest is closed beyond).")
    max_observation_chars: int = Field(default=6000, ge=200, description="Longest observation text returned "
                                                                          "(the middle is cut beyond).")


def normalize_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function schema in the shape verl's ``OpenAIFunctionToolSchema`` validates.

    verl 0.9.1 requires ``type`` on every property (``str | list[str]``) and keeps only ``type``,
    ``description`` and ``enum``; MCP tool schemas write optional fields as ``anyOf`` of types. Such a
    property becomes ``type: [t1, t2, ...]``; a property with no type at all becomes ``string``.

    >>> normalize_schema({"type": "function", "function": {"name": "f", "parameters": {"type": "object",
    ...     "properties": {"cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}})["function"]
    {'name': 'f', 'description': '', 'parameters': {'type': 'object', 'properties': {'cursor': {'type': ['string', 'null']}}, 'required': []}}
    """
    fn = schema.get("function", schema)
    params = dict(fn.get("parameters") or {})
    props = {}
    for name, prop in (params.get("properties") or {}).items():
        prop = dict(prop)
        kind = prop.get("type")
        if kind is None:
            kinds = [p.get("type") for p in prop.get("anyOf", prop.get("oneOf", [])) if isinstance(p, dict)]
            kinds = [k for k in kinds if isinstance(k, str)]
            kind = kinds[0] if len(kinds) == 1 else kinds or "string"
        out = {"type": kind}
        if prop.get("description"):
            out["description"] = str(prop["description"])
        if isinstance(prop.get("enum"), list):
            out["enum"] = prop["enum"]
        props[name] = out
    return {"type": "function", "function": {
        "name": fn["name"], "description": fn.get("description") or "",
        "parameters": {"type": "object", "properties": props, "required": list(params.get("required") or [])}}}


def tool_schemas(recipe: Any, world: Path) -> list[dict[str, Any]]:
    """The environment's tool schemas (OpenAI function format, as the environment offers them).

    Read from the recipe's real environment reset on the first task of the recipe's task types
    (``Observation.tools``); world-model arms offer the same tools. ``mcp-world`` is read in process
    (``transport: inprocess``: the same server object as ``simrl serve mcp``, so the same schemas,
    without starting a server subprocess).

    Raises:
        SimrlError: the world has no such task, or the environment cannot start.
    """
    from simrl.experiment.runs import real_env_factory, world_tasks

    task = world_tasks(recipe, Path(world), None)[0]
    from simrl.envs.base import spec

    if "transport" in spec(recipe.env.id).options:  # a record server: read it in process
        recipe = recipe.model_copy(update={"real": recipe.real.model_copy(update={"transport": "inprocess"})})

    async def read() -> list[dict[str, Any]]:
        env = real_env_factory(recipe, Path(world))()
        try:
            return list((await env.reset(task, seed=0)).tools)
        finally:
            await env.close()

    tools = asyncio.run(read())
    if not tools:
        raise SimrlError(f"environment {recipe.env.id} offered no tools on task {task.task_id}")
    return tools


def tool_settings(recipe: Any, arm: str, world: Path, seed: int | None = None) -> ToolSettings:
    """The :class:`ToolSettings` of ``arm`` (a name of ``recipe.all_arms()``) for training seed ``seed``
    (None: the recipe's first seed).

    Raises:
        SpecError: no such arm.
    """
    chosen = recipe.arm(arm)
    return ToolSettings(world=str(Path(world).resolve()), env_id=recipe.env.id,
                        real=recipe.real.model_dump(mode="json"), arm_name=arm,
                        arm=chosen.model_dump(mode="json"), steps=recipe.budget.steps,
                        trajectories_per_step=recipe.budget.batch * recipe.budget.group_size,
                        agent_workers=agent_workers(recipe.trainer.verl.overrides),
                        seed=recipe.seeds[0] if seed is None else seed)


def agent_workers(overrides: list[str]) -> int:
    """verl's agent-loop worker count as ``overrides`` set it (the last ``...rollout.agent.num_workers=N``),
    else verl's default 8.

    >>> agent_workers(["trainer.nnodes=2", "actor_rollout_ref.rollout.agent.num_workers=1"])
    1
    """
    found = [item.split("=", 1)[1].strip() for item in overrides if item.split("=", 1)[0].strip().lstrip("+") ==
             _WORKERS_KEY]
    return int(found[-1]) if found and found[-1].isdigit() and int(found[-1]) > 0 else _VERL_AGENT_WORKERS


def write_tool_config(recipe: Any, arm: str, world: Path, out_dir: Path, *, seed: int | None = None) -> Path:
    """Write ``out_dir/tools-<arm>.yaml``: one verl tool entry per environment tool, each a
    :class:`~simrl.trainers.verl.adapter.SimrlTool` running ``arm``'s environment (see the module docstring).

    Args:
        recipe: a loaded :class:`~simrl.experiment.recipe.Recipe` (paths resolved).
        arm: an arm name of ``recipe.all_arms()`` (grid arms included).
        world: the training world folder.
        out_dir: where to write (created).
        seed: the run's training seed (episode and perturbation draws); None: the recipe's first seed.

    Returns:
        The file's path.

    Raises:
        SpecError: no such arm. SimrlError: the environment offers no tools or cannot start.
    """
    import yaml

    settings = tool_settings(recipe, arm, world, seed)
    entries = [{"class_name": TOOL_CLASS, "config": settings.model_dump(mode="json"),  # a copy each: no YAML anchors
                "tool_schema": normalize_schema(s)} for s in tool_schemas(recipe, world)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tools-{arm}.yaml"
    header = (f"# verl tool config of arm {arm!r} of recipe {recipe.name!r} (written by simrl; "
              "simrl.trainers.verl.tools). Only this file differs between arms.\n")
    path.write_text(header + yaml.safe_dump({"tools": entries}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
