"""What the rule-based fidelity scorers read from an observation's text: layout, status, facts, tokens.

(The bindings of the consistency scorer are in :mod:`simrl.fidelity.bindings`.)

Every function takes the raw text of one observation (real or predicted) and a *domain*:

* ``search``: the layouts of :mod:`simrl.envs.search` (and :data:`simrl.envs.prompts.SEARCH_PROMPT`):
  ``web_search`` blocks (a header ``A search for '<q>' found <n> results:``, then items ``[k] URL`` /
  ``Title:`` / ``Snippet:`` / ``Date: <YYYY-MM-DD or N/A>``, blocks joined by ``=======``), the
  ``No results found for '<q>'`` line, ``web_extractor`` pages (``Title:``, ``URL Source:``, optional
  ``Published Time:``, ``Markdown Content:``) and ``404 Not Found: <url>``;
* ``mcp``: the record server's JSON (:mod:`simrl.records.server`): a record object (``id``, ``type``,
  ``name``, fields), a page ``{"records": [...], "next_cursor", "total"}``, and error lines
  ``Error executing tool <name>: <reason>``;
* ``bfcl``: bfcl-eval tool outputs (:mod:`simrl.envs.bfcl`): JSON dicts, ``None``,
  ``Error during execution: ...`` or ``{"error": ...}``;
* anything else (``generic``, AgentWorldBench domains): JSON or text.

Facts are normalised strings: URLs (lower case, no trailing punctuation), record ids
(``organization:000018``), dates as ISO ``YYYY-MM-DD`` (``April 3, 1938`` too), numbers (``678``,
``2.5``) and, for JSON, ``key=value`` for every scalar leaf (last key, lower-cased value).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from typing import Any

from simrl.envs.registry import adapter_for
from simrl.perturb.formats import cursor_key, list_key, parse_json, parse_search
from simrl.wm.prompts import looks_like_error

STATUS_CLASSES = ("success", "error", "empty", "partial")
"""Status classes of an observation (realism compares the prediction's with the real one's)."""

_URL = re.compile(r"https?://[^\s<>\"'|)\]]+")
_ID = re.compile(r"\b[a-z][a-z_]*(?::[a-z_]+)?:\d{3,}(?::[a-z_]+:\d{3,})*\b")
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_LONG_DATE = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2}),\s+(\d{4})\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana and CJK ideographs: no spaces
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_]){{2,}}")
MAX_JSON_DEPTH = 64
_STOP = frozenset("""a an and are as at be by for from has have in is it its of on or that the this to was were
will with which who not no can all any one""".split())
_SEARCH_ITEM = re.compile(r"^\[(\d+)\]\s+(https?://\S+)$")
_SEARCH_ITEM_INDEX = re.compile(r"^\[\d+\]", re.MULTILINE)
_NOTICES = re.compile(r"^\[(?:\d+ more results not shown|output cut short)[^\]]*\]\s*$", re.MULTILINE)
_NOT_FOUND = re.compile(r"^404 Not Found: \S+")
_NO_RESULTS = re.compile(r"^No results found for '.*'\.")
_MCP_ERROR = re.compile(r"^Error executing tool [\w.-]+: \S")
_EMPTY_TEXTS = frozenset({"", "none", "null", "{}", "[]", '""', "''"})
_ERROR_FAMILIES = (("404", "404 not found"), ("tool", "error executing tool"), ("bfcl", "error during execution"),
                   ("unknown", "unknown tool"), ("error", "error"))


@lru_cache(maxsize=16)
def _json(text: str) -> Any | None:
    """``text`` as JSON (None when it is not JSON, or nested deeper than :data:`MAX_JSON_DEPTH`).

    Cached: the scorers read the same observation several times (callers never modify the result).
    """
    try:
        obj = parse_json(text)
    except RecursionError:  # a pathological prediction ("[[[[...") is text, not a crash
        return None
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return None
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack += [(v, depth + 1) for v in children]
    return obj


def domain_of(name: str | None) -> str:
    """The scorer domain of a transition's domain or env id (its world-model adapter's: ``search``, ``mcp``,
    ``bfcl``, or ``generic`` for anything else)."""
    return adapter_for(name).domain


# -- layout ------------------------------------------------------------------------------------------
def layout(text: str, domain: str) -> tuple[str, list[bool]]:
    """The layout kind of ``text`` and the well-formedness checks of that layout.

    Kinds: ``search_results``, ``no_results``, ``page``, ``not_found`` (search); ``json_page``,
    ``json_object``, ``json_list``, ``json_scalar`` (any JSON); ``error`` (an error line); ``empty``;
    ``text`` (anything else: its one check is the domain adapter's ``free_text``, False in ``search`` and ``mcp``).
    An error line must have the adapter's ``error_line`` layout where it names one (``mcp``).
    ``empty`` has no checks (nothing to be well-formed).

    Returns:
        ``(kind, checks)``: each check True when one rule of the layout holds (search items: index
        in sequence, non-empty ``Title:``, ``Snippet:``, a ``Date:`` that is ISO or ``N/A``; pages:
        ``Title:``, ``URL Source: <url>``, ``Markdown Content:``; JSON pages: each record is an
        object with an ``id``, ``total`` an integer when present).
    """
    body = _NOTICES.sub("", text).strip()
    if body.lower() in _EMPTY_TEXTS:
        return "empty", []
    blocks = parse_search(body)
    if blocks is not None and not any(b.items for b in blocks):
        return "no_results", [all(_NO_RESULTS.match(b.header) for b in blocks)]
    if blocks is not None:
        checks = [b.header.startswith("A search for") or bool(_NO_RESULTS.match(b.header)) for b in blocks]
        for b in blocks:
            for k, item in enumerate(b.items, 1):
                lines = item.splitlines()
                head = _SEARCH_ITEM.match(lines[0])
                fields = {ln.partition(":")[0]: ln.partition(":")[2].strip() for ln in lines[1:]}
                date = fields.get("Date", "")
                checks += [bool(head) and int(head.group(1)) == k, bool(fields.get("Title")),
                           "Snippet" in fields, date == "N/A" or bool(_ISO.fullmatch(date))]
        return "search_results", checks
    if _NOT_FOUND.match(body):
        return "not_found", [True]
    if body.startswith("Title:") or "\nURL Source:" in body:
        source = re.search(r"^URL Source: (\S+)", body, re.MULTILINE)
        return "page", [body.startswith("Title:") and bool(body.partition("\n")[0][6:].strip()),
                        bool(source and _URL.match(source.group(1))), "\nMarkdown Content:" in body]
    rules = adapter_for(domain)  # the domain's observation rules (its world-model adapter's)
    if _MCP_ERROR.match(body) or looks_like_error(body) or body.startswith("Error during execution"):
        line = rules.error_line
        return "error", [bool(re.match(line, body))] if line is not None and body.startswith("Error") else [True]
    obj = _json(body)
    if obj is not None or body == "null":
        if list_key(obj) is not None:
            records = obj[list_key(obj)]
            checks = [isinstance(r, dict) and "id" in r for r in records] or [True]
            return "json_page", checks + [isinstance(obj.get("total", 0), int)]
        if isinstance(obj, dict):
            return "json_object", [True]
        return ("json_list" if isinstance(obj, list) else "json_scalar"), [True]
    return "text", [rules.free_text]


def json_keys(text: str) -> set[str] | None:
    """Key paths of a JSON observation (list indices dropped: ``records.id``), or None if not JSON."""
    obj = _json(_NOTICES.sub("", text).strip())
    if not isinstance(obj, (dict, list)):
        return None
    keys: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                keys.add(f"{path}{k}")
                walk(v, f"{path}{k}.")
        elif isinstance(value, list):
            for v in value:
                walk(v, path)

    walk(obj, "")
    return keys


# -- status ------------------------------------------------------------------------------------------
def status_class(text: str, domain: str = "generic") -> str:
    """``success``, ``error``, ``empty`` or ``partial`` for one observation.

    * error: an error line (``Error ...``, ``404 Not Found``, an HTTP 4xx/5xx status, ``unknown tool``,
      bfcl's ``Error during execution``) or a JSON object with a non-empty ``error`` value;
    * empty: no content (blank, ``None``, ``null``, ``{}``, ``[]``), ``No results found``, a JSON page
      with no records, or JSON whose every leaf is an empty container;
    * partial: a JSON page with a next cursor and fewer records than its ``total`` (or no total), or a
      "more results not shown" / "output cut short" notice;
    * success: anything else.

    >>> status_class('{"records": [], "next_cursor": null, "total": 0}'), status_class("None")
    ('empty', 'empty')
    """
    body = text.strip()
    kind, _ = layout(body, domain)
    obj = _json(body)
    if kind == "error" or kind == "not_found" or (isinstance(obj, dict) and obj.get("error") not in (None, "", False)):
        return "error"
    if kind in ("empty", "no_results"):
        return "empty"
    if _NOTICES.search(body):
        return "partial"
    key = list_key(obj)
    if key is not None:
        records, total = obj[key], obj.get("total")
        if not records:
            return "empty"
        if obj.get(cursor_key(obj)) and (not isinstance(total, int) or total > len(records)):
            return "partial"
    if isinstance(obj, (dict, list)) and not _leaves(obj):
        return "empty"
    return "success"


def error_family(text: str) -> str:
    """The kind of an error line (``404``, ``tool``, ``bfcl``, ``unknown``, ``http``, ``error``, ``json``)."""
    head = text.strip().lower()
    for family, prefix in _ERROR_FAMILIES:
        if head.startswith(prefix):
            return family
    return "http" if head[:3].isdigit() else "json"


# -- facts ---------------------------------------------------------------------------------------------
def _leaves(obj: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in _leaves(v, str(k))]
    if isinstance(obj, list):
        return [leaf for v in obj for leaf in _leaves(v, key)]
    return [(key, obj)]


def norm_value(value: Any) -> str:
    """A scalar as a comparable string: numbers without a trailing ``.0``, text lower-cased and stripped."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"{float(value):g}" if float(value) != int(value) else str(int(value))
    return " ".join(str(value).lower().split())


def _iso(month: str, day: str, year: str) -> str:
    return f"{year}-{_MONTHS.index(month.lower()) + 1:02d}-{int(day):02d}"


def facts(text: str) -> set[str]:
    """The strong facts of an observation: URLs, record ids, dates, numbers and JSON ``key=value`` leaves.

    Search result indexes (``[k]``) are not facts. Numbers inside URLs, ids and dates are not counted
    again as numbers.

    >>> sorted(facts('{"id": "person:000002", "born": "1900-12-27"}'))
    ['1900-12-27', 'born=1900-12-27', 'id=person:000002', 'person:000002']
    >>> sorted(facts("person:000002 was born on December 27, 1900"))
    ['1900-12-27', 'person:000002']
    """
    out: set[str] = set()
    obj = _json(text.strip())
    if isinstance(obj, (dict, list)):
        out |= {f"{k.lower()}={norm_value(v)}" for k, v in _leaves(obj) if k and v not in (None, "")}
    rest = _SEARCH_ITEM_INDEX.sub("", text)
    for pattern, kind in ((_URL, "url"), (_ID, "id")):
        found = pattern.findall(rest)
        out |= {f.rstrip(".,;:").lower() for f in found} if kind == "url" else set(found)
        rest = pattern.sub(" ", rest)
    out |= {f"{y}-{m}-{d}" for y, m, d in _ISO.findall(rest)}
    out |= {_iso(*m) for m in _LONG_DATE.findall(rest)}
    rest = _LONG_DATE.sub(" ", _ISO.sub(" ", rest))
    out |= {norm_value(float(n)) for n in _NUMBER.findall(rest)}
    return out


def tokens(text: str) -> Counter[str]:
    """Content words of ``text``, counted: lower case, runs of 2+ letters or digits in any script, each
    kana or CJK ideograph on its own; common English stop words dropped. JSON is read decoded (its keys
    and values), so ``\\u00eb`` and ``\\n`` escapes count as the characters they stand for.

    >>> sorted(tokens('{"name": "Zo\\u00eb", "city": "北京"}').elements())
    ['city', 'name', 'zoë', '京', '北']
    """
    obj = _json(text.strip())
    if isinstance(obj, (dict, list)):
        text = " ".join(_strings(obj))
    return Counter(t for t in _WORD.findall(text.lower()) if t not in _STOP)


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (str(k), *_strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [] if obj is None else [str(obj)]


def units(text: str, domain: str) -> int:
    """Structural size: search items, JSON scalar leaves, or non-empty lines (pages and text)."""
    body = _NOTICES.sub("", text).strip()
    blocks = parse_search(body)
    if blocks is not None:
        return sum(len(b.items) for b in blocks)
    obj = _json(body)
    if isinstance(obj, (dict, list)):
        return len(_leaves(obj))
    return sum(1 for ln in body.splitlines() if ln.strip())
