"""The evaluation set, fixed before a run: tasks the scripted expert solves, and their properties.

:func:`prepare` runs the scripted expert of the environment (:func:`simrl.policies.make_policy`) on
the evaluation tasks with exactly the episode seeds the evaluation will use (trial ``r`` of task ``i``:
``seed + r * len(tasks) + i``, as :func:`simrl.evaluation.evaluate.evaluate_policy` lays them out). A task
the expert fails on any trial within ``max_turns`` is dropped (it would measure the turn limit, not the
policy); as dropping shifts the seeds of the tasks after it, the check is repeated on the kept tasks
until none drops. The expert's trajectories then give each kept task its properties
(:data:`simrl.evaluation.results.Properties`), the same for every arm and seed:

* ``kind``: ``write`` for a records task that changes records (scored on the record state), else ``read``;
* ``pages``: result pages the gold answer needs, ``1 +`` the distinct cursors (or page numbers) the
  expert passed on its first trial;
* ``faults``: operational faults (429 / 5xx / timeout results) the expert's calls met over all trials.
  The record server draws its faults per call index from the episode seed
  (:class:`simrl.records.server.Faults`), so every policy that makes as many calls meets them too;
* ``expressible``: some sequence of candidate actions solves the task at every one of its episode seeds
  (:mod:`simrl.evaluation.expressible`); ``expert_path`` when every action of the scripted expert had a candidate
  (no search needed); when not expressible, ``inexpressible`` says why. A task the candidates cannot
  express stays in the set (it is a bug of candidate generation, reported, never hidden).

The result is cached as JSON (``cache``), so the runs and baselines of an ablation share one check.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simrl.envs.base import Environment
from simrl.evaluation.edge_cases import edge_cases
from simrl.evaluation.expressible import check_tasks
from simrl.rollout import rollout
from simrl.types import Trajectory
from simrl.world.schema import Task

_PAGING = ("cursor", "page")


@dataclass
class Prepared:
    """The kept tasks (in order), their properties by task id, and the ids dropped as unsolvable."""

    tasks: list[Task]
    properties: dict[str, dict[str, str | int | bool]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def task_kind(task: Task) -> str:
    """``write`` for a records task scored on the record state, else ``read``."""
    from simrl.reward.task import is_records_write

    return "write" if is_records_write(task) else "read"


def properties(task: Task, trials: Sequence[Trajectory]) -> dict[str, str | int | bool]:
    """A task's properties from the expert's trajectories of its trials (see the module docstring)."""
    first = trials[0] if trials else None
    cursors = {repr(c.arguments.get(k)) for t in first.turns for c in t.action.tool_calls for k in _PAGING
               if c.arguments.get(k) not in (None, "")} if first is not None else set()
    faults = 0
    for traj in trials:
        for turn in traj.turns:
            one = traj.model_copy(update={"turns": [turn], "info": {}})
            faults += "error" in edge_cases(one)
    return {"kind": task_kind(task), "pages": 1 + len(cursors), "faults": faults}


def _check(tasks: list[Task], env_factory: Callable[[], Environment], expert: object, trials: int,
           max_turns: int, seed: int, concurrency: int) -> list[list[Trajectory]]:
    """Each task's expert trajectories, trial by trial, at the evaluation's episode seeds."""
    async def run() -> list[Trajectory]:
        out: list[Trajectory] = []
        for r in range(trials):
            out += await rollout(env_factory, expert, tasks, max_turns=max_turns, concurrency=concurrency,
                                 seed=seed + r * len(tasks))
        return out

    trajs = asyncio.run(run())
    n = len(tasks)
    return [[trajs[r * n + i] for r in range(trials)] for i in range(n)]


def prepare(tasks: Sequence[Task], env_factory: Callable[[], Environment], *, env_id: str, world: Path,
            trials: int, max_turns: int, seed: int, concurrency: int = 8, cache: Path | None = None) -> Prepared:
    """The evaluation set of ``tasks``: unsolvable ones dropped, the rest with their properties.

    Args:
        tasks: the candidate evaluation tasks, in order.
        env_factory: the REAL environment of the evaluation.
        env_id, world: which scripted expert to run, and the world it reads.
        trials, max_turns, seed: the evaluation's trials, turn limit and base episode seed.
        cache: a JSON file to read the result from, or to write it to.

    Returns:
        a :class:`Prepared`.

    Raises:
        SimrlError: no scripted expert for ``env_id`` (from :func:`simrl.policies.make_policy`).
    """
    from simrl.policies import make_policy

    by_id = {t.task_id: t for t in tasks}
    if cache is not None and cache.is_file():
        data = json.loads(cache.read_text(encoding="utf-8"))
        if set(data["tasks"]) | set(data["dropped"]) == set(by_id) and all(
                "expressible" in p for p in data["properties"].values()):
            return Prepared([by_id[i] for i in data["tasks"]], data["properties"], data["dropped"])
    expert = make_policy("expert", env_id, world, list(tasks))
    kept, dropped = list(tasks), []
    while True:  # each round drops at least one task, so this ends
        runs = _check(kept, env_factory, expert, trials, max_turns, seed, concurrency) if kept else []
        bad = {t.task_id for t, rs in zip(kept, runs) if any(r.status != "success" for r in rs)}
        if not bad:
            break
        dropped += [t.task_id for t in kept if t.task_id in bad]
        kept = [t for t in kept if t.task_id not in bad]
    props = {t.task_id: properties(t, rs) for t, rs in zip(kept, runs)}
    for task_id, v in check_tasks(kept, env_factory, expert, trials=trials, max_turns=max_turns, seed=seed).items():
        props[task_id] |= {"expressible": v.expressible, "expert_path": v.expressible and not v.searched}
        props[task_id] |= {} if v.expressible else {"inexpressible": v.reason}
    out = Prepared(kept, props, dropped)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"tasks": [t.task_id for t in kept], "properties": props, "dropped": dropped},
                                  indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, cache)
    return out
