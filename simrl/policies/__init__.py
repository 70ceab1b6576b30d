"""Policies that act in simrl environments: scripted experts and LLM policies.

:func:`make_policy` builds one from a spec string (``expert`` or ``openai:URL[#MODEL]``), and
:func:`episode_tasks` picks the tasks an environment serves; both back ``simrl rollout``.
"""

from __future__ import annotations

from pathlib import Path

from simrl.errors import SimrlError
from simrl.world.schema import Task


def env_task_types() -> dict[str, tuple[str, ...]]:
    """Environment id -> the task types it serves, for every registered environment
    (:attr:`simrl.envs.base.EnvSpec.task_types`; empty: any task of a world, e.g. ``mcp``)."""
    from simrl.envs.base import specs

    return {k: s.task_types for k, s in specs().items()}


def episode_tasks(env_id: str, world: Path | None, split: str, n: int | None = None) -> list[Task]:
    """The tasks of ``split`` that ``env_id`` serves (at most ``n``), in a stable order.

    From the spec's ``load_tasks`` when it has one (``bfcl``: bfcl-eval's data, all ``test``; a plugin's
    own tasks), else from the world folder: tasks of the spec's ``task_types`` (every task when it
    declares none, e.g. ``mcp`` given a world's record server).

    Raises:
        SimrlError: unknown environment, missing ``world``, bad split, or no such tasks.
    """
    from simrl.envs.base import spec as env_spec

    found = env_spec(env_id)  # SimrlError listing the registered ids
    if split not in ("train", "dev", "test"):
        raise SimrlError(f"--split must be train, dev or test (got {split!r})")
    if found.load_tasks is None and world is None:
        raise SimrlError(f"--env {env_id} needs --world DIR (make one with `simrl world generate`)")
    tasks = found.tasks(world, split, n)
    if found.load_tasks is not None:
        return tasks
    kinds = found.task_types
    if not tasks:
        raise SimrlError(f"no {'/'.join(kinds) or 'tasks'}{' tasks' if kinds else ''} in split {split!r} of {world}")
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
    from simrl.envs.base import spec as env_spec
    from simrl.envs.registry import load_entry

    hook = env_spec(env_id).expert
    if hook is None:
        raise SimrlError(f"environment {env_id!r} has no scripted expert; use --policy openai:URL[#MODEL]")
    return load_entry(hook)(world, tasks)
