"""Build a fictional world's knowledge graph, consistent by construction.

Entities are generated in dependency order (countries, cities, people, organizations, then what
organizations and people make or attend), and every dated fact is drawn inside the window its
constraints allow: founders are adults at the founding, chief-executive terms follow one another,
acquisitions come after both companies were founded (and an acquirer is always older than its
target, so acquisitions form no cycle), events and works fall inside their people's lifetimes.
:mod:`simrl.world.checks` verifies all of it afterwards.

The graph is a :class:`networkx.MultiDiGraph`: node ids ``"{type}:{n:06d}"`` with attributes
``type``, ``name`` and the type's attributes (dates as ISO strings); edges keyed by ``"e:{n:07d}"``
with ``relation`` and, per relation type, ``start``/``end`` or ``date``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
from dataclasses import dataclass, field

import networkx as nx

from simrl.world.providers import WorldNames
from simrl.world.schema import EntityType
from simrl.world.spec import WorldSpec

_REGIONS = ("Northern", "Southern", "Eastern", "Western", "Central", "Coastal", "Highland", "Island")
_INDUSTRIES = ("software", "shipping", "agriculture", "banking", "textiles", "energy", "mining",
               "publishing", "pharmaceuticals", "aerospace", "retail", "telecommunications",
               "construction", "food processing", "film")
_PRODUCT_CATEGORIES = ("appliance", "vehicle", "beverage", "software", "instrument", "tool", "garment",
                       "toy", "medicine", "device")
_EVENT_CATEGORIES = ("conference", "festival", "trade fair", "sports tournament", "exhibition", "summit")
_WORK_KINDS = ("novel", "film", "album", "painting", "play", "poetry collection")
_CURRENCY = ("crown", "mark", "florin", "dinar", "sol", "taler", "lira", "real")
_OCCUPATIONS = ("engineer", "architect", "economist", "chemist", "novelist", "film director",
                "composer", "physician", "lawyer", "entrepreneur", "journalist", "painter",
                "banker", "agronomist", "diplomat", "software developer", "historian", "pilot")

DAYS_PER_YEAR = 365.25


def years(n: float) -> dt.timedelta:
    """A duration of ``n`` years (365.25 days each)."""
    return dt.timedelta(days=round(n * DAYS_PER_YEAR))


@dataclass
class _Builder:
    spec: WorldSpec
    rng: random.Random
    names: WorldNames
    g: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)
    ids: dict[EntityType, list[str]] = field(default_factory=dict)
    n_edges: int = 0

    # -- helpers -------------------------------------------------------------------------------
    def date_between(self, lo: dt.date, hi: dt.date) -> dt.date:
        """A uniform random day in ``[lo, hi]`` (``lo`` if the window is empty)."""
        span = (hi - lo).days
        return lo if span <= 0 else lo + dt.timedelta(days=self.rng.randint(0, span))

    def add_nodes(self, etype: EntityType, names: list[str], attrs: list[dict]) -> list[str]:
        ids = [f"{etype.value}:{i:06d}" for i in range(len(names))]
        self.g.add_nodes_from(
            (nid, {"type": etype.value, "name": name, **a}) for nid, name, a in zip(ids, names, attrs))
        self.ids[etype] = ids
        return ids

    def add_edge(self, u: str, v: str, relation: str, **attrs) -> str:
        key = f"e:{self.n_edges:07d}"
        self.n_edges += 1
        self.g.add_edge(u, v, key=key, relation=relation, **attrs)
        return key

    def date_of(self, nid: str, attr: str) -> dt.date:
        return dt.date.fromisoformat(self.g.nodes[nid][attr])

    # -- entity types in dependency order -----------------------------------------------------
    def countries(self, n: int) -> None:
        today = self.spec.reference_date
        attrs = [{"founded": self.date_between(dt.date(1500, 1, 1), today - years(40)).isoformat(),
                  "population": self.rng.randint(200_000, 90_000_000),
                  "area_km2": self.rng.randint(800, 2_000_000),
                  "region": self.rng.choice(_REGIONS),
                  "currency": ""} for _ in range(n)]
        ids = self.add_nodes(EntityType.country, self.names.countries(n), attrs)
        for nid in ids:
            node = self.g.nodes[nid]
            node["currency"] = f"{node['name']} {self.rng.choice(_CURRENCY)}"

    def cities(self, n: int) -> None:
        countries = self.ids[EntityType.country]
        oldest = dt.date(1000, 1, 1)
        latest = dt.date(self.spec.start_year - 1, 12, 31)
        attrs = [{"founded": self.date_between(oldest, latest).isoformat(),
                  "population": int(self.rng.paretovariate(1.2) * 20_000),
                  "elevation_m": self.rng.randint(0, 2400)} for _ in range(n)]
        ids = self.add_nodes(EntityType.city, self.names.cities(n), attrs)
        # every country gets at least one city when there are enough cities; one capital each
        owners = countries[:n] + self.rng.choices(countries, k=max(0, n - len(countries)))
        capital_of: dict[str, str] = {}
        for cid, country in zip(ids, owners):
            self.add_edge(cid, country, "located_in")
            if country not in capital_of:
                capital_of[country] = cid
        for country, cid in capital_of.items():
            self.add_edge(cid, country, "capital_of")

    def people(self, n: int) -> None:
        rel = self.spec.relations
        today = self.spec.reference_date
        first, last = dt.date(self.spec.start_year, 1, 1), today - years(20)
        attrs = []
        for _ in range(n):
            born = self.date_between(first, last)
            died = None
            if born < today - years(70) and self.rng.random() < rel.death_rate:
                died = self.date_between(born + years(40), min(born + years(100), today)).isoformat()
            attrs.append({"born": born.isoformat(), "died": died,
                          "occupation": self.rng.choice(_OCCUPATIONS)})
        ids = self.add_nodes(EntityType.person, self.names.people(n), attrs)
        for pid, city in zip(ids, self.rng.choices(self.ids[EntityType.city], self._city_weights(), k=n)):
            self.add_edge(pid, city, "born_in")
        order = sorted(ids, key=lambda p: self.g.nodes[p]["born"])
        self._by_birth = order
        self._births = [self.date_of(p, "born") for p in order]

    def _city_weights(self) -> list[int]:
        """City populations: people are born, and companies settle, mostly in big cities."""
        return [self.g.nodes[c]["population"] for c in self.ids[EntityType.city]]

    def alive_adult(self, start: dt.date, end: dt.date, min_age: int, max_age: int = 90) -> str | None:
        """A random person aged ``min_age..max_age`` at ``start`` and alive until ``end``, or None.

        ``end = dt.date.max`` asks for someone still alive (no death date).
        """
        lo = bisect.bisect_left(self._births, start - years(max_age))
        hi = bisect.bisect_right(self._births, start - years(min_age))
        if hi <= lo:
            return None
        for _ in range(12):
            pid = self._by_birth[self.rng.randrange(lo, hi)]
            died = self.g.nodes[pid]["died"]
            if died is None or dt.date.fromisoformat(died) >= end:
                return pid
        return None

    def organizations(self, n: int) -> None:
        rel = self.spec.relations
        today = self.spec.reference_date
        names = self.names.organizations(n)
        ids = [f"organization:{i:06d}" for i in range(n)]
        attrs, founders = [], []
        for _ in range(n):
            chosen: list[str] = []
            founded = today
            for _ in range(20):
                founded = self.date_between(dt.date(self.spec.start_year + 25, 1, 1), today - years(2))
                pid = self.alive_adult(founded, founded, min_age=21, max_age=70)
                if pid:
                    chosen = [pid]
                    break
            want = self.rng.randint(rel.founders_per_organization.min, rel.founders_per_organization.max)
            for _ in range(want - 1):
                pid = self.alive_adult(founded, founded, min_age=21, max_age=70)
                if pid and pid not in chosen:
                    chosen.append(pid)
            if not chosen:  # a world too small to find an adult: use the oldest person
                chosen = [self._by_birth[0]]
                founded = max(founded, self._births[0] + years(21))
            founders.append(chosen)
            attrs.append({"founded": founded.isoformat(), "industry": self.rng.choice(_INDUSTRIES),
                          "employees": int(self.rng.paretovariate(1.1) * 12)})
        self.add_nodes(EntityType.organization, names, attrs)
        cities = self.rng.choices(self.ids[EntityType.city], self._city_weights(), k=n)
        for oid, chosen, city in zip(ids, founders, cities):
            for pid in chosen:
                self.add_edge(oid, pid, "founded_by")
            self.add_edge(oid, city, "headquartered_in")
        for oid in ids:
            self._ceo_terms(oid)
        self._acquisitions(ids)

    def _ceo_terms(self, oid: str) -> None:
        """Consecutive, non-overlapping chief-executive terms from founding to today."""
        term = self.spec.relations.ceo_term_years
        today = self.spec.reference_date
        start = self.date_of(oid, "founded")
        while start < today:
            end = start + years(self.rng.randint(term.min, term.max))
            current = end >= today
            # a current term has no end: its CEO must be alive (not merely alive until today, which a
            # person who died on the reference date is), else the open term outlives its holder
            pid = self.alive_adult(start, dt.date.max if current else end, min_age=28, max_age=70)
            if pid is None:
                start = end
                continue
            self.add_edge(pid, oid, "ceo_of", start=start.isoformat(),
                          end=None if current else end.isoformat())
            start = end + dt.timedelta(days=1)

    def _acquisitions(self, ids: list[str]) -> None:
        today = self.spec.reference_date
        by_founding = sorted(ids, key=lambda o: self.g.nodes[o]["founded"])
        k = round(self.spec.relations.acquisition_rate * len(ids))
        targets = self.rng.sample(by_founding[1:], k=min(k, len(ids) - 1))
        rank = {oid: i for i, oid in enumerate(by_founding)}
        for target in sorted(targets):
            acquirer = by_founding[self.rng.randrange(0, rank[target])]  # always older: no cycles
            lo = max(self.date_of(target, "founded"), self.date_of(acquirer, "founded")) + years(1)
            if lo >= today:
                continue
            self.add_edge(acquirer, target, "acquired", date=self.date_between(lo, today).isoformat())

    def memberships(self) -> None:
        rng_m = self.spec.relations.memberships_per_person
        today = self.spec.reference_date
        orgs = self.ids[EntityType.organization]
        weights = [self.g.nodes[o]["employees"] for o in orgs]  # big organizations have many members
        for pid in self.ids[EntityType.person]:
            born = self.date_of(pid, "born")
            died = self.g.nodes[pid]["died"]
            last = dt.date.fromisoformat(died) if died else today
            for oid in sorted(set(self.rng.choices(orgs, weights, k=self.rng.randint(rng_m.min, rng_m.max)))):
                lo = max(self.date_of(oid, "founded"), born + years(18))
                if lo >= last:
                    continue
                start = self.date_between(lo, last)
                end = None if (died is None and self.rng.random() < 0.5) else self.date_between(start, last)
                self.add_edge(pid, oid, "member_of", start=start.isoformat(),
                              end=end.isoformat() if end else None)

    def products(self, n: int) -> None:
        today = self.spec.reference_date
        makers = self.rng.choices(self.ids[EntityType.organization], k=n)
        attrs = [{"released": self.date_between(self.date_of(m, "founded"), today).isoformat(),
                  "category": self.rng.choice(_PRODUCT_CATEGORIES),
                  "price": round(self.rng.lognormvariate(4, 1.2), 2)} for m in makers]
        ids = self.add_nodes(EntityType.product, self.names.products(n), attrs)
        for pid, maker in zip(ids, makers):
            self.add_edge(pid, maker, "produced_by")

    def events(self, n: int) -> None:
        rel = self.spec.relations
        today = self.spec.reference_date
        cities = self.rng.choices(self.ids[EntityType.city], k=n)
        dates = [self.date_between(dt.date(self.spec.start_year + 30, 1, 1), today) for _ in range(n)]
        names = self.names.events([d.year for d in dates])
        attrs = [{"date": d.isoformat(), "category": self.rng.choice(_EVENT_CATEGORIES)} for d in dates]
        ids = self.add_nodes(EntityType.event, names, attrs)
        orgs = self.ids[EntityType.organization]
        for eid, city, date in zip(ids, cities, dates):
            self.add_edge(eid, city, "held_in")
            if self.rng.random() < rel.organizer_rate:
                oid = self.rng.choice(orgs)
                if self.date_of(oid, "founded") < date:
                    self.add_edge(eid, oid, "organized_by")
            people = set()
            for _ in range(self.rng.randint(rel.participants_per_event.min, rel.participants_per_event.max)):
                pid = self.alive_adult(date, date, min_age=18)
                if pid and pid not in people:
                    people.add(pid)
                    self.add_edge(pid, eid, "participated_in")

    def creative_works(self, n: int) -> None:
        today = self.spec.reference_date
        creators, attrs = [], []
        people = self.ids[EntityType.person]
        for pid in self.rng.choices(people, k=n):
            born = self.date_of(pid, "born")
            died = self.g.nodes[pid]["died"]
            last = dt.date.fromisoformat(died) if died else today
            creators.append(pid)
            attrs.append({"released": self.date_between(born + years(16), last).isoformat(),
                          "kind": self.rng.choice(_WORK_KINDS)})
        ids = self.add_nodes(EntityType.creative_work, self.names.titles(n), attrs)
        orgs = self.ids[EntityType.organization]
        for wid, pid, a in zip(ids, creators, attrs):
            self.add_edge(wid, pid, "created_by")
            if self.rng.random() < self.spec.relations.publisher_rate:
                oid = self.rng.choice(orgs)
                if self.g.nodes[oid]["founded"] <= a["released"]:
                    self.add_edge(wid, oid, "published_by")


def build_graph(spec: WorldSpec, seed: int, entities: int | None = None, progress=None) -> nx.MultiDiGraph:
    """Generate the knowledge graph of a world.

    Args:
        spec: the validated world spec.
        seed: world seed; faker and the structural RNG are both seeded from it.
        entities: total entity count (default: ``spec.entities``).
        progress: optional callable ``progress(stage: str)`` called as each stage starts.

    Returns:
        A ``MultiDiGraph`` (see module docstring). ``graph.graph`` holds ``spec``, ``seed``.
    """
    counts = spec.type_counts(entities)
    names = WorldNames(seed, spec.locale)
    b = _Builder(spec=spec, rng=random.Random(f"simrl-world-{seed}"), names=names)
    stages = [
        ("countries", lambda: b.countries(counts[EntityType.country])),
        ("cities", lambda: b.cities(counts[EntityType.city])),
        ("people", lambda: b.people(counts[EntityType.person])),
        ("organizations", lambda: b.organizations(counts[EntityType.organization])),
        ("memberships", b.memberships),
        ("products", lambda: b.products(counts[EntityType.product])),
        ("events", lambda: b.events(counts[EntityType.event])),
        ("creative works", lambda: b.creative_works(counts[EntityType.creative_work])),
    ]
    for stage, run in stages:
        if progress:
            progress(stage)
        run()
    for etype in EntityType:  # types with no entities still get an (empty) id list
        b.ids.setdefault(etype, [])
    b.g.graph.update({"spec": spec.name, "seed": seed, "reference_date": spec.reference_date.isoformat()})
    return b.g
