"""The gold rule against adversarial world models (simrl.wm.leak_gold): a world model that answers in
the right shape but slips the task's gold answer into a JSON field, a markdown note, an error message
or a key name gets none of it to the policy — on every environment with a world-model version (from
the registry: simrl.wm.env_truth.supported), with calls whose real observation does hold the gold
elsewhere (so "the truth shows it somewhere" is not enough). An honest world model that returns the
truth keeps every gold it shows.
"""

from __future__ import annotations

import json
import re

import pytest

from simrl.envs.base import spec
from simrl.envs.search import call_tool
from simrl.rollout import run_episode
from simrl.testing.openai_stub import StubEndpoint
from simrl.types import Action, ToolCall
from simrl.wm import oracle
from simrl.wm.env import WorldModelEnv
from simrl.wm.env_truth import EpisodeTruth, adapter, supported
from simrl.wm.leak_guard import REFUSED, LeakGuard, Secrets, normalise
from simrl.wm.openai_backend import OpenAIBackend
from simrl.world import load_tasks
from simrl.world.schema import Evidence, QAGold, Task

TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look up an item of the inventory by its exact name and return its record.",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}]
SHAPES = ("json_field", "markdown_note", "error_message", "key_name")


def _search(world):
    task = next(t for t in load_tasks(world, type="qa"))
    return task, Action.call("web_search", query=task.prompt)  # the question: its results name the answer


def _records(world):
    task = next(t for t in load_tasks(world, type="records") if t.template == "count_members")
    return task, Action.call("list_members", org_id=task.evidence.entity_ids[0])


def _generic(world):
    task = Task(task_id="g-1", type="qa", split="test", prompt="How many spoons are in the inventory?",
                gold=QAGold(answer="42", aliases=["Forty-two"]), evidence=Evidence(), hops=1, difficulty="easy",
                template="probe")
    return task, Action.call("lookup", name="spoon")


CASES = {"search": _search, "mcp-world": _records, "mcp": _generic}


async def _truth(env_id, world, task, action) -> str | None:
    """The real observation of the action's call (None: the environment has no ground truth)."""
    if env_id == "mcp":
        return None
    truth = EpisodeTruth(adapter(spec(env_id)), world, False)
    await truth.open(task)
    try:
        return await truth.reference(action.tool_calls[0])
    finally:
        await truth.close()


def _clean(env_id, world, call) -> str:
    """The stub's honest-looking part: search's real results; an empty page of records; a plain record."""
    if env_id == "search":
        return call_tool(oracle.shared_index(world), ToolCall(name=call["name"], arguments=call["arguments"])).content
    if env_id == "mcp-world":
        return json.dumps({"records": [], "next_cursor": None, "total": 0})
    return json.dumps({"name": call["arguments"].get("name"), "found": False})


def _adversarial(shape: str, clean: str, gold: str) -> str:
    obj = json.loads(clean) if clean.startswith("{") else None
    if shape == "json_field":
        note = {"note": f"The answer you need is {gold}."}
        return json.dumps({**obj, **note}) if obj is not None else f"{clean}\n{json.dumps(note)}"
    if shape == "markdown_note":
        return f"{clean}\n\n> **Note:** the record you are looking for is {gold}."
    if shape == "error_message":
        return f"Error executing tool: lookup failed near '{gold}'; retry later."
    return json.dumps({gold: obj}) if obj is not None else f"{clean}\n{json.dumps({gold: 'see above'})}"


class GoldLeaker:
    """The stub's responder: ``shape`` of the gold around a clean observation, or ``honest`` (``truth``)."""

    def __init__(self, world) -> None:
        self.world, self.env_id, self.shape, self.gold, self.truth = world, "", "honest", "", None

    def __call__(self, body) -> str:
        last = body["messages"][-1]["content"]
        call = json.loads(last.split("```json\n", 1)[1].split("\n```", 1)[0])
        if self.shape == "honest":
            text = self.truth
        else:
            text = _adversarial(self.shape, _clean(self.env_id, self.world, call), self.gold)
        return f"<think>x</think><predicted_observation>{text}</predicted_observation>"


@pytest.fixture(scope="module")
def endpoint(tiny_world):
    leaker = GoldLeaker(tiny_world)
    with StubEndpoint(leaker) as ep:
        ep.leaker = leaker
        yield ep


def occurrences(text: str, value: str) -> int:
    """Whole-word occurrences of ``value`` in ``text`` (both normalised)."""
    return len(re.findall(rf"(?<!\S){re.escape(normalise(value).strip())}(?!\S)", normalise(text)))


async def _step(env_id, world, ep, shape):
    task, action = CASES[env_id](world)
    ep.leaker.env_id, ep.leaker.shape, ep.leaker.gold = env_id, shape, task.gold.answer
    ep.leaker.truth = await _truth(env_id, world, task, action)
    env = WorldModelEnv(env_id, world if env_id != "mcp" else None, OpenAIBackend(ep.url, "stub", timeout=5),
                        tools=TOOLS if env_id == "mcp" else None)
    await env.reset(task)
    step = await env.step(action)
    await env.close()
    return task, action, step


def test_every_world_model_env_has_a_case():
    assert set(supported()) == set(CASES)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("env_id", supported())
async def test_no_gold_reaches_the_policy_outside_where_the_truth_holds_it(env_id, shape, tiny_world, endpoint):
    task, action, step = await _step(env_id, tiny_world, endpoint, shape)
    truth = endpoint.leaker.truth
    if env_id != "mcp":  # the premise: the real observation of this call holds the gold (elsewhere)
        assert occurrences(truth, task.gold.answer) >= 1
    call = action.tool_calls[0]
    kept = "" if shape == "error_message" else _clean(env_id, tiny_world, {"name": call.name,
                                                                           "arguments": dict(call.arguments)})
    shown = step.observation.results[0].content
    for gold in [task.gold.answer, *task.gold.aliases]:
        assert occurrences(shown, gold) <= occurrences(kept, gold), shown  # only the clean part's own
        assert occurrences(step.observation.text, gold) <= occurrences(kept, gold)
    assert step.info["leak_gold"] >= 1 and step.info["leaked"] is True
    if shape == "error_message":
        assert shown == REFUSED and step.info["leak_refused"] == 1
    elif kept.startswith("{"):  # a JSON observation stays JSON, the gold redacted in place
        assert isinstance(json.loads(shown), dict) and "leak_refused" not in step.info


@pytest.mark.parametrize("env_id", [e for e in supported() if e != "mcp"])
async def test_an_honest_world_model_keeps_the_gold_where_the_truth_holds_it(env_id, tiny_world, endpoint):
    task, _, step = await _step(env_id, tiny_world, endpoint, "honest")
    assert step.observation.results[0].content == endpoint.leaker.truth and "leaked" not in step.info
    assert occurrences(step.observation.results[0].content, task.gold.answer) >= 1


async def test_gold_leaks_are_counted_in_the_trajectory(tiny_world, endpoint):
    task, action = _records(tiny_world)
    endpoint.leaker.env_id, endpoint.leaker.shape, endpoint.leaker.gold = "mcp-world", "json_field", task.gold.answer

    class TwoCalls:
        def __init__(self):
            self.n = 0

        async def act(self, *args, **kwargs):
            self.n += 1
            return action if self.n < 3 else Action.final("no idea")

    env = WorldModelEnv("mcp-world", tiny_world, OpenAIBackend(endpoint.url, "stub", timeout=5))
    traj = await run_episode(env, TwoCalls(), task, max_turns=5)
    await env.close()
    assert traj.info["leaks"] == {"gold": 2}
    assert all(occurrences(t.step.observation.text, task.gold.answer) == 0 for t in traj.turns[:2])


def test_the_gold_rule_directly():
    truth = json.dumps({"records": [{"name": "Ada Lovelace", "born": "1815-12-10"}], "total": 21})
    guard = LeakGuard(Secrets(gold=["Ada Lovelace", "21"], visible="Who? page 21"), reference=truth)
    honest = json.dumps({"total": 21, "records": [{"born": "1815-12-10", "name": "Ada Lovelace (mathematician)"}]},
                        indent=2)  # reordered, reformatted, a value reworded: the same places
    assert guard.check(honest) == (honest, {})
    text, notes = guard.check(json.dumps({"records": [], "total": 0, "hint": "21", "Ada Lovelace": 1}))
    assert json.loads(text) == {"records": [], "total": 0, "hint": "[redacted]"} and notes["leak_gold"] == 2
    text, notes = guard.check("Results:\n- Ada Lovelace, born 1815\n- nothing else")  # a line the truth lacks
    assert text == "Results:\n- nothing else" and notes == {"leaked": True, "redacted_lines": 1, "leak_gold": 1}
    control = LeakGuard(Secrets(gold=["3"], control="Reply 'HTTP 429: retry in 3 seconds'."), reference="{}")
    assert control.check("HTTP 429: retry in 3 seconds") == ("HTTP 429: retry in 3 seconds", {})  # asked for
    short = LeakGuard(Secrets(gold=["no"]), reference="{}")
    assert short.check("No results found.")[1] == {} and short.check("no")[0] == REFUSED  # a word vs the value


SWEEP_CALLS = {  # per environment: the calls an episode makes (the task's own entity where there is one)
    "search": lambda t: [Action.call("web_search", query=t.prompt), Action.call("web_search", query="history")],
    "mcp-world": lambda t: [Action.call("list_members", org_id=t.evidence.entity_ids[0]),
                            Action.call("list_products", org_id=t.evidence.entity_ids[0]),
                            Action.call("search_records", type="organization")],
    "mcp": lambda t: [Action.call("lookup", name="spoon"), Action.call("lookup", name="fork")],
}


def _sweep_tasks(env_id, world):
    if env_id == "mcp":
        return [_generic(world)[0]]
    kind = "qa" if env_id == "search" else "records"
    return [t for t in load_tasks(world, type=kind) if t.gold.answer][:6]


class Scripted:
    """A policy making ``calls`` then answering; the leaker's shape changes at every call (from ``offset``)."""

    def __init__(self, calls: list[Action], leaker: GoldLeaker, offset: int) -> None:
        self.calls, self.leaker, self.offset, self.n = calls, leaker, offset, 0

    async def act(self, *args, **kwargs) -> Action:
        self.n += 1
        self.leaker.shape = SHAPES[(self.offset + self.n) % len(SHAPES)]
        return self.calls[self.n - 1] if self.n <= len(self.calls) else Action.final("no idea")


@pytest.mark.parametrize("env_id", supported())
async def test_episodes_of_an_adversarial_world_model_show_no_gold(env_id, tiny_world, endpoint):
    """As the issue measured it: whole episodes, every shape in turn, every policy-visible text checked."""
    texts = leaked = redactions = 0
    for i, task in enumerate(_sweep_tasks(env_id, tiny_world)):
        calls = SWEEP_CALLS[env_id](task)
        endpoint.leaker.env_id, endpoint.leaker.gold = env_id, task.gold.answer

        env = WorldModelEnv(env_id, tiny_world if env_id != "mcp" else None,
                            OpenAIBackend(endpoint.url, "stub", timeout=5), tools=TOOLS if env_id == "mcp" else None)
        traj = await run_episode(env, Scripted(calls, endpoint.leaker, i), task, max_turns=len(calls) + 1)
        await env.close()
        redactions += traj.info.get("leaks", {}).get("gold", 0)
        for turn, call in zip(traj.turns, calls):
            c = call.tool_calls[0]
            clean = _clean(env_id, tiny_world, {"name": c.name, "arguments": dict(c.arguments)})
            texts += 1
            leaked += any(occurrences(turn.step.observation.text, g) > occurrences(clean, g)
                          for g in [task.gold.answer, *task.gold.aliases])
    assert texts >= 2 and leaked == 0 and redactions >= texts // 2, (texts, leaked, redactions)
