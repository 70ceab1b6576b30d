"""The record page: the JSON layout of the record server's list tools, and the field names readers accept.

One home for the names (the store writes the page; perturbations rename its fields; experts, the evaluation's
edge cases and the fidelity rules read it): a page is ``{"records": [...], "next_cursor": str | None,
"total": int}`` (:meth:`simrl.records.store.RecordStore.search`). Readers also accept the drifted names
of a schema-drift perturbation (:data:`DRIFTED`: ``items``, ``nextCursor``, ``totalCount``) and other
servers' names (``results``, ``data``, ``cursor``).
"""

from __future__ import annotations

RECORDS, NEXT_CURSOR, TOTAL = "records", "next_cursor", "total"
"""The record server's page fields: the list of records, the next page's cursor (None: the last page), the count
of all matches."""

DRIFTED = {RECORDS: "items", NEXT_CURSOR: "nextCursor", TOTAL: "totalCount"}
"""Each page field's name after a schema drift (:class:`simrl.perturb.reshape.SchemaDrift`)."""

LIST_KEYS = (RECORDS, DRIFTED[RECORDS], "results", "data")
"""Names of a page's list of records, the record server's first."""

CURSOR_KEYS = (NEXT_CURSOR, DRIFTED[NEXT_CURSOR], "cursor")
"""Names of a page's next cursor, the record server's first."""

TOTAL_KEYS = (TOTAL, DRIFTED[TOTAL])
"""Names of a page's count of all matches."""

PAGE_TOKEN_KEYS = ("next_page_token", "nextPageToken")
"""Other APIs' names of a next-page token (recognised as a cursor by the evaluation's edge cases)."""
