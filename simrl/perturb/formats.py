"""Reading and rewriting the result layouts that perturbations change.

Three layouts are recognised, by content (so a perturbation works on any environment, real or
simulated): a *JSON page* (an object holding a list of records under ``records``, or a drifted
``items`` / ``results`` / ``data``, usually with ``next_cursor`` and ``total``: the record server's
layout, ``simrl/records/server.py``), *search results* (the ``web_search`` layout of
``simrl/envs/search.py``: blocks of ``[k] URL`` / ``Title:`` / ``Snippet:`` / ``Date:`` items, one block
per query, blocks separated by ``=======``) and *text* (anything else).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from simrl.records.page import CURSOR_KEYS, LIST_KEYS, NEXT_CURSOR
from simrl.types import ToolCall

__all__ = ["CURSOR_KEYS", "LIST_KEYS"]  # the page's field names (simrl.records.page), read here for perturbations

SEARCH_SEPARATOR = "\n\n=======\n\n"
_ITEM = re.compile(r"^\[\d+\]\s+\S+")
_QUERY = re.compile(r"^(?:A search for|No results found for) '(.*)'")
NARROWING_PARAMS = ("limit", "max_results", "top_k", "page_size", "count", "n")
"""Integer arguments that make a result smaller (oversized responses need one, or a query)."""


@dataclass
class SearchBlock:
    """One query's block of search results: the header line and the result items (each ``[k] URL...``)."""

    header: str
    items: list[str] = field(default_factory=list)

    @property
    def query(self) -> str:
        """The query quoted in the header (``''`` when the header has none)."""
        m = _QUERY.match(self.header)
        return m.group(1) if m else ""

    def render(self) -> str:
        """The block as text, items separated by blank lines."""
        return "\n\n".join([self.header, *self.items])


def parse_search(text: str) -> list[SearchBlock] | None:
    """The blocks of a ``web_search`` result, or ``None`` when ``text`` is not in that layout.

    >>> blocks = parse_search("A search for 'x' found 1 results:\\n\\n[1] https://a.example/x\\nTitle: X")
    >>> blocks[0].query, len(blocks[0].items)
    ('x', 1)
    """
    blocks = []
    for raw in text.split(SEARCH_SEPARATOR):
        header, _, rest = raw.partition("\n\n")
        if not _QUERY.match(header):
            return None
        items = [chunk for chunk in rest.split("\n\n") if chunk.strip()] if rest else []
        if not all(_ITEM.match(i) for i in items):
            return None
        blocks.append(SearchBlock(header, items))
    return blocks or None


def parse_json(text: str) -> Any | None:
    """``text`` parsed as JSON, or ``None`` when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def list_key(obj: Any) -> str | None:
    """The key of a JSON page's list of records (``records``, or a drifted name), else ``None``."""
    if isinstance(obj, dict):
        return next((k for k in LIST_KEYS if isinstance(obj.get(k), list)), None)
    return None


def cursor_key(obj: dict[str, Any]) -> str:
    """The key holding a JSON page's next cursor (``next_cursor`` unless drifted)."""
    return next((k for k in CURSOR_KEYS if k in obj), NEXT_CURSOR)


def dumps(obj: Any) -> str:
    """JSON text in the record server's style (``ensure_ascii=False``)."""
    return json.dumps(obj, ensure_ascii=False)


def cut(text: str, n: int) -> str:
    """The first ``n`` characters of ``text`` or fewer, cut at a line or word boundary when one is near."""
    if len(text) <= n:
        return text
    head = text[:n]
    for sep in ("\n", " "):
        i = head.rfind(sep)
        if i >= n // 2:
            return head[:i]
    return head


def call_key(name: str, arguments: dict[str, Any]) -> str:
    """A canonical string naming one call (tool + arguments), for matching repeated calls."""
    return json.dumps([name, arguments], sort_keys=True, default=str, ensure_ascii=False)


def page_key(call: ToolCall, page: int) -> str:
    """The key of part ``page`` of a paginated text result of ``call`` (its arguments without ``page``)."""
    args = {k: v for k, v in call.arguments.items() if k != "page"}
    return call_key(call.name, args) + f"#page={page}"


def properties(schema: dict[str, Any] | None) -> tuple[dict[str, Any], set[str]]:
    """``(properties, required names)`` of an OpenAI function schema (``{"function": {"parameters"}}``)."""
    if not schema:
        return {}, set()
    params = (schema.get("function") or schema).get("parameters") or {}
    return dict(params.get("properties") or {}), set(params.get("required") or [])


def has_param(schema: dict[str, Any] | None, name: str) -> bool:
    """True when the tool's schema declares an argument ``name``."""
    return name in properties(schema)[0]


def param_type(prop: dict[str, Any]) -> str:
    """The JSON type of one argument's schema, looking through ``anyOf`` (``{"anyOf": [int, null]}`` -> integer)."""
    if "type" in prop and prop["type"] != "null":
        return str(prop["type"])
    kinds = [str(p.get("type")) for p in prop.get("anyOf", []) if p.get("type") not in (None, "null")]
    return kinds[0] if kinds else "any"


def narrowable(schema: dict[str, Any] | None) -> bool:
    """True when a call of the tool can ask for less: an integer limit-like argument, or a query."""
    props, _ = properties(schema)
    ints = any(param_type(props[p]) == "integer" for p in NARROWING_PARAMS if p in props)
    return ints or "query" in props or "queries" in props
