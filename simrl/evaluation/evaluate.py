"""Held-out evaluation of one policy: ``trials`` episodes on every task, scored (:func:`evaluate_policy`).

A fresh environment per episode (:func:`simrl.rollout.rollout`); the trajectories are scored by
:func:`simrl.evaluation.results.summarize` into an :class:`~simrl.evaluation.results.EvalResult` and written
as ``eval.json`` and ``eval_trajectories.jsonl``. Every evaluation of an experiment starts its episode seeds at
:data:`EVAL_SEED`, so every arm, seed and baseline meets the same episodes (and pre-drawn faults).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from simrl.envs.base import Environment
from simrl.evaluation.results import EVAL_JSON, EVAL_TRAJECTORIES, EvalResult, Properties, summarize
from simrl.rollout import Policy, TrajectoryWriter, rollout
from simrl.types import Trajectory
from simrl.world.schema import Task

EVAL_SEED = 777_777
"""Base episode seed of every evaluation: the same episodes (and pre-drawn faults) for every arm and seed."""


def evaluate_policy(policy: Policy, env_factory: Callable[[], Environment], tasks: Sequence[Task], *,
                    trials: int = 1, max_turns: int = 30, seed: int = 0, out: str | Path | None = None,
                    concurrency: int = 4, label: str = "",
                    on_done: Callable[[Trajectory], None] | None = None,
                    properties: dict[str, Properties] | None = None, dropped: Sequence[str] = ()) -> EvalResult:
    """Run ``trials`` episodes of ``policy`` on each task and score them (synchronous: runs its own event loop).

    Args:
        policy: any :class:`~simrl.rollout.Policy` (set ``greedy`` on a ScorerPolicy beforehand).
        env_factory: makes a fresh (real) environment per episode; closed after it.
        tasks: held-out tasks (``Task.policy_view`` is all the policy sees).
        trials: episodes per task (k of pass@k / avg@k), run one trial after another (policies that
            keep per-task state, like the scripted experts, see one episode of a task at a time). Trial
            ``r`` of task ``i`` gets episode seed ``seed + r * len(tasks) + i`` (seeded faults differ).
        max_turns: turn limit per episode.
        out: a folder: writes ``eval.json`` and ``eval_trajectories.jsonl`` (both replaced).
        concurrency: episodes in flight at once.
        label: recorded in the result. on_done: called with each finished trajectory (progress).
        properties, dropped: task properties and the ids dropped before the run
            (:func:`simrl.evaluation.eval_set.prepare`), recorded in the result.

    Returns:
        the :class:`EvalResult` (also ``out/eval.json`` when ``out`` is given).

    Raises:
        SimrlError: no tasks, ``trials < 1``. Policy exceptions propagate; environment failures are
        recorded in the trajectories, never raised (:func:`simrl.rollout.run_episode`).
    """
    from simrl.errors import SimrlError

    if not tasks:
        raise SimrlError("evaluation needs at least one task")
    if trials < 1:
        raise SimrlError(f"trials must be at least 1, got {trials}")

    async def all_trials() -> list[Trajectory]:  # one trial after another: a task never runs twice at once
        done: list[Trajectory] = []
        for r in range(trials):
            done += await rollout(env_factory, policy, tasks, max_turns=max_turns, concurrency=concurrency,
                                  seed=seed + r * len(tasks), writer=writer, on_done=on_done)
        return done

    writer = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / EVAL_TRAJECTORIES).unlink(missing_ok=True)
        writer = TrajectoryWriter(Path(out) / EVAL_TRAJECTORIES)
    try:
        trajs = asyncio.run(all_trials())
    finally:
        if writer is not None:
            writer.close()
    result = summarize(trajs, tasks, trials, label=label, properties=properties, dropped=dropped)
    if out is not None:
        (Path(out) / EVAL_JSON).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return result


