"""Skill counters on fixed trajectories: cursor offered / followed, fault met / retried / recovered."""

from __future__ import annotations

import doctest

from simrl.experiment import skills
from simrl.experiment.skills import skill_counts, skill_rates
from simrl.types import Action, Observation, Step, ToolResult, Trajectory, Turn


def _turn(action: Action, content: str, error: bool = False, reward: float = 0.0, done: bool = False) -> Turn:
    name = action.tool_calls[0].name if action.tool_calls else ""
    results = [ToolResult(name=name, content=content, is_error=error)] if action.tool_calls else []
    return Turn(action=action, step=Step(observation=Observation(text=content, results=results), reward=reward,
                                         terminated=done, info={"success": reward > 0}))


def _traj(turns: list[Turn], status: str) -> Trajectory:
    return Trajectory(task_id="t", env_id="e", initial=Observation(text="?"), turns=turns, status=status,
                      reward=sum(t.step.reward for t in turns))


PAGE = '{"records": [{"id": "person:1"}], "next_cursor": "c2", "total": 7}'
LAST = '{"records": [{"id": "person:2"}], "next_cursor": null, "total": 7}'
BUSY = "Error executing tool search_records: 503 Service Unavailable: try again"
LIST = Action.call("search_records", type="person")
FOLLOW = Action.call("search_records", type="person", cursor="c2")


def test_doctests():
    assert doctest.testmod(skills).failed == 0


def test_cursor_followed_and_fault_recovered():
    followed = _traj([_turn(LIST, BUSY, error=True), _turn(LIST, PAGE), _turn(FOLLOW, LAST),
                      _turn(Action.final("2"), "", reward=1.0, done=True)], "success")
    assert skill_counts(followed) == {"cursor_offered": True, "cursor_followed": True, "fault_met": True,
                                      "fault_retried": True, "fault_recovered": True}


def test_cursor_ignored_and_fault_abandoned():
    ignored = _traj([_turn(LIST, PAGE), _turn(Action.final("1"), "", done=True)], "failure")
    abandoned = _traj([_turn(LIST, BUSY, error=True), _turn(Action.call("find_by_name", name="A"), "{}"),
                       _turn(LIST, BUSY, error=True)], "truncated")
    assert skill_counts(ignored) == {"cursor_offered": True, "cursor_followed": False, "fault_met": False,
                                     "fault_retried": False, "fault_recovered": False}
    got = skill_counts(abandoned)
    assert got["fault_met"] and not got["fault_retried"] and not got["fault_recovered"]


def test_rates_over_a_step():
    a = _traj([_turn(LIST, PAGE), _turn(FOLLOW, LAST), _turn(Action.final("2"), "", reward=1.0, done=True)], "success")
    b = _traj([_turn(LIST, PAGE), _turn(Action.final("1"), "", done=True)], "failure")
    c = _traj([_turn(LIST, BUSY, error=True), _turn(LIST, LAST), _turn(Action.final("1"), "", done=True)], "failure")
    failed = _traj([], "env_failure")
    rates = skill_rates([a, b, c, failed])
    assert rates["cursor_offered"] == 2 / 3 and rates["cursor_followed"] == 0.5 and rates["success_cursor"] == 0.5
    assert rates["fault_met"] == 1 / 3 and rates["fault_retried"] == 1.0 and rates["fault_recovered"] == 1.0
    assert rates["success_fault"] == 0.0
    assert skill_rates([a])["fault_retried"] is None
