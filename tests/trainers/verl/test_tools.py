"""simrl tools in verl's own ToolAgentLoop: real environments, world models, schedules; failures; cleanup."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest
import yaml

pytest.importorskip("verl", reason="the tools run inside verl's agent loop; install simrl[verl]")

from simrl.experiment.runs import arm_env_factory  # noqa: E402
from simrl.policies.records_expert import RecordsExpert  # noqa: E402
from simrl.rollout import run_episode  # noqa: E402
from simrl.trainers.verl.adapter import SimrlTool  # noqa: E402
from simrl.trainers.verl.tools import REQUIRED_OVERRIDES, TOOL_CLASS, normalize_schema, write_tool_config  # noqa: E402
from simrl.types import Action  # noqa: E402
from tests.trainers.verl.helpers import ScriptedServer, load_tools, make_recipe, run_loop  # noqa: E402


def _row(setup: dict, kind: str, templates: tuple[str, ...] = ()) -> dict:
    for row in setup["rows"]:
        task = setup["tasks"][row["extra_info"]["task_id"]]
        if getattr(task.gold, "kind", None) == kind and (not templates or task.template in templates):
            return row
    raise AssertionError(f"no {kind} task {templates} in the world")


class _Probe:
    """Wraps a policy; at every turn notes the open environments of ``registry`` and this process's new
    live child processes (those not in ``before``)."""

    def __init__(self, inner, registry=None, before: set[int] | None = None) -> None:
        self.inner, self.registry, self.before = inner, registry, before
        self.children: list[int] = []
        self.envs: list = []

    async def act(self, task_view, initial, turns):
        if self.before is not None:
            self.children.append(len(_new_children(self.before)))
        if self.registry is not None:
            self.envs += [s.env for s in self.registry.live.values() if s.env is not None and s.env not in self.envs]
        return await self.inner.act(task_view, initial, turns)


def _new_children(before: set[int]) -> list:
    import psutil

    return [p for p in psutil.Process(os.getpid()).children(recursive=True)
            if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def _trajectory(setup: dict, arm: str, row: dict, tokenizer, **server_options):
    tools = load_tools(setup["configs"][arm])
    task = setup["tasks"][row["extra_info"]["task_id"]]
    registry = tools[0].sessions
    probe = _Probe(RecordsExpert(setup["world"], list(setup["tasks"].values())), registry)
    server = ScriptedServer(tokenizer, probe, task, setup["schemas"], **server_options)
    closed = registry.closed
    out = await run_loop(tools, server, row, tokenizer)
    gc.collect()
    for _ in range(3):
        await asyncio.sleep(0)  # the close scheduled by the trajectory's finalizer runs
    assert not registry.live and registry.closed == closed + 1, "the trajectory's session was not released"
    assert len(probe.envs) == 1, "one environment per trajectory"
    after = await probe.envs[0].step(Action.call("get_record", id="organization:000001"))
    assert after.observation.text == "Error: closed", "the trajectory's environment was not closed"
    return out, server, task


async def _direct(setup: dict, arm: str, task, extras: dict):
    """The same expert in the same arm's environment, without verl (same progress and episode seed)."""
    recipe = setup["recipe"]
    env = arm_env_factory(recipe, recipe.arm(arm), setup["world"], progress=extras["progress"], seed=recipe.seeds[0])()
    expert = RecordsExpert(setup["world"], list(setup["tasks"].values()))
    try:
        return await run_episode(env, expert, task, seed=extras["episode_seed"], max_turns=20)
    finally:
        await env.close()


def test_tool_configs_differ_only_in_the_arm(records_setup):
    configs = {arm: yaml.safe_load(path.read_text()) for arm, path in records_setup["configs"].items()}
    names = [t["tool_schema"]["function"]["name"] for t in configs["real"]["tools"]]
    assert {"find_by_name", "list_members", "update_record"} <= set(names)
    for arm, cfg in configs.items():
        assert all(t["class_name"] == TOOL_CLASS for t in cfg["tools"])
        assert [t["tool_schema"] for t in cfg["tools"]] == [t["tool_schema"] for t in configs["real"]["tools"]]
        for entry, real in zip(cfg["tools"], configs["real"]["tools"], strict=True):
            differing = {k for k in entry["config"] if entry["config"][k] != real["config"][k]}
            assert differing == (set() if arm == "real" else {"arm_name", "arm"})
    assert configs["sim-controlled"]["tools"][0]["config"]["arm"]["schedule"] == "mcpmark"
    assert "actor_rollout_ref.rollout.multi_turn.format=hermes" in REQUIRED_OVERRIDES


@pytest.mark.parametrize("arm", ["real", "sim-uncontrolled", "sim-controlled"])
def test_tool_agent_loop_runs_a_write_task(records_setup, tokenizer, arm):
    row = _row(records_setup, "write")
    out, server, task = asyncio.run(_trajectory(records_setup, arm, row, tokenizer, global_steps=2))
    extras = out.extra_fields["extras"]["simrl"]
    calls = len(server.outputs) - 1  # every generation but the last is a tool call
    assert calls >= 2 and extras["tool_calls"] == calls
    assert out.num_turns == 2 * calls + 2  # user prompt + (assistant, tool) per call + final assistant
    assert extras["task_id"] == task.task_id and extras["arm"] == arm
    assert extras["progress"] == 0.5 and extras["progress_source"] == "global_steps"  # step 2 of 4
    assert extras["state"]["success"] and extras["state"]["reward"] == 1.0  # the expert's writes hold
    # response mask: 1 exactly on the generated tokens, 0 on the tool observations between them
    policy = [t for t, m in zip(out.response_ids, out.response_mask, strict=True) if m == 1]
    assert policy == [t for ids in server.outputs for t in ids]
    tool_text = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask, strict=True) if m == 0])
    assert all(obs in tool_text for obs in server.observations) and len(server.observations) == calls
    # the observations are the arm's environment's own, call for call
    direct = asyncio.run(_direct(records_setup, arm, task, extras))
    assert [t.step.observation.text for t in direct.turns[:-1]] == server.observations
    assert direct.status == "success"


def test_schedule_arm_perturbs_as_its_environment_does(records_setup, tokenizer):
    rows = [r for r in records_setup["rows"]
            if records_setup["tasks"][r["extra_info"]["task_id"]].template in ("count_members", "first_product")]
    met = []
    for row in rows[:3]:
        out, server, task = asyncio.run(_trajectory(records_setup, "sim-controlled", row, tokenizer, global_steps=4))
        extras = out.extra_fields["extras"]["simrl"]
        direct = asyncio.run(_direct(records_setup, "sim-controlled", task, extras))
        assert extras["progress"] == 1.0
        assert extras["perturbations"] == [p["type"] for p in direct.info["perturbations"]]
        assert [t.step.observation.text for t in direct.turns[:-1]] == server.observations
        met += extras["perturbations"]
    assert met, "mcpmark at progress 1 perturbed no list call"


def test_progress_falls_back_to_trajectory_count(records_setup, tokenizer):
    row = _row(records_setup, "read")
    out, _, _ = asyncio.run(_trajectory(records_setup, "real", row, tokenizer))  # no global_steps stamp
    extras = out.extra_fields["extras"]["simrl"]
    assert extras["progress_source"] == "trajectory_count" and 0.0 <= extras["progress"] <= 1.0


class _Repeat:
    """A policy that calls ``find_by_name`` ``n`` times whatever it sees, then answers."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def act(self, task_view, initial, turns):
        return Action.call("find_by_name", name="Acme") if len(turns) < self.n else Action.final("<answer>0</answer>")


def test_world_model_endpoint_down_gives_error_observations(records_setup, tokenizer, tmp_path):
    from simrl.testing.openai_stub import free_port

    world = records_setup["world"]
    recipe = make_recipe(world, arms={"sim-remote": {"environment": "world_model", "backend": "openai",
                                                     "model": "wm", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                                                     "options": {"timeout": 2}}})
    tools = load_tools(write_tool_config(recipe, "sim-remote", world, tmp_path))
    row = _row(records_setup, "read")
    server = ScriptedServer(tokenizer, _Repeat(3), records_setup["tasks"][row["extra_info"]["task_id"]],
                            records_setup["schemas"])
    out = asyncio.run(run_loop(tools, server, row, tokenizer))
    extras = out.extra_fields["extras"]["simrl"]
    assert extras["env_failure"] and extras["episode_over"] and "connection" in extras["error"]
    assert len(server.observations) == 3 and len(server.outputs) == 4  # the rollout went on to its answer
    assert "world model openai failed" in server.observations[0]
    assert all(o.startswith("Error: no more tool calls") for o in server.observations[1:])
    assert out.num_turns == 8


def test_stdio_record_server_is_stopped_when_the_trajectory_ends(records_setup, tokenizer, tmp_path):
    pytest.importorskip("psutil", reason="the test lists the record server's child processes with psutil")
    world = records_setup["world"]
    recipe = make_recipe(world, arms={"real": {"environment": "real"}}, real={"transport": "stdio"})
    tools = load_tools(write_tool_config(recipe, "real", world, tmp_path))
    row = _row(records_setup, "read", ("first_product",))
    before = {p.pid for p in _new_children(set())}
    probe = _Probe(RecordsExpert(world, list(records_setup["tasks"].values())), before=before)
    server = ScriptedServer(tokenizer, probe, records_setup["tasks"][row["extra_info"]["task_id"]],
                            records_setup["schemas"])

    async def run():
        out = await run_loop(tools, server, row, tokenizer)
        gc.collect()
        for _ in range(100):  # the finalizer's close task stops the server (in this event loop)
            await asyncio.sleep(0.02)
            if not _new_children(before):
                break
        return out, _new_children(before)

    out, left = asyncio.run(run())
    extras = out.extra_fields["extras"]["simrl"]
    assert extras["tool_calls"] >= 1 and not extras["error"]
    assert max(probe.children[1:]) >= 1  # the record server ran while the trajectory was in flight
    assert not left  # and was stopped once it ended


def test_tool_without_agent_data_or_task_answers_with_an_error(records_setup):
    entry = yaml.safe_load(records_setup["configs"]["real"].read_text())["tools"][0]
    from verl.tools.schemas import OpenAIFunctionToolSchema

    tool = SimrlTool(entry["config"], OpenAIFunctionToolSchema.model_validate(entry["tool_schema"]))

    async def call():
        iid, _ = await tool.create(create_kwargs={"task_id": "no-such-task"})
        missing = await tool.execute(iid, {"name": "x"})
        unknown = await tool.execute(iid, {"name": "x"}, agent_data=type("A", (), {"extra_fields": {}})())
        await tool.release(iid)
        return missing[0].text, unknown[0].text

    missing, unknown = asyncio.run(call())
    assert "agent_data" in missing and "no-such-task" in unknown


def test_normalize_schema_gives_verl_valid_schemas():
    from verl.tools.schemas import OpenAIFunctionToolSchema

    raw = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "description": "x"}, "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "c": {"anyOf": [{"type": "array", "items": {"type": "string"}}]}, "d": {}}}}}
    schema = OpenAIFunctionToolSchema.model_validate(normalize_schema(raw))
    props = schema.function.parameters.properties
    assert props["b"].type == ["integer", "null"] and props["c"].type == "array" and props["d"].type == "string"
    assert schema.function.parameters.required == ["a"]


def test_search_tools_answer_a_qa_task(tiny_world, tokenizer, tmp_path):
    import pyarrow.parquet as pq

    from simrl.policies.expert import SearchExpert
    from simrl.trainers.verl.data import write_datasets
    from simrl.trainers.verl.reward import compute_score
    from simrl.world import WorldIndex, load_graph
    from simrl.world.io import load_tasks

    recipe = make_recipe(tiny_world, env_id="search", arms={"real": {"environment": "real"}})
    tools = load_tools(write_tool_config(recipe, "real", tiny_world, tmp_path))
    assert {t.name for t in tools} == {"web_search", "web_extractor"}
    rows = pq.read_table(write_datasets(recipe, tiny_world, tmp_path)["train"]).to_pylist()
    row = next(r for r in rows if r["data_source"] == "simrl:search:qa")
    tasks = load_tasks(tiny_world)
    task = next(t for t in tasks if t.task_id == row["extra_info"]["task_id"])
    server = ScriptedServer(tokenizer, SearchExpert(WorldIndex(load_graph(tiny_world)), tasks), task,
                            [t.tool_schema.model_dump() for t in tools])
    out = asyncio.run(run_loop(tools, server, row, tokenizer))
    extras = out.extra_fields["extras"]["simrl"]
    assert extras["tool_calls"] == len(server.observations) >= 1 and extras["env_id"] == "search"
    assert "Title:" in server.observations[0]  # the search engine's own result layout
    response = tokenizer.decode(out.response_ids, skip_special_tokens=True)  # what verl's reward manager decodes
    score = compute_score(row["data_source"], response, row["reward_model"]["ground_truth"], out.extra_fields)
    assert score["score"] == 1.0
