"""The constraint checks catch violations (each check is shown to fail on a corrupted world)."""

from __future__ import annotations

import pytest

from simrl.world import WorldIndex, load_graph
from simrl.world.checks import check_world


def _failed(graph) -> set[str]:
    return {r.name for r in check_world(WorldIndex(graph)).results if not r.passed}


def _first(graph, relation):
    return next((u, v, k, d) for u, v, k, d in graph.edges(keys=True, data=True) if d["relation"] == relation)


@pytest.fixture
def graph(small_world):
    return load_graph(small_world)


def test_clean_world_passes(graph):
    assert _failed(graph) == set()


def test_second_headquarters(graph):
    org, city, _, _ = _first(graph, "headquartered_in")
    other = next(n for n, d in graph.nodes(data=True) if d["type"] == "city" and n != city)
    graph.add_edge(org, other, key="e:x", relation="headquartered_in")
    assert "cardinality:headquartered_in" in _failed(graph)


def test_overlapping_ceo_terms(graph):
    person, org, _, d = _first(graph, "ceo_of")
    other = next(n for n, a in graph.nodes(data=True) if a["type"] == "person" and n != person)
    graph.add_edge(other, org, key="e:x", relation="ceo_of", start=d["start"], end=None)
    assert "one_ceo_at_a_time" in _failed(graph)


def test_founder_born_after_founding(graph):
    org, person, _, _ = _first(graph, "founded_by")
    graph.nodes[person]["born"] = graph.nodes[org]["founded"]
    assert "born_before_founding" in _failed(graph)


def test_acquisition_before_founding_and_duplicate_name(graph):
    acquirer, target, key, d = _first(graph, "acquired")
    graph.edges[acquirer, target, key]["date"] = "1800-01-01"
    a, b = list(graph.nodes)[:2]
    graph.nodes[b]["name"] = graph.nodes[a]["name"].upper()
    assert {"founding_before_acquisition", "unique_names"} <= _failed(graph)


def test_real_country_name_and_event_outside_lifetime(graph):
    country = next(n for n, d in graph.nodes(data=True) if d["type"] == "country")
    graph.nodes[country]["name"] = "France"
    person, event, _, _ = _first(graph, "participated_in")
    graph.nodes[person]["born"] = "2025-12-30"
    assert {"fictional_names", "events_inside_lifetimes"} <= _failed(graph)
