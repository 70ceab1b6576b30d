"""Every registered environment passes the environment checker; rollouts record trajectories; the
scripted experts solve the tasks; nothing privileged ever reaches a policy."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from simrl.envs.base import make, registered
from simrl.envs.checker import check_env
from simrl.policies.expert import SearchExpert
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import TrajectoryWriter, rollout, run_episode
from simrl.types import Action, Observation, Turn
from simrl.world import WorldIndex, load_graph, load_instructions, load_tasks
from simrl.world.schema import QAGold, RecordsGold, TableGold


def _dev(world, kinds):
    return [t for t in load_tasks(world, split="dev") if t.type in kinds]


def _needs_bfcl_eval():
    """Skip unless the optional ``bfcl`` extra is installed (as tests/envs/test_bfcl.py does)."""
    pytest.importorskip("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker",
                        reason="bfcl-eval is not installed (pip install --no-deps bfcl-eval && pip install mpmath)")
    pytest.importorskip("mpmath", reason="bfcl-eval's MathAPI needs mpmath (pip install mpmath)")


def _checker_setup(env_id, world):
    """A factory and a task for each registered environment id."""
    if env_id == "bfcl":
        _needs_bfcl_eval()
        from simrl.envs.bfcl import probe_task

        return (lambda: make("bfcl")), probe_task()
    if env_id == "mcp":  # any MCP server: here the world record server, started by its command
        command = [sys.executable, "-m", "simrl.cli.main", "serve", "mcp", "--world", str(world)]
        return (lambda: make("mcp", server_command=command)), load_tasks(world, type="qa")[0]
    kind = "records" if env_id == "mcp-world" else "qa"
    return (lambda: make(env_id, world=world)), load_tasks(world, type=kind)[0]


@pytest.mark.parametrize("env_id", sorted(registered()))
def test_checker_passes_on_every_registered_environment(env_id, tiny_world):
    factory, task = _checker_setup(env_id, tiny_world)
    outcomes = asyncio.run(check_env(factory, task))
    assert [(o.name, o.detail) for o in outcomes if not o.passed] == []
    assert {o.name for o in outcomes} == {"types", "determinism", "errors_are_observations", "close_twice"}


def test_registry_lists_the_environments():
    assert {"search", "mcp", "mcp-world", "bfcl"} <= set(registered())


class _Recorder:
    """Wraps a policy and records every input it receives (to scan for leaks)."""

    def __init__(self, inner):
        self.inner, self.inputs = inner, []

    async def act(self, task_view, initial: Observation, turns: list[Turn]) -> Action:
        self.inputs.append(json.dumps([task_view, initial.model_dump(), [t.model_dump() for t in turns]]))
        return await self.inner.act(task_view, initial, turns)


def _secrets(task, instruction) -> list[str]:
    """Strings a policy must never be given: simulation facts, and the gold (before it found it)."""
    return [f for f in instruction.facts if len(f) > 25]


def test_search_expert_solves_tasks_and_nothing_leaks(small_world, tmp_path):
    tasks = [t for t in load_tasks(small_world) if t.type in ("qa", "table")]
    assert len(tasks) >= 60
    policy = _Recorder(SearchExpert(WorldIndex(load_graph(small_world)), tasks))
    writer = TrajectoryWriter(tmp_path / "traj.jsonl")
    trajs = asyncio.run(rollout(lambda: make("search", world=small_world, max_turns=80), policy, tasks,
                                max_turns=80, concurrency=4, writer=writer))
    writer.close()
    solved = sum(t.status == "success" for t in trajs) / len(trajs)
    assert solved >= 0.95, [(t.task_id, t.status) for t in trajs if t.status != "success"]
    lines = (tmp_path / "traj.jsonl").read_text().splitlines()
    assert len(lines) == len(tasks)
    instructions = load_instructions(small_world)
    first_inputs = {}
    for text in policy.inputs:
        task_id = json.loads(text)[0]["task_id"]
        first_inputs.setdefault(task_id, text)
        for secret in _secrets(None, instructions[task_id]):
            assert secret not in text, f"simulation fact reached the policy: {secret}"
    for task in tasks:  # the gold answer is not in what the policy sees before it acts
        gold = task.gold
        answer = gold.answer if isinstance(gold, QAGold) else None
        if answer and len(answer) > 4:
            assert answer not in first_inputs[task.task_id]
        assert isinstance(gold, QAGold | TableGold)


def test_records_expert_solves_dev_tasks(small_world):
    tasks = _dev(small_world, ("records",))[:6]
    assert tasks
    policy = _Recorder(RecordsExpert(small_world, tasks))
    trajs = asyncio.run(rollout(lambda: make("mcp-world", world=small_world), policy, tasks, max_turns=40,
                                concurrency=3))
    assert [t.status for t in trajs] == ["success"] * len(tasks), [t.info for t in trajs]
    assert any(len(t.turns) > 3 for t, task in zip(trajs, tasks) if task.gold.min_pages > 1) or \
        all(task.gold.min_pages == 1 for task in tasks)
    for text in policy.inputs:
        task_id = json.loads(text)[0]["task_id"]
        gold = next(t for t in tasks if t.task_id == task_id).gold
        assert isinstance(gold, RecordsGold)
        assert '"final_state"' not in text and '"min_pages"' not in text


class _Wrong:
    async def act(self, task_view, initial, turns):
        return Action.final("<answer>certainly not this</answer>")


def test_run_episode_stop_conditions(tiny_world):
    task = load_tasks(tiny_world, type="qa")[0]

    class _Looper:
        async def act(self, task_view, initial, turns):
            return Action.call("web_search", query="anything")

    traj = asyncio.run(run_episode(make("search", world=tiny_world), _Looper(), task, max_turns=3))
    assert traj.status == "truncated" and len(traj.turns) == 3 and traj.info["stop"] == "max_turns"
    traj = asyncio.run(run_episode(make("search", world=tiny_world), _Wrong(), task, max_turns=3))
    assert traj.status == "failure" and traj.reward == 0.0 and traj.info["stop"] == "final_answer"


def test_environment_failure_is_recorded_not_raised(tiny_world, tmp_path):
    """A reset that fails (a records task in the search environment) becomes an env_failure line."""
    tasks = [load_tasks(tiny_world, type="records")[0], load_tasks(tiny_world, type="qa")[0]]
    writer = TrajectoryWriter(tmp_path / "t.jsonl")
    trajs = asyncio.run(rollout(lambda: make("search", world=tiny_world), _Wrong(), tasks, writer=writer))
    writer.close()
    assert [t.status for t in trajs] == ["env_failure", "failure"]
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 2


def test_bfcl_policy_inputs_hold_no_gold():
    """BFCL: a policy never sees the ground-truth calls of a turn before it acts, nor a later user turn."""
    _needs_bfcl_eval()
    from simrl.envs.bfcl import load_bfcl_tasks
    from simrl.policies.bfcl_expert import BFCLExpert

    tasks = load_bfcl_tasks(limit=5)
    policy = _Recorder(BFCLExpert(tasks))
    trajs = asyncio.run(rollout(lambda: make("bfcl"), policy, tasks, max_turns=80, concurrency=1))
    assert all(t.status == "success" for t in trajs)
    for text in policy.inputs:
        view, initial, turns = json.loads(text)
        gold = next(t for t in tasks if t.task_id == view["task_id"]).gold
        seen = json.dumps([initial, [t["step"]["observation"] for t in turns]])
        done_turns = 1 + sum(bool(t["step"]["info"].get("user_turn")) for t in turns)
        for later in gold.turns[done_turns:]:
            assert json.dumps(later)[1:-1] not in seen, "a later user turn reached the policy early"
        current = gold.ground_truth[done_turns - 1] if done_turns - 1 < len(gold.ground_truth) else []
        issued = json.dumps([t["action"] for t in turns])
        for call in current:
            name = call.split("(")[0]
            assert call not in seen or name in issued
