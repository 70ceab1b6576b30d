"""Control mode end to end: :class:`~simrl.perturb.PerturbedEnv` (``mode="control"``) over a
:class:`~simrl.wm.env.WorldModelEnv` whose ``openai`` backend talks to a real local OpenAI-compatible
server (StubEndpoint on 127.0.0.1).

The stub "world model" renders the ORACLE's observation for each requested action (the world's real
search tools, :func:`simrl.envs.search.call_tool`), and, when its last user message carries a control
instruction, obeys it for some perturbation types (a 503, a 429, an empty result) and ignores it for
the others (clean observation). So compliance is measured on real requests, the inject fallback is
exercised, and the scripted SearchExpert can still solve tasks through it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from simrl.envs.base import make, write_tools
from simrl.envs.search import call_tool
from simrl.errors import SimrlError
from simrl.perturb import PerturbContext, PerturbedEnv, Schedule, parse_schedule, perturbation_class
from simrl.perturb.inject import compliance_rates
from simrl.perturb.summary import perturbed_factory
from simrl.policies.expert import SearchExpert
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import rollout, run_episode
from simrl.testing.openai_stub import StubEndpoint
from simrl.types import Action, Observation, ToolCall
from simrl.wm import oracle
from simrl.wm.cache import ResponseCache
from simrl.wm.env import RETRY_SEED_STRIDE, WorldModelEnv
from simrl.wm.openai_backend import OpenAIBackend
from simrl.wm.prompts import CONTROL_HEADER
from simrl.world import WorldIndex, load_graph, load_tasks

OBEYED = ["empty_result", "rate_limit", "server_error"]
IGNORED = ["schema_drift", "timeout"]
MARKERS = {"empty_result": "well-formed empty result", "rate_limit": "rate limited",
           "server_error": "transient server error", "schema_drift": "format has drifted", "timeout": "times out"}


# -- the stub world model ----------------------------------------------------------------------------
def parse_request(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``(tool call {"name", "arguments"}, control instruction or None)`` from a request's last user message."""
    last = body["messages"][-1]["content"]
    call = json.loads(last.split("```json\n", 1)[1].split("\n```", 1)[0])
    control = last.split(CONTROL_HEADER + "\n", 1)[1].strip() if CONTROL_HEADER in last else None
    return call, control


def obey(control: str, call: dict[str, Any]) -> str | None:
    """A compliant observation for the instructions this stub follows (503, 429, empty); else None."""
    if "transient server error" in control:
        return "503 Service Unavailable: the request was not applied; it can be retried."
    if "rate limited" in control:
        wait = re.search(r"after (\d+) seconds", control)
        return f"429 Too Many Requests: retry after {wait.group(1) if wait else 1} s (Retry-After: 1)"
    if "well-formed empty result" in control and call["name"] == "web_search":
        args = call["arguments"]
        queries = args.get("queries") or [args.get("query", "")]
        return "\n\n=======\n\n".join(f"No results found for '{q}'. Try a shorter or different query."
                                        for q in queries)
    return None


class WorldStub:
    """The stub's responder: the oracle's observation, perturbed when instructed and willing.

    Attributes:
        min_temperature: obey only requests sampled at least this hot (a re-sample after a refusal).
        echo: put the control instruction's text into the prediction too (exercises the leak guard).
        reply: a fixed prediction for every request instead (e.g. ``{"ok": true}`` for record tools).
    """

    def __init__(self, world) -> None:
        self.world, self.min_temperature, self.echo, self.reply = world, 0.0, False, None

    def __call__(self, body: dict[str, Any]) -> str:
        call, control = parse_request(body)
        text = self.reply
        if text is None:
            result = call_tool(oracle.shared_index(self.world), ToolCall(name=call["name"], arguments=call["arguments"]))
            text = result.content
        if control and body.get("temperature", 0.0) >= self.min_temperature:
            text = obey(control, call) or text
        if control and self.echo:
            text = f"{control}\n{text}"
        return f"<think>simulating {call['name']}</think><predicted_observation>{text}</predicted_observation>"


@pytest.fixture(scope="module")
def endpoint(tiny_world):
    stub = WorldStub(tiny_world)
    with StubEndpoint(stub) as ep:
        ep.stub = stub
        yield ep


@pytest.fixture
def ep(endpoint):
    endpoint.requests.clear()
    endpoint.stub.min_temperature, endpoint.stub.echo, endpoint.stub.reply = 0.0, False, None
    return endpoint


def _wm(world, ep, env_id="search", **kw) -> WorldModelEnv:
    return WorldModelEnv(env_id, world, OpenAIBackend(ep.url, "stub-model", timeout=5), **kw)


def _task(world, kind="qa", template=None):
    return next(t for t in load_tasks(world, type=kind) if template is None or t.template == template)


def _query(world) -> str:
    """A query with results: the name of the first qa task's first evidence entity."""
    return load_graph(world).nodes[_task(world).evidence.entity_ids[0]]["name"]


def _controls(ep) -> list[str]:
    """Every control instruction the stub received, in order."""
    return [c for _, c in map(parse_request, ep.requests) if c]


def _assert_no_leak(policy_inputs: list[str], instructions: list[str]) -> None:
    """No control instruction (nor its header) in anything the policy received."""
    assert instructions
    for text in policy_inputs:
        assert CONTROL_HEADER not in text
        for instruction in instructions:
            assert instruction not in text


class Recorder:
    """Wraps a policy and keeps the JSON of everything it is given (task view, first observation, turns)."""

    def __init__(self, policy) -> None:
        self.policy, self.seen = policy, []

    async def act(self, task_view, initial: Observation, turns) -> Action:
        self.seen.append(json.dumps(task_view) + initial.model_dump_json()
                         + "".join(t.model_dump_json() for t in turns))
        return await self.policy.act(task_view, initial, turns)


# -- one perturbed call per type ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", OBEYED + IGNORED)
async def test_compliance_per_type_and_the_policy_sees_a_perturbation_either_way(kind, tiny_world, ep):
    env = PerturbedEnv(_wm(tiny_world, ep), Schedule.single(kind, 1.0, max_per_episode=1, tools=["web_search"]),
                       mode="control")
    call = ToolCall(name="web_search", arguments={"query": _query(tiny_world)})
    assert "found" in call_tool(oracle.shared_index(tiny_world), call).content
    first = await env.reset(_task(tiny_world), seed=0)
    step = await env.step(Action(tool_calls=[call]))
    again = await env.step(Action(tool_calls=[call]))  # the cap is 1: no control, a clean result
    final = await env.step(Action.final("no idea"))
    await env.close()

    clean = call_tool(oracle.shared_index(tiny_world), call).content
    text = step.observation.results[0].content
    assert text != clean and perturbation_class(kind)().complies(text, PerturbContext(call=call))
    assert again.observation.results[0].content == clean and "perturbations" not in again.info
    record = step.info["perturbations"][0]
    assert (record["type"], record["retries"], record["complied"]) == (kind, 0, kind in OBEYED)
    counts = env.compliance[kind]
    if kind in OBEYED:
        assert record["mode"] == "control" and "fallback" not in record and text == obey(_controls(ep)[0], {
            "name": "web_search", "arguments": call.arguments})
        assert (counts["complied_first_try"], counts["fell_back"]) == (1, 0)
    else:
        assert record["mode"] == "inject" and record["fallback"] is True
        assert (counts["complied_first_try"], counts["fell_back"]) == (0, 1)
    assert counts["attempts"] == 1 and "control" not in step.info  # the env's attempts went into the record
    instructions = _controls(ep)  # the instruction is in the world model's input, for that call only
    assert len(instructions) == 1 and len(ep.requests) == 2
    assert MARKERS[kind] in instructions[0] and CONTROL_HEADER in ep.requests[0]["messages"][-1]["content"]
    _assert_no_leak([first.model_dump_json(), step.model_dump_json(), again.model_dump_json(),
                     final.model_dump_json()], instructions)


async def test_set_control_targets_calls_of_the_next_step_only_and_keys_the_cache(tiny_world, ep, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    env = _wm(tiny_world, ep, cache=cache, control="Keep it realistic.")
    await env.reset(_task(tiny_world), seed=0)
    calls = [ToolCall(name="web_search", arguments={"query": _query(tiny_world)}),
             ToolCall(name="web_search", arguments={"query": "second"})]
    env.set_control({1: "This call is rate limited: say so."})
    step = await env.step(Action(tool_calls=calls))
    assert [c for _, c in map(parse_request, ep.requests)] == [
        "Keep it realistic.", "Keep it realistic.\n\nThis call is rate limited: say so."]
    assert step.info["control"] == [{"call": 1, "attempts": 1, "complied": None}]
    assert step.observation.results[1].content.startswith("429")  # the stub obeyed call 1 only
    await env.reset(_task(tiny_world), seed=0)  # same history; the control was cleared after one step
    again = await env.step(Action(tool_calls=calls))  # call 0: a cache hit; call 1: a new key without control
    assert "control" not in again.info and len(ep.requests) == 3 and cache.hits == 1
    assert again.observation.results[1].content != step.observation.results[1].content
    with pytest.raises(SimrlError, match="retries"):
        env.set_control({}, retries=-1)
    await env.close()


# -- retries, the leak guard, the oracle --------------------------------------------------------------
async def _one_controlled_call(world, ep, kind="server_error", retries=0, make_env=None):
    env = PerturbedEnv(make_env() if make_env else _wm(world, ep),
                       Schedule.single(kind, 1.0, max_per_episode=1, tools=["web_search"]),
                       mode="control", control_retries=retries)
    await env.reset(_task(world), seed=0)
    step = await env.step(Action.call("web_search", query=_query(world)))
    await env.close()
    return env, step


async def test_retries_re_ask_with_a_new_seed_until_the_world_model_complies(tiny_world, ep):
    ep.stub.min_temperature = 0.6  # obeys only a re-sample (the first ask is greedy)
    env, step = await _one_controlled_call(tiny_world, ep, retries=0)
    assert step.info["perturbations"][0]["fallback"] and env.compliance["server_error"]["fell_back"] == 1
    assert len(ep.requests) == 1

    ep.requests.clear()
    env, step = await _one_controlled_call(tiny_world, ep, retries=2)
    record = step.info["perturbations"][0]
    assert (record["mode"], record["complied"], record["retries"]) == ("control", True, 1)
    assert env.compliance["server_error"] == {"attempts": 1, "complied_first_try": 0, "complied_after_retry": 1,
                                              "fell_back": 0, "not_applied": 0}
    assert [r.get("seed") for r in ep.requests] == [None, RETRY_SEED_STRIDE]
    assert [r["temperature"] for r in ep.requests] == [0.0, 0.6]
    assert len(_controls(ep)) == 2 and step.observation.text.startswith("503")
    assert env.unwrapped.stats["control_retries"] == 1

    ep.requests.clear()
    ep.stub.min_temperature = 9.0  # never obeys: N re-asks, then the inject fallback
    env, step = await _one_controlled_call(tiny_world, ep, retries=2)
    record = step.info["perturbations"][0]
    assert (record["mode"], record["fallback"], record["complied"], record["retries"]) == ("inject", True, False, 2)
    assert len(ep.requests) == 3 and len({r.get("seed") for r in ep.requests}) == 3
    assert re.search(r"\b50[023]\b", step.observation.text)


async def test_an_echoed_instruction_is_stripped_and_never_counts_as_complied(tiny_world, ep):
    ep.stub.echo = True
    env, step = await _one_controlled_call(tiny_world, ep, kind="rate_limit")
    (instruction,) = _controls(ep)
    assert "429 Too Many Requests" in step.observation.text and instruction not in step.observation.text
    assert step.info["redacted_lines"] == 1 and step.info["leak_control"] == 1 and step.info["leaked"] is True
    record = step.info["perturbations"][0]
    assert (record["complied"], record["mode"], record.get("fallback")) == (False, "inject", True)
    assert env.compliance["rate_limit"]["complied_first_try"] == 0


async def test_the_oracle_cannot_follow_control_so_every_perturbation_is_injected(tiny_world):
    made = []

    def make_env():
        made.append(make("search", world=tiny_world, world_model="oracle"))
        return made[-1]

    env, step = await _one_controlled_call(tiny_world, None, retries=3, make_env=make_env)
    record = step.info["perturbations"][0]
    assert (record["mode"], record["fallback"], record["complied"], record["retries"]) == ("inject", True, False, 0)
    assert env.compliance["server_error"]["fell_back"] == 1 and env.backend_name == "oracle"
    assert step.observation.text.startswith("50") and made[0].unwrapped.stats["calls"] == 0


@pytest.mark.parametrize("backend", ["oracle", "openai"])
async def test_a_controlled_error_on_a_write_never_reaches_the_ground_truth(backend, tiny_world, ep):
    """An error replaces the call: whether the world model obeys or the wrapper injects, nothing is written."""
    task = _task(tiny_world, "records", "set_employees")
    solved = await run_episode(make("mcp-world", world=tiny_world, world_model="oracle"),
                               RecordsExpert(tiny_world, [task]), task, max_turns=20)
    assert solved.reward == 1.0
    writes = [c for t in solved.turns for c in t.action.tool_calls if c.name in write_tools()]
    ep.stub.reply = '{"ok": true}'  # the stub obeys the 5xx instruction; the oracle cannot (fallback)

    def inner():
        return make("mcp-world", world=tiny_world, world_model="oracle") if backend == "oracle" \
            else _wm(tiny_world, ep, env_id="mcp-world")

    for schedule, expected in ((Schedule.single("server_error", 1.0, tools=sorted(write_tools())), 0.0),
                               (Schedule.single("server_error", 0.0), 1.0)):
        env = PerturbedEnv(inner(), schedule, mode="control")
        await env.reset(task, seed=0)
        steps = [await env.step(Action(tool_calls=[call])) for call in writes]
        final = await env.step(Action.final("done"))
        await env.close()
        assert final.reward == expected, (backend, schedule.name)
        if expected == 0.0:
            records = [s.info["perturbations"][0] for s in steps]
            assert all(r["mode"] == ("inject" if backend == "oracle" else "control") for r in records)
            assert all(s.observation.results[0].is_error and "shadow_ok" not in s.info for s in steps)


# -- a rollout of the scripted expert under a schedule, in control mode ----------------------------------
async def test_search_expert_rollout_in_control_mode(tiny_world, ep):
    tasks = [t for t in load_tasks(tiny_world) if t.type == "qa"][:5] + \
        [t for t in load_tasks(tiny_world) if t.type == "table"][:1]
    schedule = parse_schedule({"name": "mixed-control", "cooldown_calls": 1, "max_per_episode": 4, "perturbations": {
        "server_error": {"rate": 0.3, "max_per_episode": 1}, "rate_limit": {"rate": 0.3, "max_per_episode": 1},
        "empty_result": {"rate": 0.3, "max_per_episode": 1, "tools": ["web_search"]},
        "timeout": {"rate": 0.3, "max_per_episode": 1}}})
    backend = OpenAIBackend(ep.url, "stub-model", timeout=5)
    factory = perturbed_factory(lambda: make("search", world=tiny_world, world_model=backend, max_turns=60),
                                schedule, progress=1.0, mode="control")
    policy = Recorder(SearchExpert(WorldIndex(load_graph(tiny_world)), tasks))
    trajs = await rollout(factory, policy, tasks, max_turns=60, concurrency=3)

    assert [t.status for t in trajs] == ["success"] * len(trajs), [(t.task_id, t.info) for t in trajs]
    assert {t.backend for t in trajs} == {"openai"}
    met = [p for t in trajs for p in t.info["perturbations"]]
    assert all("complied" in p for p in met)
    modes = {(p["type"], p["mode"], p.get("fallback", False)) for p in met}
    assert {m for m in modes if m[0] in OBEYED} <= {(k, "control", False) for k in OBEYED}
    assert {m for m in modes if m[0] not in OBEYED} <= {("timeout", "inject", True)}
    assert any(m[1] == "control" for m in modes) and ("timeout", "inject", True) in modes
    rates = compliance_rates([t.model_dump(mode="json") for t in trajs])  # as read back from JSONL
    assert rates == compliance_rates(trajs) and sum(r["attempts"] for r in rates.values()) == len(met)
    assert all(r["rate"] == (0.0 if k == "timeout" else 1.0) for k, r in rates.items())
    _assert_no_leak(policy.seen + [t.model_dump_json() for t in trajs], _controls(ep))
