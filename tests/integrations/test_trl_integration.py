"""simrl.integrations.trl: tool methods TRL and transformers read as the environment's own schemas, a TRL-parsed
tool call running a real simrl step, the reward from the task's scorer (gold -> 1, env failure -> None,
no final answer -> truncated), the schedule following training progress, and no gold in the dataset."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="simrl.integrations.trl needs trl; install simrl[trl]")
pytest.importorskip("jmespath", reason="TRL's tool-call parser on transformers < 5.13 needs jmespath")

from transformers.utils import get_json_schema  # noqa: E402

from simrl.envs.base import Environment, make, register  # noqa: E402
from simrl.envs.registry import EnvSpec  # noqa: E402
from simrl.errors import SimrlError  # noqa: E402
from simrl.integrations.trl import SimrlEnvironment, SimrlTRL, final_answer  # noqa: E402
from simrl.integrations.trl_tools import python_type, tool_method  # noqa: E402
from simrl.types import Action, Observation, Step, ToolCall  # noqa: E402
from simrl.world.io import load_tasks  # noqa: E402

INPROCESS = {"transport": "inprocess"}


def _tools(instance: SimrlEnvironment) -> dict:
    """The tools TRL finds on an environment instance (grpo_trainer.py: public functions of its class)."""
    return {name: getattr(instance, name) for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)
            if name not in ("reset", "get_reward") and not name.startswith("_")}


def _kind(prop: dict) -> object:
    """A schema property's type as a comparable value (anyOf with null -> the other type)."""
    if "anyOf" in prop:
        kinds = [p.get("type") for p in prop["anyOf"] if p.get("type") != "null"]
        return kinds[0] if len(kinds) == 1 else sorted(kinds)
    return prop.get("type")


@pytest.mark.parametrize(("env_id", "options"), [("search", {}), ("mcp-world", INPROCESS)])
def test_tool_methods_are_the_environments_schemas(tiny_world, env_id, options):
    sim = SimrlTRL(env_id, tiny_world, real_options=options)
    tools = _tools(sim.environment_factory())
    assert sorted(tools) == sorted(t["function"]["name"] for t in sim.tools)
    for schema in sim.tools:
        fn = schema["function"]
        seen = get_json_schema(tools[fn["name"]])["function"]  # what the chat template shows the model
        props = fn["parameters"].get("properties", {})
        assert sorted(seen["parameters"]["properties"]) == sorted(props)
        assert sorted(seen["parameters"].get("required", [])) == sorted(fn["parameters"].get("required", []))
        for key, prop in props.items():
            assert _kind(seen["parameters"]["properties"][key]) == _kind(prop), (fn["name"], key)
        assert seen["description"].split()[:4] == fn["description"].split()[:4]


def test_python_type_and_bad_names():
    assert python_type({"type": "string", "enum": ["a", "b"]}) == python_type({"enum": ["a", "b"]})
    assert get_json_schema(tool_method({"name": "pick", "description": "Pick. Returns: the pick.", "parameters": {
        "properties": {"k": {"type": "integer", "enum": [1, 2], "description": "Which. Args: none"}},
        "required": ["k"]}}, lambda *a: ""))["function"] == {
        "name": "pick", "description": "Pick. Returns - the pick.", "parameters": {
            "type": "object", "properties": {"k": {"type": "integer", "enum": [1, 2], "description": "Which. Args - none"}},
            "required": ["k"]}, "return": {"type": "string"}}
    for bad in ({"name": "reset"}, {"name": "go", "parameters": {"properties": {"from": {"type": "string"}}}},
                {"name": "_hidden"}):
        with pytest.raises(SimrlError, match="Python"):
            tool_method(bad, lambda *a: "")


def test_dataset_rows_hold_only_the_prompt(tiny_world):
    sim = SimrlTRL("search", tiny_world)
    rows = list(sim.dataset(None))
    tasks = {t.task_id: t for t in load_tasks(tiny_world)}
    facts = [json.loads(line) for line in (tiny_world / "simulation.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in rows} == {t.task_id for t in tasks.values() if t.type in ("qa", "table")}
    for row in rows:
        assert set(row) == {"prompt", "task_id"}
        task = tasks[row["task_id"]]
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert row["prompt"][1]["content"] == task.prompt
        text = json.dumps(row)
        if task.type == "qa" and len(task.gold.answer) > 3:
            assert task.gold.answer not in text
        for fact in (f for sim_row in facts if sim_row["task_id"] == task.task_id for f in sim_row["facts"]):
            assert fact not in text
    assert len(sim.dataset("train", n=3)) == 3
    assert set(sim.dataset("train", n=2, environment="search")["environment"]) == {"search"}  # TRL's dict factory


def test_one_reward_scores_rollouts_of_several_environments(tiny_world):
    search = SimrlTRL("search", tiny_world)
    records = SimrlTRL("mcp-world", tiny_world, real_options=INPROCESS)
    rows = [search.dataset("train", n=1, environment="s")[0], records.dataset("train", n=1, environment="r")[0]]
    envs = []
    for sim, row in zip((search, records), rows):  # as GRPOTrainer does with environment_factory={"s": ..., "r": ...}
        env = sim.environment_factory()
        env.reset(**{k: v for k, v in row.items() if k != "environment"})
        envs.append(env)
    gold = [sim.tasks[row["task_id"]].gold for sim, row in zip((search, records), rows)]
    answers = [[{"role": "assistant", "content": f"<answer>{g.answer}</answer>"}] for g in gold]
    assert records.reward([None, None], answers, environments=envs) == [1.0, 1.0]
    assert [t.env_id for t in records.last] == ["search", "mcp-world"]


def _parse(text: str) -> dict:
    """A reply parsed the way GRPOTrainer parses it (TRL's response schema for a Qwen2.5 template)."""
    import trl
    from trl.chat_template_utils import add_response_schema, parse_response

    from simrl.testing.tiny_model import make_tokenizer

    tok = make_tokenizer()
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    add_response_schema(tok)
    return parse_response(tok, tok.encode(text + "<|im_end|>"))


def test_a_parsed_tool_call_is_one_real_step_and_the_gold_scores_one(tiny_world):
    sim = SimrlTRL("mcp-world", tiny_world, real_options=INPROCESS, max_turns=4)
    task = next(t for t in sim.tasks.values() if t.type == "records" and t.gold.kind == "read" and t.split == "train")
    env = sim.environment_factory()
    assert env.reset(prompt=sim.dataset("train")[0]["prompt"][:1] + [{"role": "user", "content": task.prompt}],
                     task_id=task.task_id) is None
    call = _parse('<tool_call>\n{"name": "search_records", "arguments": {"type": "organization", "limit": 2}}\n'
                  '</tool_call>')["tool_calls"][0]["function"]
    seen = _tools(env)[call["name"]](**call["arguments"])

    async def direct() -> str:
        real = make("mcp-world", world=tiny_world, **INPROCESS)
        await real.reset(task, 0)
        step = await real.step(Action(tool_calls=[ToolCall(name=call["name"], arguments=call["arguments"])]))
        await real.close()
        return step.observation.results[0].content

    assert seen == asyncio.run(direct()) and json.loads(seen)["records"]
    answer = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
              {"role": "tool", "content": seen}, {"role": "assistant", "content": f"<answer>{task.gold.answer}</answer>"}]
    assert sim.reward([None], [answer], environments=[env]) == [1.0]
    assert sim.last[0].status == "success" and len(sim.last[0].turns) == 2
    assert sim.reward([None], [answer], environments=[env]) == [1.0]  # scored once, the same again
    assert sim.reward([None], [answer], task_id=[task.task_id]) == [1.0]  # without environments: the scorer


def test_no_final_answer_and_the_turn_limit_are_truncated(tiny_world):
    sim = SimrlTRL("mcp-world", tiny_world, real_options=INPROCESS, max_turns=1)
    task = next(t for t in sim.tasks.values() if t.type == "records" and t.gold.kind == "read")
    good = [{"role": "assistant", "content": f"<answer>{task.gold.answer}</answer>"}]
    env = sim.environment_factory()
    env.reset(task_id=task.task_id, prompt=[])
    env.find_by_name(name="x")
    assert "turn limit" in env.find_by_name(name="y")
    assert sim.reward([None], [good], environments=[env]) == [0.0] and sim.last[0].status == "truncated"
    env.reset(task_id=task.task_id, prompt=[])
    ended_on_call = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {}}]}]
    assert final_answer(ended_on_call[0:1]) is None
    assert sim.reward([None], [ended_on_call], environments=[env]) == [0.0] and sim.last[0].status == "truncated"


class _Broken(Environment):
    env_id = "test-trl-broken"
    TOOLS = [{"type": "function", "function": {"name": "ping", "description": "Ping.", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "description": "How many."}}, "required": ["n"]}}}]

    def __init__(self, world=None) -> None:
        self.tools = self.TOOLS

    async def reset(self, task, seed=0) -> Observation:
        return Observation(text=task.prompt, tools=self.TOOLS)

    async def step(self, action) -> Step:
        raise RuntimeError("backend down")

    async def close(self) -> None:
        pass


@pytest.fixture
def broken_env():
    """``test-trl-broken`` registered for one test (then removed: later tests list every registered env)."""
    from simrl.envs import registry

    register(EnvSpec(id="test-trl-broken", factory=_Broken, description="fails on every step",
                     task_types=("records",), tools=tuple(_Broken.TOOLS)))
    yield
    registry._REGISTRY.pop("test-trl-broken", None)


def test_an_environment_failure_is_left_out_and_bfcl_is_refused(tiny_world, broken_env):
    sim = SimrlTRL("test-trl-broken", tiny_world)
    env = sim.environment_factory()
    env.reset(task_id=next(iter(sim.tasks)), prompt="")
    assert env.ping(n=1).startswith("environment failure")
    assert sim.reward([None], [[{"role": "assistant", "content": "x"}]], environments=[env]) == [None]
    assert sim.last[0].status == "env_failure"
    with pytest.raises(SimrlError, match="several user turns"):
        SimrlTRL("bfcl")
    with pytest.raises(SimrlError, match="not a task"):
        env.reset(task_id="nope")
    with pytest.raises(SimrlError, match="arm"):
        SimrlTRL("mcp-world", tiny_world, arm="oracle")


def test_the_schedule_follows_training_progress(tiny_world):
    from types import SimpleNamespace

    arm = {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}
    sim = SimrlTRL("mcp-world", tiny_world, arm=arm, max_turns=6)
    assert sim.make_env().backend_name == "oracle"
    assert sim.make_env().progress == 0.0
    sim.callback().on_step_begin(None, SimpleNamespace(global_step=3, max_steps=4), None)
    assert sim.progress == 0.75 and sim.make_env().progress == 0.75
