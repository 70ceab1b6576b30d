"""The leakage guard against adversarial world models: one real local OpenAI-compatible endpoint
(StubEndpoint on 127.0.0.1) whose "world model" leaks on purpose, one route at a time, for every
environment that has a world-model version (``search``, ``mcp-world``, ``mcp`` over any server's tools;
``bfcl`` has none: :func:`simrl.wm.env_truth.supported`).

Routes: the whole prompt echoed; ``reference answer = <gold>`` in lower case; the control instruction
case-changed or reworded; the tool definitions echoed. And the false-positive rule: a gold answer
the real observation shows at that turn stays.
"""

from __future__ import annotations

import json
import random

import pytest

from simrl.envs.search import call_tool
from simrl.rollout import run_episode
from simrl.testing.openai_stub import StubEndpoint
from simrl.types import Action, ToolCall
from simrl.wm import oracle, prompts
from simrl.wm.env import WorldModelEnv
from simrl.wm.env_truth import supported
from simrl.wm.leak_guard import REFUSED, LeakGuard, Secrets, normalise
from simrl.wm.openai_backend import OpenAIBackend
from simrl.world import load_instructions, load_tasks
from simrl.world.schema import Evidence, QAGold, Task

GENERIC_TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look up an item of the inventory by its exact name and return its record.",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}]
SECRET = "Zanzibar Quillfeather"
CONTROL = "This call fails with a transient server error: reply with an 'HTTP 503' error saying it was not applied."


class Leaker:
    """The stub's responder: a clean observation plus the leak of ``route``."""

    def __init__(self, world) -> None:
        self.world, self.route, self.gold = world, "none", ""

    def clean(self, body) -> str:
        last = body["messages"][-1]["content"]
        call = json.loads(last.split("```json\n", 1)[1].split("\n```", 1)[0])
        if call["name"] in ("web_search", "web_extractor"):
            return call_tool(oracle.shared_index(self.world), ToolCall(name=call["name"], arguments=call["arguments"])).content
        return json.dumps({"records": [], "next_cursor": None, "total": 0})

    def leak(self, body) -> str:
        messages, last = body["messages"], body["messages"][-1]["content"]
        control = last.split(prompts.CONTROL_HEADER + "\n", 1)[1] if prompts.CONTROL_HEADER in last else ""
        words = control.replace(":", "").replace("'", "").split()
        random.Random(0).shuffle(words)
        tools = messages[0]["content"].split("```json\n", 1)[1].split("\n```", 1)[0]
        return {"none": "", "prompt": "\n\n".join(m["content"] for m in messages),
                "gold": f"reference answer = {self.gold.lower()}", "control_case": control.upper(),
                "control_reworded": "as asked: " + " ".join(words).lower(), "tools": tools}[self.route]

    def __call__(self, body) -> str:
        text = f"{self.clean(body)}\n{self.leak(body)}".strip()
        return f"<think>x</think><predicted_observation>{text}</predicted_observation>"


@pytest.fixture(scope="module")
def endpoint(tiny_world):
    leaker = Leaker(tiny_world)
    with StubEndpoint(leaker) as ep:
        ep.leaker = leaker
        yield ep


def _qa(tiny_world):
    task = next(t for t in load_tasks(tiny_world, type="qa"))
    return task, load_instructions(tiny_world)[task.task_id]


def _records(tiny_world):
    task = next(t for t in load_tasks(tiny_world, type="records") if t.gold.kind == "read" and t.gold.answer)
    return task, load_instructions(tiny_world).get(task.task_id)


def _generic():
    task = Task(task_id="g-1", type="qa", split="test", prompt="Which item is the rarest?",
                gold=QAGold(answer=SECRET), evidence=Evidence(), hops=1, difficulty="easy", template="probe")
    return task, None


CASES = {"search": (_qa, Action.call("web_search", query="weather report")),
         "mcp-world": (_records, Action.call("search_records", type="person", filters={"name": "nobody"})),
         "mcp": (_generic, Action.call("lookup", name="spoon"))}


async def _step(env_id, world, ep, route, control=None):
    make_task, action = CASES[env_id]
    task, instruction = make_task(world) if env_id != "mcp" else make_task()
    ep.leaker.route, ep.leaker.gold = route, task.gold.answer
    env = WorldModelEnv(env_id, world if env_id != "mcp" else None, OpenAIBackend(ep.url, "stub", timeout=5),
                        tools=GENERIC_TOOLS if env_id == "mcp" else None)
    await env.reset(task)
    if control:
        env.set_control({0: control}, checks={0: lambda text: "503" in text})
    step = await env.step(action)
    await env.close()
    return task, instruction, step


def _shown(step) -> str:
    return normalise(step.observation.model_dump_json())


def test_every_world_model_env_is_covered():
    assert set(supported()) == set(CASES)


@pytest.mark.parametrize("env_id", sorted(CASES))
async def test_an_echoed_prompt_is_refused(env_id, tiny_world, endpoint):
    task, instruction, step = await _step(env_id, tiny_world, endpoint, "prompt", control=CONTROL)
    assert step.observation.results[0].content == REFUSED
    assert step.info["leak_refused"] == 1 and step.info["leaked"] is True
    assert step.info["control"][0]["complied"] is False and step.info["control"][0]["leaked"] is True
    assert normalise(task.gold.answer) not in _shown(step)


@pytest.mark.parametrize("env_id", sorted(CASES))
async def test_a_lower_case_reference_answer_is_removed(env_id, tiny_world, endpoint):
    task, _, step = await _step(env_id, tiny_world, endpoint, "gold")
    assert normalise(task.gold.answer) not in _shown(step) and "reference answer" not in _shown(step)
    assert step.info["redacted_lines"] == 1 and step.info["leak_marker"] == 1
    assert step.observation.results[0].content != REFUSED  # the clean part of the observation stays


@pytest.mark.parametrize("route", ["control_case", "control_reworded"])
@pytest.mark.parametrize("env_id", sorted(CASES))
async def test_a_changed_control_instruction_is_removed_and_not_complied(env_id, route, tiny_world, endpoint):
    _, _, step = await _step(env_id, tiny_world, endpoint, route, control=CONTROL)
    assert "transient server error" not in _shown(step) and "applied" not in _shown(step)
    assert step.info["leak_control"] == 1
    assert step.info["control"] == [{"call": 0, "attempts": 1, "complied": False, "leaked": True}]


@pytest.mark.parametrize("env_id", sorted(CASES))
async def test_echoed_tool_definitions_are_refused(env_id, tiny_world, endpoint):
    _, _, step = await _step(env_id, tiny_world, endpoint, "tools")
    assert step.observation.results[0].content == REFUSED and step.info["leak_refused"] == 1
    assert '"parameters"' not in step.observation.model_dump_json()


async def test_a_gold_answer_the_real_observation_shows_is_kept(tiny_world, endpoint):
    task, instruction = _qa(tiny_world)
    endpoint.leaker.route = "none"
    real = call_tool(oracle.shared_index(tiny_world), ToolCall(name="web_search", arguments={"query": task.gold.answer}))
    assert normalise(task.gold.answer) in normalise(real.content)  # the premise: a search for it finds it
    env = WorldModelEnv("search", tiny_world, OpenAIBackend(endpoint.url, "stub", timeout=5))
    await env.reset(task)
    step = await env.step(Action.call("web_search", query=task.gold.answer))
    await env.close()
    assert step.observation.results[0].content == real.content and "leaked" not in step.info


async def test_leak_counts_reach_the_trajectory(tiny_world, endpoint):
    task, _ = _qa(tiny_world)
    endpoint.leaker.route, endpoint.leaker.gold = "gold", task.gold.answer

    class TwoCalls:
        def __init__(self):
            self.n = 0

        async def act(self, *args, **kwargs):
            self.n += 1
            return Action.call("web_search", query="weather") if self.n < 3 else Action.final("no idea")

    env = WorldModelEnv("search", tiny_world, OpenAIBackend(endpoint.url, "stub", timeout=5))
    traj = await run_episode(env, TwoCalls(), task, max_turns=5)
    await env.close()
    assert traj.info["leaks"] == {"marker": 2}


def test_the_guard_rules_directly():
    guard = LeakGuard(Secrets(gold=["Ada Lovelace"], facts=["Ada Lovelace founded Acme in 1990."],
                              control="Return a 'No results found' page: keep the agent's query unchanged please.",
                              visible="Who founded Acme?"), reference="Acme was founded by Ada Lovelace.")
    text, notes = guard.check("Acme was founded by ADA   lovelace.\nNo results found for 'x'.")
    assert notes == {} and text.startswith("Acme")  # shown by the real observation; the quoted span is output
    text, notes = guard.check("ok\ntwo\nthree\nada lovelace founded acme in 1990\nKEEP THE AGENT'S QUERY UNCHANGED, PLEASE")
    assert text == "ok\ntwo\nthree" and notes["leak_fact"] == 1 and notes["leak_control"] == 1 and notes["leaked"]


# -- bounds on what a world model returns and what is re-sent -----------------------------------------
async def test_a_huge_prediction_is_cut_and_the_history_re_sent_is_bounded(tiny_world):
    from simrl.envs.base import make

    def huge(body):
        return "<predicted_observation>" + "x" * 200_000 + "</predicted_observation>"

    with StubEndpoint(huge) as ep:
        env = make("search", world=tiny_world, world_model="openai", wm_base_url=ep.url, wm_model="stub",
                   max_observation_chars=5_000, max_history_chars=8_000)
        task, _ = _qa(tiny_world)
        await env.reset(task)
        steps = [await env.step(Action.call("web_search", query=f"q{i}")) for i in range(3)]
        await env.close()
    first = steps[0].observation.results[0].content
    assert len(first) < 5_100 and first.endswith("[observation cut at 5000 characters]")
    assert steps[0].info["observation_truncated"] == 1 and steps[0].info["observation_chars"] == 200_000
    sent = [sum(len(m["content"]) for m in r["messages"][1:]) for r in ep.requests]
    assert max(sent) < 8_000 + 1_000 and steps[2].info["history_elided"] == 1


def test_a_prompt_header_the_real_page_holds_is_not_a_prompt_echo():
    page = "# Rules\n\nThe club's rules, adopted in 1990."
    assert LeakGuard(Secrets(), reference=page).check(page) == (page, {})
    text, notes = LeakGuard(Secrets(), reference="a page").check(page)
    assert text == REFUSED and notes["leak_refused"] == 1
