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
    OrderEnforcing,
    TimeLimit,
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
    assert isinstance(env, OrderEnforcing) and isinstance(env.unwrapped, Ping) and env.unwrapped.prefix == "pang"
    asyncio.run(env.reset(None))
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

    def fake_wm(env_spec, world_model, **options):
        seen.update(env_id=env_spec.id, world_model=world_model, options=options)
        return Ping()

    registry._REGISTRY["test-ping"] = EnvSpec(id="test-ping", factory=Ping, description="d",
                                              world_model=f"{__name__}:FAKE_WM")
    globals()["FAKE_WM"] = fake_wm
    try:
        assert isinstance(make("test-ping", world_model="openai", wm_model="m").unwrapped, Ping)
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


class Ending(Ping):
    """Ping whose ``final`` answer terminates the episode; counts the steps that reach it."""

    def __init__(self, prefix: str = "pong") -> None:
        super().__init__(prefix)
        self.steps = 0

    async def step(self, action: Action) -> Step:
        self.steps += 1
        if action.is_final:
            return Step(observation=Observation(text="done"), reward=1.0, terminated=True)
        return await super().step(action)


def test_make_wraps_every_environment_in_order_enforcing_and_time_limit(ping_spec):
    """Episode bookkeeping is make()'s (Gymnasium's OrderEnforcing + TimeLimit): no step before reset, after
    the episode ended or after close; no reset after close; close once; the spec's max_turns truncates,
    make(max_turns=...) overrides it (None: no limit), a terminating step is never also truncated."""
    from dataclasses import replace

    registry._REGISTRY["test-ping"] = replace(ping_spec, factory=Ending, max_turns=2)

    async def main():
        env = make("test-ping")
        assert isinstance(env, OrderEnforcing) and isinstance(env.env, TimeLimit) and env.env.max_turns == 2
        early = await env.step(Action.call("ping", n=1))
        assert early.truncated and early.info["episode_over"] and env.unwrapped.steps == 0
        await env.reset(None)
        first, second = await env.step(Action.call("ping", n=1)), await env.step(Action.call("ping", n=2))
        assert not first.truncated and second.truncated and second.info["truncated_reason"] == "max_turns"
        after = await env.step(Action.call("ping", n=3))
        assert after.info["episode_over"] and env.unwrapped.steps == 2  # never reached the environment
        await env.reset(None)  # the count restarts
        assert not (await env.step(Action.call("ping", n=1))).truncated
        final = await env.step(Action.final("x"))
        assert final.terminated and not final.truncated and "truncated_reason" not in final.info
        await env.close()
        await env.close()
        assert env.unwrapped.closed == 1 and (await env.step(Action.final("x"))).info["error"] == "closed"
        with pytest.raises(SimrlError, match="environment 'test-ping' is closed; make a new one"):
            await env.reset(None)
        unlimited = make("test-ping", max_turns=None)
        assert isinstance(unlimited.env, Ending)
        await unlimited.reset(None)
        assert not any([(await unlimited.step(Action.call("ping", n=i))).truncated for i in range(5)])
        with pytest.raises(SimrlError, match="max_turns must be >= 1, got 0"):
            make("test-ping", max_turns=0)

    asyncio.run(main())


def test_make_checks_options_against_the_factory_signature(ping_spec):
    """A bad option is the caller's error (the factory's signature, bound); a TypeError raised inside the
    factory is a bug and propagates as itself."""
    from dataclasses import replace

    def broken(prefix: str = "x") -> Environment:
        raise TypeError("unexpected keyword argument inside the factory")

    with pytest.raises(SimrlError, match=r"cannot be made with options \['prefix', 'size'\]"):
        make("test-ping", prefix="a", size=3)
    registry._REGISTRY["test-ping"] = replace(ping_spec, factory=broken)
    with pytest.raises(TypeError, match="inside the factory"):
        make("test-ping", prefix="a")
    with pytest.raises(SimrlError, match=r"environment 'mcp-world' cannot be made with options"):
        make("mcp-world", world="w", transport="inprocess", call_timeout=3)  # checked for the class it picks


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
