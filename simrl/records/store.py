"""A world's records in SQLite: build, query with pages, validated writes, per-episode copies.

One table per entity type (``organizations``, ``people``, ...) holds ``id``, ``name``, the type's
attributes and its functional relations as columns (``organizations.headquartered_in`` = a city id,
``people.born_in``, ``products.produced_by``, ...). Relations that are not functional get a table of
their own, one row per graph edge: ``member_of(person, org, start, end)``, ``ceo_of(person, org,
start, end)``, ``founded_by(org, person)``, ``participated_in(person, event)`` and
``acquired(acquirer, target, date)``. Record ids are entity ids (``organization:000012``) and
``"{relation}:{source}:{target}"`` for relation rows (``member_of:person:000052:organization:000007``).

The field catalogue (kind and nullability of every column) and the world's metadata (page size,
graph checksum) live in the database itself, so :meth:`RecordStore.open` needs no world folder.
Every episode should work on its own copy (:meth:`RecordStore.copy_to`, SQLite's online backup API),
so writes of one episode never reach another. Source of the data: :func:`simrl.world.io.load_graph`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from simrl.errors import SimrlError
from simrl.world.schema import RELATIONS, EntityType

MAX_PAGE_SIZE = 50
"""The hard maximum page size of :meth:`RecordStore.search` (larger limits are capped)."""

TABLES: dict[str, str] = {"country": "countries", "city": "cities", "person": "people",
                          "organization": "organizations", "product": "products", "event": "events",
                          "creative_work": "creative_works"}
"""Entity type -> table name."""

LINKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "member_of": ("person", "org", ("start", "end")),
    "ceo_of": ("person", "org", ("start", "end")),
    "founded_by": ("org", "person", ()),
    "participated_in": ("person", "event", ()),
    "acquired": ("acquirer", "target", ("date",)),
}
"""Relation tables: relation -> (source column, target column, date columns)."""

COLUMN_RELATIONS = sorted(r.name for r in RELATIONS.values() if r.max_out == 1 and not r.temporal and not r.dated)
"""Functional relations stored as a column of their domain's table (value: the target id)."""
assert set(COLUMN_RELATIONS) | set(LINKS) == set(RELATIONS), "every relation needs a place in the records"


class RecordError(SimrlError):
    """An invalid record request (unknown id or field, wrong type, bad cursor); the message says why."""


Record = dict[str, Any]
"""One record as JSON: ``{"id", "type", <field>: value, ...}``."""


class RecordStore:
    """The records of one world in one SQLite file (see the module docstring for the tables).

    Reads return plain dicts (JSON-ready); every invalid argument raises :class:`RecordError`
    (a :class:`~simrl.errors.SimrlError`) whose message says what is wrong and what is allowed.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        rows = conn.execute("SELECT tbl, field, kind, nullable FROM fields ORDER BY tbl, pos").fetchall()
        self.fields: dict[str, dict[str, tuple[str, bool]]] = {}
        for tbl, field, kind, nullable in rows:
            self.fields.setdefault(tbl, {})[field] = (kind, bool(nullable))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, world_dir: str | Path, db_path: str | Path) -> RecordStore:
        """Build the database of the world folder ``world_dir`` into ``db_path`` (replaced atomically).

        Raises:
            SimrlError: ``world_dir`` is not a world folder.
        """
        from simrl.world.io import load_graph, load_manifest

        world_dir, db_path = Path(world_dir), Path(db_path)
        manifest = load_manifest(world_dir)
        spec = yaml.safe_load((world_dir / "spec.yaml").read_text(encoding="utf-8")) or {}
        meta = {"spec_name": manifest.spec_name, "seed": str(manifest.seed),
                "graph_sha256": manifest.files.get("graph.json", ""),
                "page_size": str(int((spec.get("tasks") or {}).get("page_size", 10)))}
        db_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp)
        try:
            build_database(conn, load_graph(world_dir), meta)
            conn.close()
            os.replace(tmp, db_path)
        except BaseException:
            conn.close()
            tmp.unlink(missing_ok=True)
            raise
        return cls.open(db_path)

    @classmethod
    def open(cls, db_path: str | Path) -> RecordStore:
        """Open a database written by :meth:`create`.

        Raises:
            SimrlError: the file is missing or is not a simrl records database.
        """
        path = Path(db_path)
        if not path.is_file():
            raise SimrlError(f"no records database at {path}; build one with RecordStore.create(world, db)")
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            return cls(conn, path)
        except sqlite3.DatabaseError as err:
            conn.close()
            raise SimrlError(f"{path} is not a simrl records database ({err})") from None

    def copy_to(self, db_path: str | Path) -> RecordStore:
        """Copy the current state into a fresh database at ``db_path`` (SQLite backup API) and open it."""
        db_path = Path(db_path)
        db_path.unlink(missing_ok=True)
        dest = sqlite3.connect(db_path)
        try:
            self._conn.backup(dest)
        finally:
            dest.close()
        return RecordStore.open(db_path)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def page_size(self) -> int:
        """Default page size: the world spec's ``tasks.page_size``."""
        return int(self.meta.get("page_size", 10))

    # -- reads --------------------------------------------------------------------------------
    def table_of(self, type_name: str) -> str:
        """The table of an entity type (``organization`` or ``organizations``) or relation (``member_of``)."""
        key = str(type_name).strip().lower()
        if key in TABLES:
            return TABLES[key]
        if key in TABLES.values() or key in LINKS:
            return key
        known = sorted(TABLES) + sorted(LINKS)
        raise RecordError(f"unknown record type {type_name!r}; known types: {', '.join(known)}")

    def search(self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None,
               cursor: str | None = None) -> dict[str, Any]:
        """One page of the records of a type that match ``filters``, in stable ``id`` order.

        Args:
            type_name: entity type or relation name (see :meth:`table_of`).
            filters: ``{field: value}``; a value matches by equality, a list matches any of its
                items, ``None`` matches an empty field.
            limit: page size (default :attr:`page_size`, at most ``MAX_PAGE_SIZE``).
            cursor: ``next_cursor`` of the previous page of the same query.

        Returns:
            ``{"records": [...], "next_cursor": str | None, "total": int}`` (``total`` counts all matches).
        """
        table = self.table_of(type_name)
        where, args = self._where(table, filters or {})
        size = self.page_size if limit is None else limit
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise RecordError(f"limit must be a positive integer, got {limit!r}")
        size = min(size, MAX_PAGE_SIZE)
        fingerprint = hashlib.sha1(json.dumps([table, filters or {}], sort_keys=True, default=str).encode())
        query = fingerprint.hexdigest()[:12]
        page_where, page_args = list(where), list(args)
        if cursor:
            last_id, last_row = _decode_cursor(cursor, query)
            page_where.append("(id > ? OR (id = ? AND rowid > ?))")
            page_args += [last_id, last_id, last_row]
        sql_where = f" WHERE {' AND '.join(page_where)}" if page_where else ""
        rows = self._conn.execute(f"SELECT rowid AS _row, * FROM {table}{sql_where} ORDER BY id, rowid LIMIT ?",
                                  [*page_args, size + 1]).fetchall()
        count_where = f" WHERE {' AND '.join(where)}" if where else ""
        total = self._conn.execute(f"SELECT COUNT(*) FROM {table}{count_where}", args).fetchone()[0]
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = _encode_cursor(rows[-1]["id"], rows[-1]["_row"], query) if more else None
        return {"records": [self._record(table, r) for r in rows], "next_cursor": next_cursor, "total": total}

    def get(self, record_id: str) -> Record:
        """The record ``record_id`` (for a relation id with several rows, the latest one).

        Raises:
            RecordError: malformed or unknown id.
        """
        table, _ = split_record_id(record_id)
        row = self._latest(table, record_id)
        if row is None:
            raise RecordError(f"no record with id {record_id!r}")
        return self._record(table, row)

    def find_by_name(self, name: str, type_name: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """Entities whose name equals ``name`` (any case) or starts with it; exact matches first.

        Returns:
            ``{"records": [{"id", "type", "name", "match": "exact" | "prefix"}, ...], "total": int}``
            (at most ``limit`` records, default :attr:`page_size`).
        """
        if not isinstance(name, str) or not name.strip():
            raise RecordError("name must be a non-empty string")
        tables = [self.table_of(type_name)] if type_name else list(TABLES.values())
        if any(t in LINKS for t in tables):
            raise RecordError("find_by_name searches entity types only")
        pattern = name.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        hits: list[Record] = []
        for table in tables:
            rows = self._conn.execute(f"SELECT id, name FROM {table} WHERE name LIKE ? ESCAPE '\\' "
                                      "ORDER BY id", [pattern]).fetchall()
            for r in rows:
                exact = r["name"].casefold() == name.strip().casefold()
                hits.append({"id": r["id"], "type": entity_type_of(r["id"]), "name": r["name"],
                             "match": "exact" if exact else "prefix"})
        hits.sort(key=lambda h: (h["match"] != "exact", h["id"]))
        size = min(self.page_size if limit is None else max(1, int(limit)), MAX_PAGE_SIZE)
        return {"records": hits[:size], "total": len(hits)}

    def read(self, record_id: str, field: str) -> Any:
        """``record[field]`` on the current state, or ``None`` if the record or field is absent.

        The ``read`` callable of :func:`simrl.reward.task.score_state`.
        """
        try:
            record = self.get(record_id)
        except RecordError:
            return None
        return record.get(field)

    # -- writes -------------------------------------------------------------------------------
    def update(self, record_id: str, fields: dict[str, Any]) -> Record:
        """Set fields of a record (entity attributes and relation columns; relation-row dates).

        Raises:
            RecordError: unknown id, unknown or read-only field, a value of the wrong type, or a
                reference to an id that does not exist.
        """
        table, _ = split_record_id(record_id)
        row = self._latest(table, record_id)
        if row is None:
            raise RecordError(f"no record with id {record_id!r}")
        if not isinstance(fields, dict) or not fields:
            raise RecordError("fields must be a non-empty object of {field: value}")
        editable = {f: spec for f, spec in self.fields[table].items() if spec[0] != "id" and not spec[0].startswith("key:")}
        for field, value in fields.items():
            if field not in editable:
                raise RecordError(f"{table} records have no editable field {field!r}; editable fields: "
                                  f"{', '.join(editable)}")
            check_value(self._conn, table, field, *editable[field], value)
        merged = {**dict(row), **fields}
        if table in LINKS and merged.get("end") and merged.get("start") and merged["end"] < merged["start"]:
            raise RecordError(f"end {merged['end']} is before start {merged['start']}")
        sets = ", ".join(f'"{f}" = ?' for f in fields)
        with self._conn:
            self._conn.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", [*fields.values(), row["_row"]])
        return self.get(record_id)

    def add_membership(self, person_id: str, org_id: str, start: str, end: str | None = None) -> Record:
        """Record that a person became a member of an organization on ``start`` (ISO date).

        Raises:
            RecordError: unknown ids, bad dates (before the organization's founding or the person's
                birth, after their death), or an open membership of the pair already on record.
        """
        person, org = self._entity(person_id, "person"), self._entity(org_id, "organization")
        check_value(self._conn, "member_of", "start", "date", False, start)
        check_value(self._conn, "member_of", "end", "date", True, end)
        _check_span(person, org, start, end)
        rid = f"member_of:{person_id}:{org_id}"
        current = self._latest("member_of", rid)
        if current is not None and current["end"] is None:
            raise RecordError(f"{person_id} is already a member of {org_id} (record {rid}, since {current['start']})")
        with self._conn:
            self._conn.execute("INSERT INTO member_of (id, person, org, start, end) VALUES (?, ?, ?, ?, ?)",
                               [rid, person_id, org_id, start, end])
        return self.get(rid)

    def end_membership(self, person_id: str, org_id: str, end: str) -> Record:
        """Close the open membership of a person in an organization on ``end`` (ISO date)."""
        rid = f"member_of:{person_id}:{org_id}"
        current = self._latest("member_of", rid)
        if current is None or current["end"] is not None:
            raise RecordError(f"{person_id} has no open membership in {org_id}")
        return self.update(rid, {"end": end})

    def appoint_ceo(self, person_id: str, org_id: str, start: str) -> dict[str, Record | None]:
        """Make a person chief executive of an organization from ``start``; ends the current term.

        The current term (if any) ends the day before ``start``. Returns ``{"appointed": record,
        "ended": record | None}``.

        Raises:
            RecordError: unknown ids, bad date, the person already leads it, or ``start`` is not after
                the current term's start.
        """
        person, org = self._entity(person_id, "person"), self._entity(org_id, "organization")
        check_value(self._conn, "ceo_of", "start", "date", False, start)
        _check_span(person, org, start, None)
        current = self._conn.execute("SELECT rowid AS _row, * FROM ceo_of WHERE org = ? AND end IS NULL "
                                     "ORDER BY start DESC LIMIT 1", [org_id]).fetchone()
        if current is not None and current["person"] == person_id:
            raise RecordError(f"{person_id} is already chief executive of {org_id} (since {current['start']})")
        if current is not None and current["start"] >= start:
            raise RecordError(f"start {start} must be after the current term's start {current['start']}")
        rid = f"ceo_of:{person_id}:{org_id}"
        with self._conn:
            if current is not None:
                end = (dt.date.fromisoformat(start) - dt.timedelta(days=1)).isoformat()
                self._conn.execute("UPDATE ceo_of SET end = ? WHERE rowid = ?", [end, current["_row"]])
            self._conn.execute("INSERT INTO ceo_of (id, person, org, start, end) VALUES (?, ?, ?, ?, NULL)",
                               [rid, person_id, org_id, start])
        return {"appointed": self.get(rid), "ended": self.get(current["id"]) if current is not None else None}

    # -- helpers ------------------------------------------------------------------------------
    def _latest(self, table: str, record_id: str) -> sqlite3.Row | None:
        order = "start DESC, rowid DESC" if "start" in self.fields[table] else "rowid DESC"
        return self._conn.execute(f"SELECT rowid AS _row, * FROM {table} WHERE id = ? ORDER BY {order} LIMIT 1",
                                  [record_id]).fetchone()

    def _entity(self, record_id: Any, etype: str) -> sqlite3.Row:
        if not isinstance(record_id, str) or entity_type_of(record_id) != etype:
            raise RecordError(f"expected a {etype} id like '{etype}:000001', got {record_id!r}")
        row = self._latest(TABLES[etype], record_id)
        if row is None:
            raise RecordError(f"no {etype} with id {record_id!r}")
        return row

    def _where(self, table: str, filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
        if not isinstance(filters, dict):
            raise RecordError("filters must be an object of {field: value}")
        known = self.fields[table]
        where: list[str] = []
        args: list[Any] = []
        for field, value in filters.items():
            if field not in known:
                raise RecordError(f"{table} records have no field {field!r}; fields: {', '.join(known)}")
            kind, _ = known[field]
            if value is None:
                where.append(f'"{field}" IS NULL')
            elif isinstance(value, list):
                for v in value:
                    check_value(self._conn, table, field, kind, False, v, check_refs=False)
                where.append(f'"{field}" IN ({", ".join("?" * len(value))})' if value else "0")
                args += value
            else:
                check_value(self._conn, table, field, kind, False, value, check_refs=False)
                where.append(f'"{field}" = ?')
                args.append(value)
        return where, args

    def _record(self, table: str, row: sqlite3.Row) -> Record:
        data = {k: row[k] for k in row.keys() if k != "_row"}
        kind = entity_type_of(data["id"]) if table not in LINKS else table
        return {"id": data.pop("id"), "type": kind, **data}


def _check_span(person: sqlite3.Row, org: sqlite3.Row, start: str, end: str | None) -> None:
    if start < org["founded"]:
        raise RecordError(f"start {start} is before {org['id']} was founded ({org['founded']})")
    if start < person["born"]:
        raise RecordError(f"start {start} is before {person['id']} was born ({person['born']})")
    if person["died"] and start > person["died"]:
        raise RecordError(f"start {start} is after {person['id']} died ({person['died']})")
    if end is not None and end < start:
        raise RecordError(f"end {end} is before start {start}")


def _encode_cursor(last_id: str, last_row: int, query: str) -> str:
    raw = json.dumps([last_id, last_row, query], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, query: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        last_id, last_row, q = json.loads(raw)
        assert isinstance(last_id, str) and isinstance(last_row, int)
    except Exception:
        raise RecordError(f"invalid cursor {cursor!r}: pass next_cursor from the previous page") from None
    if q != query:
        raise RecordError("this cursor belongs to another query: keep type and filters the same while paging")
    return last_id, last_row


# -- schema ---------------------------------------------------------------------------------------
def entity_type_of(record_id: Any) -> str | None:
    """The entity type of an entity id (``"organization:000012"`` -> ``"organization"``), else None."""
    if not isinstance(record_id, str):
        return None
    prefix, _, number = record_id.partition(":")
    return prefix if prefix in TABLES and number.isdigit() else None


def split_record_id(record_id: Any) -> tuple[str, list[str]]:
    """``(table, [entity ids])`` of a record id; raises RecordError for a malformed one."""
    head, _, rest = str(record_id).partition(":")
    if isinstance(record_id, str) and head in LINKS:
        src_t, dst_t = RELATIONS[head].domain.value, RELATIONS[head].range.value
        bits = rest.split(":")
        src, dst = ":".join(bits[:2]), ":".join(bits[2:])
        if len(bits) == 4 and entity_type_of(src) == src_t and entity_type_of(dst) == dst_t:
            return head, [src, dst]
        raise RecordError(f"malformed record id {record_id!r}; expected '{head}:<{src_t} id>:<{dst_t} id>'")
    etype = entity_type_of(record_id)
    if etype is None:
        raise RecordError(f"malformed record id {record_id!r}; expected an entity id like 'organization:000012' "
                          "or a relation id like 'member_of:person:000001:organization:000002'")
    return TABLES[etype], [record_id]


def _is_date(value: str) -> bool:
    try:
        return len(value) == 10 and dt.date.fromisoformat(value).isoformat() == value
    except ValueError:
        return False


def check_value(conn: sqlite3.Connection, table: str, field: str, kind: str, nullable: bool, value: Any,
                *, check_refs: bool = True) -> None:
    """Validate ``value`` for a field of ``kind`` (int, float, date, text, id, ref:T, key:T).

    Raises:
        RecordError: wrong type, an empty value for a required field, or (``check_refs``) a
            reference to an id that is not on record.
    """
    if value is None:
        if nullable:
            return
        raise RecordError(f"{field} cannot be empty")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        ok, desc = number and isinstance(value, int), "an integer"
    elif kind == "float":
        ok, desc = number, "a number"
    elif kind == "date":
        ok, desc = isinstance(value, str) and _is_date(value), "an ISO date YYYY-MM-DD"
    elif kind in ("text", "id"):
        ok, desc = isinstance(value, str) and bool(value.strip()), "a non-empty string"
    else:
        etype = kind.split(":", 1)[1]
        ok, desc = entity_type_of(value) == etype, f"a {etype} id like '{etype}:000001'"
        if ok and check_refs and conn.execute(f"SELECT 1 FROM {TABLES[etype]} WHERE id = ?",
                                              [value]).fetchone() is None:
            raise RecordError(f"{field}: no {etype} with id {value!r}")
    if not ok:
        raise RecordError(f"{table}.{field} must be {desc}, got {value!r}")


def _infer_kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    if present and all(isinstance(v, str) and _is_date(v) for v in present):
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
    conn.commit()
