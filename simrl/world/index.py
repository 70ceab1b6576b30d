"""Fast read access to a world graph: neighbours by relation, entities by type.

Built once per world (O(edges)); the corpus renderer, the task generator, the constraint checks and
later the environments all read the graph through it instead of scanning networkx adjacency.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import networkx as nx

from simrl.world.schema import EntityType


@dataclass(frozen=True)
class Link:
    """One edge seen from one end: the entity at the other end, the edge id, the edge's attributes."""

    other: str
    edge_id: str
    attrs: dict


class WorldIndex:
    """Adjacency of a world graph indexed by ``(node, relation)`` in both directions.

    Args:
        graph: a world graph from :func:`simrl.world.graph.build_graph` or :func:`load_graph`.
    """

    def __init__(self, graph: nx.MultiDiGraph) -> None:
        self.graph = graph
        self._out: dict[tuple[str, str], list[Link]] = defaultdict(list)
        self._in: dict[tuple[str, str], list[Link]] = defaultdict(list)
        self.edges: dict[str, tuple[str, str, dict]] = {}
        self.by_relation: dict[str, list[tuple[str, str, str, dict]]] = defaultdict(list)
        for u, v, key, data in graph.edges(keys=True, data=True):
            rel = data["relation"]
            self._out[(u, rel)].append(Link(v, key, data))
            self._in[(v, rel)].append(Link(u, key, data))
            self.edges[key] = (u, v, data)
            self.by_relation[rel].append((key, u, v, data))
        self.by_type: dict[EntityType, list[str]] = {t: [] for t in EntityType}
        for nid, data in graph.nodes(data=True):
            self.by_type[EntityType(data["type"])].append(nid)

    def node(self, nid: str) -> dict:
        """The attribute dict of entity ``nid`` (``type``, ``name``, ...)."""
        return self.graph.nodes[nid]

    def name(self, nid: str) -> str:
        """The name of entity ``nid``."""
        return self.graph.nodes[nid]["name"]

    def out(self, nid: str, relation: str) -> list[Link]:
        """Edges ``nid -[relation]-> *`` in creation order."""
        return self._out.get((nid, relation), [])

    def inn(self, nid: str, relation: str) -> list[Link]:
        """Edges ``* -[relation]-> nid`` in creation order."""
        return self._in.get((nid, relation), [])

    def one(self, nid: str, relation: str) -> Link | None:
        """The single outgoing ``relation`` edge of ``nid``, or None if it has none or several."""
        links = self.out(nid, relation)
        return links[0] if len(links) == 1 else None

    def one_in(self, nid: str, relation: str) -> Link | None:
        """The single incoming ``relation`` edge of ``nid``, or None if it has none or several."""
        links = self.inn(nid, relation)
        return links[0] if len(links) == 1 else None

    def country_of_city(self, city: str) -> str:
        """The country a city is located in (every city has exactly one)."""
        return self.out(city, "located_in")[0].other

    def ceo_at(self, org: str, date: str) -> Link | None:
        """The chief-executive edge of ``org`` whose term covers ISO ``date``, or None."""
        for link in self.inn(org, "ceo_of"):
            end = link.attrs.get("end")
            if link.attrs["start"] <= date and (end is None or date <= end):
                return link
        return None
