"""The SQLite record store: built from the graph, paged queries, validated writes, isolated copies."""

from __future__ import annotations

from collections import Counter

import pytest

from simrl.errors import SimrlError
from simrl.records import MAX_PAGE_SIZE, RecordError, RecordStore
from simrl.reward.task import score_state
from simrl.world import load_graph, load_tasks


@pytest.fixture(scope="module")
def graph(tiny_world):
    return load_graph(tiny_world)


@pytest.fixture
def store(tiny_world, tmp_path):
    with RecordStore.create(tiny_world, tmp_path / "records.sqlite") as s:
        yield s


def _all_pages(store: RecordStore, type_name: str, filters=None, limit=None) -> tuple[list[str], list[dict]]:
    ids, pages, cursor = [], [], None
    while True:
        page = store.search(type_name, filters, limit, cursor)
        pages.append(page)
        ids += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages


def test_counts_and_fields_match_the_graph(store, graph):
    types = Counter(d["type"] for _, d in graph.nodes(data=True))
    for etype, n in types.items():
        assert store.search(etype, limit=1)["total"] == n
    relations = Counter(d["relation"] for _, _, d in graph.edges(data=True))
    for rel in ("member_of", "ceo_of", "founded_by", "participated_in", "acquired"):
        assert store.search(rel)["total"] == relations[rel]
    org = "organization:000003"
    record = store.get(org)
    node = graph.nodes[org]
    hq = next(v for _, v, d in graph.out_edges(org, data=True) if d["relation"] == "headquartered_in")
    assert record == {"id": org, "type": "organization", "name": node["name"], "employees": node["employees"],
                      "founded": node["founded"], "industry": node["industry"], "headquartered_in": hq}
    assert store.page_size == 5  # tiny.yaml tasks.page_size


@pytest.mark.parametrize("type_name,limit", [("person", None), ("person", 1), ("organization", 3),
                                             ("member_of", 7), ("product", 500)])
def test_pages_return_every_record_once(store, graph, type_name, limit):
    ids, pages = _all_pages(store, type_name, limit=limit)
    expected = sorted(n for n, d in graph.nodes(data=True) if d["type"] == type_name) if "_" not in type_name \
        else sorted(f"{type_name}:{u}:{v}" for u, v, d in graph.edges(data=True) if d["relation"] == type_name)
    assert ids == expected  # all of them, once each, in stable id order
    size = min(limit or store.page_size, MAX_PAGE_SIZE)
    assert all(len(p["records"]) <= size for p in pages)
    assert all(p["total"] == len(expected) for p in pages)
    assert len(pages) == max(1, -(-len(expected) // size))


def test_filters(store, graph):
    city = "city:000009"
    orgs = sorted(u for u, v, d in graph.edges(data=True) if d["relation"] == "headquartered_in" and v == city)
    ids, _ = _all_pages(store, "organization", {"headquartered_in": city}, limit=1)
    assert ids == orgs
    assert store.search("organizations", {"headquartered_in": [city, "city:000001"]})["total"] >= len(orgs)
    current = sum(1 for _, _, d in graph.edges(data=True) if d["relation"] == "member_of" and d["end"] is None)
    assert store.search("member_of", {"end": None})["total"] == current
    with pytest.raises(RecordError, match="no field 'colour'"):
        store.search("organization", {"colour": "red"})
    with pytest.raises(RecordError, match="must be an integer"):
        store.search("organization", {"employees": "many"})
    with pytest.raises(RecordError, match="unknown record type"):
        store.search("spaceship")
    with pytest.raises(RecordError, match="positive integer"):
        store.search("person", limit=0)


def test_bad_cursors(store):
    page = store.search("person", limit=2)
    with pytest.raises(RecordError, match="another query"):
        store.search("organization", limit=2, cursor=page["next_cursor"])
    with pytest.raises(RecordError, match="invalid cursor"):
        store.search("person", cursor="not-a-cursor")


def test_invalid_ids(store):
    for bad, message in [("nonsense", "malformed record id"), ("organization:999999", "no record"),
                         ("member_of:person:000001:city:000001", "malformed record id"),
                         ("member_of:person:000001:organization:000001", "no record")]:
        with pytest.raises(RecordError, match=message):
            store.get(bad)
    assert store.read("organization:999999", "employees") is None
    assert store.read("organization:000001", "no_such_field") is None


def test_find_by_name(store, graph):
    org = "organization:000014"
    name = graph.nodes[org]["name"]
    exact = store.find_by_name(name.upper())
    assert exact["records"][0] == {"id": org, "type": "organization", "name": name, "match": "exact"}
    prefix = store.find_by_name(name[:4].lower(), "organization")
    assert org in [r["id"] for r in prefix["records"]]
    assert store.find_by_name("zzzz-no-such-name")["total"] == 0
    with pytest.raises(RecordError):
        store.find_by_name("  ")


def test_updates_are_validated_and_read_back(store):
    org = "organization:000018"
    assert store.update(org, {"employees": 678})["employees"] == 678
    assert store.read(org, "employees") == 678
    assert store.update(org, {"headquartered_in": "city:000001"})["headquartered_in"] == "city:000001"
    for fields, message in [({"employees": "678"}, "must be an integer"), ({"colour": "red"}, "no editable field"),
                            ({"headquartered_in": "city:999999"}, "no city with id"),
                            ({"headquartered_in": "person:000001"}, "must be a city id"),
                            ({"founded": "31/12/1990"}, "ISO date"), ({"name": None}, "cannot be empty"),
                            ({"id": "organization:000001"}, "no editable field"), ({}, "non-empty")]:
        with pytest.raises(RecordError, match=message):
            store.update(org, fields)
    assert store.read(org, "employees") == 678  # failed writes change nothing


def test_memberships_and_chief_executives(store):
    person, org = "person:000052", "organization:000007"
    record = store.add_membership(person, org, "2024-04-30")
    assert record["id"] == f"member_of:{person}:{org}" and store.read(record["id"], "start") == "2024-04-30"
    with pytest.raises(RecordError, match="already a member"):
        store.add_membership(person, org, "2024-05-01")
    with pytest.raises(RecordError, match="before"):
        store.add_membership(person, "organization:000001", "1500-01-01")
    with pytest.raises(RecordError, match="expected a person id"):
        store.add_membership(org, org, "2024-04-30")
    assert store.end_membership(person, org, "2025-01-31")["end"] == "2025-01-31"
    with pytest.raises(RecordError, match="no open membership"):
        store.end_membership(person, org, "2025-02-01")
    result = store.appoint_ceo(person, org, "2025-06-01")
    assert result["appointed"]["start"] == "2025-06-01" and result["appointed"]["end"] is None
    if result["ended"] is not None:
        assert result["ended"]["end"] == "2025-05-31"
    with pytest.raises(RecordError, match="already chief executive"):
        store.appoint_ceo(person, org, "2025-07-01")


def test_write_tasks_score_on_state(store, tiny_world):
    task = next(t for t in load_tasks(tiny_world, type="records") if t.template == "set_employees")
    check = task.gold.final_state[0]
    assert score_state(task, store.read).reward == 0.0
    store.update(check.record_id, {check.field: check.value})
    assert score_state(task, store.read).reward == 1.0


def test_episode_copies_are_isolated(store, tmp_path):
    org = "organization:000002"
    before = store.read(org, "employees")
    with store.copy_to(tmp_path / "a.sqlite") as a, store.copy_to(tmp_path / "b.sqlite") as b:
        a.update(org, {"employees": before + 1})
        assert a.read(org, "employees") == before + 1
        assert b.read(org, "employees") == before
        assert store.read(org, "employees") == before
    with RecordStore.open(tmp_path / "a.sqlite") as again:  # writes are committed to the file
        assert again.read(org, "employees") == before + 1


def test_open_errors(tmp_path):
    with pytest.raises(SimrlError, match="no records database"):
        RecordStore.open(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(SimrlError, match="not a simrl records database"):
        RecordStore.open(tmp_path / "junk.sqlite")
    with pytest.raises(SimrlError, match="not a world folder"):
        RecordStore.create(tmp_path / "nowhere", tmp_path / "x.sqlite")


def _script(store: RecordStore) -> list:
    """Reads and writes (some refused) on ``store``: each result, or the error's type and text."""
    org, person = "organization:000007", "person:000052"
    steps = [lambda: store.find_by_name("a"), lambda: store.search("member_of", {"org": org}, 2),
             lambda: store.update(org, {"employees": "many"}),  # refused: no write, no copy needed
             lambda: store.get(org), lambda: store.update(org, {"employees": 4321}),
             lambda: store.add_membership(person, org, "2024-04-30"), lambda: store.end_membership(person, org, "2025-01-31"),
             lambda: store.appoint_ceo(person, org, "2025-06-01"), lambda: store.search("ceo_of", {"org": org}),
             lambda: store.get(f"member_of:{person}:{org}"), lambda: store.find_by_name("a", "person", 50)]
    out = []
    for step in steps:
        try:
            out.append(step())
        except RecordError as err:
            out.append((type(err).__name__, str(err)))
    return out


def test_copy_on_write_store_answers_as_a_copy(store, tmp_path):
    org = "organization:000007"
    with store.copy_to(tmp_path / "ref.sqlite") as ref:
        expected = _script(ref)
    with store.copy_to(tmp_path / "shared.sqlite") as shared:
        shared._conn.execute("PRAGMA query_only = ON")
        forks = []

        def fork():
            forks.append(1)
            return store.copy_to(tmp_path / f"own-{len(forks)}.sqlite")._conn

        reader, writer = RecordStore.copy_on_write(shared, fork), RecordStore.copy_on_write(shared, fork)
        assert _script(writer) == expected and len(forks) == 1  # the same answers; one copy, at the first write
        assert reader.read(org, "employees") == shared.read(org, "employees") != 4321  # writes stay in their copy
        assert reader.find_by_name("a") == expected[0] and len(forks) == 1  # reading never copies
        with pytest.raises(Exception, match="readonly"):  # the shared records cannot be written by mistake
            shared.update(org, {"employees": 1})
        reader.close()
        reader.close()
        writer.close()
        assert shared.read(org, "employees") is not None  # closing a copy-on-write store leaves the shared one open
        with pytest.raises(Exception, match="closed"):
            reader.get(org)
