"""What an observation states about named things (the consistency scorer's *bindings*).

Split from :mod:`simrl.fidelity.rules` (same layouts): a search item or page binds its URL to a
title and a date; a JSON record binds its id to each scalar field and its name to its id.
"""

from __future__ import annotations

import re
from typing import Any

from simrl.fidelity.rules import _NOTICES, _SEARCH_ITEM, _json, norm_value
from simrl.perturb.formats import list_key, parse_search


def bindings(text: str) -> dict[tuple[str, str], str]:
    """What an observation states about named things, as ``(kind, name) -> value``.

    * search results: ``("title", url)`` and ``("date", url)`` (dates other than ``N/A``) per item;
      a page: ``("title", url)`` and ``("date", url)`` from ``Published Time``;
    * JSON: for each object with an ``id``: ``(id, field) -> value`` per scalar field, and
      ``("name", name) -> id``; top-level scalars of an object without ``id``: ``("field", key) -> value``.
    """
    out: dict[tuple[str, str], str] = {}
    body = _NOTICES.sub("", text).strip()
    blocks = parse_search(body)
    if blocks is not None:
        for b in blocks:
            for item in b.items:
                lines = item.splitlines()
                url = _SEARCH_ITEM.match(lines[0])
                fields = {ln.partition(":")[0]: ln.partition(":")[2].strip() for ln in lines[1:]}
                if url:
                    _page_bindings(out, url.group(2), fields.get("Title"), fields.get("Date"))
        return out
    page = re.search(r"^URL Source: (\S+)", body, re.MULTILINE)
    if page and body.startswith("Title:"):
        date = re.search(r"^Published Time: (\S+)", body, re.MULTILINE)
        _page_bindings(out, page.group(1), body.partition("\n")[0][6:].strip(), date and date.group(1))
        return out
    obj = _json(body)
    if isinstance(obj, dict) and "id" not in obj and list_key(obj) is None:
        out |= {("field", k): norm_value(v) for k, v in obj.items() if not isinstance(v, (dict, list))}
    _record_bindings(obj, out)
    return out


def _page_bindings(out: dict, url: str, title: str | None, date: str | None) -> None:
    url = url.rstrip(".,;:").lower()
    if title:
        out[("title", url)] = norm_value(title)
    if date and date != "N/A":
        out[("date", url)] = date


def _record_bindings(obj: Any, out: dict) -> None:
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, (str, int)) and not isinstance(rid, bool):
            for k, v in obj.items():
                if k != "id" and not isinstance(v, (dict, list)):
                    out[(str(rid), k)] = norm_value(v)
            if isinstance(obj.get("name"), str):
                out[("name", norm_value(obj["name"]))] = str(rid)
        for v in obj.values():
            _record_bindings(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _record_bindings(v, out)
