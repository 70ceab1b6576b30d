"""Validated writes to a world's records: field updates, memberships and chief-executive terms.

:class:`RecordWrites` is the write half of :class:`simrl.records.store.RecordStore` (a mixin: the
store supplies the connection, the field catalogue, :meth:`~simrl.records.store.RecordStore.get` and
``_latest``). Every write checks its values (:func:`simrl.records.schema.check_value`) and the
dates against the people and organizations involved, runs in one transaction on the store's writable
connection (``_writable``: a copy-on-write store takes its own copy there), and returns the record as it now
reads.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import TYPE_CHECKING, Any

from simrl.records.schema import (
    LINKS,
    TABLES,
    Record,
    RecordError,
    check_value,
    entity_type_of,
    split_record_id,
)


class RecordWrites:
    """The write methods of :class:`~simrl.records.store.RecordStore`; raises :class:`RecordError`."""

    _conn: sqlite3.Connection
    fields: dict[str, dict[str, tuple[str, bool]]]

    if TYPE_CHECKING:  # supplied by RecordStore
        def get(self, record_id: str) -> Record: ...
        def _latest(self, table: str, record_id: str) -> sqlite3.Row | None: ...
        def _writable(self) -> sqlite3.Connection: ...

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
        with self._writable() as conn:
            conn.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", [*fields.values(), row["_row"]])
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
        with self._writable() as conn:
            conn.execute("INSERT INTO member_of (id, person, org, start, end) VALUES (?, ?, ?, ?, ?)",
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
        with self._writable() as conn:
            if current is not None:
                end = (dt.date.fromisoformat(start) - dt.timedelta(days=1)).isoformat()
                conn.execute("UPDATE ceo_of SET end = ? WHERE rowid = ?", [end, current["_row"]])
            conn.execute("INSERT INTO ceo_of (id, person, org, start, end) VALUES (?, ?, ?, ?, NULL)",
                               [rid, person_id, org_id, start])
        return {"appointed": self.get(rid), "ended": self.get(current["id"]) if current is not None else None}

    def _entity(self, record_id: Any, etype: str) -> sqlite3.Row:
        if not isinstance(record_id, str) or entity_type_of(record_id) != etype:
            raise RecordError(f"expected a {etype} id like '{etype}:000001', got {record_id!r}")
        row = self._latest(TABLES[etype], record_id)
        if row is None:
            raise RecordError(f"no {etype} with id {record_id!r}")
        return row


def _check_span(person: sqlite3.Row, org: sqlite3.Row, start: str, end: str | None) -> None:
    if start < org["founded"]:
        raise RecordError(f"start {start} is before {org['id']} was founded ({org['founded']})")
    if start < person["born"]:
        raise RecordError(f"start {start} is before {person['id']} was born ({person['born']})")
    if person["died"] and start > person["died"]:
        raise RecordError(f"start {start} is after {person['id']} died ({person['died']})")
    if end is not None and end < start:
        raise RecordError(f"end {end} is before start {start}")
