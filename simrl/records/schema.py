"""The layout of a world's records database and the checks on its values.

Names shared by the builder (:mod:`simrl.records.build`), the queries (:mod:`simrl.records.store`)
and the writes (:mod:`simrl.records.writes`): entity type -> table (:data:`TABLES`), relation tables
(:data:`LINKS`), functional relations stored as columns (:data:`COLUMN_RELATIONS`), record-id parsing
and per-field value validation (:func:`check_value`). The table layout itself is described in
:mod:`simrl.records.store`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from simrl.errors import SimrlError
from simrl.world.schema import RELATIONS

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


def is_date(value: str) -> bool:
    """Whether ``value`` is an ISO date written ``YYYY-MM-DD``."""
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
        ok, desc = isinstance(value, str) and is_date(value), "an ISO date YYYY-MM-DD"
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

