"""The ``bfcl`` environment: BFCL v4 multi-turn tools from bfcl-eval, scored by BFCL's multi_turn_checker."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytest.importorskip("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker",
                    reason="bfcl-eval is not installed (pip install --no-deps bfcl-eval && pip install mpmath)")
pytest.importorskip("mpmath", reason="bfcl-eval's MathAPI needs mpmath (pip install mpmath)")

from simrl.envs.base import make, registered  # noqa: E402
from simrl.envs.bfcl import first_turns, load_bfcl_tasks, probe_task  # noqa: E402
from simrl.envs.bfcl_data import (  # noqa: E402
    ADDITIONAL_FUNCTION_PROMPT,
    CATEGORIES,
    format_call,
    parse_call,
    tool_schemas,
)
from simrl.envs.checker import check_env  # noqa: E402
from simrl.errors import SimrlError  # noqa: E402
from simrl.policies.bfcl_expert import BFCLExpert  # noqa: E402
from simrl.rollout import rollout, run_episode  # noqa: E402
from simrl.types import Action, ToolCall  # noqa: E402
from simrl.world.schema import BFCLGold, Evidence, QAGold, Task  # noqa: E402

BASE = load_bfcl_tasks()
BY_ID = {t.task_id: t for t in BASE}


def _ls_names(text: str) -> list[str]:
    import json

    return json.loads(text)["current_directory_content"]


def _instance_keys() -> list[str]:
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    return [k for k in vars(multi_turn_utils) if k.startswith("simrl_bfcl_")]


def test_load_tasks():
    assert len(BASE) == 200 and [t.task_id for t in BASE[:3]] == [f"multi_turn_base_{i}" for i in range(3)]
    assert [t.task_id for t in load_bfcl_tasks(limit=5)] == [t.task_id for t in BASE[:5]]
    task = BASE[0]
    assert task.type == "bfcl" and isinstance(task.gold, BFCLGold)
    assert task.prompt == task.gold.turns[0] and len(task.gold.turns) == len(task.gold.ground_truth) == task.hops
    assert task.gold.ground_truth[0][0] == "cd(folder='document')" and task.gold.involved_classes
    assert set(task.policy_view()) == {"task_id", "type", "prompt"}
    assert Task.model_validate_json(task.model_dump_json()) == task  # round-trips through the gold union
    for category in CATEGORIES[1:]:
        assert len(load_bfcl_tasks(category, limit=3)) == 3
    with pytest.raises(SimrlError, match="unknown BFCL category"):
        load_bfcl_tasks("simple_python")


def test_call_strings_and_schemas():
    gold = BASE[0].gold
    assert parse_call("sort('final_report.pdf')", gold.involved_classes) == \
        ToolCall(name="sort", arguments={"file_name": "final_report.pdf"})
    call = parse_call("grep(file_name='a.txt',pattern='x')", gold.involved_classes)
    assert format_call(call, frozenset({"grep"})) == "grep(file_name='a.txt',pattern='x')"
    with pytest.raises(ValueError):
        format_call(ToolCall(name="__import__", arguments={"name": "os"}), frozenset({"grep"}))
    tools = [t for task in BASE for t in tool_schemas(task.gold)]
    assert any(p.get("format") == "float" for t in tools for p in t["function"]["parameters"]["properties"].values())
    for tool in tools:
        assert tool["type"] == "function" and tool["function"]["parameters"]["type"] == "object"
        for prop in tool["function"]["parameters"]["properties"].values():
            assert prop["type"] in {"string", "integer", "number", "boolean", "array", "object"}


def test_registered():
    assert "bfcl" in registered()


async def test_expert_scores_one_on_several_tasks():
    tasks = [BASE[i] for i in (0, 1, 7, 50, 120, 199)] + load_bfcl_tasks("multi_turn_miss_param", limit=2)
    for task in tasks:
        env = make("bfcl")
        traj = await run_episode(env, BFCLExpert(tasks), task, max_turns=60)
        await env.close()
        assert traj.reward == 1.0 and traj.status == "success", (task.task_id, traj.info)
        assert sum(t.action.is_final for t in traj.turns) == len(task.gold.turns)
        traj.model_dump_json()


class _SkipFirstTurn(BFCLExpert):
    """The expert, except that it answers the first user turn without calling anything."""

    async def act(self, task_view, initial, turns):
        if not turns:
            return Action.final("Done.")
        return await super().act(task_view, initial, turns)


async def test_skipping_a_turn_scores_zero():
    task = BY_ID["multi_turn_base_0"]
    env = make("bfcl")
    traj = await run_episode(env, _SkipFirstTurn([task]), task, max_turns=60)
    await env.close()
    assert traj.reward == 0.0 and traj.status == "failure"
    verdict = traj.turns[-1].step.info["bfcl"]
    assert verdict["valid"] is False and verdict["error_type"].startswith("multi_turn:")
    traj.model_dump_json()


async def test_errors_are_observations():
    env = make("bfcl")
    await env.reset(BY_ID["multi_turn_base_0"])
    bad = [ToolCall(name="no_such_tool", arguments={"q": "x"}), ToolCall(name="eval", arguments={}),
           ToolCall(name="cd", arguments={"unexpected_argument": "object"}), ToolCall(name="cd", arguments={}),
           ToolCall(name="cd", arguments={"folder": object()}), ToolCall(name="cd", arguments={"bad key": 1}),
           ToolCall(name="cd", arguments={"folder": "no_such_folder"}), ToolCall(name="cd", arguments={"folder": "document"})]
    step = await env.step(Action(tool_calls=bad))
    flags = [r.is_error for r in step.observation.results]
    assert flags == [True] * 7 + [False] and not (step.terminated or step.truncated)
    assert "unknown function" in step.observation.results[0].content
    assert step.observation.results[2].content.startswith("Error during execution:")
    empty = await env.step(Action())
    assert empty.observation.text.startswith("Error") and not empty.truncated
    await env.close()
    await env.close()
    after = await env.step(Action.final("x"))
    assert after.truncated and after.info["episode_over"]


async def test_episodes_do_not_share_state():
    task = BY_ID["multi_turn_base_0"]
    a, b = make("bfcl"), make("bfcl")
    await a.reset(task)
    await b.reset(task)  # the same BFCL entry open twice at once
    await a.step(Action(tool_calls=[ToolCall(name="cd", arguments={"folder": "document"}),
                                    ToolCall(name="touch", arguments={"file_name": "leak.txt"})]))
    seen_a = await a.step(Action.call("ls"))
    assert "leak.txt" in _ls_names(seen_a.observation.text)
    await b.step(Action.call("cd", folder="document"))
    assert "leak.txt" not in _ls_names((await b.step(Action.call("ls"))).observation.text)
    await a.reset(task)  # a new episode in the same environment
    await a.step(Action.call("cd", folder="document"))
    assert "leak.txt" not in _ls_names((await a.step(Action.call("ls"))).observation.text)
    await a.close()
    await b.close()
    assert _instance_keys() == []  # bfcl-eval's global instance cache is cleaned up


async def test_turn_limits_truncate():
    task = BY_ID["multi_turn_base_0"]
    env = make("bfcl", max_steps_per_turn=2)
    await env.reset(task)
    for _ in range(2):
        assert not (await env.step(Action.call("pwd"))).truncated
    step = await env.step(Action.call("pwd"))
    assert step.truncated and step.reward == 0.0 and step.info["truncated_reason"] == "max_steps_per_turn"
    env = make("bfcl", max_turns=2)
    await env.reset(task)
    await env.step(Action.final("x"))
    step = await env.step(Action.final("y"))
    assert step.truncated and not step.terminated and step.info["truncated_reason"] == "max_turns"
    await env.close()


async def test_missed_functions_arrive_at_their_turn():
    task = load_bfcl_tasks("multi_turn_miss_func", limit=1)[0]
    (turn, names), = task.gold.missed_function.items()
    env = make("bfcl")
    obs = await env.reset(task)
    assert not {t["function"]["name"] for t in obs.tools} & set(names)
    for _ in range(int(turn)):
        step = await env.step(Action.final("ok"))
    assert step.observation.text == ADDITIONAL_FUNCTION_PROMPT and step.info["tools_added"] == names
    assert set(names) <= {t["function"]["name"] for t in step.observation.tools}
    await env.close()


async def test_wrong_task_type_and_first_turns():
    qa = Task(task_id="q", type="qa", split="dev", prompt="?", gold=QAGold(answer="a"), evidence=Evidence(),
              hops=1, difficulty="easy", template="x")
    env = make("bfcl")
    with pytest.raises(SimrlError, match="bfcl task"):
        await env.reset(qa)
    one = first_turns(BASE[3], 1)
    assert one.task_id == "multi_turn_base_3-first1" and len(one.gold.turns) == len(one.gold.ground_truth) == 1
    traj = await run_episode(env, BFCLExpert([one]), one)
    assert traj.reward == 1.0 and len(traj.turns) == 2
    await env.close()


async def test_environment_checker_passes():
    outcomes = await check_env(lambda: make("bfcl"), probe_task())
    assert all(o.passed for o in outcomes), [o for o in outcomes if not o.passed]


def test_missing_bfcl_eval_gives_install_hint():
    code = ("import sys; sys.modules['bfcl_eval'] = None\n"
            "from simrl.envs.base import make, registered\n"
            "from simrl.errors import SimrlError\n"
            "assert {'search', 'bfcl'} <= set(registered())\n"
            "try:\n    make('bfcl')\nexcept SimrlError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install --no-deps bfcl-eval" in out.stdout


async def _success_rate(tasks: list[Task], concurrency: int = 1) -> float:
    trajs = await rollout(lambda: make("bfcl"), BFCLExpert(tasks), tasks, max_turns=100, concurrency=concurrency)
    return sum(t.reward == 1.0 for t in trajs) / len(tasks)


async def test_expert_success_rate_on_multi_turn_base():
    start = time.perf_counter()
    rate = await _success_rate(BASE, concurrency=8)  # all 200 entries, 8 episodes in flight: about 1 s
    assert rate >= 0.95, rate
    assert time.perf_counter() - start < 60
    assert _instance_keys() == []


@pytest.mark.parametrize("category", CATEGORIES[1:])
async def test_expert_success_rate_other_categories(category):
    assert await _success_rate(load_bfcl_tasks(category, limit=40)) >= 0.95
