"""Rollouts: one readable episode loop, a batched async runner, and a trajectory writer.

``run_episode`` is an explicit loop with named stop conditions (docs/design.md §5): the policy gave a final
answer (``terminated``), the environment cut the episode (``truncated``, e.g. an environment failure),
or the turn limit was reached. ``rollout`` runs many episodes with bounded concurrency and appends
each finished trajectory to a JSONL file as soon as it ends (flushed), so a crash or a kill never loses
finished trajectories.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from simrl import stopping
from simrl.envs.base import Environment
from simrl.types import Action, Observation, Step, Trajectory, Turn
from simrl.world.schema import Task

EPISODE_SEED: contextvars.ContextVar[int | None] = contextvars.ContextVar("simrl_episode_seed", default=None)
"""The seed of the episode being run in this asyncio task (set by :func:`run_episode`; None outside one).

A sampling policy draws from a generator derived from it and the turn, so its choices do not depend on
how concurrent episodes happen to interleave: the same seeds give the same trajectories."""


class Policy(Protocol):
    """A policy: given the task prompt's observation and the turns so far, choose the next action.

    ``task_view`` is ``Task.policy_view()`` (id, type, prompt): never the gold or the simulation facts.
    """

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action: ...


async def run_episode(env: Environment, policy: Policy, task: Task, *, max_turns: int = 20,
                      seed: int = 0, env_id: str = "", backend: str = "real") -> Trajectory:
    """Run one episode of ``policy`` on ``task`` in ``env`` and return its trajectory.

    Stop conditions: a terminating step (final answer), a truncating step (the environment failed or
    cut the episode), or ``max_turns`` actions. An exception from the environment (in ``reset`` or
    ``step``) is recorded as an ``env_failure`` trajectory instead of propagating, so it never ends a
    batch; an exception from the policy propagates (it is a bug of the policy).
    """
    token = EPISODE_SEED.set(seed)
    try:
        return await _episode(env, policy, task, max_turns=max_turns, seed=seed, env_id=env_id or env.env_id,
                              backend=backend)
    finally:
        EPISODE_SEED.reset(token)


async def _episode(env: Environment, policy: Policy, task: Task, *, max_turns: int, seed: int, env_id: str,
                   backend: str) -> Trajectory:
    try:
        initial = await env.reset(task, seed=seed)
    except Exception as err:  # noqa: BLE001 - environment failures are data, not crashes
        return Trajectory(task_id=task.task_id, env_id=env_id, backend=backend, seed=seed,
                          initial=Observation(text=""), status="env_failure",
                          info={"stop": "env_failure", "error": f"{type(err).__name__}: {err}", "env_failures": 1})
    traj = Trajectory(task_id=task.task_id, env_id=env_id, backend=backend, seed=seed, initial=initial)
    view = task.policy_view()
    while len(traj.turns) < max_turns:
        action = await policy.act(view, initial, traj.turns)
        try:
            step = await env.step(action)
        except Exception as err:  # noqa: BLE001 - environment failures are data, not crashes
            step = Step(observation=Observation(text=f"environment failure: {err}"), truncated=True,
                        info={"env_failure": True, "error": f"{type(err).__name__}: {err}"})
        traj.turns.append(Turn(action=action, step=step))
        traj.reward += step.reward
        if step.terminated or step.truncated:
            break
    return finish_trajectory(traj)


def finish_trajectory(traj: Trajectory) -> Trajectory:
    """Set ``traj``'s status, stop reason and summary info from its last step (the named stop conditions of
    :func:`run_episode`: no final or truncating step -> ``truncated``; an environment failure that ended it
    -> ``env_failure``; else ``success`` / ``failure`` by the last step's ``success``), and count its
    environment failures, unparsed world-model answers, leakage-guard removals and perturbations met.
    Returns ``traj`` itself."""
    last = traj.turns[-1].step if traj.turns else None
    if last is None or not (last.terminated or last.truncated):
        traj.status = "truncated"
        traj.info["stop"] = "max_turns"
    elif any(t.step.info.get("env_failure") for t in traj.turns) and not last.terminated:
        traj.status = "env_failure"
        traj.info["stop"] = "env_failure"
    else:
        traj.status = "success" if last.info.get("success") else "failure"
        traj.info["stop"] = "final_answer" if last.terminated else "truncated"
    if last is not None:
        traj.info.update({k: v for k, v in last.info.items() if k in ("success", "metrics", "error")})
    traj.info["env_failures"] = sum(bool(t.step.info.get("env_failure")) for t in traj.turns)
    # a world model's answer without a <predicted_observation> block: shown raw, counted here (simrl.wm.env)
    traj.info["wm_unparsed"] = sum(bool(t.step.info.get("unparsed")) for t in traj.turns)
    leaks: dict[str, int] = {}  # lines the leakage guard removed, by kind (simrl.wm.leak_guard)
    for t in traj.turns:
        for key, n in t.step.info.items():
            if key.startswith("leak_") and isinstance(n, int):
                leaks[key[5:]] = leaks.get(key[5:], 0) + n
    if leaks:
        traj.info["leaks"] = leaks
    met = [p for t in traj.turns for p in t.step.info.get("perturbations", [])]  # from simrl.perturb.PerturbedEnv
    traj.info["perturbations"] = met
    traj.info["perturbation_types"] = sorted({p["type"] for p in met})
    return traj


class TrajectoryWriter:
    """Appends trajectories to a JSONL file, one line each, flushed as each one finishes.

    A file whose last line is torn (a writer killed mid-line: no final newline) gets that line ended
    first, so the next record starts a line of its own instead of being glued onto the torn one;
    ``torn_line`` is then its 1-based number (None otherwise). Readers skip such a line and report
    it (:func:`simrl.wm.transitions.load_transitions`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")
        self.torn_line = _torn_last_line(self.path)
        if self.torn_line is not None:
            self._f.write("\n")
            self._f.flush()

    def write(self, traj: Trajectory) -> None:
        """Append one trajectory and flush it to disk."""
        self._f.write(traj.model_dump_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._f.closed:
            self._f.close()


def jsonl_objects(path: Path, skipped: Counter, *, torn: str, expected: str) -> Iterator[tuple[int, Any]]:
    """``(line number, JSON value)`` of each non-blank line of a JSONL file such as :class:`TrajectoryWriter`
    writes, read line by line (1-based numbers).

    A torn line (it starts like an object but is not JSON: a writer killed mid-line) is skipped and counted in
    ``skipped`` under ``"{torn} {file name}:{line}"``.

    Raises:
        SimrlError: the file cannot be read or is not UTF-8; a line that is neither JSON nor torn (the message
            names the file and line and says ``expected`` what).
    """
    from simrl.errors import SimrlError

    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except ValueError as err:
                    if line.lstrip().startswith("{"):
                        skipped[f"{torn} {path.name}:{lineno}"] += 1
                        continue
                    raise SimrlError(f"{path}:{lineno}: not JSON ({err}); expected {expected}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SimrlError(f"cannot read {path}: {err}") from None


def _torn_last_line(path: Path) -> int | None:
    """The 1-based number of ``path``'s last line when it has no final newline (torn), else None."""
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return None
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) + 1


async def rollout(make_env: Callable[[], Environment], policy: Policy, tasks: Iterable[Task], *,
                  max_turns: int = 20, concurrency: int = 8, seed: int = 0,
                  writer: TrajectoryWriter | None = None,
                  on_done: Callable[[Trajectory], None] | None = None) -> list[Trajectory]:
    """Run one episode per task with at most ``concurrency`` in flight; returns trajectories in task order.

    Each episode gets a fresh environment from ``make_env`` (closed after the episode) and seed
    ``seed + index``. Finished trajectories go to ``writer`` (if given) and ``on_done`` as they end.
    """
    gate = asyncio.Semaphore(max(1, concurrency))
    tasks = list(tasks)

    async def one(i: int, task: Task) -> Trajectory:
        async with gate:
            stopping.check()  # a worker thread's rollout ends within one episode of a SIGTERM
            env = make_env()
            try:
                traj = await run_episode(env, policy, task, max_turns=max_turns, seed=seed + i,
                                         backend=env.backend_name)
            finally:
                await env.close()
            if writer:
                writer.write(traj)
            if on_done:
                on_done(traj)
            return traj

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks))))
