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
so writes of one episode never reach another, or a copy-on-write store (:meth:`RecordStore.copy_on_write`) that
reads a shared, never written connection and takes its own copy at its first write. Source of the data:
:func:`simrl.world.io.load_graph`.

This module opens the database and answers queries; the layout and value checks are in
:mod:`simrl.records.schema`, building in :mod:`simrl.records.build`, page cursors in
:mod:`simrl.records.paging` and the writes in :mod:`simrl.records.writes`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from simrl.errors import SimrlError
from simrl.records.build import build_database
from simrl.records.page import NEXT_CURSOR, RECORDS, TOTAL
from simrl.records.paging import decode_cursor, encode_cursor
from simrl.records.schema import (
    COLUMN_RELATIONS,
    LINKS,
    TABLES,
    Record,
    RecordError,
    check_value,
    entity_type_of,
    split_record_id,
)
from simrl.records.writes import RecordWrites

__all__ = ["COLUMN_RELATIONS", "LINKS", "MAX_PAGE_SIZE", "TABLES", "Record", "RecordError", "RecordStore",
           "build_database", "check_value", "entity_type_of", "split_record_id"]

MAX_PAGE_SIZE = 50
"""The hard maximum page size of :meth:`RecordStore.search` (larger limits are capped)."""
_CLOSED = sqlite3.connect(":memory:", check_same_thread=False)
_CLOSED.close()  # what a closed copy-on-write store holds: every query raises ProgrammingError, as on a closed store


class RecordStore(RecordWrites):
    """The records of one world in one SQLite file (see the module docstring for the tables).

    Reads return plain dicts (JSON-ready); every invalid argument raises :class:`RecordError`
    (a :class:`~simrl.errors.SimrlError`) whose message says what is wrong and what is allowed.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._fork: Callable[[], sqlite3.Connection] | None = None
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

    @classmethod
    def copy_on_write(cls, shared: RecordStore, fork: Callable[[], sqlite3.Connection]) -> RecordStore:
        """A store of ``shared``'s records that reads ``shared``'s connection until its first write, which first
        switches it to its own copy, ``fork()`` (a connection to a copy of the same records, ``sqlite3.Row`` rows).

        An episode that only reads copies nothing, and its queries run on a connection whose statements are
        already prepared. The answers are the same as on a copy made up front: the shared records are never
        written (``shared``'s connection should be query-only, so a write that bypassed the fork would fail) and
        a copy has the same rows and row ids. :meth:`close` leaves the shared connection open. The shared
        connection may be read from several threads only where SQLite is serialized (``sqlite3.threadsafety`` 3;
        :func:`simrl.envs.records_local.memory_store` keeps one per thread otherwise).
        Returns an instance of ``cls`` (a subclass keeps its own query rules).
        """
        store = cls.__new__(cls)
        store._conn, store.path, store._fork = shared._conn, shared.path, fork
        store.meta, store.fields = dict(shared.meta), shared.fields
        return store

    def read_state(self) -> tuple | None:
        """What a read's answer depends on besides its arguments while this store reads records that nobody writes
        (a copy-on-write store before its first write: the shared connection, this class, :attr:`meta`); None for
        a store with its own connection, whose records may change (:func:`simrl.records.server.build_server`
        remembers the answers of reads by it)."""
        if self._fork is None:
            return None
        return self._conn, type(self), tuple(self.meta.items())

    def _writable(self) -> sqlite3.Connection:
        """The connection writes go to: a copy-on-write store's own copy, taken here at the first write."""
        if self._fork is not None:
            fork, self._fork = self._fork, None
            self._conn = fork()
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent); a copy-on-write store that never wrote only lets go of the shared one."""
        if self._fork is not None:
            self._fork, self._conn = None, _CLOSED
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
            last_id, last_row = decode_cursor(cursor, query)
            page_where.append("(id > ? OR (id = ? AND rowid > ?))")
            page_args += [last_id, last_id, last_row]
        sql_where = f" WHERE {' AND '.join(page_where)}" if page_where else ""
        rows = self._conn.execute(f"SELECT rowid AS _row, * FROM {table}{sql_where} ORDER BY id, rowid LIMIT ?",
                                  [*page_args, size + 1]).fetchall()
        count_where = f" WHERE {' AND '.join(where)}" if where else ""
        total = self._conn.execute(f"SELECT COUNT(*) FROM {table}{count_where}", args).fetchone()[0]
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = encode_cursor(rows[-1]["id"], rows[-1]["_row"], query) if more else None
        keys = rows[0].keys() if rows else None
        return {RECORDS: [self._record(table, r, keys) for r in rows], NEXT_CURSOR: next_cursor, TOTAL: total}

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
        folded = name.strip().casefold()
        hits: list[Record] = []
        for found, found_name in self._conn.execute(_names_query(tuple(tables)), [pattern]).fetchall():
            hits.append({"id": found, "type": entity_type_of(found), "name": found_name,
                         "match": "exact" if found_name.casefold() == folded else "prefix"})
        hits.sort(key=lambda h: (h["match"] != "exact", h["id"]))  # ids are unique: one order, whatever the query's
        size = min(self.page_size if limit is None else max(1, int(limit)), MAX_PAGE_SIZE)
        return {RECORDS: hits[:size], TOTAL: len(hits)}

    def read(self, record_id: str, field: str) -> Any:
        """``record[field]`` on the current state, or ``None`` if the record or field is absent.

        The ``read`` callable of :func:`simrl.reward.task.score_state`.
        """
        try:
            record = self.get(record_id)
        except RecordError:
            return None
        return record.get(field)

    # -- helpers ------------------------------------------------------------------------------
    def _latest(self, table: str, record_id: str) -> sqlite3.Row | None:
        order = "start DESC, rowid DESC" if "start" in self.fields[table] else "rowid DESC"
        return self._conn.execute(f"SELECT rowid AS _row, * FROM {table} WHERE id = ? ORDER BY {order} LIMIT 1",
                                  [record_id]).fetchone()

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

    def _record(self, table: str, row: sqlite3.Row, keys: list[str] | None = None) -> Record:
        """A row as a record: ``id``, ``type``, then the other columns in table order (``_row`` left out).
        ``keys``: ``row.keys()``, when known (the same for every row of a query)."""
        data = dict(zip(row.keys() if keys is None else keys, row))
        data.pop("_row", None)
        kind = entity_type_of(data["id"]) if table not in LINKS else table
        return {"id": data.pop("id"), "type": kind, **data}


@functools.lru_cache(maxsize=64)
def _names_query(tables: tuple[str, ...]) -> str:
    """The query of :meth:`RecordStore.find_by_name` over ``tables``: each table's ``LIKE ?1`` (prefix, on its NOCASE
    name index) in one statement, ``UNION ALL`` (one statement instead of one per table: about 2.5x faster over
    the seven entity tables; the rows are the same, sorted by the caller)."""
    return " UNION ALL ".join(f"SELECT id, name FROM {table} WHERE name LIKE ?1 ESCAPE '\\'" for table in tables)
