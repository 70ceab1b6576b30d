"""World generation: determinism, consistency, corpus links, tasks and their gold."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from simrl.errors import SimrlError
from simrl.world import (
    WorldIndex,
    generate_world,
    iter_documents,
    load_checks,
    load_graph,
    load_instructions,
    load_manifest,
    load_spec,
    load_tasks,
    verify_files,
)
from simrl.world.providers import REAL_COUNTRIES
from simrl.world.schema import QAGold, TableGold
from tests.conftest import TINY


def _files(folder):
    """The world's own files (caches such as the search index live in hidden sub-folders)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path, tiny_world):
    again = tmp_path / "again"
    generate_world(load_spec(TINY), 3, again)
    assert _files(again) == _files(tiny_world)


def test_other_seed_gives_another_world(tmp_path, tiny_world):
    other = tmp_path / "other"
    generate_world(load_spec(TINY), 4, other)
    assert _files(other)["graph.json"] != _files(tiny_world)["graph.json"]


def test_manifest_counts_and_checksums(tiny_world):
    m = load_manifest(tiny_world)
    graph = load_graph(tiny_world)
    docs = list(iter_documents(tiny_world))
    tasks = load_tasks(tiny_world)
    assert m.counts["entities"]["total"] == graph.number_of_nodes() == 150
    assert m.counts["relations"]["total"] == graph.number_of_edges()
    assert m.counts["documents"]["total"] == len(docs)
    assert sum(sum(v.values()) for v in m.counts["tasks"].values()) == len(tasks)
    assert set(m.files) >= {"graph.json", "corpus.jsonl", "tasks.jsonl", "tasks.parquet", "simulation.jsonl"}
    assert all(verify_files(tiny_world).values())


def test_checks_pass_and_are_stored(small_world):
    report = load_checks(small_world)
    assert report.passed
    names = {r.name for r in report.results}
    assert {"unique_names", "one_ceo_at_a_time", "born_before_founding", "founding_before_acquisition",
            "events_inside_lifetimes", "cardinality:headquartered_in", "cardinality:located_in"} <= names
    assert all(r.checked > 0 for r in report.results if r.name != "founding_before_acquisition")


def test_names_unique_and_fictional(small_world):
    names = [d["name"].lower() for _, d in load_graph(small_world).nodes(data=True)]
    assert len(names) == len(set(names))
    assert not set(names) & REAL_COUNTRIES


def test_corpus_pages_and_links(small_world):
    docs = list(iter_documents(small_world))
    graph = load_graph(small_world)
    urls = {d.url for d in docs}
    assert len(urls) == len(docs)
    assert all(u.startswith("https://www.default.example/") for u in urls)
    entity_pages = [d for d in docs if d.kind == "entity"]
    assert sorted(d.entity_ids[0] for d in entity_pages) == sorted(graph.nodes)
    links = {u for d in docs for u in re.findall(r"\]\((https://[^)]+)\)", d.text)}
    assert links and links <= urls, "every link points to a page of the corpus"
    assert {d.kind for d in docs} == {"entity", "list", "news"}


def test_some_facts_only_in_news(small_world):
    """A chief-executive term's start date is stated on a news item, not on the entity pages."""
    graph = load_graph(small_world)
    docs = list(iter_documents(small_world))
    u, v, d = next((u, v, d) for u, v, d in graph.edges(data=True) if d["relation"] == "ceo_of")
    from simrl.world.corpus import long_date
    when = long_date(d["start"])
    holders = {doc.kind for doc in docs if when in doc.text and set(doc.entity_ids) & {u, v}}
    assert holders == {"news"}


def test_tasks_types_hops_and_splits(small_world):
    tasks = load_tasks(small_world)
    assert {t.type for t in tasks} == {"qa", "table", "records"}
    assert {t.hops for t in tasks if t.type == "qa"} == {1, 2, 3, 4}
    assert {t.split for t in tasks} == {"train", "dev", "test"}
    assert {t.difficulty for t in tasks} == {"easy", "medium", "hard"}
    records = [t for t in tasks if t.type == "records"]
    assert {t.gold.kind for t in records} == {"read", "write"}
    assert any(t.gold.min_pages > 1 for t in records), "some record answers span several pages"
    assert len({t.task_id for t in tasks}) == len(tasks)


def test_qa_gold_follows_the_evidence(small_world):
    """For path questions, the answer is the name of the last entity on the evidence path."""
    ix = WorldIndex(load_graph(small_world))
    checked = 0
    for t in load_tasks(small_world, type="qa"):
        assert isinstance(t.gold, QAGold)
        for e in t.evidence.edge_ids:
            assert e in ix.edges
        if t.template in ("founding_year", "acquisition_date"):
            continue
        assert t.gold.answer == ix.name(t.evidence.entity_ids[-1])
        u, v, _ = ix.edges[t.evidence.edge_ids[-1]]
        assert t.evidence.entity_ids[-1] in (u, v)
        checked += 1
    assert checked > 20


def test_table_gold_matches_graph(small_world):
    ix = WorldIndex(load_graph(small_world))
    tables = load_tasks(small_world, type="table")
    assert tables
    for t in tables:
        gold = t.gold
        assert isinstance(gold, TableGold) and gold.unique_columns == ["name"]
        names = [r["name"] for r in gold.rows]
        assert names == [ix.name(n) for n in t.evidence.entity_ids[1:]]
        assert len(set(names)) == len(names)


def test_simulation_instructions_apart_from_tasks(small_world):
    instructions = load_instructions(small_world)
    tasks = load_tasks(small_world)
    assert set(instructions) == {t.task_id for t in tasks}
    for t in tasks[:50]:
        inst = instructions[t.task_id]
        assert inst.target_query == t.prompt and inst.facts and inst.pages
        view = json.dumps(t.policy_view())
        if t.type == "qa":
            assert inst.reference_answer == t.gold.answer
            assert t.gold.answer not in view
    raw = (small_world / "tasks.jsonl").read_text()
    assert "facts" not in raw and "target_query" not in raw


def test_parquet_matches_jsonl(small_world):
    table = pq.read_table(small_world / "tasks.parquet").to_pylist()
    tasks = load_tasks(small_world)
    assert [r["task_id"] for r in table] == [t.task_id for t in tasks]
    assert json.loads(table[0]["gold"]) == tasks[0].gold.model_dump()


def test_heldout_seed_puts_every_task_in_test(tmp_path):
    out = tmp_path / "held"
    m = generate_world(load_spec(TINY), 1000, out)
    assert m.heldout
    assert {t.split for t in load_tasks(out)} == {"test"}


def test_graphml_and_refusals(tmp_path, tiny_world):
    out = tmp_path / "gml"
    generate_world(load_spec(TINY), 3, out, graphml=True)
    assert (out / "graph.graphml").stat().st_size > 0
    with pytest.raises(SimrlError, match="--force"):
        generate_world(load_spec(TINY), 3, out)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(SimrlError, match="not a world folder"):
        generate_world(load_spec(TINY), 3, busy)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(SimrlError, match="--entities"):
        generate_world(load_spec(TINY), 3, tmp_path / "x", entities=5)


def test_identical_bytes_across_processes_and_hash_seeds(tmp_path, tiny_world):
    """A separate `simrl world generate` process with another PYTHONHASHSEED writes the same bytes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "proc"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "simrl.cli.main", "world", "generate", str(TINY), "--seed", "3",
                    "--out", str(out)], check=True, env=env, capture_output=True)
    assert _files(out) == _files(tiny_world)
