"""One TRL rollout in a simrl environment: :class:`SimrlEnvironment`, the object TRL's ``environment_factory``
returns (TRL 1.16, ``trl/trainer/grpo_trainer.py``), and how a TRL completion's final answer is read.

TRL pools these objects and calls ``reset(**row)`` before each rollout, then the tool methods
(:class:`simrl.integrations.trl.SimrlTRL` adds them to a subclass, one per tool schema), then hands the
object to the reward functions (``environments=``). Each ``reset`` makes a fresh simrl environment of the
arm and resets it; each tool call is one simrl ``step`` with one call; :meth:`SimrlEnvironment._finish`
gives the final answer as simrl's final action, so the environment scores it, and records the episode as
a :class:`~simrl.types.Trajectory` with :func:`simrl.rollout.finish_trajectory` (the stop conditions of
:func:`simrl.rollout.run_episode`). Exceptions of the environment are recorded as environment failures,
as ``run_episode`` records them, never raised into TRL's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simrl.envs.base import Environment
from simrl.integrations.trl_tools import run_sync
from simrl.policies.openai_policy import history_messages
from simrl.rollout import finish_trajectory
from simrl.types import Action, Observation, Step, ToolCall, Trajectory, Turn

if TYPE_CHECKING:
    from simrl.integrations.trl import SimrlTRL


class SimrlEnvironment:
    """One TRL rollout in a simrl environment (base class: :class:`SimrlTRL` adds the tool methods).

    Every method but ``reset`` starts with ``_``: TRL would offer any other public method as a tool.
    """

    def __init__(self, source: SimrlTRL) -> None:
        self._source = source
        self._env: Environment | None = None
        self._traj: Trajectory | None = None
        self._error: str | None = None  # the reset failed (an environment failure)
        self._over = False  # a step ended the episode, or the tool-call limit was reached
        self._finished: Trajectory | None = None

    def reset(self, **row: Any) -> str | None:
        """Start an episode on the row's task (``task_id``) in a fresh environment of the arm.

        Returns:
            None when the row's prompt already ends with the environment's first observation (rows from
            :meth:`SimrlTRL.dataset`); else that observation's text, which TRL appends to the prompt.

        Raises:
            SimrlError: the row has no ``task_id`` of this world's tasks.
        """
        self._close()
        task = self._source.task(row.get("task_id"))
        self._env, seed = self._source.make_env(), self._source.next_seed()
        self._error, self._over, self._finished = None, False, None
        try:
            initial = run_sync(self._env.reset(task, seed))
        except Exception as err:  # noqa: BLE001 - an environment failure is data (as simrl.rollout records it)
            self._error, initial = f"{type(err).__name__}: {err}", Observation(text="")
        self._traj = Trajectory(task_id=task.task_id, env_id=task_env(self._env), backend=self._env.backend_name,
                                seed=seed, initial=initial)
        return None if initial.text == _last_user_text(row.get("prompt")) else initial.text or None

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call as a simrl step; returns the tool result's text as the policy sees it."""
        traj = self._traj
        if traj is None or self._finished is not None:
            return "Error: no episode: call reset first"
        if self._error is not None:
            return f"environment failure: {self._error}"
        limit = self._source.max_turns
        if limit is not None and len(traj.turns) >= limit:
            self._over = True
        if self._over:
            return "Error: the episode has ended (turn limit or the environment ended it); give your final answer"
        action = Action(tool_calls=[ToolCall(name=name, arguments=arguments, call_id=f"call_{len(traj.turns)}_0")])
        turn = Turn(action=action, step=self._step(action))
        traj.turns.append(turn)
        traj.reward += turn.step.reward
        self._over = turn.step.terminated or turn.step.truncated
        return history_messages([turn])[1]["content"]

    def _step(self, action: Action) -> Step:
        assert self._env is not None
        try:
            return run_sync(self._env.step(action))
        except Exception as err:  # noqa: BLE001 - as simrl.rollout.run_episode records a failing step
            return Step(observation=Observation(text=f"environment failure: {err}"), truncated=True,
                        info={"env_failure": True, "error": f"{type(err).__name__}: {err}"})

    def _finish(self, answer: str | None) -> Trajectory | None:
        """End the episode with the final ``answer`` (None: the rollout gave none), score it, close the
        environment; returns the trajectory (the same one when called again), None before any reset."""
        if self._finished is not None or self._traj is None:
            return self._finished
        traj = self._traj
        if self._error is not None:
            traj.status = "env_failure"
            traj.info.update(stop="env_failure", error=self._error, env_failures=1)
        else:
            if answer is not None and not self._over:
                action = Action.final(answer)
                turn = Turn(action=action, step=self._step(action))
                traj.turns.append(turn)
                traj.reward += turn.step.reward
            finish_trajectory(traj)
        self._finished = traj
        self._close()
        self._source.record(traj)
        return traj

    def _close(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            try:
                run_sync(env.close())
            except Exception:  # noqa: BLE001, S110 - closing a broken environment must not end training
                pass


def task_env(env: Environment) -> str:
    """The environment id recorded in trajectories (the registered id, through wrappers)."""
    return env.env_id or env.unwrapped.env_id


def _last_user_text(prompt: Any) -> str | None:
    """The text of a prompt's last user message (a conversational prompt) or the prompt itself (a string)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        content = prompt[-1].get("content")
        return content if isinstance(content, str) else None
    return None


def final_answer(completion: Any) -> str | None:
    """The final answer of a TRL completion: its last assistant message's text, None when the rollout
    ended on a tool call or tool result (no final answer); a string completion is its own answer."""
    if isinstance(completion, str):
        return completion
    last = completion[-1] if isinstance(completion, list) and completion else None
    if not isinstance(last, dict) or last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    content = last.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


