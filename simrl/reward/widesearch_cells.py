"""WideSearch cell-level preprocess steps and metrics, as in the official evaluation code.

Our own implementation of ByteDance-Seed/WideSearch ``src/evaluation/metric_utils.py``: the
preprocess steps ``norm_str``, ``extract_number`` and ``norm_date``, and the metrics ``exact_match``,
``url_match``, ``in_match``, ``number_near`` and ``date_near``, each called as
``metric(response, target)`` on the preprocessed cells (``src/evaluation/evaluation.py``,
``metric_call``: only ``number_near`` receives the column's ``criterion``). Every value is a string,
as upstream, where each cell is ``astype(str)`` before preprocessing; :func:`read_cell` turns an empty
or NA cell into ``"nan"`` as upstream's pandas reader does. Deliberate differences:

- ``alias_match`` (not upstream) stands in for ``llm_judge`` in fictional worlds, which have no judge
  model: the cells match when their ``norm_str`` forms are equal, or the response equals one of the
  gold cell's aliases (the world generator knows every accepted spelling of its own entities).
- Dates are parsed with ``dateparser`` as upstream, but relative to a fixed day (:data:`DATE_BASE`)
  instead of "now", so that a year-only date ("1990") or a relative one ("yesterday") resolves the
  same way every day (upstream fills a missing month from the current month, so its scores change
  with the day they are computed).
- ``date_near`` between a timezone-aware and a naive date drops the timezone (upstream raises, which
  zeroes the whole table).
- ``number_near`` without a criterion uses 0.1 (upstream raises on a missing criterion).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from urllib.parse import urlparse

import dateparser

from simrl.world.schema import TableColumn

# pandas.read_csv's default NA spellings (pandas ``_libs/parsers.pyx`` STR_NA_VALUES): upstream reads
# the response and gold tables with read_csv, so such a cell becomes NaN and then the string "nan".
NA_CELLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
DATE_BASE = datetime(2025, 1, 1)
"""The day relative and partial dates are resolved against (a year alone reads as 1 January)."""
DATE_NEAR_DAYS = 31
_DATE_SETTINGS = {"PREFER_DAY_OF_MONTH": "first", "RELATIVE_BASE": DATE_BASE}
# A signed decimal (".5", "5.", "5.25") with an optional percent sign, as upstream's extract_number.
_NUMBER = re.compile(r"[-+]?(?:\d*\.\d+|\d+\.?\d*)%?")
# An http(s) URL: the scheme, then a run of ASCII characters from "!", "$" to "_" and "a" to "z"
# (upstream's url_match pattern admits exactly these; it stops at spaces, quotes, "#", "`", "{|}~").
_URL = re.compile(r"https?://[!$-_a-z]+")


def read_cell(text: object) -> str:
    """A table cell as upstream's reader yields it: stripped text, or ``"nan"`` for an NA spelling.

    >>> read_cell("  Ann "), read_cell(""), read_cell("N/A"), read_cell("n.a.")
    ('Ann', 'nan', 'nan', 'n.a.')
    """
    cell = str(text).strip()
    return "nan" if cell in NA_CELLS else cell


def norm_str(content: object) -> str:
    """Upstream ``norm_str``: lowercase, strip, drop every space and ``*`` (tabs/newlines inside stay).

    >>> norm_str(" **Blue  Owl** ")
    'blueowl'
    """
    return str(content).lower().strip().replace(" ", "").replace("*", "")


def extract_number(content: object) -> str:
    """Upstream ``extract_number``: the first number of ``content`` with commas removed, as text, else ``"NULL"``.

    The number keeps its written form (``"1990.0"`` stays ``"1990.0"``, ``"5%"`` stays ``"5%"``); a
    ``-`` or ``+`` right before the digits is its sign, even inside a word.

    >>> extract_number("about 1,234.50 staff"), extract_number("5 %"), extract_number("COVID-19")
    ('1234.50', '5', '-19')
    >>> extract_number("12.5%"), extract_number("n/a")
    ('12.5%', 'NULL')
    """
    match = _NUMBER.search(str(content).replace(",", ""))
    return match.group() if match else "NULL"


@lru_cache(maxsize=4096)
def parse_date(text: str) -> datetime | None:
    """``dateparser.parse`` with upstream's settings (day 1 when the day is missing), relative to :data:`DATE_BASE`.

    >>> parse_date("March 2020"), parse_date("1987-03-04").day, parse_date("no date here")
    (datetime.datetime(2020, 3, 1, 0, 0), 4, None)
    """
    try:
        return dateparser.parse(text, settings=_DATE_SETTINGS)
    except Exception:  # upstream treats any parser failure as "no date"
        return None


def norm_date(content: object) -> str:
    """Upstream ``norm_date``: ``YYYY-MM-DD`` of the date ``content`` parses as, else ``content`` unchanged.

    >>> norm_date("March 4, 1987"), norm_date("March 1987"), norm_date("Unknown")
    ('1987-03-04', '1987-03-01', 'Unknown')
    """
    found = parse_date(str(content))
    return str(content) if found is None else found.strftime("%Y-%m-%d")


PREPROCESS: dict[str, Callable[[object], str]] = {
    "norm_str": norm_str, "extract_number": extract_number, "norm_date": norm_date, "none": str}
"""Preprocess step by :class:`~simrl.world.schema.TableColumn` ``preprocess`` name (``none``: the cell as read)."""


def exact_match(response: str, target: str) -> float:
    """Upstream ``exact_match``: 1.0 when the strings are equal ignoring case."""
    return float(response.lower() == target.lower())


def url_match(response: str, target: str) -> float:
    """Upstream ``url_match``: 1.0 when both cells name the same set of hosts (``urlparse(url).netloc``, as written).

    Only ``http://`` / ``https://`` URLs count; two cells without any URL match.
    """
    hosts = [{urlparse(url).netloc for url in _URL.findall(cell)} for cell in (response, target)]
    return float(hosts[0] == hosts[1])


def in_match(response: str, target: str) -> float:
    """Upstream ``in_match``: 1.0 when the response is a substring of the gold cell (``response in target``)."""
    return float(response in target)


def _as_number(cell: str) -> float | None:
    try:
        return float(cell.replace("%", "")) / 100.0 if "%" in cell else float(cell)
    except ValueError:
        return None


def number_near(response: str, target: str, criterion: float | None = None) -> float:
    """Upstream ``number_near``: 1.0 when ``|r - t| <= |t| * criterion`` (criterion 0.1 when None).

    A cell is read with ``float`` (``"5%"`` reads as 0.05); when neither side reads as a number the
    cells match only if their texts are equal (``"NULL"`` and ``"NULL"`` match), when one side does
    not they do not match.
    """
    r, t = _as_number(response), _as_number(target)
    if r is None or t is None:
        return float(r is None and t is None and response == target)
    return float(abs(r - t) <= abs(t) * (0.1 if criterion is None else criterion))


def date_near(response: str, target: str) -> float:
    """Upstream ``date_near``: 1.0 when both cells parse as dates at most 31 days apart, or neither parses.

    The gap is ``timedelta.days`` (whole days, rounded down), as upstream.
    """
    r, t = parse_date(response), parse_date(target)
    if r is None or t is None:
        return float(r is None and t is None)
    if (r.tzinfo is None) != (t.tzinfo is None):
        r, t = r.replace(tzinfo=None), t.replace(tzinfo=None)
    return float(abs((r - t).days) <= DATE_NEAR_DAYS)


def alias_match(response: str, target: str, aliases: Sequence[str] = ()) -> float:
    """simrl's stand-in for ``llm_judge``: 1.0 when ``norm_str(response)`` equals that of the gold cell or an alias.

    ``aliases`` must already be preprocessed like the cells (:func:`score_cell` does it).
    """
    return float(norm_str(response) in {norm_str(a) for a in (target, *aliases)})


def preprocess(column: TableColumn, cell: str) -> str:
    """Apply ``column``'s preprocess step to one cell as read (see :func:`read_cell`)."""
    return PREPROCESS[column.preprocess](cell)


def apply_metric(column: TableColumn, response: str, target: str, aliases: Sequence[str] = ()) -> float:
    """Score two preprocessed cells with ``column``'s metric (upstream ``metric_call``: response first).

    ``aliases`` (preprocessed like the cells) are read by ``alias_match`` only, ``column.criterion``
    by ``number_near`` only.
    """
    if column.metric == "number_near":
        return number_near(response, target, column.criterion)
    if column.metric == "alias_match":
        return alias_match(response, target, aliases)
    metric: Callable[[str, str], float] = {"exact_match": exact_match, "url_match": url_match,
                                           "in_match": in_match, "date_near": date_near}[column.metric]
    return metric(response, target)


def score_cell(column: TableColumn, response: str, target: str, aliases: Sequence[str] = ()) -> float:
    """Score one predicted cell against its gold cell: preprocess both, then ``column``'s metric.

    Args:
        column: the column's definition (``preprocess``, ``metric``, ``criterion``).
        response: the predicted cell as read (:func:`read_cell`: stripped, ``"nan"`` when empty).
        target: the gold cell as read.
        aliases: extra accepted spellings of ``target`` as written (read by ``alias_match`` only).

    Returns:
        1.0 for a hit, 0.0 for a miss.

    Example:
        >>> col = TableColumn(name="employees", preprocess="extract_number", metric="number_near", criterion=0.1)
        >>> score_cell(col, "1,100 people", "1000"), score_cell(col, "1101", "1000"), score_cell(col, "?", "nan")
        (1.0, 0.0, 1.0)
    """
    return apply_metric(column, preprocess(column, response), preprocess(column, target),
                        [preprocess(column, read_cell(a)) for a in aliases])
