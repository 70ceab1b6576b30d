"""The real search engine's noise and faults (recipe `real:` options): seeded per episode, at the declared
rates, absent from the oracle (the clean ground truth) and from the engine with both rates 0."""

from __future__ import annotations

import asyncio

import pytest

from simrl.envs.base import make
from simrl.envs.search_tools import RESULTS_PER_QUERY
from simrl.errors import SimrlError
from simrl.policies.expert import parse_search_results
from simrl.types import Action
from simrl.world import load_tasks

QUERIES = ["city", "company", "product", "festival", "person", "software", "founded", "capital", "music", "news"]


def _episode(world, episode, calls=60, **options):
    """Observations of ``calls`` web_search calls in one episode of the environment made with ``options``."""
    task = load_tasks(world, type="qa")[0]

    async def run():
        env = make("search", world=world, max_turns=calls, **options)  # every call inside the episode's turn limit
        try:
            await env.reset(task, seed=episode)
            out = []
            for i in range(calls):
                step = await env.step(Action.call("web_search", query=QUERIES[i % len(QUERIES)]))
                out.append(step.observation.results[0])
            return out
        finally:
            await env.close()

    return asyncio.run(run())


def test_real_search_differs_from_the_oracle_as_declared(tiny_world):
    clean = _episode(tiny_world, 5, calls=15)
    oracle = _episode(tiny_world, 5, calls=15, world_model="oracle")  # its own turn limit is 20
    assert [r.content for r in clean] == [r.content for r in oracle]  # both rates 0: the oracle's observations
    real = [r for seed in range(5) for r in _episode(tiny_world, seed, noise_rate=0.2, fault_rate=0.1)]
    base = [r for seed in range(5) for r in _episode(tiny_world, seed)]
    faults = [r for r in real if r.is_error]
    assert 0.05 <= len(faults) / len(real) <= 0.15, len(faults)  # 300 calls at 0.1
    assert {f.content[:3] for f in faults} == {"429", "503", "504"}
    shown = ranked = foreign = 0
    for r, b in zip(real, base):
        if r.is_error:
            continue
        urls, truth = [u for u, _ in parse_search_results(r.content)], [u for u, _ in parse_search_results(b.content)]
        assert len(urls) == len(truth) <= RESULTS_PER_QUERY
        shown += len(urls)
        foreign += sum(u not in truth[:i + 1] for i, u in enumerate(urls))  # not the ranked result due at slot i
        ranked += urls == truth
    assert 0.12 <= foreign / shown <= 0.28, foreign / shown  # irrelevant pages at 0.2 a slot
    assert ranked < len(real) - len(faults)


def test_noise_and_faults_are_seeded_per_episode(tiny_world):
    a = _episode(tiny_world, 3, calls=30, noise_rate=0.3, fault_rate=0.2)
    assert [r.model_dump() for r in a] == [r.model_dump() for r in _episode(tiny_world, 3, calls=30, noise_rate=0.3,
                                                                            fault_rate=0.2)]
    assert [r.content for r in a] != [r.content for r in _episode(tiny_world, 4, calls=30, noise_rate=0.3,
                                                                  fault_rate=0.2)]
    assert [r.content for r in a] != [r.content for r in _episode(tiny_world, 3, calls=30, noise_rate=0.3,
                                                                  fault_rate=0.2, seed=1)]


def test_bad_rates_are_refused(tiny_world):
    with pytest.raises(SimrlError, match="noise_rate"):
        make("search", world=tiny_world, noise_rate=1.5)
    with pytest.raises(SimrlError, match="fault_rate"):
        make("search", world=tiny_world, fault_rate=-0.1)
