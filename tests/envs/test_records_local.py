"""The in-process record environment (``make("mcp-world", transport="inprocess")``): the checker passes,
observations equal the stdio server's for the same calls (operational faults included), episodes are
isolated, write tasks are scored on the episode's store, and an episode takes milliseconds."""

from __future__ import annotations

import asyncio
import json

import pytest

from simrl.envs.base import OrderEnforcing, make
from simrl.envs.checker import check_env
from simrl.envs.mcp_env import WorldMCPEnv
from simrl.envs.records_local import LocalRecordsEnv
from simrl.errors import SimrlError
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import rollout, run_episode
from simrl.types import Action, ToolCall
from simrl.world import load_graph, load_tasks


def _task(world, template):
    return next(t for t in load_tasks(world, type="records") if t.template == template)


def _calls(world) -> list[tuple[str, dict]]:
    """A script of calls: lookups, a paged listing, filters, writes read back, and several kinds of error."""
    graph = load_graph(world)
    org = next(n for n, d in graph.nodes(data=True) if d["type"] == "organization")
    city = next(n for n, d in graph.nodes(data=True) if d["type"] == "city")
    return [("find_by_name", {"name": graph.nodes[org]["name"], "type": "organization"}),
            ("list_members", {"org_id": org}), ("list_members", {"org_id": org, "limit": 2}),
            ("search_records", {"type": "organization", "filters": {"headquartered_in": city}}),
            ("search_records", {}), ("get_record", {"id": "organization:999999"}),
            ("update_record", {"id": org, "fields": {"employees": 4321}}), ("get_record", {"id": org}),
            ("list_members", {"org_id": city}), ("no_such_tool", {}), ("search_records", {"type": "person"}),
            ("find_by_name", {"name": "A"}), ("list_products", {"org_id": org}), ("get_record", {"id": city})]


async def _observe(env, task, calls, seed) -> list[tuple[str, bool]]:
    await env.reset(task, seed=seed)
    out = []
    try:
        for name, args in calls:
            step = await env.step(Action(tool_calls=[ToolCall(name=name, arguments=args)]))
            out += [(r.content, r.is_error) for r in step.observation.results]
            if name == "list_members" and not out[-1][1] and json.loads(out[-1][0])["next_cursor"]:
                cursor = json.loads(out[-1][0])["next_cursor"]
                step = await env.step(Action.call(name, **args, cursor=cursor))
                out += [(r.content, r.is_error) for r in step.observation.results]
    finally:
        await env.close()
    return out


@pytest.mark.parametrize("fault_rate", [0.0, 0.5])
def test_checker_passes(tiny_world, fault_rate):
    task = _task(tiny_world, "count_members")
    outcomes = asyncio.run(check_env(lambda: make("mcp-world", world=tiny_world, transport="inprocess",
                                                  fault_rate=fault_rate), task))
    assert [(o.name, o.detail) for o in outcomes if not o.passed] == []


@pytest.mark.parametrize("fault_rate", [0.0, 0.5])
async def test_same_observations_as_the_stdio_server(tiny_world, fault_rate):
    task, calls = _task(tiny_world, "set_employees"), _calls(tiny_world)
    local = await _observe(make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=fault_rate),
                           task, calls, seed=3)
    stdio = await _observe(WorldMCPEnv(tiny_world, fault_rate=fault_rate, fault_delay=0.0), task, calls, seed=3)
    assert local == stdio
    errors = sum(e for _, e in local)
    assert errors >= 4 and (fault_rate == 0 or any(c.startswith("Error executing tool") and (
        "429" in c or "503" in c or "504" in c) for c, _ in local))


async def test_episodes_are_isolated_and_writes_are_scored(tiny_world):
    task = _task(tiny_world, "set_employees")
    check = task.gold.final_state[0]
    env = OrderEnforcing(LocalRecordsEnv(tiny_world))  # as make() wraps it
    await env.reset(task)
    step = await env.step(Action.call("update_record", id=check.record_id, fields={"employees": check.value}))
    assert not step.observation.results[0].is_error
    final = await env.step(Action.final("<answer>done</answer>"))
    assert final.terminated and final.reward == 1.0 and final.info["success"]
    assert (await env.step(Action.final("again"))).truncated  # the episode is over: an error step, no raise
    await env.reset(task)  # a fresh copy of the records
    assert env.unwrapped.store.read(check.record_id, "employees") != check.value
    assert (await env.step(Action.final("<answer>done</answer>"))).reward == 0.0
    other = LocalRecordsEnv(tiny_world)  # two episodes at once never mix stores
    await asyncio.gather(env.reset(task), other.reset(task))
    await asyncio.gather(env.step(Action.call("update_record", id=check.record_id, fields={"employees": 1})),
                         other.step(Action.call("update_record", id=check.record_id, fields={"employees": 2})))
    assert env.unwrapped.store.read(check.record_id, "employees") == 1
    assert other.store.read(check.record_id, "employees") == 2
    await env.close()
    await env.close()
    assert (await env.step(Action.final("x"))).truncated
    with pytest.raises(SimrlError, match="closed"):
        await env.reset(task)
    await other.close()


async def test_reads_are_answered_once_until_an_episode_writes(tiny_world, monkeypatch):
    """The shared server answers a read of the unwritten records once (the same text for every episode); an
    episode that wrote reads its own copy every time, sees its write, and leaves the others' answers alone."""
    from simrl.records.store import RecordStore

    task = _task(tiny_world, "set_employees")
    check = task.gold.final_state[0]
    queries: list[str] = []
    real_get = RecordStore.get
    monkeypatch.setattr(RecordStore, "get", lambda self, rid: queries.append(rid) or real_get(self, rid))
    read = Action.call("get_record", id=check.record_id)
    a, b = LocalRecordsEnv(tiny_world), LocalRecordsEnv(tiny_world)
    await asyncio.gather(a.reset(task), b.reset(task))
    first = (await a.step(read)).observation.results[0].content
    assert (await b.step(read)).observation.results[0].content == first and queries == [check.record_id]  # b: remembered
    await a.step(Action.call("update_record", id=check.record_id, fields={"employees": check.value}))
    assert a.store.read_state() is None and b.store.read_state() is not None
    n = len(queries)
    written = (await a.step(read)).observation.results[0].content
    assert json.loads(written)["employees"] == check.value != json.loads(first)["employees"] and len(queries) > n
    assert (await b.step(read)).observation.results[0].content == first  # the unwritten records' answer, unchanged
    for env in (a, b):
        await env.close()


def test_expert_solves_every_records_task_in_fresh_environments(tiny_world):
    tasks = load_tasks(tiny_world, type="records")
    expert = RecordsExpert(tiny_world, tasks)
    trajs = asyncio.run(rollout(lambda: make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=0.2),
                                expert, tasks, max_turns=40))
    assert [t.status for t in trajs] == ["success"] * len(tasks)

    async def fresh_envs() -> None:  # the cost per episode is measured by benchmarks/bench_records.py
        task = _task(tiny_world, "count_members")
        for i in range(20):
            env = LocalRecordsEnv(tiny_world)
            traj = await run_episode(env, expert, task, seed=i)
            await env.close()
            assert traj.status == "success" and len(traj.turns) >= 3

    asyncio.run(fresh_envs())


async def test_options(tiny_world):
    env = make("mcp-world", world=tiny_world, transport="inprocess", page_size=2)
    assert isinstance(env.unwrapped, LocalRecordsEnv)
    obs = await env.reset(_task(tiny_world, "count_members"))
    assert {"find_by_name", "list_members", "update_record"} <= {t["function"]["name"] for t in obs.tools}
    step = await env.step(Action.call("search_records", type="person"))
    assert len(json.loads(step.observation.results[0].content)["records"]) == 2
    await env.close()
    assert isinstance(make("mcp-world", world=tiny_world).unwrapped, WorldMCPEnv)  # stdio stays the default
    for bad, match in [({"transport": "pigeon"}, "transport"), ({"transport": "inprocess", "fault_rate": 2},
                                                                "fault_rate"),
                       ({"transport": "inprocess", "page_size": 0}, "page_size")]:
        with pytest.raises(SimrlError, match=match):
            make("mcp-world", world=tiny_world, **bad)
    with pytest.raises(SimrlError):
        LocalRecordsEnv("/")


async def test_in_process_text_path_is_call_tools_text(tiny_world, tmp_path):
    """RecordServer.call_text (the in-process environments' path) gives what MCP's call_tool gives: the same text of
    every result and the same error of every refused call (bad, missing, extra and JSON-string arguments included)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from simrl.envs.mcp_env import content_text
    from simrl.records.server import build_server
    from simrl.records.store import RecordStore

    org = "organization:000007"
    script = [*_calls(tiny_world), ("find_by_name", {"name": 5}), ("find_by_name", {}), ("get_record", {"id": org, "x": 1}),
              ("search_records", {"type": "organization", "filters": '{"industry": "Retail"}'}),
              ("search_records", {"type": "person", "cursor": "null"}), ("list_members", {"org_id": org, "limit": "2"}),
              ("update_record", {"id": org, "fields": {"employees": 2 ** 70}}), ("find_by_name", {"name": "x" * 2000}),
              ("add_membership", {"person_id": "person:000052", "org_id": org, "start": "2024-04-30"})]

    async def run(call) -> list[tuple[str, bool]]:
        out = []
        for name, args in script:
            try:
                out.append((await call(name, dict(args)), False))
            except ToolError as err:
                out.append((f"{type(err).__name__}: {err}", True))
        return out

    with RecordStore.create(tiny_world, tmp_path / "a.sqlite") as a, RecordStore.create(tiny_world, tmp_path / "b.sqlite") as b:
        general = build_server(a, fault_rate=0.3, seed=4, fault_delay=0.0)
        direct = build_server(b, fault_rate=0.3, seed=4, fault_delay=0.0)
        expected = await run(lambda n, args: general.call_tool(n, args))
        expected = [(content_text(r), e) if not e else (r, e) for r, e in expected]
        got = await run(direct.call_text)
    assert got == expected
    assert sum(e for _, e in got) >= 8 and sum(not e for _, e in got) >= 8  # both kinds of outcome are compared


def test_the_shared_records_are_per_thread_where_sqlite_is_not_serialized(tiny_world, monkeypatch):
    """Episodes share one read connection per process only where SQLite allows use from several threads
    (sqlite3.threadsafety 3); with a lower level each thread gets its own, and the answers are the same."""
    import sqlite3
    import threading

    from simrl.envs import records_local

    name = load_graph(tiny_world).nodes[next(iter(load_graph(tiny_world).nodes))]["name"]

    def shared_in_threads() -> list:
        got: list = []
        both = threading.Barrier(2)  # both threads alive at once (a finished thread's id may be reused)

        def read() -> None:
            store = records_local.memory_store(tiny_world)
            got.append((store._conn, json.dumps(store.find_by_name(name), sort_keys=True)))
            both.wait(timeout=30)

        threads = [threading.Thread(target=read) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return got

    monkeypatch.setattr(records_local, "_bases", {})
    serialized = shared_in_threads()
    monkeypatch.setattr(sqlite3, "threadsafety", 1)
    monkeypatch.setattr(records_local, "_bases", {})
    per_thread = shared_in_threads()
    assert serialized[0][0] is serialized[1][0] and per_thread[0][0] is not per_thread[1][0]
    assert [a for _, a in serialized] == [a for _, a in per_thread]


def test_argument_limits_answer_strings_first_the_same():
    """input_problem's fast path for a plain string within limits: the same verdicts as the general checks (a str
    subclass, a long string, a string nested too deeply, inside lists and dicts)."""
    from simrl.records.server import MAX_STRING_CHARS, input_problem

    class Name(str):
        pass

    assert input_problem("x" * MAX_STRING_CHARS) is None and input_problem(Name("ok")) is None
    assert "characters" in input_problem("x" * (MAX_STRING_CHARS + 1))
    assert "characters" in input_problem(Name("x" * (MAX_STRING_CHARS + 1)))
    assert input_problem([[[["deep"]]]]) is None
    assert "nested too deeply" in input_problem([[[[["deeper"]]]]])
    assert "characters" in input_problem({"k": ["x" * (MAX_STRING_CHARS + 1)]})
    assert "characters" in input_problem({"x" * (MAX_STRING_CHARS + 1): 1})
