"""Property test: every shipped spec generates worlds that pass every constraint check, over many seeds
and sizes (the graph is what the checks read, so the test builds graphs, not whole world folders)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from simrl.world import WorldIndex, load_spec
from simrl.world.checks import check_one_ceo_at_a_time, check_world
from simrl.world.graph import _Builder, build_graph
from simrl.world.providers import WorldNames
from simrl.world.schema import EntityType

SPECS = sorted((Path(__file__).resolve().parents[2] / "worlds").glob("*.yaml"))


def _failures(spec, seed: int, entities: int) -> dict[str, list[str]]:
    report = check_world(WorldIndex(build_graph(spec, seed, entities)))
    return {r.name: r.examples for r in report.results if not r.passed}


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("entities", [30, 90, 300])
def test_every_check_passes_on_many_seeds(spec_path, entities):
    spec = load_spec(spec_path)
    bad = {seed: f for seed in range(25) if (f := _failures(spec, seed, entities))}
    assert not bad, f"{spec_path.name} at {entities} entities: {bad}"


def test_a_current_chief_executive_is_alive():
    """A current (open-ended) term goes to someone with no death date: a person who died on the
    reference date was alive "until today" and used to get a term that outlived them (default.yaml,
    seed 3, 100,000 entities)."""
    spec = load_spec(SPECS[0])
    counts = spec.type_counts(300)
    b = _Builder(spec=spec, rng=random.Random(0), names=WorldNames(0, spec.locale))
    b.countries(counts[EntityType.country])
    b.cities(counts[EntityType.city])
    b.people(counts[EntityType.person])
    for pid in b.ids[EntityType.person]:  # everyone dies on the reference date
        b.g.nodes[pid]["died"] = spec.reference_date.isoformat()
    b.organizations(counts[EntityType.organization])
    for etype in EntityType:
        b.ids.setdefault(etype, [])
    result = check_one_ceo_at_a_time(WorldIndex(b.g))
    assert result.passed, result.examples
    assert any(d["relation"] == "ceo_of" for _, _, d in b.g.edges(data=True))  # closed terms were still given


@pytest.mark.slow
def test_large_world_seed_3_passes_every_check():
    assert _failures(load_spec(SPECS[0]), 3, 100_000) == {}
