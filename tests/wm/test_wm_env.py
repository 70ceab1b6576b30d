"""The world-model environment against real components: generated worlds, the oracle (real search
index, the record server's tools in process), and the openai backend talking to a real local
OpenAI-compatible HTTP server (StubEndpoint on 127.0.0.1)."""

from __future__ import annotations

import json
import time

import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.envs.base import make
from simrl.envs.checker import check_env
from simrl.envs.mcp_env import WorldMCPEnv
from simrl.errors import SimrlError
from simrl.policies.expert import SearchExpert
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import rollout, run_episode
from simrl.testing.openai_stub import StubEndpoint
from simrl.types import Action, ToolCall
from simrl.wm import prompts
from simrl.wm.cache import ResponseCache
from simrl.wm.env import WorldModelEnv
from simrl.wm.factory import make_backend
from simrl.wm.openai_backend import OpenAIBackend
from simrl.wm.prompts import looks_like_error
from simrl.world import WorldIndex, load_graph, load_instructions, load_tasks


def _task(world, kind, template=None):
    return next(t for t in load_tasks(world, type=kind) if template is None or t.template == template)


def _reply(body: dict) -> str:
    """Stub world model: echoes the current action's tool name in a parseable prediction."""
    last = body["messages"][-1]["content"]
    call = json.loads(last.split("```json\n", 1)[1].split("\n```", 1)[0])
    return f"<think>simulating {call['name']}</think><predicted_observation>result of {call['name']}</predicted_observation>"


class Responder:
    """A switchable responder, so one endpoint serves every test of the module."""

    def __init__(self) -> None:
        self.fn = _reply

    def __call__(self, body: dict) -> str:
        return self.fn(body)


@pytest.fixture(scope="module")
def endpoint():
    responder = Responder()
    with StubEndpoint(responder) as ep:
        ep.responder_holder = responder
        yield ep


@pytest.fixture
def ep(endpoint):
    endpoint.requests.clear()
    endpoint.responder_holder.fn = _reply
    return endpoint


def _wm(world, ep, env_id="search", **kw) -> WorldModelEnv:
    backend = OpenAIBackend(ep.url, "stub-model", timeout=5, max_retries=kw.pop("max_retries", 3))
    return WorldModelEnv(env_id, world, backend, **kw)


# -- prompts ----------------------------------------------------------------------------------------
def test_prompt_layout_and_parse(tmp_path):
    messages = prompts.build_messages("SYS", [("web_search", {"query": "a"}, "obs one")], "web_extractor",
                                      {"url": "u"}, control="return a partial page")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == ('### Turn 1\n\n**Action:**\n```json\n'
                                      '{"name": "web_search", "arguments": {"query": "a"}}\n```')
    assert messages[2]["content"] == "**Environment Observation:**\nobs one"
    assert messages[3]["content"].startswith("### Turn 2\n\n**Action:**\n```json\n{\"name\": \"web_extractor\"")
    assert messages[3]["content"].endswith("**Control Instruction:**\nreturn a partial page")
    assert prompts.parse_prediction("<think><predicted_observation>no</predicted_observation></think>"
                                    "<predicted_observation>\nyes\n</predicted_observation>") == "yes"
    assert prompts.parse_prediction("<predicted_observation>cut off") is None
    assert prompts.strip_think("<think>x</think> body ") == "body" and prompts.strip_think("a</think>b") == "b"
    template = tmp_path / "t.txt"
    template.write_text('You simulate. JSON like {"a": 1} is fine.\nTOOLS:\n{tools}\n', encoding="utf-8")
    system = prompts.system_prompt("search", [{"type": "function", "function": {"name": "t"}}],
                                   template=prompts.load_template(template))
    assert system.startswith('You simulate. JSON like {"a": 1}') and '"name": "t"' in system
    assert "<predicted_observation>" in system and "# Role" not in system


def test_facts_reach_the_world_model_not_the_policy(tiny_world, ep):
    task = _task(tiny_world, "qa")
    instruction = load_instructions(tiny_world)[task.task_id]

    async def main():
        env = _wm(tiny_world, ep, control="SECRET-CONTROL")
        obs = await env.reset(task, seed=0)
        step = await env.step(Action.call("web_search", query="anything"))
        await env.close()
        return obs, step

    import asyncio

    obs, step = asyncio.run(main())
    policy_side = obs.model_dump_json() + step.observation.model_dump_json()
    system = ep.requests[0]["messages"][0]["content"]
    for secret in (instruction.reference_answer, *instruction.facts, "SECRET-CONTROL"):
        assert secret not in policy_side
    assert instruction.reference_answer in system and instruction.facts[0] in system
    assert "SECRET-CONTROL" in ep.requests[0]["messages"][-1]["content"]
    assert obs.text == task.prompt and obs.tools[0]["function"]["name"] == "web_search"
    assert step.observation.results[0].content == "result of web_search"


# -- oracle -----------------------------------------------------------------------------------------
async def test_oracle_search_expert_reaches_full_reward(tiny_world):
    tasks = [t for t in load_tasks(tiny_world) if t.type in ("qa", "table")][:12]
    expert = SearchExpert(WorldIndex(load_graph(tiny_world)), tasks)
    for task in tasks:
        env = make("search", world=tiny_world, world_model="oracle")
        assert isinstance(env.unwrapped, WorldModelEnv) and env.env_id == "search" and env.backend_name == "oracle"
        traj = await run_episode(env, expert, task, max_turns=60, backend=env.backend_name)
        await env.close()
        assert traj.reward == 1.0 and traj.status == "success", (task.task_id, traj.info)


async def test_oracle_records_one_page_and_shadow_writes(tiny_world):
    read = next(t for t in load_tasks(tiny_world, type="records") if t.gold.min_pages > 1)
    write = _task(tiny_world, "records", "set_employees")
    expert = RecordsExpert(tiny_world, [read, write])
    env = make("mcp-world", world=tiny_world, world_model="oracle")
    traj = await run_episode(env, expert, read, max_turns=30)
    lists = [t for t in traj.turns if t.action.tool_calls and t.action.tool_calls[0].name != "find_by_name"]
    assert traj.reward == 1.0 and len(lists) == 1  # the real server needs min_pages > 1 pages
    assert json.loads(lists[0].step.observation.results[0].content)["next_cursor"] is None
    traj = await run_episode(env, expert, write, max_turns=30)
    assert traj.reward == 1.0 and traj.status == "success"
    await env.reset(write, seed=1)  # a fresh shadow store: the write is gone
    assert (await env.step(Action.final("done"))).reward == 0.0
    await env.close()
    await env.close()


async def test_record_tools_are_the_real_servers(tiny_world):
    real = WorldMCPEnv(tiny_world)
    try:
        real_tools = (await real.reset(_task(tiny_world, "records"))).tools
    finally:
        await real.close()
    env = make("mcp-world", world=tiny_world, world_model="oracle")
    assert (await env.reset(_task(tiny_world, "records"))).tools == real_tools
    await env.close()


# -- openai backend ---------------------------------------------------------------------------------
async def test_openai_backend_layout_cache_and_hits(tiny_world, ep, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    task = _task(tiny_world, "qa")

    async def episode():
        env = _wm(tiny_world, ep, cache=cache)
        await env.reset(task, seed=0)
        one = await env.step(Action.call("web_search", query="q1"))
        two = await env.step(Action(tool_calls=[ToolCall(name="web_extractor", arguments={"url": "https://x"})]))
        await env.close()
        return one, two

    one, two = await episode()
    assert one.observation.text == "result of web_search" and not one.observation.results[0].is_error
    assert two.observation.results[0].content == "result of web_extractor"
    messages = ep.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"].startswith("### Turn 1\n\n**Action:**\n```json\n")
    assert messages[2]["content"] == "**Environment Observation:**\nresult of web_search"
    assert json.loads(messages[3]["content"].split("```json\n")[1].split("\n```")[0]) == \
        {"name": "web_extractor", "arguments": {"url": "https://x"}}
    assert ep.requests[0]["model"] == "stub-model" and ep.requests[0]["temperature"] == 0.0
    assert (cache.hits, cache.misses, len(ep.requests)) == (0, 2, 2)
    again = await episode()
    assert again == (one, two) and (cache.hits, len(ep.requests)) == (2, 2)  # no new request


async def test_replay_miss_is_an_env_failure(tiny_world, ep, tmp_path):
    ResponseCache(tmp_path / "c").close()
    env = _wm(tiny_world, ep, cache=ResponseCache(tmp_path / "c", "replay"))
    await env.reset(_task(tiny_world, "qa"))
    step = await env.step(Action.call("web_search", query="never recorded"))
    assert step.truncated and step.info["env_failure"] and "replay mode" in step.info["error"]
    assert not ep.requests
    await env.close()


async def test_retries_5xx_and_429_then_succeeds_and_4xx_fails_at_once(tiny_world, ep):
    env = _wm(tiny_world, ep)
    await env.reset(_task(tiny_world, "qa"))
    ep.fail_next(2, 503)
    step = await env.step(Action.call("web_search", query="q"))
    assert step.observation.text == "result of web_search" and not step.info.get("env_failure")
    assert len(ep.requests) == 3 and env.backend.retries == 2 and env.stats["calls"] == 1
    ep.fail_next(1, 429, {"retry-after": "1"})
    step = await env.step(Action.call("web_search", query="q1"))
    assert not step.info.get("env_failure") and len(ep.requests) == 5
    assert ep.arrivals[-1] - ep.arrivals[-2] >= 0.95  # Retry-After: 1 s honoured (the SDK backoff starts at 0.5 s)
    ep.requests.clear()
    ep.fail_next(1, 404)
    step = await env.step(Action.call("web_search", query="q2"))
    assert step.truncated and step.info["env_failure"] and "HTTP 404" in step.info["error"]
    assert len(ep.requests) == 1
    await env.close()


async def test_endpoint_down_is_a_bounded_fast_env_failure(tiny_world):
    down = StubEndpoint(_reply).start()
    down.stop()
    env = WorldModelEnv("search", tiny_world, OpenAIBackend(down.url, "m", timeout=2, max_retries=1))
    await env.reset(_task(tiny_world, "qa"))
    start = time.monotonic()
    step = await env.step(Action.call("web_search", query="q"))
    assert step.truncated and step.info["env_failure"] and "connection failed" in step.info["error"]
    assert env.stats["calls"] == 1 and env.backend.retries == 1 and time.monotonic() - start < 5
    await env.close()


async def test_unparseable_output_is_retried_then_marked(tiny_world, ep):
    ep.responder_holder.fn = lambda body: "<think>hmm</think>Error: the page moved"
    env = _wm(tiny_world, ep, max_parse_retries=1)
    await env.reset(_task(tiny_world, "qa"))
    step = await env.step(Action.call("web_search", query="q"))
    assert len(ep.requests) == 2 and ep.requests[1]["temperature"] == 0.6
    assert step.info["unparsed"] and step.info["parse_retries"] == 1 and not step.info.get("env_failure")
    result = step.observation.results[0]
    assert result.content == "Error: the page moved" and result.is_error
    await env.close()


async def test_leak_guard_and_error_heuristic(tiny_world, ep):
    task = _task(tiny_world, "qa")
    answer = load_instructions(tiny_world)[task.task_id].reference_answer
    ep.responder_holder.fn = lambda body: (f"<predicted_observation>page text\nReference answer: {answer}"
                                           "</predicted_observation>")
    env = _wm(tiny_world, ep)
    await env.reset(task)
    step = await env.step(Action.call("web_search", query="q"))
    assert step.observation.text == "page text" and step.info["redacted_lines"] == 1
    await env.close()
    assert looks_like_error("404 Not Found: x") and looks_like_error("503 Service Unavailable")
    assert looks_like_error("Error executing tool get_record: no record")
    assert not looks_like_error('{"records": []}') and not looks_like_error("2024 was a year")


async def test_wm_writes_go_to_the_shadow_store(tiny_world, ep):
    task = _task(tiny_world, "records", "set_employees")
    expert = RecordsExpert(tiny_world, [task])
    graph = load_graph(tiny_world)
    org_name = graph.nodes[task.evidence.entity_ids[0]]["name"]
    org_id = task.evidence.entity_ids[0]

    def reply(body):
        if "find_by_name" in body["messages"][-1]["content"]:
            record = {"id": org_id, "type": "organization", "name": org_name, "match": "exact"}
            return f"<predicted_observation>{json.dumps({'records': [record], 'total': 1})}</predicted_observation>"
        return '<predicted_observation>{"ok": true}</predicted_observation>'

    ep.responder_holder.fn = reply
    env = _wm(tiny_world, ep, env_id="mcp-world")
    traj = await run_episode(env, expert, task, max_turns=10, backend=env.backend_name)
    await env.close()
    assert traj.reward == 1.0 and traj.backend == "openai"
    assert any(t.step.info.get("shadow_ok") for t in traj.turns)


async def test_env_failures_never_end_a_rollout(tiny_world, ep):
    tasks = [t for t in load_tasks(tiny_world, type="qa")][:4]
    expert = SearchExpert(WorldIndex(load_graph(tiny_world)), tasks)
    ep.fail_next(8, 500)  # 4 episodes x (1 call + 1 retry)
    trajs = await rollout(lambda: _wm(tiny_world, ep, max_retries=1), expert, tasks, concurrency=4)
    assert [t.status for t in trajs] == ["env_failure"] * 4 and len(ep.requests) == 8


# -- checker, make, factory, CLI --------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["search", "mcp-world"])
async def test_checker_passes_oracle_and_openai(tiny_world, ep, env_id):
    task = _task(tiny_world, "records" if env_id == "mcp-world" else "qa")
    for factory in (lambda: make(env_id, world=tiny_world, world_model="oracle"),
                    lambda: _wm(tiny_world, ep, env_id=env_id)):
        outcomes = await check_env(factory, task)
        assert all(o.passed for o in outcomes), [o for o in outcomes if not o.passed]


def test_make_routes_and_factory_errors(tiny_world, monkeypatch):
    assert type(make("search", world=tiny_world).unwrapped).__name__ == "SearchEnv"
    assert type(make("search", world=tiny_world, world_model="real").unwrapped).__name__ == "SearchEnv"
    env = make("mcp-world", world=tiny_world, world_model="openai", wm_base_url="http://127.0.0.1:9/v1",
               wm_model="m")
    assert env.env_id == "mcp-world" and env.backend_name == "openai"
    with pytest.raises(SimrlError, match="need world_model"):
        make("search", world=tiny_world, wm_model="m")
    with pytest.raises(SimrlError, match="base URL"):
        make("search", world=tiny_world, world_model="openai")
    with pytest.raises(SimrlError, match="unknown world-model backend"):
        make_backend("crystal-ball")
    assert make_backend("oracle") == "oracle"
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llama_cpp" else real_find(n, *a))
    with pytest.raises(SimrlError, match=r"pip install 'simrl\[llamacpp\]'"):
        make_backend("llamacpp")


def test_cli_env_check_with_world_models(tiny_world, ep, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["env", "check", "search", "mcp-world", "--world", str(tiny_world),
                                 "--world-model", "oracle"])
    assert result.exit_code == 0, result.output
    assert result.output.count(" ok") == 8
    result = runner.invoke(app, ["env", "check", "search", "--world", str(tiny_world), "--world-model", "openai",
                                 "--wm-base-url", ep.url, "--wm-model", "stub-model", "--wm-cache",
                                 str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["env", "check", "search", "--world", str(tiny_world), "--world-model", "magic"])
    assert bad.exit_code == 2


async def test_any_mcp_server_tool_list_is_read_from_the_server(tiny_world, ep):
    import sys

    command = [sys.executable, "-m", "simrl.cli.main", "serve", "mcp", "--world", str(tiny_world)]
    env = make("mcp", server_command=command, world_model="openai", wm_base_url=ep.url, wm_model="stub-model")
    obs = await env.reset(_task(tiny_world, "qa"))
    assert env.env_id == "mcp" and "list_members" in {t["function"]["name"] for t in obs.tools}
    step = await env.step(Action.call("get_record", id="organization:000001"))
    assert step.observation.text == "[get_record]\nresult of get_record"
    system = ep.requests[0]["messages"][0]["content"]
    assert system.startswith("# Role\nYou are an MCP server world model") and '"name": "list_members"' in system
    await env.close()


def test_cli_rollout_with_the_oracle(tiny_world, tmp_path):
    out = tmp_path / "trajs.jsonl"
    result = CliRunner().invoke(app, ["rollout", "--env", "mcp-world", "--world", str(tiny_world), "--out", str(out),
                                      "--split", "train", "-n", "3", "--world-model", "oracle"])
    assert result.exit_code == 0, result.output
    trajs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(trajs) == 3 and all(t["status"] == "success" for t in trajs)
    bad = CliRunner().invoke(app, ["rollout", "--env", "search", "--world", str(tiny_world), "--out",
                                   str(tmp_path / "other.jsonl"), "--wm-model", "m"])
    assert bad.exit_code == 2 and "--world-model" in bad.output
