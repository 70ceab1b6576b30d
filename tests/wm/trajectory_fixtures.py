"""Real expert trajectories for the world-model tests: search, mcp-world and bfcl, recorded for real.

The scripted experts of :mod:`simrl.policies` act through the real tools (``search`` over a world's
corpus, the world's record server called in process for ``mcp-world``, bfcl-eval's executable tool
classes for ``bfcl``) and :func:`simrl.rollout.rollout` writes the trajectories JSONL exactly as
``simrl rollout`` does. A few episodes per environment take about a second in all.

Use the plain function, or the session fixture (import it into a test module)::

    from tests.wm import trajectory_fixtures as fx

    real_trajectories = fx.real_trajectories  # the session fixture, in this module's namespace

    def test_x(real_trajectories):
        path = real_trajectories["search"]  # also "mcp-world", "bfcl", and "world" (the world folder)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

ENV_IDS = ("search", "mcp-world", "bfcl")


def write_trajectories(env_id: str, out: Path, world: Path | None = None, n: int = 2, seed: int = 0,
                       split: str = "dev", transport: str = "inprocess") -> Path:
    """Record ``n`` expert episodes of ``env_id`` (real tools) into the JSONL file ``out``; returns ``out``.

    ``mcp-world`` uses the in-process transport by default (the same record server, no subprocess);
    ``transport="stdio"`` runs the server as ``simrl rollout`` does (a subprocess per episode, ~1 s).
    """
    from simrl.envs.base import make
    from simrl.policies import episode_tasks, make_policy
    from simrl.rollout import TrajectoryWriter, rollout

    tasks = episode_tasks(env_id, world if env_id != "bfcl" else None, split, n)
    policy = make_policy("expert", env_id, world, tasks)
    options: dict = {}
    if env_id in ("search", "mcp-world"):
        options["world"] = world
    if env_id == "mcp-world":
        options["transport"] = transport
    writer = TrajectoryWriter(out)
    try:
        asyncio.run(rollout(lambda: make(env_id, **options), policy, tasks, max_turns=60, concurrency=2,
                            seed=seed, writer=writer))
    finally:
        writer.close()
    return out


def expert_trajectories(folder: Path, world: Path, n: int = 2) -> dict[str, Path]:
    """Trajectory files for every environment of :data:`ENV_IDS` in ``folder`` (``<env>.jsonl``)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {env_id: write_trajectories(env_id, folder / f"{env_id}.jsonl", world, n) for env_id in ENV_IDS}


@pytest.fixture(scope="session")
def real_trajectories(tmp_path_factory, tiny_world) -> dict[str, Path]:
    """``{"search": path, "mcp-world": path, "bfcl": path, "world": tiny world folder}``."""
    paths = expert_trajectories(tmp_path_factory.mktemp("trajectories"), tiny_world)
    return {**paths, "world": tiny_world}
