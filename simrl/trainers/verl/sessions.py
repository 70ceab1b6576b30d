"""Per-trajectory environments behind the verl tool adapters: made on a trajectory's first tool call,
stepped by its later calls, closed when the trajectory ends.

verl's ``ToolAgentLoop`` creates and releases a tool instance around every single call, so nothing of
a tool instance outlives one call. What identifies a trajectory is the ``AgentData`` object the loop
passes to ``execute(..., agent_data=...)``: one per trajectory, alive exactly while the loop runs it
(the loop's ``request_id`` is not unique under ``rollout.full_determinism``). A
:class:`SessionRegistry` (one per tool config and worker process, shared by the config's tools) keys
:class:`Session` objects by it:

* first call: the task is found by id in the world (``tools_kwargs[...].create_kwargs.task_id``), the
  arm's environment is made with :func:`simrl.experiment.runs.arm_env_factory` at the current curriculum
  progress and ``reset(task)``; every call: ``step(Action.call(tool, **arguments))`` on it, one call
  at a time per trajectory (an ``asyncio.Lock``), the observation text returned;
* end: a ``weakref.finalize`` on the ``AgentData`` closes the environment as soon as the loop drops it
  (CPython frees it when ``ToolAgentLoop.run`` returns); beyond ``max_sessions`` open environments
  the oldest is closed; at interpreter exit every open environment is closed (a stdio MCP server
  also exits by itself when its parent's pipe closes).

What the reward needs travels in ``agent_data.extra_fields["extras"]["simrl"]`` (see :data:`EXTRAS`).
``extras`` is one of the keys verl's ``AgentLoopWorker._postprocess`` always creates: each extra-field
key becomes a batch column and ``DataProto.concat`` needs the same keys in every worker's output, so
a new top-level key would break a batch in which some worker saw no tool call at all.

Curriculum progress: verl 0.9.1's vLLM and TRT-LLM servers stamp every generation with the trainer's
``global_steps`` (the weights version, set by ``update_weights(global_steps)``: the number of updates
done), and ``ToolAgentLoop`` copies the first generation's stamp into ``agent_data.extra_fields``.
Progress is ``global_steps / steps``. Where no stamp is there (verl's SGLang server sets none), it is
estimated from the trajectories this process has started: ``started * agent_workers / (steps *
trajectories_per_step)`` (assumes the rollout is spread evenly over the workers; validation rollouts
count too), and ``progress_source`` says which.

Failures: an environment that cannot be made or reset, or a ``step`` that raises, gives an error
observation (the trajectory goes on, the episode is over, ``env_failure`` is set); nothing raises into
the rollout.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from simrl.trainers.verl.tools import ToolSettings
from simrl.types import Action, ToolCall

EXTRAS = ("task_id", "task_type", "arm", "env_id", "backend", "episode_seed", "progress", "progress_source",
          "tool_calls", "tool_errors", "env_failure", "error", "perturbations", "episode_over",
          "last_observation_tail", "state")
"""Keys of ``extra_fields["extras"]["simrl"]``: ``state`` is the records-state score of a write task after
the last call (``{"reward", "success", "metrics"}``; None otherwise); ``last_observation_tail`` the end
of the last observation text (where the policy's final answer starts in the decoded response)."""

_PENDING: set[asyncio.Task] = set()  # close tasks in flight (kept referenced until done)


@functools.lru_cache(maxsize=8)
def _tasks(world: str) -> dict[str, Any]:
    from simrl.world.io import load_tasks

    return {t.task_id: t for t in load_tasks(world)}


async def _quiet_close(env: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(env.close(), 30)


def _close_blocking(env: Any) -> None:
    """Close ``env`` on a fresh event loop in a helper thread (no loop of ours is running)."""
    thread = threading.Thread(target=asyncio.run, args=(_quiet_close(env),), daemon=True)
    thread.start()
    thread.join(35)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 20) // 2
    return f"{text[:half]}\n...(cut)...\n{text[-half:]}"


def records_state(env: Any) -> dict[str, Any] | None:
    """The records-state score of the environment's current episode (write tasks), or None.

    Asks the environment's own scorer (``score_final``, forwarded by wrappers: the record store it
    holds, scored by :func:`simrl.reward.task.score_state`); None for an environment that scores only
    at its final step.
    """
    try:
        reward, info = env.score_final("")
    except NotImplementedError:
        return None
    except Exception as err:  # noqa: BLE001 - a failed read is reported, not raised
        return {"reward": 0.0, "success": False, "metrics": {}, "error": f"{type(err).__name__}: {err}"}
    return {"reward": float(reward), "success": bool(info.get("success", False)), "metrics": info.get("metrics", {})}


class Session:
    """One trajectory's environment episode (made and reset on the first call)."""

    def __init__(self, settings: ToolSettings, task: Any, extras: dict[str, Any]) -> None:
        self.settings, self.task, self.extras = settings, task, extras
        self.lock = asyncio.Lock()
        self.env: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = self.closed = self.released = False

    def _fail(self, why: str) -> str:
        self.extras.update(env_failure=True, error=why, episode_over=True)
        return f"Error: environment failure ({why}); give your final answer without a tool call."

    async def _start(self) -> str | None:
        """Make and reset the environment; an error text if that fails."""
        from simrl.experiment.recipe import Arm, EnvRef, RealEnv
        from simrl.experiment.runs import arm_env_factory

        s = self.settings
        recipe_like = SimpleNamespace(env=EnvRef(id=s.env_id), real=RealEnv(**s.real))
        try:
            make = arm_env_factory(recipe_like, Arm(**s.arm), Path(s.world), progress=self.extras["progress"],
                                   seed=s.seed)
            self.env, self.loop = make(), asyncio.get_running_loop()
            await self.env.reset(self.task, seed=self.extras["episode_seed"])
        except Exception as err:  # noqa: BLE001 - environment failures are data, not crashes
            await self.aclose()
            return self._fail(f"could not start the {s.env_id} environment: {type(err).__name__}: {err}")
        return None

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Run one tool call in this episode; the observation text (or an error text). Never raises."""
        async with self.lock:
            if not self.started:
                self.started = True
                if (error := await self._start()) is not None:
                    return error
            if self.closed or self.extras["episode_over"] or self.env is None:
                why = self.extras["error"] or "the episode has ended"
                return f"Error: no more tool calls ({why}); give your final answer without a tool call."
            self.extras["tool_calls"] += 1
            try:
                step = await self.env.step(Action(tool_calls=[ToolCall(name=tool, arguments=arguments)]))
            except Exception as err:  # noqa: BLE001
                await self.aclose()
                return self._fail(f"{type(err).__name__}: {err}")
            info = step.info
            self.extras["tool_errors"] += sum(r.is_error for r in step.observation.results)
            self.extras["perturbations"] += [p.get("type") for p in info.get("perturbations", [])]
            if getattr(self.task.gold, "kind", None) == "write":
                self.extras["state"] = records_state(self.env)
            text = _cut(step.observation.text, self.settings.max_observation_chars)
            self.extras["last_observation_tail"] = text.strip()[-80:]
            if info.get("env_failure"):
                self.extras.update(env_failure=True, error=str(info.get("error") or info.get("failures") or "env failure"))
            if step.truncated or step.terminated:
                self.extras["episode_over"] = True
                await self.aclose()
            return text

    async def aclose(self) -> None:
        """Close the environment (idempotent)."""
        self.closed = True
        env, self.env = self.env, None
        if env is not None:
            await _quiet_close(env)

    def close_soon(self) -> None:
        """Close the environment from synchronous code (a finalizer, eviction, exit), on its own loop
        when that loop runs, else on a fresh loop in a helper thread."""
        self.closed = True
        env, self.env = self.env, None
        if env is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.loop
        if loop is not None and running is loop:
            task = loop.create_task(_quiet_close(env))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)
        elif loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(_quiet_close(env), loop)
        else:
            _close_blocking(env)


class SessionRegistry:
    """The open sessions of one tool config in this process, keyed by the trajectory's ``AgentData``."""

    def __init__(self, settings: ToolSettings) -> None:
        self.settings = settings
        self.live: OrderedDict[int, Session] = OrderedDict()
        self.started = 0  # trajectories started in this process
        self.closed = 0  # sessions closed (trajectory ended, evicted, exit)

    def _progress(self, agent_data: Any) -> tuple[float, str]:
        s = self.settings
        step = (getattr(agent_data, "extra_fields", None) or {}).get("global_steps")
        if isinstance(step, int | float) and not isinstance(step, bool) and step >= 0:
            return min(1.0, float(step) / s.steps), "global_steps"
        expected = s.steps * s.trajectories_per_step
        return min(1.0, self.started * s.agent_workers / expected), "trajectory_count"

    def session(self, agent_data: Any, task_id: str) -> Session:
        """The session of ``agent_data``'s trajectory, started (not yet reset) on its first call.

        Raises:
            KeyError: ``task_id`` is not a task of the world.
        """
        from simrl.experiment.recipe import Arm

        key = id(agent_data)
        found = self.live.get(key)
        if found is not None:
            self.live.move_to_end(key)
            return found
        task = _tasks(self.settings.world)[task_id]
        progress, source = self._progress(agent_data)
        extras = dict.fromkeys(EXTRAS)
        extras.update(task_id=task.task_id, task_type=task.type, arm=self.settings.arm_name,
                      env_id=self.settings.env_id, backend=Arm(**self.settings.arm).world_model(),
                      episode_seed=self.settings.seed * 1_000_003 + self.started, progress=progress,
                      progress_source=source, tool_calls=0, tool_errors=0, env_failure=False,
                      perturbations=[], episode_over=False, last_observation_tail="")
        fields = agent_data.extra_fields
        if not isinstance(fields.get("extras"), dict):
            fields["extras"] = {}
        fields["extras"]["simrl"] = extras
        session = Session(self.settings, task, extras)
        self.live[key] = session
        self.started += 1
        weakref.finalize(agent_data, self._finished, key, session)
        while len(self.live) > self.settings.max_sessions:
            self._release(self.live.popitem(last=False)[1])
        return session

    def _release(self, session: Session) -> None:
        """Close ``session`` (once) from synchronous code."""
        if not session.released:
            session.released = True
            self.closed += 1
            session.close_soon()

    def _finished(self, key: int, session: Session) -> None:
        if self.live.get(key) is session:
            del self.live[key]
        self._release(session)

    async def aclose(self) -> None:
        """Close every open session."""
        while self.live:
            _, session = self.live.popitem(last=False)
            if not session.released:
                session.released = True
                self.closed += 1
                await session.aclose()

    def close_all_now(self) -> None:
        """Close every open session from synchronous code (interpreter exit)."""
        while self.live:
            self._release(self.live.popitem(last=False)[1])


_REGISTRIES: dict[str, SessionRegistry] = {}  # tool config (JSON) -> its registry; one per worker process
_REGISTRIES_LOCK = threading.Lock()


def registry(settings: ToolSettings) -> SessionRegistry:
    """The registry shared by every tool of ``settings``' config in this process."""
    key = settings.model_dump_json()
    with _REGISTRIES_LOCK:
        if key not in _REGISTRIES:
            _REGISTRIES[key] = SessionRegistry(settings)
        return _REGISTRIES[key]


@atexit.register
def _close_everything() -> None:
    for reg in list(_REGISTRIES.values()):
        reg.close_all_now()
