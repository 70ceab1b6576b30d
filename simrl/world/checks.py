"""Constraint checks of a world graph: the world is consistent by construction, and this proves it.

Each ``check_*`` function takes a :class:`~simrl.world.index.WorldIndex` and returns one
:class:`~simrl.world.schema.CheckResult`; :func:`check_world` runs them all (``simrl world inspect``
prints the report, ``simrl world generate`` stores it in ``checks.json`` and refuses to write a
world that fails one).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from simrl.world.index import WorldIndex
from simrl.world.providers import REAL_COUNTRIES
from simrl.world.schema import RELATIONS, CheckReport, CheckResult

_MAX_EXAMPLES = 20
_ADULT_DAYS = round(18 * 365.25)


def _result(name: str, description: str, items: Iterable, bad: Callable[[object], str | None]) -> CheckResult:
    checked, violations, examples = 0, 0, []
    for item in items:
        checked += 1
        why = bad(item)
        if why:
            violations += 1
            if len(examples) < _MAX_EXAMPLES:
                examples.append(why)
    return CheckResult(name=name, description=description, checked=checked, violations=violations,
                       examples=examples)


def _edges(ix: WorldIndex, relation: str) -> list[tuple[str, str, str, dict]]:
    return ix.by_relation.get(relation, [])


def _lifetime(ix: WorldIndex, pid: str) -> tuple[str, str]:
    node = ix.node(pid)
    return node["born"], node["died"] or "9999-12-31"


def check_unique_names(ix: WorldIndex) -> CheckResult:
    """No two entities share a name (case-insensitive)."""
    counts = Counter(d["name"].lower() for _, d in ix.graph.nodes(data=True))
    return _result("unique_names", "no two entities share a name", counts.items(),
                   lambda kv: f"{kv[0]!r} used {kv[1]} times" if kv[1] > 1 else None)


def check_fictional_names(ix: WorldIndex) -> CheckResult:
    """No entity takes the name of a real country."""
    return _result("fictional_names", "no entity is named after a real country", ix.graph.nodes(data=True),
                   lambda nd: f"{nd[0]} is named {nd[1]['name']!r}" if nd[1]["name"].lower() in REAL_COUNTRIES else None)


def check_relation_types(ix: WorldIndex) -> CheckResult:
    """Every edge's relation is known and its ends have the relation's domain and range types."""
    def bad(item):
        key, (u, v, d) = item
        rel = RELATIONS.get(d["relation"])
        if rel is None:
            return f"{key}: unknown relation {d['relation']!r}"
        if ix.node(u)["type"] != rel.domain.value or ix.node(v)["type"] != rel.range.value:
            return f"{key}: {rel.name} from {u} to {v} (expects {rel.domain.value} -> {rel.range.value})"
        return None
    return _result("relation_types", "edges respect domain and range", ix.edges.items(), bad)


def check_cardinality(ix: WorldIndex) -> list[CheckResult]:
    """Per relation: min/max edges per source, max per target (temporal: at any one time, see ceo check)."""
    results = []
    for rel in RELATIONS.values():
        out_count: Counter = Counter()
        in_count: Counter = Counter()
        for _, u, v, _ in _edges(ix, rel.name):
            out_count[u] += 1
            in_count[v] += 1
        sources = ix.by_type[rel.domain]

        def bad(nid, rel=rel, out_count=out_count, in_count=in_count):
            n_out = out_count.get(nid, 0)
            if n_out < rel.min_out:
                return f"{nid} has no {rel.name} edge"
            if rel.max_out is not None and n_out > rel.max_out:
                return f"{nid} has {n_out} {rel.name} edges (at most {rel.max_out})"
            return None
        items = list(sources)
        res = _result(f"cardinality:{rel.name}", f"{rel.domain.value} {rel.phrase} "
                      f"{rel.min_out}..{rel.max_out or 'n'} {rel.range.value}", items, bad)
        if rel.max_in is not None and not rel.temporal:
            over = [(v, c) for v, c in in_count.items() if c > rel.max_in]
            res.violations += len(over)
            res.examples += [f"{v} is the target of {c} {rel.name} edges" for v, c in over[:_MAX_EXAMPLES]]
        results.append(res)
    return results


def check_one_ceo_at_a_time(ix: WorldIndex) -> CheckResult:
    """Chief-executive terms of one organization never overlap, and fall inside the CEO's lifetime."""
    terms = defaultdict(list)
    for key, u, v, d in _edges(ix, "ceo_of"):
        terms[v].append((d["start"], d["end"] or "9999-12-31", u, key))

    def bad(org):
        ts = sorted(terms[org])
        for (_, e1, _, k1), (s2, _, _, k2) in zip(ts, ts[1:]):
            if s2 <= e1:
                return f"{org}: terms {k1} and {k2} overlap"
        for start, end, pid, key in ts:
            born, died = _lifetime(ix, pid)
            if start < born or end > died or start < ix.node(org)["founded"]:
                return f"{key}: term {start}..{end} outside the CEO's life or before {org} was founded"
        return None
    return _result("one_ceo_at_a_time", "at most one chief executive per organization at a time",
                   list(terms), bad)


def check_founders(ix: WorldIndex) -> CheckResult:
    """Founders were born at least 18 years before the founding and were alive at it."""
    def bad(edge):
        key, org, pid, _ = edge
        founded = ix.node(org)["founded"]
        born, died = _lifetime(ix, pid)
        if (dt.date.fromisoformat(founded) - dt.date.fromisoformat(born)).days < _ADULT_DAYS:
            return f"{key}: {pid} born {born}, founded {org} on {founded}"
        if died < founded:
            return f"{key}: {pid} died {died} before {org} was founded on {founded}"
        return None
    return _result("born_before_founding", "founders are adults and alive when they found an organization",
                   _edges(ix, "founded_by"), bad)


def check_acquisitions(ix: WorldIndex) -> CheckResult:
    """Both organizations exist before an acquisition; the acquirer is older (so there are no cycles)."""
    def bad(edge):
        key, acquirer, target, d = edge
        fa, ft = ix.node(acquirer)["founded"], ix.node(target)["founded"]
        if not (fa < d["date"] and ft < d["date"]):
            return f"{key}: acquisition on {d['date']} before a founding ({fa}, {ft})"
        if fa > ft:
            return f"{key}: acquirer {acquirer} founded after its target {target}"
        return None
    return _result("founding_before_acquisition", "acquisitions happen after both foundings, acquirer older",
                   _edges(ix, "acquired"), bad)


def check_lifetimes(ix: WorldIndex) -> CheckResult:
    """Events, memberships and works fall inside the lifetimes of the people involved."""
    items = ([("event", e) for e in _edges(ix, "participated_in")]
             + [("member", e) for e in _edges(ix, "member_of")]
             + [("work", e) for e in _edges(ix, "created_by")])

    def bad(item):
        kind, (key, u, v, d) = item
        if kind == "event":
            when, pid = ix.node(v)["date"], u
        elif kind == "member":
            when, pid = d["start"], u
            if when < ix.node(v)["founded"] or (d["end"] and d["end"] < when):
                return f"{key}: membership {when}..{d['end']} outside {v}'s existence"
        else:
            when, pid = ix.node(u)["released"], v
        born, died = _lifetime(ix, pid)
        if not born < when <= died:
            return f"{key}: {kind} on {when} outside {pid}'s life {born}..{died}"
        return None
    return _result("events_inside_lifetimes", "events, memberships and works fall inside lifetimes", items, bad)


def check_dates(ix: WorldIndex) -> CheckResult:
    """Births before deaths, products and events after their organizations, nothing after today."""
    today = ix.graph.graph.get("reference_date", "9999-12-31")
    dated = {"person": "born", "organization": "founded", "product": "released", "event": "date",
             "creative_work": "released", "city": "founded", "country": "founded"}
    after = {"produced_by": "released", "organized_by": "date", "published_by": "released"}

    def bad(nid):
        node = ix.node(nid)
        when = node[dated[node["type"]]]
        if when > today:
            return f"{nid}: {when} is after the world's reference date {today}"
        if node["type"] == "person" and node["died"] and not node["born"] < node["died"] <= today:
            return f"{nid}: born {node['born']}, died {node['died']}"
        for rel, attr in after.items():
            for link in ix.out(nid, rel):
                if node[attr] < ix.node(link.other)["founded"]:
                    return f"{nid}: {attr} {node[attr]} before {link.other} was founded"
        if node["type"] == "organization":
            city = ix.out(nid, "headquartered_in")[0].other
            if ix.node(city)["founded"] > when:
                return f"{nid}: founded {when} before its city {city} existed"
        return None
    return _result("dates_ordered", "dates are ordered and no later than the reference date",
                   list(ix.graph.nodes), bad)


def check_contradictions(ix: WorldIndex) -> CheckResult:
    """No fact is stated twice with different values: no duplicate edges, capitals in their country."""
    seen: Counter = Counter()
    for _, (u, v, d) in ix.edges.items():
        if not RELATIONS[d["relation"]].temporal:
            seen[(u, v, d["relation"])] += 1
    items = [("dup", k, c) for k, c in seen.items() if c > 1]
    items += [("capital", key, (u, v)) for key, u, v, _ in _edges(ix, "capital_of")]

    def bad(item):
        kind, key, val = item
        if kind == "dup":
            return f"{key} stated {val} times"
        city, country = val
        if ix.country_of_city(city) != country:
            return f"{key}: {city} is the capital of {country} but located in {ix.country_of_city(city)}"
        return None
    return _result("no_contradictions", "no duplicate or contradictory facts", items, bad)


def check_world(ix: WorldIndex) -> CheckReport:
    """Run every constraint check on a world.

    Returns:
        A :class:`CheckReport` (``report.passed`` is True when every check found no violation).
    """
    results = [check_unique_names(ix), check_fictional_names(ix), check_relation_types(ix),
               *check_cardinality(ix), check_one_ceo_at_a_time(ix), check_founders(ix),
               check_acquisitions(ix), check_lifetimes(ix), check_dates(ix), check_contradictions(ix)]
    return CheckReport(results=results)

