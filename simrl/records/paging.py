"""Page cursors of :meth:`simrl.records.store.RecordStore.search`: opaque, URL-safe, tied to one query.

A cursor encodes the last record's ``id`` and ``rowid`` plus a fingerprint of the query (table and
filters), so a cursor passed with another query is refused instead of silently skipping records.
"""

from __future__ import annotations

import base64
import json

from simrl.records.schema import RecordError


def encode_cursor(last_id: str, last_row: int, query: str) -> str:
    """The cursor after the record ``(last_id, last_row)`` of the query with fingerprint ``query``."""
    raw = json.dumps([last_id, last_row, query], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, query: str) -> tuple[str, int]:
    """``(last_id, last_row)`` of a cursor made by :func:`encode_cursor` for the same ``query``.

    Raises:
        RecordError: the cursor is malformed or belongs to another query.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        last_id, last_row, q = json.loads(raw)
        assert isinstance(last_id, str) and isinstance(last_row, int)
    except Exception:
        raise RecordError(f"invalid cursor {cursor!r}: pass next_cursor from the previous page") from None
    if q != query:
        raise RecordError("this cursor belongs to another query: keep type and filters the same while paging")
    return last_id, last_row
