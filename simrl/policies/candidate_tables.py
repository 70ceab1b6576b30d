"""Table answers for the candidates: the records an episode has read, rendered with the columns its prompt asks for.

Generic, like the rest of :mod:`simrl.policies.candidates`: no task family, environment or world is known here.

* **Columns** (:func:`asked_columns`): a prompt that asks for a table lists its columns after a colon, as an
  enumeration of lower-case words (``... with the columns: name, founded, industry.``): the last such list of
  at least two items. None: the prompt asks for no table, and no table answer is offered.
* **Records** (:func:`records`) of a successful result: the objects of a JSON result's lists
  (:func:`simrl.policies.features.items`); in markdown text, each table with a header row gives one record per
  row (header cell -> cell), and a key/value table (a header whose second cell is empty, an infobox) gives one
  record of the page's subject, named by the page's ``# heading`` (key ``name``). A cell's value is its text
  without markdown links, or the links' texts when it holds nothing else (``[Ann Lee](https://...)`` -> ``Ann
  Lee``; ``March 3, 1990, [Springfield](...)`` -> ``March 3, 1990``).
* **Rows** (:func:`table_answer`): every record read so far (oldest first, one per name) that has a field for
  each column (a field whose words equal the column's, case-insensitively), rendered as a markdown table with
  the prompt's column names. None when no record has them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from simrl.policies.features import is_json, items, tokens

_LIST = re.compile(r":\s*([a-z][a-z0-9_]*(?: [a-z0-9_]+){0,2}(?:, (?:and )?[a-z][a-z0-9_]*(?: [a-z0-9_]+){0,2})+)\s*(?:[.;\n]|$)")
_LINK = re.compile(r"\[([^\]]{1,80})\]\([^)\s]+\)")
_HEADING = re.compile(r"^# (.+)$", re.MULTILINE)
_LONG_DATE = re.compile(r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)"
                        r" \d{1,2}, \d{4}\b")
_YEAR = re.compile(r"\b\d{4}\b")
_DATE_YEAR = re.compile(r"\b(\d{4})-\d{2}-\d{2}\b|" + _LONG_DATE.pattern.replace(r"\d{4}\b", r"(\d{4})\b"))
_WORDS = re.compile(r"[a-z0-9]+")
MAX_ROWS = 50
"""Most rows of a table answer."""
MAX_TEXT_ANSWERS = 9
"""Most answers read off one text result (:func:`text_answers`)."""


def asked_columns(prompt: str) -> list[str] | None:
    """The column names a prompt asks for (see the module docstring), or None.

    >>> asked_columns("List every city of Oz. Answer with a markdown table with the columns: name, population.")
    ['name', 'population']
    >>> asked_columns("How many members does Acme have?") is None
    True
    """
    found = _LIST.findall(prompt)
    if not found:
        return None
    cols = [c.strip().removeprefix("and ").strip() for c in found[-1].split(",")]
    return cols if len(cols) >= 2 and len(set(cols)) == len(cols) else None


def _cell(text: str) -> str:
    """A markdown cell's value: its text without links, else the links' texts."""
    bare = _LINK.sub("", text).strip(" ,;")
    return bare if bare else ", ".join(_LINK.findall(text)).strip()


def _rows(lines: list[str]) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


def _markdown_records(text: str, cell: Callable[[str], str] = _cell) -> list[dict[str, Any]]:
    """The records of markdown text: one per row of a headed table, one per key/value table (the page's subject).

    ``cell`` reads a cell's value (default :func:`_cell`; ``str.strip`` keeps the markdown links)."""
    heading = _HEADING.search(text)
    out: list[dict[str, Any]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]*-[\s:|-]*", lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            header, body = _rows([lines[i]])[0], _rows(lines[i + 2:j])
            if len(header) == 2 and not header[1] and heading is not None:  # key/value: the page's subject
                record = {"name": heading.group(1).strip()}
                record |= {_cell(r[0]): cell(r[1]) for r in body if len(r) == 2 and _cell(r[0])}
                out.append(record)
            elif all(header):
                out += [{h: cell(c) for h, c in zip(header, r)} for r in body if len(r) == len(header)]
            i = j
        else:
            i += 1
    return out


def records(text: str) -> list[dict[str, Any]]:
    """The records of one tool result (see the module docstring)."""
    if is_json(text):
        return list(items(text))
    return _markdown_records(text)


def _field(record: dict[str, Any], column: str) -> Any:
    want = tokens(column)
    return next((v for k, v in record.items() if tokens(k) == want and v not in (None, "")), None)


def table_answer(columns: list[str], texts: Iterable[str]) -> str | None:
    """The markdown table of every record of ``texts`` (in order) with a field for each column, or None."""
    rows, names = [], set()
    for text in texts:
        for record in records(text):
            cells = [_field(record, c) for c in columns]
            if any(v is None or isinstance(v, dict | list) for v in cells):
                continue
            key = str(cells[0]).lower()
            if key not in names and len(rows) < MAX_ROWS:
                names.add(key)
                rows.append([str(v).replace("|", "/").replace("\n", " ") for v in cells])
    if not rows:
        return None
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def date_years(text: str) -> list[str]:
    """The years of the dates a text writes (ISO ``YYYY-MM-DD`` and English ``Month D, YYYY``), in order, once each.

    >>> date_years("Date: 1995-09-10. On September 10, 1995 ...; the term ended on September 10, 1999.")
    ['1995', '1999']
    """
    return list(dict.fromkeys(m.group(1) or m.group(2) for m in _DATE_YEAR.finditer(text)))


def text_answers(text: str) -> list[tuple[str, str, str]]:
    """``(value, tag, field)`` answers read off a text (not JSON) result, at most :data:`MAX_TEXT_ANSWERS`: for each
    field of its key/value records (the page subject's facts) its value (``field``), the text of each link in it
    that is not the whole value (``link``: the city of ``Born | March 3, 1990, [Springfield](...)``) and the year
    of an English date in it (``year``), each with the field's name in lower case, words joined by ``_``; then the
    English dates written in the text (``Month D, YYYY``, ``date``, field ``""``). ``[]`` for JSON.

    The field's name is what tells one fact of a page from another (a policy that sees only ``field`` cannot
    tell a company's headquarters from its founder); a value met twice keeps its first reading.

    >>> page = "# Oz\\n\\n| City | |\\n|---|---|\\n| Founded | May 2, 1990, [Kansas](https://k.example) |\\n\\nOn June 3, 2001."
    >>> for answer in text_answers(page): print(answer)
    ('May 2, 1990', 'field', 'founded')
    ('Kansas', 'link', 'founded')
    ('1990', 'year', 'founded')
    ('June 3, 2001', 'date', '')
    """
    if is_json(text):
        return []
    heading = _HEADING.search(text)
    subject = heading.group(1).strip() if heading else None
    out: list[tuple[str, str, str]] = []
    for record in _markdown_records(text, cell=str.strip):
        if _cell(record.get("name", "")) != subject:
            continue
        for k, raw in record.items():
            v = _cell(raw) if isinstance(raw, str) else raw
            if k == "name" or not isinstance(v, str) or not 0 < len(v) <= 80:
                continue
            name = "_".join(_WORDS.findall(k.lower()))
            out.append((v, "field", name))
            out += [(link, "link", name) for link in _LINK.findall(raw) if link != v]
            out += [(y, "year", name) for y in _YEAR.findall(v) if _LONG_DATE.search(v)]
    out += [(d, "date", "") for d in _LONG_DATE.findall(text)]
    first: dict[str, tuple[str, str]] = {}
    for v, tag, name in out:
        first.setdefault(v, (tag, name))
    return [(v, tag, name) for v, (tag, name) in first.items()][:MAX_TEXT_ANSWERS]
