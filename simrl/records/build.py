"""Write a world's graph into an empty SQLite database: one table per entity type and per relation.

The DDL side of :mod:`simrl.records.store` (see its docstring for the tables): column kinds are
inferred from the graph's values, the field catalogue goes into the ``fields`` table and the world's
metadata into ``meta``, so the database describes itself. Source of the graph:
:func:`simrl.world.io.load_graph`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import networkx as nx

from simrl.records.schema import COLUMN_RELATIONS, LINKS, TABLES, is_date
from simrl.world.schema import RELATIONS, EntityType


def _infer_kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    if present and all(isinstance(v, str) and is_date(v) for v in present):
        return "date"
    return "text"


_SQL_TYPES = {"int": "INTEGER", "float": "REAL"}


def _create(conn: sqlite3.Connection, table: str, cols: list[tuple[str, str, bool]], rows: list[tuple],
            link: bool) -> None:
    decl = ", ".join(f'"{f}" {_SQL_TYPES.get(k, "TEXT")}' + ("" if n else " NOT NULL")
                     + (" PRIMARY KEY" if k == "id" and not link else "") for f, k, n in cols)
    conn.execute(f"CREATE TABLE {table} ({decl})")
    conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", rows)
    conn.executemany("INSERT INTO fields VALUES (?, ?, ?, ?, ?)",
                     [(table, i, f, k, int(n)) for i, (f, k, n) in enumerate(cols)])
    for f, k, _ in cols:
        if k.startswith(("ref:", "key:")) or (k == "id" and link):
            conn.execute(f'CREATE INDEX ix_{table}_{f} ON {table} ("{f}")')


def build_database(conn: sqlite3.Connection, graph: nx.MultiDiGraph, meta: dict[str, str]) -> None:
    """Write the tables of ``graph`` (see the module docstring) and ``meta`` into an empty database."""
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("CREATE TABLE fields (tbl TEXT, pos INTEGER, field TEXT, kind TEXT, nullable INTEGER)")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    column_values: dict[tuple[str, str], str] = {}
    link_rows: dict[str, list[tuple]] = {rel: [] for rel in LINKS}
    for u, v, _key, d in sorted(graph.edges(keys=True, data=True), key=lambda e: e[2]):
        rel = d["relation"]
        if rel in LINKS:
            link_rows[rel].append((f"{rel}:{u}:{v}", u, v, *(d.get(c) for c in LINKS[rel][2])))
        else:
            column_values[(u, rel)] = v
    nodes = sorted(graph.nodes(data=True), key=lambda n: n[0])
    for etype, table in TABLES.items():
        members = [(nid, d) for nid, d in nodes if d["type"] == etype]
        attrs = sorted({k for _, d in members for k in d} - {"type", "name"})
        rels = [r for r in COLUMN_RELATIONS if RELATIONS[r].domain == EntityType(etype)]
        cols = [("id", "id", False), ("name", "text", False)]
        cols += [(a, _infer_kind([d.get(a) for _, d in members]), any(d.get(a) is None for _, d in members))
                 for a in attrs]
        cols += [(r, f"ref:{RELATIONS[r].range.value}", RELATIONS[r].min_out == 0) for r in rels]
        rows = [(nid, d["name"], *(d.get(a) for a in attrs), *(column_values.get((nid, r)) for r in rels))
                for nid, d in members]
        _create(conn, table, cols, rows, link=False)
    for rel, (src, dst, dates) in LINKS.items():
        cols = [("id", "id", False), (src, f"key:{RELATIONS[rel].domain.value}", False),
                (dst, f"key:{RELATIONS[rel].range.value}", False)]
        cols += [(c, "date", c == "end") for c in dates]
        _create(conn, rel, cols, link_rows[rel], link=True)
    conn.execute("CREATE INDEX ix_names ON people (name COLLATE NOCASE)")
    for table in TABLES.values():  # find_by_name's LIKE 'prefix%' searches these instead of scanning the table
        if table != "people":
            conn.execute(f"CREATE INDEX ix_names_{table} ON {table} (name COLLATE NOCASE)")
    conn.commit()
