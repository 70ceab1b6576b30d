"""The evaluation set is fixed before a run: unsolvable tasks dropped, task properties (kind, pages, faults)
the same whatever policy is evaluated, faults drawn per call index, the candidates baseline, and the warm
start's demonstrations free of edge cases."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from simrl.envs.base import make
from simrl.errors import SpecError
from simrl.evaluation.edge_cases import edge_cases
from simrl.evaluation.eval_set import prepare
from simrl.evaluation.evaluate import evaluate_policy
from simrl.evaluation.results import SUBSETS
from simrl.experiment.recipe import parse_recipe
from simrl.policies.candidates import action_key, candidate_actions
from simrl.policies.records_expert import RecordsExpert
from simrl.policies.scorer import RandomCandidatePolicy, ScorerPolicy
from simrl.records.server import Faults, fault_plan
from simrl.rollout import rollout
from simrl.trainers.warm_start import stratified, warm_start
from simrl.world import load_tasks
from tests.trainers.test_embedded import TINY


def _factory(world, fault_rate=0.3):
    return lambda: make("mcp-world", world=world, transport="inprocess", fault_rate=fault_rate)


def test_faults_are_a_function_of_seed_and_call_index():
    a, b = Faults(0.3, seed=5), Faults(0.3, seed=5)
    assert [a.draw(i) for i in range(50)] == [b.draw(i) for i in reversed(range(50))][::-1]
    assert fault_plan(0.3, 5, 50) == [i for i in range(50) if a.draw(i) is not None] != []
    assert fault_plan(0.0, 5, 50) == [] and fault_plan(0.3, 6, 50) != fault_plan(0.3, 5, 50)


def test_real_env_meets_the_planned_faults_whatever_it_calls(tiny_world):
    task = load_tasks(tiny_world, type="records")[0]

    async def errors(calls):
        env = _factory(tiny_world)()
        await env.reset(task, seed=11)
        out = []
        for name, args in calls:
            step = await env.step(__import__("simrl.types", fromlist=["Action"]).Action.call(name, **args))
            out.append(step.observation.results[0].is_error)
        return out

    plan = fault_plan(0.3, 11, 12)
    finds = asyncio.run(errors([("find_by_name", {"name": "A"})] * 12))
    gets = asyncio.run(errors([("search_records", {"type": "city"})] * 12))
    assert [i for i, e in enumerate(finds) if e] == plan == [i for i, e in enumerate(gets) if e]


def test_unsolvable_tasks_are_dropped_and_counted(tiny_world):
    tasks = load_tasks(tiny_world, type="records")
    ready = prepare(tasks, _factory(tiny_world, 0.0), env_id="mcp-world", world=tiny_world, trials=2, max_turns=3,
                    seed=100)  # 3 turns: one lookup, one page, the answer
    assert ready.dropped and ready.tasks and len(ready.dropped) + len(ready.tasks) == len(tasks)
    kept = asyncio.run(rollout(_factory(tiny_world, 0.0), RecordsExpert(tiny_world, tasks), ready.tasks, max_turns=3,
                               seed=100))
    assert all(t.status == "success" for t in kept)  # solvable at exactly the evaluation's episode seeds
    result = evaluate_policy(RandomCandidatePolicy(0), _factory(tiny_world, 0.0), ready.tasks, trials=2, max_turns=3,
                             seed=100, properties=ready.properties, dropped=ready.dropped)
    assert result.dropped == len(ready.dropped) and result.dropped_ids == ready.dropped


def test_subsets_are_task_properties_identical_across_policies(tiny_world, tmp_path):
    tasks = load_tasks(tiny_world, type="records")
    cache = tmp_path / "set.json"
    ready = prepare(tasks, _factory(tiny_world), env_id="mcp-world", world=tiny_world, trials=2, max_turns=20,
                    seed=7, cache=cache)
    assert json.loads(cache.read_text())["tasks"] == [t.task_id for t in ready.tasks]
    props = ready.properties
    assert {p["kind"] for p in props.values()} == {"read", "write"}
    assert any(p["pages"] > 1 for p in props.values()) and any(p["faults"] > 0 for p in props.values())
    results = []
    for policy in (RandomCandidatePolicy(0), RandomCandidatePolicy(1), ScorerPolicy(seed=3, greedy=True)):
        results.append(evaluate_policy(policy, _factory(tiny_world), ready.tasks, trials=2, max_turns=20, seed=7,
                                       properties=props))
    member = [{k: (s.tasks, s.episodes) for k, s in r.subsets.items()} for r in results]
    assert member[0] == member[1] == member[2] and set(member[0]) <= set(SUBSETS)
    assert [t.properties for t in results[0].per_task] == [t.properties for t in results[2].per_task]
    assert member[0]["read"][0] + member[0]["write"][0] == len(ready.tasks)


def test_candidates_baseline_is_seeded_and_chooses_candidates(tiny_world):
    tasks = load_tasks(tiny_world, type="records")[:6]
    runs = [asyncio.run(rollout(_factory(tiny_world, 0.0), RandomCandidatePolicy(s), tasks, max_turns=5, seed=3))
            for s in (0, 0, 1)]
    keys = [[[action_key(t.action) for t in traj.turns] for traj in r] for r in runs]
    assert keys[0] == keys[1] and keys[0] != keys[2]
    for traj, task in zip(runs[0], tasks):
        for i, turn in enumerate(traj.turns):
            assert action_key(turn.action) in {action_key(a) for a in
                                               candidate_actions(task.policy_view(), traj.initial, traj.turns[:i])}


def test_stratified_takes_each_group_in_turn():
    items = [("a", i) for i in range(10)] + [("b", 0), ("c", 0), ("c", 1)]
    picked = stratified(items, lambda x: x[0], 5, random.Random(0))
    assert sorted(g for g, _ in picked) == ["a", "a", "b", "c", "c"]


def test_warm_start_clones_only_edge_case_free_episodes(tiny_world, monkeypatch):
    recipe = parse_recipe({**TINY, "real": {"transport": "inprocess", "fault_rate": 0.3},
                           "warm_start": {"demos": 6, "epochs": 1}})
    tasks = load_tasks(tiny_world, type="records")
    cloned = []
    monkeypatch.setattr("simrl.policies.scorer.behaviour_cloning",
                        lambda policy, demos, views, **kw: cloned.extend(demos) or {"loss": 0.0})
    seen = asyncio.run(warm_start(recipe, ScorerPolicy(seed=0), tiny_world, tasks, seed=0))
    assert cloned and len(cloned) == seen["demos"] <= 6 and seen["clean_episodes"] < seen["expert_episodes"]
    assert all(t.status == "success" and not edge_cases(t) for t in cloned)
    templates = {t.task_id: t.template for t in tasks}
    assert len({templates[t.task_id] for t in cloned}) >= min(len(cloned), 3)
    assert sum(v for k, v in seen.items() if k.startswith("demos/")) == seen["demos"]
    assert asyncio.run(warm_start(parse_recipe({**TINY, "warm_start": None}), ScorerPolicy(), tiny_world, tasks, 0)) \
        is None


def test_training_pool_repeats_each_train_task_by_its_properties(tiny_world):
    """budget.task_weights: a task enters the pool prod(weight) times over its properties, read off the expert's
    real-environment episode (multi_page where the gold spans several pages); none: the task list itself."""
    from simrl.reward.task import is_records_write
    from simrl.trainers.warm_start import training_pool

    tasks = load_tasks(tiny_world, type="records")
    plain = parse_recipe(TINY)
    assert asyncio.run(training_pool(plain, tiny_world, tasks, 0)) == (tasks, {})
    recipe = parse_recipe({**TINY, "budget": {**TINY["budget"], "task_weights": {"multi_page": 3, "write": 2}}})
    pool, stats = asyncio.run(training_pool(recipe, tiny_world, tasks, 0))
    multi = {t.task_id for t in tasks if t.gold.min_pages > 1}
    write = {t.task_id for t in tasks if is_records_write(t)}
    assert multi and write and multi - write  # the tiny world has both, so the product is exercised
    for task in tasks:
        expected = (3 if task.task_id in multi else 1) * (2 if task.task_id in write else 1)
        assert sum(t is task for t in pool) == expected, task.task_id
    assert stats == {"pool": len(pool), "pool/multi_page": len(multi), "pool/write": len(write)}


def test_task_weights_name_task_properties_only():
    for weights, message in (({"faulted": 2}, "unknown task property 'faulted'"), ({"multi_page": 0}, "1..100")):
        with pytest.raises(SpecError, match=message):
            parse_recipe({**TINY, "budget": {**TINY["budget"], "task_weights": weights}})


def test_the_warm_start_and_the_task_pool_share_one_expert_run(tiny_world, monkeypatch):
    """A run's ExpertEpisodes runs the scripted expert once for both readers, with the same result as each running
    it alone; a run that needs neither never runs it."""
    from simrl.trainers import warm_start as ws

    tasks = load_tasks(tiny_world, type="records")
    recipe = parse_recipe({**TINY, "warm_start": {"demos": 6, "epochs": 1},
                           "budget": {**TINY["budget"], "task_weights": {"multi_page": 3}}})
    calls = []
    real = ws.expert_episodes
    monkeypatch.setattr(ws, "expert_episodes", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr("simrl.policies.scorer.behaviour_cloning", lambda policy, demos, views, **kw: {"loss": 0.0})
    alone = (asyncio.run(ws.warm_start(recipe, ScorerPolicy(seed=0), tiny_world, tasks, 0)),
             asyncio.run(ws.training_pool(recipe, tiny_world, tasks, 0)))
    assert len(calls) == 2
    shared = ws.ExpertEpisodes(recipe, tiny_world, tasks, 0)
    both = (asyncio.run(ws.warm_start(recipe, ScorerPolicy(seed=0), tiny_world, tasks, 0, shared)),
            asyncio.run(ws.training_pool(recipe, tiny_world, tasks, 0, shared)))
    assert len(calls) == 3 and both == alone and alone[1][1]["pool/multi_page"] > 0
    idle = ws.ExpertEpisodes(parse_recipe({**TINY, "warm_start": None}), tiny_world, tasks, 0)
    assert asyncio.run(ws.warm_start(parse_recipe({**TINY, "warm_start": None}), ScorerPolicy(), tiny_world, tasks, 0,
                                     idle)) is None and len(calls) == 3
