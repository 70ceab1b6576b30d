"""The OpenAI-compatible policy against a real local HTTP endpoint (StubEndpoint): request layout,
reply parsing, a full SearchEnv episode, leakage of gold / simulation facts, retries and errors."""

from __future__ import annotations

import json
import re

import pytest

from simrl.envs.search import SEARCH_TOOLS, SearchEnv
from simrl.errors import SimrlError
from simrl.policies.openai_policy import OpenAIPolicy, PolicyError, parse_arguments, parse_policy_spec
from simrl.rollout import run_episode
from simrl.testing.openai_stub import StubEndpoint, free_port
from simrl.types import Action, Observation, Step, ToolCall, ToolResult, Turn
from simrl.world import load_instructions, load_tasks

VIEW = {"task_id": "t-1", "type": "qa", "prompt": "Where was Ann born?"}
INITIAL = Observation(text="Where was Ann born?", tools=SEARCH_TOOLS)


def _call(name: str, arguments: str | dict, call_id: str = "call_a") -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]}


def _fast(url: str, **kw) -> OpenAIPolicy:
    return OpenAIPolicy(url, "stub-model", **kw)


async def test_request_layout_and_reply_parsing():
    replies = [_call("web_search", {"query": "Ann"}, "call_x"), "I found it. <answer>Paris</answer>"]
    with StubEndpoint(lambda req: replies[len(ep.requests) - 1]) as ep:
        policy = _fast(ep.url, temperature=0.0, max_tokens=64)
        first = await policy.act(VIEW, INITIAL, [])
        assert first.tool_calls == [ToolCall(name="web_search", arguments={"query": "Ann"}, call_id="call_x")]
        step = Step(observation=Observation(text="R1", results=[
            ToolResult(name="web_search", content="R1 results", call_id="call_x")]))
        final = await policy.act(VIEW, INITIAL, [Turn(action=first, step=step)])
        await policy.close()
    assert final.is_final and final.answer == "I found it. <answer>Paris</answer>"
    req0, req1 = ep.requests
    assert req0["tools"] == SEARCH_TOOLS and req0["model"] == "stub-model" and req0["max_tokens"] == 64
    assert [m["role"] for m in req0["messages"]] == ["system", "user"]
    assert "<answer>" in req0["messages"][0]["content"] and req0["messages"][1]["content"] == VIEW["prompt"]
    assert [m["role"] for m in req1["messages"]] == ["system", "user", "assistant", "tool"]
    assistant, tool = req1["messages"][2:]
    assert assistant["tool_calls"][0]["id"] == "call_x" and assistant["tool_calls"][0]["type"] == "function"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"query": "Ann"}
    assert tool == {"role": "tool", "tool_call_id": "call_x", "content": "R1 results"}


async def test_generated_ids_match_tool_messages_and_raw_arguments():
    """Actions without call ids (e.g. scripted ones) get ids; tool messages follow by position."""
    action = Action(tool_calls=[ToolCall(name="web_search", arguments={"query": "a"}),
                                ToolCall(name="web_extractor", arguments={"url": "https://x.example/a"})])
    step = Step(observation=Observation(text="both", results=[ToolResult(name="web_search", content="S"),
                                                              ToolResult(name="web_extractor", content="P")]))
    with StubEndpoint(lambda req: _call("web_search", "{not json", "c9")) as ep:
        policy = _fast(ep.url)
        act = await policy.act(VIEW, INITIAL, [Turn(action=action, step=step)])
        await policy.close()
    assert act.tool_calls[0].arguments == {"_raw": "{not json"} and act.tool_calls[0].call_id == "c9"
    msgs = ep.requests[0]["messages"]
    ids = [c["id"] for c in msgs[2]["tool_calls"]]
    assert len(set(ids)) == 2
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in msgs[3:]] == [
        ("tool", ids[0], "S"), ("tool", ids[1], "P")]
    assert parse_arguments("") == {} and parse_arguments("[1]") == {"_raw": "[1]"}


def _scripted(req: dict) -> dict | str:
    """web_search the prompt, then web_extractor on the first result, then answer with its title."""
    last = req["messages"][-1]
    if last["role"] == "user":
        return _call("web_search", {"query": last["content"]}, "s1")
    called = req["messages"][-2]["tool_calls"][0]["function"]["name"]
    if called == "web_search":
        url = re.search(r"^\[1\] (\S+)", last["content"], re.MULTILINE).group(1)
        return _call("web_extractor", {"url": url}, "s2")
    title = re.search(r"^Title: (.*)$", last["content"], re.MULTILINE).group(1)
    return f"<answer>{title}</answer>"


async def test_full_search_episode_without_leaks(tiny_world):
    task = next(t for t in load_tasks(tiny_world, type="qa"))
    facts = load_instructions(tiny_world)[task.task_id]
    env = SearchEnv(tiny_world)
    with StubEndpoint(_scripted) as ep:
        policy = OpenAIPolicy(ep.url)  # model: the endpoint's first listed model
        traj = await run_episode(env, policy, task, max_turns=6)
        await policy.close()
    await env.close()
    assert traj.info["stop"] == "final_answer" and traj.turns[-1].step.terminated
    assert [t.action.tool_calls[0].name for t in traj.turns[:2]] == ["web_search", "web_extractor"]
    assert not any(r.is_error for t in traj.turns for r in t.step.observation.results)
    assert len(ep.requests) == 3 and all(r["model"] == "stub-model" for r in ep.requests)
    env_outputs = [r.content for t in traj.turns for r in t.step.observation.results]
    secrets = [task.gold.answer, *task.gold.aliases, facts.reference_answer, *facts.facts]
    for req in ep.requests:
        tool_texts = [m["content"] for m in req["messages"] if m["role"] == "tool"]
        assert tool_texts == env_outputs[:len(tool_texts)]  # tool messages are the environment's outputs
        own = json.dumps([m for m in req["messages"] if m["role"] != "tool"] + req["tools"])
        for secret in secrets:
            assert secret.lower() not in own.lower(), f"leak of {secret!r}"
    assert task.gold.answer not in json.dumps(ep.requests[0])


async def test_transient_errors_are_retried_by_the_sdk_honouring_retry_after():
    with StubEndpoint(lambda req: "<answer>x</answer>") as ep:
        ep.fail_next(1, 503)
        policy = _fast(ep.url)
        assert (await policy.act(VIEW, INITIAL, [])).answer == "<answer>x</answer>"
        ep.fail_next(1, 429, {"retry-after": "1"})
        assert (await policy.act(VIEW, INITIAL, [])).is_final
        await policy.close()
    assert len(ep.requests) == 4
    assert ep.arrivals[3] - ep.arrivals[2] >= 0.95  # the 429's Retry-After: 1 s was waited, not the 0.5 s backoff


async def test_permanent_and_exhausted_failures_name_the_url():
    with StubEndpoint(lambda req: "x") as ep:
        ep.fail_next(1, 400)
        policy = _fast(ep.url)
        with pytest.raises(PolicyError, match=re.escape(ep.url)) as err:
            await policy.act(VIEW, INITIAL, [])
        assert "HTTP 400" in str(err.value) and len(ep.requests) == 1  # not retried
        ep.fail_next(3, 502)
        with pytest.raises(PolicyError, match="HTTP 502"):
            await _fast(ep.url, max_retries=2).act(VIEW, INITIAL, [])
        assert len(ep.requests) == 4  # 1 + 2 retries
        await policy.close()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(PolicyError, match=re.escape(dead)):
        await _fast(dead, max_retries=1, timeout=5).act(VIEW, INITIAL, [])


async def test_parse_policy_spec():
    with StubEndpoint(lambda req: "done", model="listed-model") as ep:
        named = parse_policy_spec(f"openai:{ep.url}#my-model", temperature=0.5)
        assert (named.base_url, named.model, named.temperature) == (ep.url, "my-model", 0.5)
        listed = parse_policy_spec(f"openai:{ep.url}")
        assert await listed.resolve_model() == "listed-model"
        await listed.act(VIEW, Observation(text="hi"), [])
        await listed.close()
    assert ep.requests[0]["model"] == "listed-model" and "tools" not in ep.requests[0]
    for bad in ("openai", "vllm:http://x/v1", "openai:127.0.0.1:8000"):
        with pytest.raises(SimrlError, match="bad policy spec"):
            parse_policy_spec(bad)
