"""Skill counters read off trajectories: was a cursor followed, was a failed call retried, did it recover.

The skills an ablation's arms differ in (:mod:`simrl.evaluation.results`' ``multi_page`` and ``faulted``
subsets) are multi-step: seeing a continuation cursor and passing it back; meeting an operational fault (429,
5xx, timeout) and calling again. :func:`skill_counts` counts, per episode, each step of them, read generically
from the observations and actions (no environment knowledge):

* ``cursor_offered``: a successful result holds a non-null top-level field whose name says cursor, next page or
  page token (``next_cursor``, ``nextCursor``, ``next_page_token``) — the value to pass back;
* ``cursor_followed``: the next action passes that value as an argument of a call;
* ``fault_met``: an error result names a 429 / 5xx status or a timeout (:data:`simrl.evaluation.edge_cases.FAULT`);
* ``fault_retried``: the next action makes the failed call again (same tool and arguments);
* ``fault_recovered``: a later turn makes that call with a successful result.

:func:`skill_rates` turns the counts of a step's episodes into the rates logged per training step
(``skill/...`` in ``metrics.jsonl`` and the trackers): the share of episodes offered a cursor, the share of those
that followed one, and so on, plus the success rate of the episodes that met each edge case. These are
descriptions of what each arm's policy did in its own training environment, not comparisons between arms
(which use the held-out subsets fixed before the run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simrl.evaluation.edge_cases import FAULT
from simrl.policies.candidates import action_key
from simrl.policies.features import tokens, top_keys
from simrl.types import Action, Trajectory

SKILLS = ("cursor_offered", "cursor_followed", "fault_met", "fault_retried", "fault_recovered")
"""The per-episode skill flags of :func:`skill_counts`, in the order a skill unfolds."""
SUBSET_SITUATIONS = {"multi_page": "cursor_offered", "faulted": "fault_met"}
"""Evaluation subset (:data:`simrl.evaluation.results.SUBSETS`) -> the skill counter that says a training episode
met the situation the subset tests (a cursor to follow, a fault to recover from)."""
_CURSOR_WORDS = ({"cursor"}, {"next", "page"}, {"page", "token"}, {"continuation"})


def cursor_values(text: str) -> list[Any]:
    """The non-null cursor-like top-level values of a JSON result (empty for other text).

    >>> cursor_values('{"records": [], "next_cursor": "abc", "total": 9}'), cursor_values('{"nextCursor": null}')
    (['abc'], [])
    """
    out = []
    for key, value in top_keys(text).items():
        words = tokens(key)
        if value not in (None, "", False) and isinstance(value, str | int) and any(w <= words for w in _CURSOR_WORDS):
            out.append(value)
    return out


def _passes(action: Action, value: Any) -> bool:
    return any(value in c.arguments.values() for c in action.tool_calls)


def skill_counts(traj: Trajectory) -> dict[str, bool]:
    """Which steps of each skill one episode took (:data:`SKILLS`; see the module docstring)."""
    out = dict.fromkeys(SKILLS, False)
    turns = traj.turns
    for t, turn in enumerate(turns):
        nxt = turns[t + 1].action if t + 1 < len(turns) else None
        for r in turn.step.observation.results:
            if not r.is_error:
                for value in cursor_values(r.content):
                    out["cursor_offered"] = True
                    out["cursor_followed"] |= nxt is not None and _passes(nxt, value)
            elif FAULT.search(r.content):
                out["fault_met"] = True
                failed = next((c for c in turn.action.tool_calls if c.name == r.name), None)
                if failed is None:
                    continue
                key = action_key(Action(tool_calls=[failed]))
                same = [u for u in turns[t + 1:] if any(action_key(Action(tool_calls=[c])) == key
                                                        for c in u.action.tool_calls)]
                out["fault_retried"] |= bool(same) and same[0] is turns[t + 1]
                out["fault_recovered"] |= any(not x.is_error for u in same for x in u.step.observation.results
                                              if x.name == failed.name)
    return out


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def skill_rates(trajs: Sequence[Trajectory]) -> dict[str, float | None]:
    """Per-step skill rates over episodes (None where the denominator is 0).

    ``cursor_offered`` / ``fault_met``: shares of all episodes; ``cursor_followed``: of the episodes offered a
    cursor; ``fault_retried`` and ``fault_recovered``: of the episodes that met a fault;
    ``success_cursor`` / ``success_fault``: success rates of the episodes offered a cursor / that met a fault.
    Environment failures are left out (they carry no signal).
    """
    valid = [t for t in trajs if t.status != "env_failure"]
    counts = [skill_counts(t) for t in valid]
    offered = [c["cursor_offered"] for c in counts]
    met = [c["fault_met"] for c in counts]

    def among(flag: str, within: list[bool]) -> float | None:
        return _rate(sum(c[flag] for c, w in zip(counts, within) if w), sum(within))

    def success(within: list[bool]) -> float | None:
        return _rate(sum(t.status == "success" for t, w in zip(valid, within) if w), sum(within))

    return {"cursor_offered": _rate(sum(offered), len(valid)), "cursor_followed": among("cursor_followed", offered),
            "fault_met": _rate(sum(met), len(valid)), "fault_retried": among("fault_retried", met),
            "fault_recovered": among("fault_recovered", met), "success_cursor": success(offered),
            "success_fault": success(met)}


def met_in_training(runs: Iterable[Sequence[Mapping[str, Any]]]) -> dict[str, float | None]:
    """How often an arm's training episodes met each situation of :data:`SUBSET_SITUATIONS`.

    Args:
        runs: the rows of each seed's ``metrics.jsonl`` (their ``skills`` field, :func:`skill_rates`).

    Returns:
        ``{counter: mean share of training episodes}`` over every logged step of every run (each step holds the
        same number of episodes), ``None`` for a counter no step logged (a trainer without skill counters).
        A share of 0 means the arm's training environment never presented the situation: a gain on that
        subset is then general competence on its tasks, not the skill.

    >>> met_in_training([[{"skills": {"fault_met": 0.0, "cursor_offered": 0.5}}, {"skills": {"fault_met": 0.0}}]])
    {'cursor_offered': 0.5, 'fault_met': 0.0}
    """
    values: dict[str, list[float]] = {flag: [] for flag in sorted(set(SUBSET_SITUATIONS.values()))}
    for rows in runs:
        for row in rows:
            for flag, got in values.items():
                v = (row.get("skills") or {}).get(flag)
                if isinstance(v, int | float):
                    got.append(float(v))
    return {flag: sum(v) / len(v) if v else None for flag, v in values.items()}
