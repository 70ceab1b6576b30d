"""The inject wrapper on a fake environment: determinism, caps, windows, targets, recoverability,
errors that do not execute the call, served continuations, control mode, and trajectory records."""

from __future__ import annotations

import asyncio
import json

import pytest

from simrl.errors import SimrlError
from simrl.perturb import PerturbedEnv, Schedule, parse_schedule
from simrl.rollout import run_episode
from simrl.types import Action, ToolCall
from tests.perturb.fakes import Caller, ControlFake, FakeEnv, fake_task

LIST = ToolCall(name="list_things", arguments={})
WRITE = ToolCall(name="write_thing", arguments={"name": "a"})
MIXED = {"name": "mixed", "cooldown_calls": 0, "perturbations": {
    "partial_response": {"rate": 0.2}, "server_error": {"rate": 0.2}, "rate_limit": {"rate": 0.2},
    "schema_drift": {"rate": 0.2}, "empty_result": {"rate": 0.2}}}


def _run(env, calls, seed=0):
    return asyncio.run(run_episode(env, Caller(calls), fake_task(), max_turns=len(calls) + 1, seed=seed))


def _met(traj):
    return [(p["type"], p["turn"], p["tool"]) for p in traj.info["perturbations"]]


def test_same_seed_same_perturbations_other_seed_differs():
    sched = parse_schedule(MIXED)
    runs = {(seed, wrapper): _met(_run(PerturbedEnv(FakeEnv(), sched, seed=wrapper), [LIST] * 30, seed=seed))
            for seed, wrapper in [(0, 0), (0, 0), (1, 0), (0, 1)]}
    assert len(runs) == 3  # (0, 0) twice gave the same list
    first = runs[(0, 0)]
    assert len(first) >= 5 and len({t for t, _, _ in first}) >= 3
    assert runs[(1, 0)] != first and runs[(0, 1)] != first
    other = parse_schedule(MIXED | {"seed": 7})
    assert _met(_run(PerturbedEnv(FakeEnv(), other), [LIST] * 30)) != first


def test_turn_window_and_caps():
    window = {"rate": 1.0, "turns": {"first": 2, "last": 6}, "max_per_episode": 2}
    sched = parse_schedule({"name": "w", "cooldown_calls": 0, "perturbations": {"server_error": window}})
    assert [turn for _, turn, _ in _met(_run(PerturbedEnv(FakeEnv(), sched), [LIST] * 10))] == [2, 3]
    cooled = parse_schedule({"name": "w", "cooldown_calls": 1, "perturbations": {"server_error": window}})
    assert [turn for _, turn, _ in _met(_run(PerturbedEnv(FakeEnv(), cooled), [LIST] * 10))] == [2, 4]
    total = parse_schedule({"name": "t", "max_per_episode": 3, "cooldown_calls": 0, "perturbations": {
        "server_error": {"rate": 0.5}, "rate_limit": {"rate": 0.5}}})
    assert len(_met(_run(PerturbedEnv(FakeEnv(), total), [LIST] * 30))) == 3


def test_target_tools_and_domains():
    tools = Schedule.single("timeout", tools=["write_thing"], cooldown_calls=0)
    assert {tool for _, _, tool in _met(_run(PerturbedEnv(FakeEnv(), tools), [LIST, WRITE, LIST, WRITE]))} == \
        {"write_thing"}
    elsewhere = Schedule.single("timeout", domains=["search", "mcp-world"])
    assert _met(_run(PerturbedEnv(FakeEnv(), elsewhere), [LIST] * 5)) == []
    here = Schedule.single("timeout", domains=["fake"], max_per_episode=1)
    assert len(_met(_run(PerturbedEnv(FakeEnv(), here), [LIST] * 5))) == 1


def test_progress_reads_the_curriculum():
    sched = parse_schedule({"name": "r", "perturbations": {"rate_limit": {
        "rate": {"kind": "exp_ramp", "start": 0.0, "end": 1.0}}}})
    env = PerturbedEnv(FakeEnv(), sched, progress=0.0)
    assert _met(_run(env, [LIST] * 10)) == []
    env.set_progress(1.0)
    assert len(_met(_run(env, [LIST] * 10))) == 5  # every call but the cooled-down retries
    with pytest.raises(SimrlError, match="progress"):
        PerturbedEnv(FakeEnv(), sched, progress=1.5)


def test_unrecoverable_only_when_allowed():
    allowed = Schedule.single("outage", allow_unrecoverable=True, max_per_episode=1)
    inner = FakeEnv()
    traj = _run(PerturbedEnv(inner, allowed), [LIST, LIST, WRITE, LIST])
    assert _met(traj) == [("outage", 0, "list_things"), ("outage", 1, "list_things"), ("outage", 3, "list_things")]
    assert [c.name for c in inner.executed] == ["write_thing"]  # the down tool never ran again
    assert "down for the rest of this session" in traj.turns[3].step.observation.text
    not_allowed = allowed.model_copy(update={"allow_unrecoverable": False})  # bypasses validation on purpose
    assert _met(_run(PerturbedEnv(FakeEnv(), not_allowed), [LIST] * 4)) == []


def test_errors_replace_the_call_so_writes_do_not_happen():
    inner = FakeEnv()
    traj = _run(PerturbedEnv(inner, Schedule.single("server_error", max_per_episode=1)), [WRITE, WRITE])
    first, second = (t.step for t in traj.turns[:2])
    assert first.observation.results[0].is_error and inner.written == ["a"]  # only the retry wrote
    assert len(inner.executed) == 1 and not second.observation.results[0].is_error
    assert first.observation.text.startswith("[write_thing error]\n50")  # laid out like the environment


def test_held_back_content_is_served_by_the_wrapper():
    inner = FakeEnv()
    env = PerturbedEnv(inner, Schedule.single("partial_response", tools=["list_things"], max_per_episode=1))

    async def go():
        await env.reset(fake_task())
        head = json.loads((await env.step(Action(tool_calls=[LIST]))).observation.results[0].content)
        cont = ToolCall(name="list_things", arguments={"cursor": head["next_cursor"]})
        rest = json.loads((await env.step(Action(tool_calls=[cont]))).observation.results[0].content)
        return head, rest

    head, rest = asyncio.run(go())
    assert [r["id"] for r in head["records"] + rest["records"]] == [f"thing:{i:03d}" for i in range(4)]
    assert head["next_cursor"].startswith("simrl-cont-") and rest["next_cursor"] == "4"
    assert len(inner.executed) == 1  # the continuation never reached the environment


def test_forced_search_pages_are_served():
    env = PerturbedEnv(FakeEnv(), Schedule.single("forced_pagination", max_per_episode=1, params={"page_size": 2}))
    search = ToolCall(name="web_search", arguments={"query": "acme"})
    traj = _run(env, [search, ToolCall(name="web_search", arguments={"query": "acme", "page": 2}),
                      ToolCall(name="web_search", arguments={"query": "acme", "page": 3})])
    texts = [t.step.observation.results[0].content for t in traj.turns[:3]]
    assert '"page": 2' in texts[0] and "[3] https" in texts[1] and "[5] https" in texts[2]
    assert '"page"' not in texts[2]


def test_trajectory_records_and_pass_through():
    traj = _run(PerturbedEnv(FakeEnv(), Schedule.single("schema_drift", max_per_episode=2)), [LIST, LIST, LIST])
    assert traj.info["perturbations"] == [
        {"type": "schema_drift", "turn": 0, "tool": "list_things", "mode": "inject", "recovery": "adapt"},
        {"type": "schema_drift", "turn": 2, "tool": "list_things", "mode": "inject", "recovery": "adapt"}]
    assert traj.info["perturbation_types"] == ["schema_drift"]
    assert traj.turns[0].step.info["inner"] == 1 and "perturbations" not in traj.turns[1].step.info
    assert traj.reward == 1.0 and traj.status == "success" and traj.turns[-1].step.terminated
    clean = _run(FakeEnv(), [LIST])
    assert clean.info["perturbations"] == [] and clean.info["perturbation_types"] == []


def test_control_mode():
    sched = Schedule.single("rate_limit", max_per_episode=1)
    with pytest.raises(SimrlError, match="set_control"):
        PerturbedEnv(FakeEnv(), sched, mode="control")
    obedient = ControlFake(obey=True)
    traj = _run(PerturbedEnv(obedient, sched, mode="control"), [LIST, LIST])
    assert traj.info["perturbations"][0]["mode"] == "control"
    instruction = obedient.instructions[0][0]
    assert "429" in instruction and obedient.instructions[1] == {}
    assert len(obedient.executed) == 2  # in control mode the world model produces the error
    stubborn = ControlFake(obey=False)
    traj = _run(PerturbedEnv(stubborn, sched, mode="control"), [LIST, LIST])
    record = traj.info["perturbations"][0]
    assert record["mode"] == "inject" and record["fallback"] is True
    assert traj.turns[0].step.observation.results[0].content.startswith("429")
    for t in traj.turns:  # control instructions never reach the policy's observation
        assert instruction not in t.step.observation.text


def test_close_and_id_pass_through():
    inner = FakeEnv()
    env = PerturbedEnv(inner, Schedule.single("timeout"))
    assert env.env_id == "fake"
    asyncio.run(env.close())
    asyncio.run(env.close())
    assert inner.closed == 2


def test_factory_split_and_checker(tiny_world):
    from simrl.envs.base import make
    from simrl.envs.checker import check_env
    from simrl.perturb import perturbed_factory, split_by_perturbation
    from simrl.world import load_tasks

    assert perturbed_factory(FakeEnv, None) is FakeEnv
    with pytest.raises(SimrlError, match="mode"):
        perturbed_factory(FakeEnv, "gentle", mode="sometimes")
    factory = perturbed_factory(lambda: make("search", world=tiny_world), "fault-heavy", progress=1.0)
    task = load_tasks(tiny_world, type="qa")[0]
    outcomes = asyncio.run(check_env(factory, task))
    assert [(o.name, o.detail) for o in outcomes if not o.passed] == []
    trajs = [_run(PerturbedEnv(FakeEnv(), Schedule.single(k, max_per_episode=1)), [LIST]) for k in ("timeout",
                                                                                                  "schema_drift")]
    trajs.append(_run(FakeEnv(), [LIST]))
    assert [(s.name, s.episodes, s.success) for s in split_by_perturbation(trajs)] == [
        ("schema_drift", 1, 1.0), ("timeout", 1, 1.0), ("none", 1, 1.0)]
