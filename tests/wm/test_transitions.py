"""Transitions from real expert trajectories (search, mcp-world, bfcl) and the AgentWorldBench format."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from simrl.errors import SimrlError
from simrl.types import Trajectory
from simrl.wm import prompts
from simrl.wm.agentworldbench import clean_observation
from simrl.wm.oracle import instructions_of
from simrl.wm.transitions import load_transitions, parse_action, write_agentworldbench
from tests.wm import trajectory_fixtures as fx

ENV_IDS = fx.ENV_IDS
real_trajectories = fx.real_trajectories  # the session fixture


def _trajectories(path: Path) -> list[Trajectory]:
    return [Trajectory.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def _real_calls(traj: Trajectory) -> list[tuple[str, dict, str, bool]]:
    """Every tool call of the episode with its real result, in order (independent of transitions.py)."""
    return [(c.name, dict(c.arguments), r.content, r.is_error) for turn in traj.turns if not turn.action.is_final
            for c, r in zip(turn.action.tool_calls, turn.step.observation.results)]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_transitions_are_the_real_calls_and_observations(real_trajectories, env_id):
    path = real_trajectories[env_id]
    transitions = load_transitions(path, world=real_trajectories["world"])
    trajs = _trajectories(path)
    assert {t.trajectory for t in transitions} == {f"{path.name}:{i}" for i in range(1, len(trajs) + 1)}
    for lineno, traj in enumerate(trajs, 1):
        mine = [t for t in transitions if t.trajectory == f"{path.name}:{lineno}"]
        calls = _real_calls(traj)
        assert calls and len(mine) == len(calls)
        assert [(t.action_name, t.action_arguments, t.observation, t.real_is_error) for t in mine] == calls
        assert [t.turn_idx for t in mine] == list(range(len(calls)))
        assert {t.total_turns for t in mine} == {len(calls)} and {t.task_id for t in mine} == {traj.task_id}
        for t in mine:  # history = the earlier real calls and observations, in order
            assert [(h.name, h.arguments, h.observation) for h in t.history] == [c[:3] for c in calls[:t.turn_idx]]
            assert t.env_id == env_id and t.domain == {"search": "search", "mcp-world": "mcp", "bfcl": "bfcl"}[env_id]
            assert t.perturbation is None


def test_one_transition_per_call_of_a_multi_call_turn(real_trajectories):
    path = real_trajectories["bfcl"]
    traj = next(t for t in _trajectories(path) if any(len(turn.action.tool_calls) > 1 for turn in t.turns))
    lineno = [t.task_id for t in _trajectories(path)].index(traj.task_id) + 1
    mine = [t for t in load_transitions(path) if t.trajectory == f"{path.name}:{lineno}"]
    k = next(i for i, turn in enumerate(traj.turns) if len(turn.action.tool_calls) > 1)
    before = sum(len(turn.action.tool_calls) for turn in traj.turns[:k])
    first, second = mine[before], mine[before + 1]
    assert (first.action_name, second.action_name) == tuple(c.name for c in traj.turns[k].action.tool_calls[:2])
    assert second.history[-1].observation == traj.turns[k].step.observation.results[0].content
    assert second.action_text.startswith(f"### Turn {before + 2}\n")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_messages_follow_the_world_model_prompt_layout(real_trajectories, env_id):
    world = real_trajectories["world"]
    transitions = load_transitions(real_trajectories[env_id], world=world)
    t = max(transitions, key=lambda x: len(x.history))
    messages = t.messages()
    assert len(messages) == 2 * len(t.history) + 2
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(t.history) + ["user"]
    assert messages[-1]["content"] == t.action_text
    assert json.dumps({"name": t.action_name, "arguments": t.action_arguments}, ensure_ascii=False) in t.action_text
    history = [(h.name, h.arguments, h.observation) for h in t.history]
    assert messages == prompts.build_messages(t.system, history, t.action_name, t.action_arguments)
    controlled = t.messages(control="Reply with a 503 error.")
    assert controlled == prompts.build_messages(t.system, history, t.action_name, t.action_arguments,
                                                "Reply with a 503 error.")
    assert controlled[-1]["content"].endswith(f"{prompts.CONTROL_HEADER}\nReply with a 503 error.")
    assert controlled[:-1] == messages[:-1]
    for tool in t.tools:
        assert json.dumps(tool["function"]["name"]) in t.system


def test_system_prompt_carries_the_world_facts_only_with_the_world(real_trajectories):
    path, world = real_trajectories["search"], real_trajectories["world"]
    with_world, without = load_transitions(path, world=world)[0], load_transitions(path)[0]
    instruction = instructions_of(world)[with_world.task_id]
    assert with_world.system == prompts.system_prompt("search", with_world.tools, instruction)
    assert f"Reference answer: {instruction.reference_answer}" in with_world.system
    assert prompts.FACTS_HEADER not in without.system
    assert without.system == prompts.system_prompt("search", without.tools)


def test_final_answers_env_failures_and_world_model_trajectories_are_skipped(real_trajectories, tmp_path):
    trajs = _trajectories(real_trajectories["mcp-world"])
    broken = trajs[0].model_copy(deep=True)
    broken.turns[1] = broken.turns[1].model_copy(update={"step": broken.turns[1].step.model_copy(
        update={"info": {"env_failure": True, "error": "server died"}})})
    simulated = trajs[1].model_copy(update={"backend": "llamacpp"})
    path = tmp_path / "mixed.jsonl"
    path.write_text(broken.model_dump_json() + "\n\n" + simulated.model_dump_json() + "\n")
    skipped: Counter = Counter()
    transitions = load_transitions(path, skipped=skipped)
    calls = _real_calls(broken)
    kept = calls[:len(broken.turns[0].action.tool_calls)] + calls[len(broken.turns[0].action.tool_calls)
                                                                  + len(broken.turns[1].action.tool_calls):]
    assert [t.observation for t in transitions] == [c[2] for c in kept]
    assert all(t.trajectory == "mixed.jsonl:1" for t in transitions)
    assert sum(skipped.values()) == 2 and any("llamacpp" in reason for reason in skipped)
    assert not any(t.action_name is None for t in transitions)


def test_a_perturbed_call_is_marked_with_its_type(tiny_world, tmp_path):
    from simrl.envs.base import make
    from simrl.perturb import Schedule, perturbed_factory
    from simrl.policies import episode_tasks, make_policy
    from simrl.rollout import TrajectoryWriter, rollout

    tasks = episode_tasks("mcp-world", tiny_world, "dev", 1)
    schedule = Schedule.single("server_error", rate=1.0, max_per_episode=1)
    factory = perturbed_factory(lambda: make("mcp-world", world=tiny_world, transport="inprocess"), schedule)
    writer = TrajectoryWriter(tmp_path / "perturbed.jsonl")
    asyncio.run(rollout(factory, make_policy("expert", "mcp-world", tiny_world, tasks), tasks, writer=writer))
    writer.close()
    transitions = load_transitions(tmp_path / "perturbed.jsonl", world=tiny_world)
    marked = [t for t in transitions if t.perturbation]
    assert [t.perturbation for t in marked] == ["server_error"]
    assert marked[0].real_is_error and marked[0].observation.split()[0] in ("500", "503")
    assert marked[0].turn_idx == 0 and len(transitions) > 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_agentworldbench_round_trip(real_trajectories, env_id, tmp_path):
    transitions = load_transitions(real_trajectories[env_id], world=real_trajectories["world"])
    out = tmp_path / f"{env_id}_test.jsonl"
    assert write_agentworldbench(transitions, out) == len(transitions)
    assert load_transitions(out) == transitions
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for t, row in zip(transitions, rows):
        assert row["system_str"] == t.system and row["task"] == t.domain
        assert row["turn_idx"] == t.turn_idx + 1 and row["total_turns"] == t.total_turns
        assert row["current_prompt"] == row["prompt"][t.turn_idx] == t.action_text
        assert row["response"][t.turn_idx] == prompts.observation_message(t.observation)
        assert len(row["prompt"]) == len(row["response"]) == t.total_turns  # the whole episode, as the benchmark
    # a row in the official layout only (no simrl metadata) keeps system, history, action and observation
    bare = tmp_path / "bare_test.jsonl"
    bare.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "simrl"}) + "\n" for r in rows))
    for t, b in zip(transitions, load_transitions(bare)):
        assert (b.system, b.history, b.action_text, b.observation) == (t.system, t.history, t.action_text, t.observation)
        assert (b.action_name, b.action_arguments, b.domain, b.tools) == (t.action_name, t.action_arguments, t.domain, [])
    assert len(load_transitions(tmp_path)) == 2 * len(transitions)  # a folder: every *.jsonl in it


def test_agentworldbench_official_example_row(tmp_path):
    row = {"task": "agentworldbench/MCP", "id": 145256090131919, "system_str": "# Role and Objective\n...",
           "prompt": ['### Turn 1\n**Action:**\n```json\n{"name": "list_files", "arguments": {"path": "/"}}\n```',
                      '### Turn 2\n**Action:**\n```json\n{"name": "read_file", "arguments": {"path": "/a"}}\n```'],
           "response": ['**Environment Observation:**\n["a"]', "**Environment Observation:**\nhello"],
           "current_prompt": '### Turn 2\n**Action:**\n```json\n{"name": "read_file", "arguments": {"path": "/a"}}\n```',
           "turn_idx": 2, "total_turns": 2}
    path = tmp_path / "mcp_test.jsonl"
    path.write_text(json.dumps(row) + "\n")
    [t] = load_transitions(path)
    assert (t.domain, t.turn_idx, t.observation, t.action_name, t.action_arguments) == ("mcp", 1, "hello", "read_file",
                                                                                        {"path": "/a"})
    assert t.history[0].observation == '["a"]' and t.history[0].name == "list_files"
    assert t.messages()[2] == {"role": "assistant", "content": row["response"][0]}
    assert t.real_is_error is None and t.trajectory == "mcp_test.jsonl:145256090131919"
    first = {k: v for k, v in row.items() if k not in ("turn_idx", "current_prompt")}  # eval.py: turn_idx 1
    path.write_text(json.dumps(first) + "\n")
    [t] = load_transitions(path)
    assert (t.turn_idx, t.observation, t.action_name, t.history) == (0, '["a"]', "list_files", [])


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "not JSON"),  # a line starting like an object but cut short is a torn record: skipped
    ('["a"]', "expected a JSON object"),
    ('{"foo": 1}', "neither a simrl trajectory"),
    ('{"prompt": ["a"], "response": ["b"], "turn_idx": 1}', "system_str"),
    ('{"system_str": "s", "prompt": "a", "response": ["b"], "turn_idx": 2}', "turn_idx"),
    ('{"system_str": "s", "prompt": ["a"], "response": ["b"], "turn_idx": 0}', "turn_idx"),
    ('{"system_str": "s", "prompt": [1], "response": ["b"], "turn_idx": 1}', "'prompt' must be a list of strings"),
    ('{"system_str": "s", "prompt": [], "response": ["b"], "turn_idx": 1}', "no action for turn 1"),
    ('{"task_id": "t", "env_id": "search", "initial": {"text": 3}}', "not a simrl trajectory: initial.text"),
])
def test_malformed_rows_name_the_line_and_the_problem(tmp_path, line, message):
    good = '{"system_str": "s", "prompt": ["a"], "response": ["b"], "turn_idx": 1}'
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(SimrlError, match="bad.jsonl:2") as err:
        load_transitions(path)
    assert message in str(err.value)


def test_a_task_missing_from_the_world_is_an_error(real_trajectories, tmp_path):
    traj = _trajectories(real_trajectories["search"])[0].model_copy(update={"task_id": "other-world-qa-00001"})
    path = tmp_path / "t.jsonl"
    path.write_text(traj.model_dump_json() + "\n")
    with pytest.raises(SimrlError, match="not in world"):
        load_transitions(path, world=real_trajectories["world"])
    assert load_transitions(path)  # without a world it is fine


def test_parse_action_and_clean_observation():
    assert parse_action("no block") == (None, None)
    assert parse_action('**Action:**\n```json\n{"name": "x", "arguments": "{\\"a\\": 1}"}\n```') == ("x", {"a": 1})
    assert clean_observation("**Environment Observation:**\n  body ") == "  body "
    assert clean_observation("raw text\n") == "raw text"


def test_mcp_world_prompts_are_the_ones_the_world_model_env_sends(tiny_world, tmp_path):
    """Teacher-forced: a backend that answers each call with its real observation receives, call by call,
    exactly the chat of the transition (system prompt byte for byte: tools as the env lists them, although
    the recording's MCP client received them with another key order)."""
    from simrl.types import Action, ToolCall
    from simrl.wm.backend import WorldModelBackend
    from simrl.wm.env import WorldModelEnv
    from simrl.world.io import load_tasks

    class Replay(WorldModelBackend):
        name, model = "replay", "real"

        def __init__(self, answers: list[str]) -> None:
            self.answers, self.seen = list(answers), []

        async def generate(self, messages, sampling):
            self.seen.append(messages)
            return f"<predicted_observation>{self.answers.pop(0)}</predicted_observation>"

        async def close(self):
            pass

    world = tiny_world
    recorded = fx.write_trajectories("mcp-world", tmp_path / "stdio.jsonl", world, n=1, transport="stdio")
    transitions = load_transitions(recorded, world=world)
    assert transitions
    tasks = {t.task_id: t for t in load_tasks(world)}
    episodes: dict[str, list] = {}
    for t in transitions:
        episodes.setdefault(t.trajectory, []).append(t)

    async def replay(trs: list) -> list:
        backend = Replay([t.observation for t in trs])
        env = WorldModelEnv("mcp-world", world, backend)
        try:
            await env.reset(tasks[trs[0].task_id])
            for t in trs:
                await env.step(Action(tool_calls=[ToolCall(name=t.action_name, arguments=t.action_arguments)]))
        finally:
            await env.close()
        return backend.seen

    for trs in episodes.values():
        seen = asyncio.run(replay(trs))
        assert len(seen) == len(trs)
        for t, sent in zip(trs, seen):
            assert t.messages()[0]["content"] == sent[0]["content"]
            assert t.messages() == sent
