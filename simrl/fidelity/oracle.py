"""The ``oracle`` predictor of a fidelity evaluation: real episodes replayed on the world's ground truth.

Each episode's real calls are replayed in order through ``WorldModelEnv(env_id, world, "oracle")``
(reset on the episode's task, one step per real call). The oracle's state depends on the actions
only, so the replay is teacher-forced by construction: a write the real agent made is made again
before the later reads. The environments with a ground truth: :func:`simrl.wm.env_truth.oracle_envs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simrl.wm.env_truth import oracle_envs
from simrl.wm.transitions import Transition


def oracle_skip_reason(tr: Transition, world: Path | None, task_ids: set[str],
                       covered: set[str] | None = None) -> str | None:
    """Why the oracle cannot predict ``tr`` (None: it can).

    ``covered``: the environments with a ground truth (:func:`simrl.wm.env_truth.oracle_envs`, read now
    when not given: plugins register after this module is imported).
    """
    covered = covered if covered is not None else set(oracle_envs())
    if tr.env_id not in covered:
        return f"no ground truth for env {tr.env_id or tr.domain!r} (the oracle covers {', '.join(sorted(covered))})"
    if world is None:
        return "no --world given (the oracle needs the world's ground truth)"
    if tr.task_id not in task_ids:
        return f"task {tr.task_id!r} is not in the world {world}"
    return None


async def replay_episode(trs: list[Transition], world: Path, task: Any) -> list[tuple[int, str | None, str | None]]:
    """Replay one episode's real calls on the oracle, up to the last of ``trs`` (all of one episode).

    The calls before each transition come from its history (name and arguments of every earlier call),
    so a sample of an episode's transitions replays correctly.

    Returns:
        ``(turn_idx, predicted text, None)`` for each transition of ``trs``, in turn order, or
        ``(turn_idx, None, reason)`` where its action could not be parsed.
    """
    from simrl.types import Action, ToolCall
    from simrl.wm.env import WorldModelEnv

    last = max(trs, key=lambda t: t.turn_idx)
    wanted = {t.turn_idx for t in trs}
    calls = [(h.name, h.arguments) for h in last.history] + [(last.action_name, last.action_arguments)]
    env = WorldModelEnv(last.env_id or "", world, "oracle")
    out: list[tuple[int, str | None, str | None]] = []
    try:
        await env.reset(task)
        for i, (name, args) in enumerate(calls):
            if name is None:
                if i in wanted:
                    out.append((i, None, "oracle skipped: the action could not be parsed"))
                continue
            step = await env.step(Action(tool_calls=[ToolCall(name=name, arguments=dict(args or {}))]))
            if i in wanted:
                results = step.observation.results
                out.append((i, results[0].content if results else step.observation.text, None))
    finally:
        await env.close()
    return out
