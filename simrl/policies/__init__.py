"""Policies that act in simrl environments: scripted experts and LLM policies.

:func:`make_policy` builds one from a spec string (``expert`` or ``openai:URL[#MODEL]``), and
:func:`episode_tasks` picks the tasks an environment serves; both back ``simrl rollout``.
"""

from __future__ import annotations

from pathlib import Path

from simrl.errors import SimrlError
from simrl.world.schema import Task

ENV_TASK_TYPES = {"search": ("qa", "table"), "mcp-world": ("records",), "bfcl": ("bfcl",)}
"""Environment id -> the task types it serves."""


def episode_tasks(env_id: str, world: Path | None, split: str, n: int | None = None) -> list[Task]:
    """The tasks of ``split`` that ``env_id`` serves (at most ``n``), in a stable order.

    ``search`` and ``mcp-world`` read them from a world folder; ``bfcl`` from bfcl-eval's data
    (BFCL tasks are all ``test``; ``split`` is ignored for them).

    Raises:
        SimrlError: unknown environment, missing ``world``, bad split, or no such tasks.
    """
    if env_id not in ENV_TASK_TYPES:
        raise SimrlError(f"rollout supports --env {', '.join(ENV_TASK_TYPES)} (got {env_id!r})")
    if split not in ("train", "dev", "test"):
        raise SimrlError(f"--split must be train, dev or test (got {split!r})")
    if env_id == "bfcl":
        from simrl.envs.bfcl_data import load_bfcl_tasks

        return load_bfcl_tasks(limit=n)
    if world is None:
        raise SimrlError(f"--env {env_id} needs --world DIR (make one with `simrl world generate`)")
    from simrl.world.io import load_tasks

    kinds = ENV_TASK_TYPES[env_id]
    tasks = [t for t in load_tasks(world, split=split) if t.type in kinds][:n]
    if not tasks:
        raise SimrlError(f"no {'/'.join(kinds)} tasks in split {split!r} of {world}")
    return tasks


def make_policy(spec: str, env_id: str, world: Path | None, tasks: list[Task]):
    """Build a policy from its spec.

    Args:
        spec: ``expert`` (the scripted expert of ``env_id``: solves tasks through the real tools) or
            ``openai:URL[#MODEL]`` (any OpenAI-compatible endpoint with tool calling).
        env_id: the environment the policy will act in.
        world: the world folder (the experts read entity names from it).
        tasks: the episode tasks (the experts look each episode's task up by id).

    Returns:
        a :class:`~simrl.rollout.Policy` (``async act(task_view, initial, turns) -> Action``):
        :class:`~simrl.policies.openai_policy.OpenAIPolicy`, or the expert of ``env_id``
        (``SearchExpert``, ``RecordsExpert`` or ``BFCLExpert``).

    Raises:
        SimrlError: an unknown spec.
    """
    if spec.startswith("openai:"):
        from simrl.policies.openai_policy import parse_policy_spec

        return parse_policy_spec(spec)
    if spec != "expert":
        raise SimrlError(f"unknown --policy {spec!r}; use `expert` or `openai:URL[#MODEL]`")
    if env_id == "search":
        from simrl.policies.expert import SearchExpert
        from simrl.world import WorldIndex, load_graph

        return SearchExpert(WorldIndex(load_graph(world)), tasks)
    if env_id == "mcp-world":
        from simrl.policies.records_expert import RecordsExpert

        return RecordsExpert(world, tasks)
    from simrl.policies.bfcl_expert import BFCLExpert

    return BFCLExpert(tasks)
