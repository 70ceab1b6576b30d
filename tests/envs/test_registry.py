"""The EnvSpec registry and the Wrapper base: a spec registered from outside simrl is made, listed,
rendered and forwarded like a built-in one; derived lists follow the registry."""

from __future__ import annotations

import asyncio

import pytest

from simrl.choices import WorldModelName, values
from simrl.envs import registry
from simrl.envs.base import (
    Environment,
    EnvSpec,
    Wrapper,
    find_spec,
    make,
    register,
    registered,
    spec,
    write_tools,
)
from simrl.errors import SimrlError
from simrl.perturb.inject import render
from simrl.types import Action, Observation, Step, ToolResult

TOOL = {"type": "function", "function": {"name": "ping", "description": "Ping.", "parameters": {"type": "object"}}}


class Ping(Environment):
    env_id = "test-ping"

    def __init__(self, prefix: str = "pong") -> None:
        self.prefix, self.closed = prefix, 0

    async def reset(self, task, seed: int = 0) -> Observation:
        self.tools = [TOOL]
        return Observation(text="ping", tools=self.tools)

    async def step(self, action: Action) -> Step:
        results = [ToolResult(name=c.name, content=f"{self.prefix} {c.arguments.get('n')}") for c in action.tool_calls]
        return Step(observation=Observation(text=spec(self.env_id).render(results), results=results))

    async def close(self) -> None:
        self.closed += 1


def _contents_upper(results: list[ToolResult]) -> str:
    return " | ".join(r.content.upper() for r in results)


@pytest.fixture
def ping_spec():
    registered_spec = register(EnvSpec(id="test-ping", factory=Ping, description="a test env",
                                       task_types=("qa",), tools=(TOOL,), write_tools=frozenset({"save_ping"}),
                                       render=_contents_upper))
    yield registered_spec
    registry._REGISTRY.pop("test-ping")


def test_a_registered_spec_is_made_listed_and_rendered(ping_spec):
    assert registered()["test-ping"] == "a test env" and spec("test-ping") is ping_spec
    assert "save_ping" in write_tools() and {"update_record", "appoint_ceo"} <= write_tools()
    with pytest.raises(SimrlError, match=r"environment 'test-ping' cannot be made with options \['bogus'\]"):
        make("test-ping", bogus=1)  # a factory's TypeError for the caller's option: one clear error
    env = make("test-ping", prefix="pang")
    assert isinstance(env, Ping) and env.prefix == "pang"
    step = asyncio.run(env.step(Action.call("ping", n=3)))
    assert step.observation.text == "PANG 3"
    results = [ToolResult(name="ping", content="a"), ToolResult(name="ping", content="b")]
    assert render("test-ping", results) == "A | B"  # the perturbation wrapper lays results out with the spec
    assert render("not-registered", results) == "[ping]\na\n\n[ping]\nb"  # the default MCP layout


def test_every_environment_gets_a_generic_world_model_version_unless_it_opts_out(ping_spec):
    """A spec without a world-model adapter gets the generic one: its static tools, and the real environment
    itself (a fresh one per episode) as the oracle's ground truth, rendered with the spec's renderer."""
    from dataclasses import replace

    from simrl.world.schema import Evidence, QAGold, Task

    task = Task(task_id="t", type="qa", split="dev", prompt="ping?", gold=QAGold(answer="pong"), evidence=Evidence(),
                hops=1, difficulty="easy", template="t")

    async def episode():
        env = make("test-ping", world_model="oracle")
        try:
            first = await env.reset(task)
            step = await env.step(Action.call("ping", n=3))
            unknown = await env.step(Action.call("nope"))
        finally:
            await env.close()
        return env, first, step, unknown

    env, first, step, unknown = asyncio.run(episode())
    assert env.backend_name == "oracle" and first.tools == [TOOL]
    assert step.observation.text == "PONG 3" and step.observation.results[0].content == "pong 3"
    assert unknown.observation.results[0].is_error  # the environment rejects a tool it does not have
    registry._REGISTRY["test-ping"] = replace(ping_spec, world_model=None)  # opted out, as bfcl
    with pytest.raises(SimrlError, match="no world-model version of env 'test-ping'; supported: mcp, mcp-world, search"):
        make("test-ping", world_model="oracle")
    with pytest.raises(SimrlError, match="wm_model: world-model options need world_model="):
        make("test-ping", wm_model="x")
    assert find_spec("test-ping").world_model is None and find_spec("nope") is None
    with pytest.raises(SimrlError, match="unknown environment 'nope'; known: bfcl, mcp, mcp-world, search, test-ping"):
        make("nope")


def test_the_world_model_entry_point_is_loaded_by_name(ping_spec):
    seen = {}

    def fake_wm(env_id, world_model, **options):
        seen.update(env_id=env_id, world_model=world_model, options=options)
        return Ping()

    registry._REGISTRY["test-ping"] = EnvSpec(id="test-ping", factory=Ping, description="d",
                                              world_model=f"{__name__}:FAKE_WM")
    globals()["FAKE_WM"] = fake_wm
    try:
        assert isinstance(make("test-ping", world_model="openai", wm_model="m"), Ping)
    finally:
        globals().pop("FAKE_WM")
    assert seen == {"env_id": "test-ping", "world_model": "openai", "options": {"wm_model": "m"}}
    with pytest.raises(SimrlError, match="entry point 'nomodule' must be 'module:attribute'"):
        registry.load_entry("nomodule")


def test_wrapper_forwards_the_contract():
    inner = Ping()
    outer = Wrapper(Wrapper(inner))
    asyncio.run(outer.reset(None))
    assert outer.tools == [TOOL] and outer.backend_name == "real" and outer.env_id == "test-ping"
    assert outer.unwrapped is inner and not outer.controllable
    with pytest.raises(SimrlError, match="takes no control instructions"):
        outer.set_control({0: "fail"})
    with pytest.raises(NotImplementedError):
        outer.score_final("x")
    asyncio.run(outer.close())
    assert inner.closed == 1


def test_backend_registry_matches_the_static_choices():
    from simrl.wm.factory import BACKENDS, LLM_BACKENDS

    assert BACKENDS == values(WorldModelName) and "oracle" not in LLM_BACKENDS
    with pytest.raises(SimrlError, match="unknown world-model backend 'nope'; known: real, oracle, openai"):
        from simrl.wm.factory import make_backend

        make_backend("nope")


def test_task_types_come_from_the_specs():
    from simrl.policies import env_task_types

    assert env_task_types() == {k: s.task_types for k, s in registry.specs().items()}
    assert env_task_types()["bfcl"] == ("bfcl",) and env_task_types()["mcp"] == ()


def test_a_plugin_cannot_take_a_registered_id(ping_spec):
    def other_factory(**options):
        return Ping()

    other_factory.__module__ = "someone_elses_plugin"
    with pytest.raises(SimrlError, match="environment id 'search' is already registered by simrl.envs.search"):
        register(EnvSpec(id="search", factory=other_factory, description="impostor"))
    assert spec("search").factory.__module__ == "simrl.envs.search"
    assert register(EnvSpec(id="test-ping", factory=Ping, description="again")).description == "again"  # same module
