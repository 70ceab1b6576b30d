"""``simrl rollout``'s report read from trajectories (simrl.rollout_summary): one row per task type that ran."""

from __future__ import annotations

from rich.console import Console

from simrl.rollout_summary import compliance_lines, episode_table
from simrl.types import Action, Observation, Step, Trajectory, Turn
from simrl.world.schema import Evidence, QAGold, Task


def _task(i: int, kind: str) -> Task:
    return Task(task_id=f"t{i}", type=kind, split="dev", prompt="?", gold=QAGold(answer="x"), evidence=Evidence(),
                hops=1, difficulty="easy", template="t")


def _traj(i: int, status: str, turns: int) -> Trajectory:
    turn = Turn(action=Action.final("x"), step=Step(observation=Observation(text="ok")))
    return Trajectory(task_id=f"t{i}", env_id="e", initial=Observation(text="?"), turns=[turn] * turns, status=status)


def test_episode_table_rows_per_task_type():
    tasks = [_task(0, "qa"), _task(1, "qa"), _task(2, "records"), _task(3, "table")]
    trajs = [_traj(0, "success", 2), _traj(1, "env_failure", 4), _traj(2, "truncated", 6), _traj(3, "failure", 1)]
    table = episode_table(trajs, tasks, ["qa", "records", "bfcl"], "4 episodes -> out.jsonl")
    console = Console(width=200, record=True)
    console.print(table)
    lines = [line.split() for line in console.export_text().splitlines() if line.strip().startswith(("│ qa", "│ rec"))]
    cells = [[c for c in line if c != "│"] for line in lines]
    assert cells == [["qa", "2", "50.0%", "3.0", "1", "0"], ["records", "1", "0.0%", "6.0", "0", "1"]]  # no bfcl row
    assert compliance_lines(trajs) == []  # no control instruction was asked
