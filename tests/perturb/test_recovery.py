"""The scripted experts still solve tasks of the real environments under every recoverable
perturbation, forced at rate 1 (three per episode), at a cost of extra steps; an unrecoverable one
defeats them. Search: the SearchExpert on qa and table tasks; mcp-world: the RecordsExpert on a
multi-page read and a write."""

from __future__ import annotations

import asyncio

import pytest

from simrl.envs.base import make
from simrl.perturb import PerturbationType, PerturbedEnv, Recovery, Schedule, perturbation_class
from simrl.policies.expert import SearchExpert
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import rollout
from simrl.world import WorldIndex, load_graph, load_tasks

RECOVERABLE = [t.value for t in PerturbationType if perturbation_class(t).recoverable]
PARAMS = {"oversized_response": {"max_chars": 300}}  # small enough to cut a page of records and a result list


@pytest.fixture(scope="module")
def setup(tiny_world):
    tasks = load_tasks(tiny_world)
    qa = [t for t in tasks if t.type == "qa"][:3] + [t for t in tasks if t.type == "table"][:1]
    records = [t for t in tasks if t.type == "records"]
    paged = max((t for t in records if t.template == "count_members"), key=lambda t: t.gold.min_pages)
    write = next(t for t in records if t.template == "add_member")
    assert paged.gold.min_pages > 1
    ix = WorldIndex(load_graph(tiny_world))
    cases = {"search": (qa, lambda: SearchExpert(ix, qa)), "mcp-world": ([paged, write],
                                                                       lambda: RecordsExpert(tiny_world, [paged, write]))}
    baseline = {env_id: _run(tiny_world, env_id, tasks_, policy(), None) for env_id, (tasks_, policy) in cases.items()}
    for trajs in baseline.values():
        assert [t.status for t in trajs] == ["success"] * len(trajs)
    return tiny_world, cases, baseline


def _run(world, env_id, tasks, policy, schedule):
    def make_env():
        env = make(env_id, world=world)
        return env if schedule is None else PerturbedEnv(env, schedule, progress=1.0)

    return asyncio.run(rollout(make_env, policy, tasks, max_turns=60, concurrency=2))


@pytest.mark.parametrize("kind", RECOVERABLE)
def test_expert_recovers_at_a_cost_of_steps(kind, setup):
    world, cases, baseline = setup
    schedule = Schedule.single(kind, 1.0, max_per_episode=3, params=PARAMS.get(kind, {}))
    for env_id, (tasks, policy) in cases.items():
        trajs = _run(world, env_id, tasks, policy(), schedule)
        assert [t.status for t in trajs] == ["success"] * len(trajs), [
            (t.task_id, t.status, t.info.get("error"), [u.step.info.get("error") for u in t.turns]) for t in trajs]
        met = [p for t in trajs for p in t.info["perturbations"]]
        assert met and {p["type"] for p in met} == {kind}, env_id
        assert all(t.info["perturbation_types"] in ([], [kind]) for t in trajs)
        steps, before = sum(len(t.turns) for t in trajs), sum(len(t.turns) for t in baseline[env_id])
        if perturbation_class(kind).recovery is Recovery.adapt:
            assert steps >= before  # tolerant parsing costs no call
        else:
            assert steps > before, (env_id, steps, before)


def test_an_unrecoverable_perturbation_defeats_the_expert(setup):
    world, cases, _ = setup
    tasks, policy = cases["search"]
    schedule = Schedule.single("outage", 1.0, allow_unrecoverable=True, tools=["web_search"])
    trajs = _run(world, "search", tasks[:2], policy(), schedule)
    assert [t.status for t in trajs] == ["failure", "failure"]
    assert all(t.info["perturbation_types"] == ["outage"] for t in trajs)
