"""Can the candidate actions solve each evaluation task? A search over candidates in the REAL environment.

A policy that chooses among :func:`simrl.policies.candidates.tagged_candidates` can only solve a task if some
sequence of candidates does. :func:`check_task` looks for one, guided by the scripted expert of the
environment (:func:`simrl.policies.make_policy`), in a fresh real environment per try, at the evaluation's
episode seeds (so the same pre-drawn faults):

1. At each turn the expert is asked for its action given the episode so far (the candidates' turns, not its
   own); the action is projected onto the turn's candidates (:func:`simrl.policies.candidates.project`) and the
   candidate is played.
2. An expert action without a candidate (a search query the expert writes from the world's names) is played
   in a *shadow* copy of the episode, and the expert is told its result; its next action becomes the goal of a
   breadth-first search over candidate calls (at most :data:`MAX_DEPTH` calls, none played before but a retry
   after an error, :data:`MAX_NODES` episodes replayed, never past ``max_turns``) for a state where that action
   has a candidate; failing that, a *focused* one over the calls of the other tools only, up to :data:`MAX_FOCUSED`
   (the searches that can list the page the expert fetches next, :data:`MAX_FOCUSED_NODES` replays). The search plays the
   candidates it found, then that candidate. When none is found, the goal is played in the shadow too (a retry
   after a fault, a second query), up to :data:`MAX_SHADOW` calls, and the expert's following action is the goal.
3. When the expert answers, every candidate answer of the turn is tried (the expert's own answer text, a table
   for instance, need not be one); if none is right, a breadth-first search over candidate calls looks for a
   state where one is. Success is the real environment's own verdict (``info["success"]``).

A task is expressible when every one of its episode seeds is; otherwise the verdict says at which turn and
why (the expert's action that no candidate sequence reached, or no right answer among the candidates).
Environments are deterministic given the episode seed and the actions (faults are drawn per call index), so a
state is reached again by replaying its actions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simrl import stopping
from simrl.envs.base import Environment
from simrl.evaluation.results import SUBSETS, TaskResult
from simrl.policies.candidates import action_key, candidate_actions, project
from simrl.rollout import Policy
from simrl.types import Action, Observation, Step, Turn
from simrl.world.schema import Task

MAX_DEPTH = 2
"""Most candidate calls a search inserts before the expert's next action has a candidate (or an answer is right)."""
MAX_NODES = 400
"""Most replayed episodes of one search (a bound on the check's time)."""
MAX_FOCUSED = 4
"""Most candidate calls a *focused* search inserts: one that tries only calls of tools other than the goal's (those
that can list the goal's value: searches before a page is fetched), after the breadth-first search failed."""
MAX_FOCUSED_NODES = 1200
"""Most replayed episodes of one focused search."""
MAX_SHADOW = 3
"""Most expert calls without a candidate played in a row in a shadow episode before a search must find its next step."""


@dataclass
class Verdict:
    """Whether some sequence of candidates solves a task's episode.

    Attributes:
        task_id, seed: the episode.
        expressible: a sequence of candidates reached success in the real environment.
        searched: the sequence needed a search (some expert action had no candidate).
        turns: the sequence's length (the episode's turns). reason: why not (empty when expressible).
        path: the candidates played (tool names with argument values, or ``answer: ...``).
    """

    task_id: str
    seed: int
    expressible: bool
    searched: bool = False
    turns: int = 0
    reason: str = ""
    path: list[str] = field(default_factory=list)


def describe(action: Action) -> str:
    """A short readable form of an action: ``tool(k=v, ...)`` or ``answer: text`` (cut to 80 characters)."""
    if action.is_final:
        return "answer: " + (action.answer or "")[:80].replace("\n", " / ")
    return "; ".join(f"{c.name}({', '.join(f'{k}={v!r}'[:60] for k, v in c.arguments.items())})"
                     for c in action.tool_calls)


class _Episode:
    """Replays action sequences of one task and seed in fresh real environments."""

    def __init__(self, factory: Callable[[], Environment], task: Task, seed: int) -> None:
        self.factory, self.task, self.seed = factory, task, seed
        self.view = task.policy_view()
        self.replays = 0

    async def play(self, actions: Sequence[Action]) -> tuple[Observation, list[Turn]]:
        """The initial observation and the turns of ``actions`` played from a reset (stops at an episode's end)."""
        self.replays += 1
        env = self.factory()
        try:
            initial = await env.reset(self.task, seed=self.seed)
            turns: list[Turn] = []
            for action in actions:
                try:
                    step = await env.step(action)
                except Exception as err:  # noqa: BLE001 - an environment failure ends the episode, as in rollout
                    step = Step(observation=Observation(text=f"environment failure: {err}"), truncated=True)
                turns.append(Turn(action=action, step=step))
                if step.terminated or step.truncated:
                    break
            return initial, turns
        finally:
            await env.close()

    async def wins(self, actions: Sequence[Action]) -> bool:
        """True when ``actions`` end the episode with success."""
        _, turns = await self.play(actions)
        return bool(turns) and len(turns) == len(actions) and turns[-1].step.terminated \
            and bool(turns[-1].step.info.get("success"))


def _ended(turns: list[Turn]) -> bool:
    return bool(turns) and (turns[-1].step.terminated or turns[-1].step.truncated)


async def _right_answer(ep: _Episode, path: list[Action], initial: Observation, turns: list[Turn],
                        first: Action | None) -> Action | None:
    """A candidate answer of this state that succeeds (``first``, the expert's projected answer, tried first)."""
    answers = [a for a in candidate_actions(ep.view, initial, turns) if a.is_final]
    if first is not None:
        answers = [first] + [a for a in answers if a != first]
    for answer in answers:
        if await ep.wins(path + [answer]):
            return answer
    return None


def _new_calls(cands: list[Action], played: list[Action], turns: list[Turn]) -> list[Action]:
    """The candidate calls worth trying next: none played before, except a retry of a call that just failed."""
    failed = bool(turns) and any(r.is_error for r in turns[-1].step.observation.results)
    done = {action_key(a) for a in (played[:-1] if failed else played)}
    return [c for c in cands if not c.is_final and action_key(c) not in done]


async def _search(ep: _Episode, path: list[Action], goal: Action | None, room: int, depth: int = MAX_DEPTH,
                  nodes: int = MAX_NODES, keep: Callable[[Action], bool] | None = None) -> list[Action] | None:
    """Breadth-first over candidate calls from ``path`` (those ``keep`` accepts): the calls then the action that reach
    ``goal``'s candidate (``goal`` None or final: a right candidate answer), within ``min(room, depth + 1)`` actions
    and ``nodes`` replays."""
    frontier: list[list[Action]] = [[]]
    budget = nodes
    for level in range(min(room, depth + 1)):
        nxt: list[list[Action]] = []
        for extra in frontier:
            if budget <= 0:
                return None
            budget -= 1
            initial, turns = await ep.play(path + extra)
            if _ended(turns):
                continue
            cands = candidate_actions(ep.view, initial, turns)
            if goal is None or goal.is_final:
                answer = await _right_answer(ep, path + extra, initial, turns, None)
                if answer is not None:
                    return extra + [answer]
            elif (i := project(goal, cands)) is not None:
                return extra + [cands[i]]
            if level + 1 < min(room, depth + 1):
                nxt += [extra + [c] for c in _new_calls(cands, path + extra, turns) if keep is None or keep(c)]
        frontier = nxt
    return None


async def _reach(ep: _Episode, path: list[Action], goal: Action | None, room: int) -> list[Action] | None:
    """:func:`_search`, then, for a call goal, a focused search: up to :data:`MAX_FOCUSED` calls of the other tools."""
    found = await _search(ep, path, goal, room)
    if found is None and goal is not None and not goal.is_final and goal.tool_calls:
        tool = goal.tool_calls[0].name
        found = await _search(ep, path, goal, room, MAX_FOCUSED, MAX_FOCUSED_NODES,
                              keep=lambda c: all(call.name != tool for call in c.tool_calls))
    return found


async def _shadow(ep: _Episode, expert: Policy, path: list[Action], initial: Observation, turns: list[Turn],
                  want: Action, max_turns: int) -> tuple[list[Action] | None, Action | None]:
    """``(candidates to play, the expert's goal)``: the expert's calls from ``want`` on are played in a shadow
    episode (at most :data:`MAX_SHADOW`, e.g. a retry after a fault) until a search finds one of its next steps."""
    extra, goal = [want], None
    while len(extra) <= MAX_SHADOW:
        _, shadow = await ep.play(path + extra)
        if len(shadow) < len(path) + len(extra) or _ended(shadow):
            return None, None
        goal = await expert.act(ep.view, initial, turns + shadow[len(path):])
        found = await _reach(ep, path, goal, max_turns - len(path))
        if found is not None or goal.is_final:
            return found, goal
        extra.append(goal)
    return None, goal


async def check_episode(factory: Callable[[], Environment], task: Task, expert: Policy, *, max_turns: int,
                        seed: int) -> Verdict:
    """Search for a sequence of candidates that solves ``task`` at episode ``seed`` (see the module docstring).

    Args:
        factory: makes a fresh REAL environment (one per replay; closed after it).
        task: the evaluation task. expert: the environment's scripted expert (keys its episodes by task id).
        max_turns: the evaluation's turn limit; seed: the episode seed.

    Returns:
        a :class:`Verdict`.
    """
    ep = _Episode(factory, task, seed)
    path: list[Action] = []
    searched = False
    initial, turns = await ep.play(path)

    def verdict(ok: bool, reason: str = "") -> Verdict:
        return Verdict(task.task_id, seed, ok, searched, len(path), reason, [describe(a) for a in path])

    while len(path) < max_turns:
        cands = candidate_actions(ep.view, initial, turns)
        want = await expert.act(ep.view, initial, turns)
        if want.is_final:
            i = project(want, cands)
            answer = await _right_answer(ep, path, initial, turns, cands[i] if i is not None else None)
            if answer is not None:
                path.append(answer)
                return verdict(True)
            found = await _search(ep, path, None, max_turns - len(path))
            if found is None:
                return verdict(False, f"turn {len(path) + 1}: no candidate answer is right after the expert's "
                                      f"reads, nor within {MAX_DEPTH} more candidate calls (expert: {describe(want)})")
            searched = True
            path += found
            return verdict(True)
        if (i := project(want, cands)) is not None:
            path.append(cands[i])
        else:  # the expert's call has no candidate: its result (shadow episode) tells the expert its next step
            searched = True
            found, goal = await _shadow(ep, expert, path, initial, turns, want, max_turns)
            if found is None:
                return verdict(False, f"turn {len(path) + 1}: the expert's {describe(want)} has no candidate, and "
                                      f"no {MAX_DEPTH} candidate calls (nor {MAX_FOCUSED} of the other tools) lead to its next step "
                                      f"{describe(goal) if goal is not None else '(the episode ended)'}")
            path += found
            if found[-1].is_final:
                return verdict(True)
        initial, turns = await ep.play(path)
        if _ended(turns):
            ok = turns[-1].step.terminated and bool(turns[-1].step.info.get("success"))
            return verdict(ok, "" if ok else f"turn {len(path)}: the episode ended without success")
    return verdict(False, f"no candidate sequence found within max_turns {max_turns}")


def check_tasks(tasks: Sequence[Task], factory: Callable[[], Environment], expert: Policy, *, trials: int,
                max_turns: int, seed: int) -> dict[str, Verdict]:
    """Task id -> the verdict of its first episode that is not expressible, else of its last (all expressible).

    Episode seeds are those of :func:`simrl.evaluation.evaluate.evaluate_policy`: trial ``r`` of task ``i``
    gets ``seed + r * len(tasks) + i``. Synchronous (runs its own event loop), one episode at a time.
    """
    async def run() -> dict[str, Verdict]:
        out: dict[str, Verdict] = {}
        for i, task in enumerate(tasks):
            for r in range(trials):
                stopping.check()  # runs in a worker thread during training: ends within one episode of a SIGTERM
                v = await check_episode(factory, task, expert, max_turns=max_turns, seed=seed + r * len(tasks) + i)
                out[task.task_id] = v
                if not v.expressible:
                    break
        return out

    return asyncio.run(run())


def summary(per_task: Sequence[TaskResult]) -> dict[str, Any]:
    """How many evaluation tasks the candidates can express, overall and per subset of
    :data:`simrl.evaluation.results.SUBSETS`, from the ``expressible`` task property.

    Returns:
        ``{"subsets": {"all" | SUBSET: {"tasks": n, "expressible": k, "expert_path": e}}, "not": [{"task_id",
        "why"}]}`` (``expert_path``: tasks where every action of the expert had a candidate, no search needed);
        ``{}`` when no task was checked (an evaluation from before the check).
    """
    checked = [t for t in per_task if "expressible" in t.properties]
    if not checked:
        return {}
    groups = {"all": checked} | {name: [t for t in checked if member(t.properties)] for name, member in SUBSETS.items()}
    return {"subsets": {name: {"tasks": len(ts), "expressible": sum(bool(t.properties["expressible"]) for t in ts),
                               "expert_path": sum(bool(t.properties.get("expert_path")) for t in ts)}
                        for name, ts in groups.items() if ts},
            "not": [{"task_id": t.task_id, "why": str(t.properties.get("inexpressible", ""))}
                    for t in checked if not t.properties["expressible"]]}
