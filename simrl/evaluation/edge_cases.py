"""Edge cases an episode met, read off its own text: a next page, an operational fault, a recorded perturbation.

:func:`edge_cases` names what one trajectory ran into and :func:`split_by_edge_case` scores the episodes of
each (:class:`EdgeCaseScore`). What a policy meets depends on its own actions, so these describe a policy;
they never define a comparison between arms (the task-property subsets of :mod:`simrl.evaluation.results`,
fixed before the run, do). :data:`FAULT` is also what the evaluation set counts as a pre-drawn fault
(:mod:`simrl.evaluation.eval_set`) and the training skill counters as a fault met (:mod:`simrl.experiment.skills`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel

from simrl.records.page import CURSOR_KEYS, PAGE_TOKEN_KEYS
from simrl.types import Trajectory

NONE = "none"
"""Edge-case name of episodes that met no edge case."""

_CURSOR = re.compile(rf'"(?:{"|".join(CURSOR_KEYS + PAGE_TOKEN_KEYS)})"\s*:\s*(?:"[^"\s]+"|\d+)')
_CONTINUATION = re.compile(r"more results not shown|\[output cut short|\[Showing results \d+-\d+ of \d+|"
                           r"\[Part \d+ of \d+|\"page\": \d+ for the next", re.IGNORECASE)
FAULT = re.compile(r"\b(?:429|5\d\d)\s+[A-Z][a-z]|\b(?:HTTP|status|code)\s*:?\s*(?:429|5\d\d)\b|"
                    r"(?i:time[ds]?[ -]?out|too many requests|rate limit)")
"""An operational fault: a 429 / 5xx status with its reason phrase (``503 Service Unavailable``) or after
``HTTP`` / ``status``, a timeout, a rate limit."""


def edge_cases(traj: Trajectory) -> set[str]:
    """The edge cases an episode met, read from its observations and its recorded perturbations.

    * ``pagination``: a tool result with a non-null next cursor (``next_cursor`` or a drifted name)
      or a continuation notice ("more results not shown", "[output cut short", ``"page": N``).
    * ``error``: an ``is_error`` tool result naming a 429, a 5xx status or a timeout.
    * every type in ``traj.info["perturbation_types"]`` (set by :func:`simrl.rollout.rollout` for
      :class:`~simrl.perturb.PerturbedEnv` episodes), e.g. ``rate_limit``, ``forced_pagination``.

    Args:
        traj: a finished trajectory.

    Returns:
        The names met (empty set: none).

    >>> from simrl.types import Action, Observation, Step, ToolResult, Turn
    >>> page = ToolResult(name="search_records", content='{"records": [], "next_cursor": "abc", "total": 9}')
    >>> busy = ToolResult(name="get_record", content="429 Too Many Requests: retry after 2 s", is_error=True)
    >>> turns = [Turn(action=Action.call("x"), step=Step(observation=Observation(text="", results=[r])))
    ...          for r in (page, busy)]
    >>> sorted(edge_cases(Trajectory(task_id="t", env_id="e", initial=Observation(text="?"), turns=turns,
    ...                              info={"perturbation_types": ["rate_limit"]})))
    ['error', 'pagination', 'rate_limit']
    """
    met: set[str] = set(traj.info.get("perturbation_types") or [])
    for turn in traj.turns:
        obs = turn.step.observation
        texts = [(r.content, r.is_error) for r in obs.results] or [(obs.text, False)]
        for text, is_error in texts:
            if is_error:
                if FAULT.search(text):
                    met.add("error")
            elif _CURSOR.search(text) or _CONTINUATION.search(text):
                met.add("pagination")
    return met


class EdgeCaseScore(BaseModel):
    """Episodes that met one edge case: how many, their success rate and mean turns."""

    episodes: int
    success: float
    mean_turns: float


def mean(values: Sequence[float]) -> float:
    """The mean of ``values`` (0.0 for none)."""
    return sum(values) / len(values) if values else 0.0


def split_by_edge_case(trajs: Sequence[Trajectory]) -> dict[str, EdgeCaseScore]:
    """Success and mean turns per edge case met (an episode counts once per case), names sorted, ``none`` last."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajs:
        for name in edge_cases(t) or {NONE}:
            groups.setdefault(name, []).append(t)
    order = sorted(k for k in groups if k != NONE) + ([NONE] if NONE in groups else [])
    return {k: EdgeCaseScore(episodes=len(groups[k]), success=mean([t.status == "success" for t in groups[k]]),
                             mean_turns=mean([len(t.turns) for t in groups[k]])) for k in order}
