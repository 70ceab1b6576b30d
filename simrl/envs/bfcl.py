"""BFCL v4 multi-turn as a simrl environment, scored by BFCL's own ``multi_turn_checker``.

An episode is one BFCL multi-turn entry (a ``bfcl`` task, see :mod:`simrl.envs.bfcl_data`): the
executable tool classes of bfcl-eval (``GorillaFileSystem``, ``TwitterAPI``, ``MathAPI``,
``MessageAPI``, ``TicketAPI``, ``TradingBot``, ``TravelAPI``, ``VehicleControlAPI``) are loaded with
the entry's ``initial_config``, the policy sees the first user turn and calls tools; a final answer
ends the user turn, and the next observation is the next user turn. After the last turn the episode
terminates and BFCL's checker (``eval_checker/multi_turn_eval/multi_turn_checker.py``) re-executes the
episode's per-turn call lists and the ground truth on fresh instances and compares states and
responses turn by turn: reward 1.0 when it accepts, else 0.0.

Calls run through bfcl-eval's ``execute_multi_turn_func_call`` (``multi_turn_utils.py``), as BFCL's
inference does. That helper keeps instances in its module's globals under
``{model_name}_{test_id}_{class}_instance``; every episode here uses its own ``model_name`` (a counter
plus random hex), so episodes never share state, and the episode's globals are deleted when it ends,
on the next ``reset`` and on ``close``. Before anything is evaluated, a call's name must be a public
method of the episode's instances and its arguments JSON values (:func:`~simrl.envs.bfcl_data.format_call`).
One BFCL quirk is kept: the helper prefixes ``name(`` patterns even inside string arguments.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from simrl.envs.base import Environment
from simrl.envs.bfcl_data import (
    INSTALL_HINT,
    first_turns,
    format_call,
    load_bfcl_tasks,
    require_bfcl,
    tool_schemas,
)
from simrl.envs.prompts import BFCL_TEMPLATE
from simrl.envs.registry import EnvSpec, WorldModelAdapter, register
from simrl.errors import SimrlError
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.world.schema import BFCLGold, Task

__all__ = ["BFCLEnv", "INSTALL_HINT", "first_turns", "load_bfcl_tasks", "probe_task"]

BFCL_MAX_STEPS_PER_TURN = 20
"""bfcl-eval ``MAXIMUM_STEP_LIMIT`` (constants/default_prompts.py): a turn with more steps is force-quit."""
_EPISODES = itertools.count()
_ERROR_PREFIX = "Error during execution:"


def probe_task() -> Task:
    """A one-turn ``bfcl`` task (the first turn of ``multi_turn_base_0``) for the environment checker."""
    return first_turns(load_bfcl_tasks(limit=1)[0], 1)


def _utils() -> Any:
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    return multi_turn_utils


def _drop_instances(model_name: str) -> None:
    """Delete the tool instances bfcl-eval cached in its globals for ``model_name`` (all its suffixes)."""
    prefix = re.sub(r"[-./:]", "_", model_name) + "_"
    store = vars(_utils())
    for name in list(store):  # a snapshot: other episodes' threads may add keys meanwhile
        if name.startswith(prefix):
            store.pop(name, None)


def _is_error(content: str) -> bool:
    """A BFCL tool result is an error: an exception the helper caught, or a ``{"error": ...}`` dict."""
    if content.startswith(_ERROR_PREFIX):
        return True
    if content.startswith("{"):
        try:
            return "error" in json.loads(content)
        except (ValueError, TypeError):
            return False
    return False


def _json_safe(value: Any, limit: int = 20_000) -> Any:
    text = json.dumps(value, default=str)
    return json.loads(text) if len(text) <= limit else text[:limit] + "...(truncated)"


@dataclass
class _Episode:
    """One episode's state: its gold, bfcl-eval instance key, position and recorded call strings."""

    gold: BFCLGold
    key: str
    functions: frozenset[str]
    turn: int = 0
    steps_in_turn: int = 0
    actions: int = 0
    calls: list[list[list[str]]] = field(default_factory=list)  # turn -> step -> call strings

    @property
    def long_context(self) -> bool:
        category = self.gold.entry_id.rsplit("_", 1)[0]
        return "long_context" in category or "composite" in category


class BFCLEnv(Environment):
    """BFCL v4 multi-turn entries with bfcl-eval's executable tools (``env_id = "bfcl"``).

    ``reset(task)`` takes a ``bfcl`` task (:func:`~simrl.envs.bfcl_data.load_bfcl_tasks`), loads fresh
    instances of its tool classes and returns the first user turn with the tool schemas (OpenAI
    format; ``miss_func`` hold-outs left out). ``step``:

    * tool calls run in order on the episode's instances; one :class:`ToolResult` each, with bfcl-eval's
      text (dicts as JSON); unknown functions, bad arguments and tool exceptions are ``is_error`` results;
    * a final answer ends the user turn: with turns left, the observation is the next user message
      (``info["user_turn"]``; ``tools`` set when hold-out functions arrive), reward 0; after the last
      turn the episode terminates with reward 1.0 / 0.0 from ``multi_turn_checker`` and its verdict in
      ``info["bfcl"]`` (``valid``, ``error_type``, ``error_message``, ``details``);
    * more than ``max_steps_per_turn`` tool steps in one turn (BFCL's force-quit) truncates the episode
      (reward 0); so does ``max_turns`` actions in all (tool steps plus answers), through
      :func:`~simrl.envs.base.make`'s ``TimeLimit``.

    The tools are deterministic (their randomness is seeded by the entry), so ``seed`` changes nothing.

    Args:
        max_steps_per_turn: tool-call steps allowed per user turn (BFCL: 20).

    Raises:
        SimrlError: bfcl-eval is not installed (the message has the install line), or a bad limit.
    """

    env_id = "bfcl"

    def __init__(self, max_steps_per_turn: int = BFCL_MAX_STEPS_PER_TURN) -> None:
        require_bfcl()
        if max_steps_per_turn < 1:
            raise SimrlError(f"max_steps_per_turn must be >= 1, got {max_steps_per_turn}")
        self.max_steps_per_turn = max_steps_per_turn
        self._ep: _Episode | None = None

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode on a ``bfcl`` task: the first user turn and the tool schemas.

        Raises:
            SimrlError: not a ``bfcl`` task, or an unknown tool class.
        """
        if not isinstance(task.gold, BFCLGold):
            raise SimrlError(f"task {task.task_id} is a {task.type} task; env `bfcl` runs bfcl tasks "
                             "(simrl.envs.bfcl.load_bfcl_tasks)")
        self._end_episode()
        gold = task.gold
        tools = tool_schemas(gold, 0)  # SimrlError on an unknown tool class, before anything runs
        key = f"simrl_bfcl_{next(_EPISODES)}_{uuid.uuid4().hex[:8]}"
        ep = _Episode(gold=gold, key=key, functions=frozenset(), calls=[[] for _ in gold.turns])
        _, instances = await asyncio.to_thread(self._execute, ep, [])
        ep.functions = frozenset(name for inst in instances.values()
                                 for name, _ in inspect.getmembers(inst, predicate=inspect.ismethod)
                                 if not name.startswith("_"))
        self._ep = ep
        return Observation(text=gold.turns[0], tools=tools)

    async def step(self, action: Action) -> Step:
        """Run the action's tool calls, or end the user turn on a final answer (scoring after the last)."""
        ep = self._ep
        assert ep is not None, "step before reset (make() wraps it in OrderEnforcing)"
        ep.actions += 1
        if action.is_final:
            step = await self._end_turn(ep)
        elif action.tool_calls:
            results = await asyncio.to_thread(self._run_calls, ep, action.tool_calls)
            ep.steps_in_turn += 1
            step = Step(observation=Observation(text="\n\n".join(r.content for r in results), results=results),
                        info={"user_turn": ep.turn})
            if ep.steps_in_turn > self.max_steps_per_turn:
                step = self._truncate(ep, step, "max_steps_per_turn")
        else:
            step = Step(observation=Observation(text="Error: the action has neither tool calls nor an answer"),
                        info={"user_turn": ep.turn})
        return step

    async def close(self) -> None:
        """End the environment and drop the episode's tool instances (a second call does nothing)."""
        self._end_episode()

    # -- internals ------------------------------------------------------------------------------------
    @staticmethod
    def _execute(ep: _Episode, calls: list[str]) -> tuple[list[str], dict[str, Any]]:
        """Run call strings with bfcl-eval's helper on the episode's instances: (results, instances)."""
        return _utils().execute_multi_turn_func_call(
            calls, ep.gold.initial_config, ep.gold.involved_classes, ep.key, ep.gold.entry_id,
            long_context=ep.long_context, is_evaL_run=False)

    def _run_calls(self, ep: _Episode, calls: list[ToolCall]) -> list[ToolResult]:
        """Validate and run one step's calls; invalid ones become error results and are not executed."""
        strings: dict[int, str] = {}
        errors: dict[int, str] = {}
        for i, call in enumerate(calls):
            try:
                strings[i] = format_call(call, ep.functions)
            except (ValueError, RecursionError) as err:
                errors[i] = f"Error: {err}"
        outputs = dict(zip(strings, self._execute(ep, list(strings.values()))[0])) if strings else {}
        if strings:
            ep.calls[ep.turn].append(list(strings.values()))
        results = []
        for i, call in enumerate(calls):
            text = errors[i] if i in errors else str(outputs[i])
            results.append(ToolResult(name=call.name, content=text, is_error=i in errors or _is_error(text),
                                      call_id=call.call_id))
        return results

    async def _end_turn(self, ep: _Episode) -> Step:
        ep.turn += 1
        ep.steps_in_turn = 0
        if ep.turn < len(ep.gold.turns):
            new = list(ep.gold.missed_function.get(str(ep.turn), []))
            tools = tool_schemas(ep.gold, ep.turn) if new else []
            return Step(observation=Observation(text=ep.gold.turns[ep.turn], tools=tools),
                        info={"user_turn": ep.turn} | ({"tools_added": new} if new else {}))
        verdict = await asyncio.to_thread(self._check, ep)
        self._end_episode()
        return Step(observation=Observation(text="Conversation finished."), reward=1.0 if verdict["valid"] else 0.0,
                    terminated=True, info={"success": bool(verdict["valid"]), "bfcl": verdict,
                                           "turns": len(ep.gold.turns), "actions": ep.actions})

    def _check(self, ep: _Episode) -> dict[str, Any]:
        """BFCL's ``multi_turn_checker`` on the episode's per-turn calls; a JSON-safe verdict."""
        from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

        entry = {"id": ep.gold.entry_id, "initial_config": ep.gold.initial_config,
                 "involved_classes": ep.gold.involved_classes}
        try:
            raw = multi_turn_checker(ep.calls, ep.gold.ground_truth, entry, ep.gold.category, f"{ep.key}_check")
        except Exception as err:  # noqa: BLE001 - a checker crash is a failed check, reported
            raw = {"valid": False, "error_type": "simrl:checker_exception", "error_message": f"{type(err).__name__}: {err}"}
        finally:
            _drop_instances(ep.key)
        details = {k: v for k, v in (raw.get("details") or {}).items() if k in ("differences", "missing_items")}
        return {"valid": bool(raw.get("valid")), "error_type": raw.get("error_type"),
                "error_message": raw.get("error_message"), "details": _json_safe(details)}

    def _truncate(self, ep: _Episode, step: Step, reason: str) -> Step:
        self._end_episode()
        return step.model_copy(update={"truncated": True, "info": step.info | {"truncated_reason": reason,
                                                                             "success": False}})

    def _end_episode(self) -> None:
        if self._ep is not None:
            _drop_instances(self._ep.key)


def _load_tasks(world: Any, split: str, n: int | None) -> list[Task]:
    """BFCL's tasks (bfcl-eval's data; all of them ``test``: ``world`` and ``split`` are not used)."""
    from simrl.envs.bfcl_data import load_bfcl_tasks

    return load_bfcl_tasks(limit=n)


register(EnvSpec(
    id="bfcl", factory=BFCLEnv,
    description="BFCL v4 multi-turn executable tools (bfcl-eval), BFCL's checker as the reward",
    task_types=("bfcl",), score_final=None, load_tasks=_load_tasks, probe_task=probe_task,
    world_model=None,  # BFCL's state lives in its Python classes; no world-model version (transition data only)
    wm_adapter=WorldModelAdapter(domain="bfcl", prompt_template=BFCL_TEMPLATE),
    expert="simrl.policies.bfcl_expert:bfcl_expert"))
