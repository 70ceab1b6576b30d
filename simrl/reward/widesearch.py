"""WideSearch table metrics: row- and item-level precision, recall and F1 of a markdown table.

Our own implementation of the evaluation defined by WideSearch (ByteDance-Seed/WideSearch,
``src/evaluation/evaluation.py``): parse the last markdown table of a response, preprocess each
column, inner-join predicted and gold rows on the unique columns, score the cells of the joined rows
with each column's metric, then count row and item true positives. Differences from upstream, all
for fictional worlds with no judge model: ``alias_match`` replaces ``llm_judge``; columns are matched
by normalised name only (a missing required column reads as empty cells); duplicates are dropped on
the resolved join key, so two spellings of one entity cannot both count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from simrl.world.schema import TableColumn, TableGold

_PIPE = re.compile(r"(?<!\\)\|")
_SEP_CELL = re.compile(r"^:?-+:?$")
_NUMBER = re.compile(r"(?:(?<!\w)-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<!\w)-)?\.\d+")
_MONTH = (r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_ORD = r"(?:st|nd|rd|th)?"
# (pattern, order of the groups as year/month/day); month groups may be names.
_DATE_PATTERNS = [
    (re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), "ymd"),
    (re.compile(r"(?<!\d)(\d{1,2})/(\d{1,2})/(\d{4})(?!\d)"), "mdy"),
    (re.compile(rf"\b{_MONTH}\.?\s+(\d{{1,2}}){_ORD},?\s+(\d{{4}})(?!\d)"), "mdy"),
    (re.compile(rf"(?<!\d)(\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH}\.?,?\s+(\d{{4}})(?!\d)"), "dmy"),
]
_EPS = 1e-9
_KeyFn = Callable[[dict[str, str]], tuple]
_Aliases = dict[str, dict[str, list[str]]]
_METRICS = ("success", "row_precision", "row_recall", "row_f1", "item_precision", "item_recall", "item_f1")


class TableScore(BaseModel):
    """Score of one table response (WideSearch's per-instance result); all ratios lie in [0, 1]."""

    model_config = ConfigDict(frozen=True)

    success: bool
    row_precision: float = Field(ge=0.0, le=1.0)
    row_recall: float = Field(ge=0.0, le=1.0)
    row_f1: float = Field(ge=0.0, le=1.0)
    item_precision: float = Field(ge=0.0, le=1.0)
    item_recall: float = Field(ge=0.0, le=1.0)
    item_f1: float = Field(ge=0.0, le=1.0)
    n_pred_rows: int = Field(ge=0)
    n_gold_rows: int = Field(ge=0)


def _split_row(line: str) -> list[str]:
    s = line.strip()
    s = s[1:] if s.startswith("|") else s
    s = s[:-1] if s.endswith("|") and not s.endswith("\\|") else s
    return [cell.strip().replace("\\|", "|") for cell in _PIPE.split(s)]


def _is_separator(line: str) -> bool:
    return "|" in line and "-" in line and all(_SEP_CELL.match(c) for c in _split_row(line))


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]] | None:
    """Parse the LAST markdown table of ``text``.

    A table is a header line with ``|``, a separator line (``|---|:--:|``) and the body lines that
    follow it up to the first line without ``|``. Leading/trailing pipes are optional, text and code
    fences around the table are ignored, ``\\|`` is a literal pipe. Body rows are padded with ``""``
    or cut to the header's width; rows whose cells are all empty are skipped.

    Args:
        text: a model response (any string).

    Returns:
        ``(header, rows)`` with stripped cell strings, or ``None`` when ``text`` has no table.

    Example:
        >>> parse_markdown_table("Here:\\n| Name | Age |\\n|---|---|\\n| Ann | 31 |\\nDone.")
        (['Name', 'Age'], [['Ann', '31']])
        >>> parse_markdown_table("no table") is None
        True
    """
    lines = text.splitlines()
    found: tuple[list[str], list[list[str]]] | None = None
    i = 0
    while i + 1 < len(lines):
        if "|" not in lines[i] or _is_separator(lines[i]) or not _is_separator(lines[i + 1]):
            i += 1
            continue
        header = _split_row(lines[i])
        rows: list[list[str]] = []
        j = i + 2
        while j < len(lines) and "|" in lines[j]:
            cells = _split_row(lines[j])
            if not _is_separator(lines[j]) and any(cells):
                rows.append((cells + [""] * len(header))[: len(header)])
            j += 1
        found = (header, rows)
        i = j
    return found


def norm_column(name: str) -> str:
    """Normalise a column name: lowercase, strip, remove all whitespace (``"Founded Date"`` -> ``"foundeddate"``)."""
    return re.sub(r"\s+", "", name.strip().lower())


def norm_str(text: str) -> str:
    """WideSearch ``norm_str``: lowercase, remove all whitespace and ``*``.

    >>> norm_str(" **Blue  Owl** ")
    'blueowl'
    """
    return re.sub(r"\s+", "", str(text).lower()).replace("*", "")


def extract_number(text: str) -> float | None:
    """WideSearch ``extract_number``: the first number in ``text`` (``"1,234"``, ``-5``, ``2.5``), else ``None``.

    >>> extract_number("about 1,234.5 staff"), extract_number("-7 C"), extract_number("n/a")
    (1234.5, -7.0, None)
    """
    match = _NUMBER.search(str(text).replace("\u2212", "-"))
    return float(match.group().replace(",", "")) if match else None


def parse_date(text: str) -> date | None:
    """The earliest date in ``text``: ISO / ``Y/M/D``, US ``M/D/Y``, ``March 4, 1987``, ``4 March 1987``."""
    low = str(text).lower()
    best: tuple[int, date] | None = None
    for pattern, order in _DATE_PATTERNS:
        for match in pattern.finditer(low):
            parts = dict(zip(order, match.groups(), strict=True))
            month = parts["m"]
            month_n = int(month) if month.isdigit() else _MONTHS.index(month[:3]) + 1
            try:
                found = date(int(parts["y"]), month_n, int(parts["d"]))
            except ValueError:
                continue
            if best is None or match.start() < best[0]:
                best = (match.start(), found)
            break
    return best[1] if best else None


def norm_date(text: str) -> str:
    """WideSearch ``norm_date``: ``YYYY-MM-DD`` of the first date in ``text``, else ``norm_str(text)``.

    >>> norm_date("March 4, 1987"), norm_date("03/04/1987"), norm_date("Unknown")
    ('1987-03-04', '1987-03-04', 'unknown')
    """
    found = parse_date(text)
    return found.isoformat() if found else norm_str(text)


def _preprocess(kind: str, text: str) -> str | float | None:
    funcs: dict[str, Callable[[str], str | float | None]] = {
        "norm_str": norm_str, "extract_number": extract_number, "norm_date": norm_date}
    return funcs[kind](text) if kind in funcs else str(text).strip()


def _canon(column: TableColumn, text: str) -> str | None:
    value = _preprocess(column.preprocess, text)
    return None if value is None else norm_str(repr(value) if isinstance(value, float) else value)


def _netloc(url: str) -> str:
    url = url.strip().lower()
    host = urlsplit(url if "://" in url else "http://" + url).netloc
    return host[4:] if host.startswith("www.") else host


def _as_number(value: str | float | None) -> float | None:
    return value if isinstance(value, float) or value is None else extract_number(value)


def score_cell(column: TableColumn, response: str, target: str, aliases: Sequence[str] = ()) -> float:
    """Score one predicted cell against its gold cell with ``column``'s preprocess and metric.

    Metrics (WideSearch ``metric_utils``): ``exact_match`` (preprocessed values equal), ``number_near``
    (``|r - t| <= |t| * criterion``, criterion 0.1 by default), ``date_near`` (both parse as dates
    within ``criterion`` days, 31 by default), ``url_match`` (same host, leading ``www.`` ignored),
    ``in_match`` (preprocessed gold is a substring of the preprocessed response), ``alias_match``
    (``norm_str`` of the preprocessed response equals that of the gold cell or one of ``aliases``).
    A value that cannot be read as a number or date scores 0.

    Args:
        column: the column's definition.
        response: the predicted cell text.
        target: the gold cell text.
        aliases: extra accepted spellings of ``target`` (used by ``alias_match`` only).

    Returns:
        1.0 for a hit, 0.0 for a miss.

    Example:
        >>> col = TableColumn(name="employees", preprocess="extract_number", metric="number_near", criterion=0.1)
        >>> score_cell(col, "1,100 people", "1000"), score_cell(col, "1101", "1000")
        (1.0, 0.0)
    """
    r, t, metric = _preprocess(column.preprocess, response), _preprocess(column.preprocess, target), column.metric
    if metric == "exact_match":
        return float(r is not None and r == t)
    if metric == "number_near":
        rn, tn = _as_number(r), _as_number(t)
        crit = 0.1 if column.criterion is None else column.criterion
        return float(rn is not None and tn is not None and abs(rn - tn) <= abs(tn) * crit + _EPS * max(1.0, abs(tn)))
    if metric == "date_near":
        rd, td = (parse_date(str(v)) if v is not None else None for v in (r, t))
        crit = 31.0 if column.criterion is None else column.criterion
        return float(rd is not None and td is not None and abs((rd - td).days) <= crit)
    if metric == "url_match":
        return float(r is not None and t is not None and _netloc(str(t)) != "" and _netloc(str(r)) == _netloc(str(t)))
    if metric == "in_match":
        return float(r is not None and t is not None and (str(t) in str(r) if str(t) else str(r) == ""))
    accepted = {_canon(column, text) for text in (target, *aliases)} - {None}
    return float(_canon(column, response) in accepted)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > _EPS else 0.0


def _dedup(rows: list[dict[str, str]], key: _KeyFn) -> dict[tuple, dict[str, str]]:
    out: dict[tuple, dict[str, str]] = {}
    for row in rows:
        out.setdefault(key(row), row)
    return out


def _prepare(response: str, gold: TableGold) -> tuple[list[dict[str, str]], list[dict[str, str]], _Aliases]:
    names = [norm_column(c.name) for c in gold.columns]
    unique = [norm_column(u) for u in gold.unique_columns]
    if not unique or any(u not in names for u in unique):
        raise ValueError(f"TableGold.unique_columns {gold.unique_columns!r} must be a non-empty subset of "
                         f"the columns {[c.name for c in gold.columns]!r}")
    gold_rows = [{norm_column(k): str(v) for k, v in row.items()} for row in gold.rows]
    gold_rows = [{n: row.get(n, "") for n in names} for row in gold_rows]
    parsed = parse_markdown_table(response)
    pred_rows: list[dict[str, str]] = []
    if parsed is not None:
        header = [norm_column(h) for h in parsed[0]]
        index = {h: header.index(h) for h in header}
        pred_rows = [{n: (row[index[n]] if n in index else "") for n in names} for row in parsed[1]]
    aliases = {norm_column(c): {norm_str(cell): list(a) for cell, a in m.items()} for c, m in gold.aliases.items()}
    return gold_rows, pred_rows, aliases


def _alias_map(column: TableColumn, cells: list[str], aliases: dict[str, list[str]]) -> dict[str, str]:
    """Canonical spelling of every alias of the gold ``cells`` -> that of its cell (cells map to themselves)."""
    amap = {_canon(column, a): _canon(column, c) for c in cells for a in aliases.get(norm_str(c), [])}
    amap.update({_canon(column, c): _canon(column, c) for c in cells})
    return {a: c for a, c in amap.items() if a is not None and c is not None}


def _key_fn(gold: TableGold, gold_rows: list[dict[str, str]], aliases: _Aliases) -> _KeyFn:
    """The join key of a row: per unique column its preprocessed value (aliases resolved)."""
    columns = {norm_column(c.name): c for c in gold.columns}
    unique = [norm_column(u) for u in gold.unique_columns]
    alias_maps = {n: _alias_map(columns[n], [r[n] for r in gold_rows], aliases.get(n, {}))
                  for n in unique if columns[n].metric == "alias_match"}

    def part(name: str, cell: str) -> object:
        if name not in alias_maps:
            value = _preprocess(columns[name].preprocess, cell)
        elif (value := _canon(columns[name], cell)) is not None:
            value = alias_maps[name].get(value, value)
        return object() if value is None else value  # an unreadable key joins nothing

    return lambda row: tuple(part(name, row[name]) for name in unique)


def _score_row(gold: TableGold, unique: set[str], pred: dict[str, str], target: dict[str, str],
               aliases: _Aliases) -> list[float]:
    cells = []
    for column in gold.columns:
        name = norm_column(column.name)
        if name in unique:
            cells.append(1.0)  # the join already matched the key columns
        else:
            accepted = aliases.get(name, {}).get(norm_str(target[name]), [])
            cells.append(score_cell(column, pred[name], target[name], accepted))
    return cells


def score_table(response: str, gold: TableGold) -> TableScore:
    """Score a markdown-table response against a table task's gold (WideSearch evaluation).

    Rows are de-duplicated on the unique columns (first kept) and inner-joined with the gold rows.
    In a joined row the unique columns count as hits (they matched) and every other required column
    is scored by :func:`score_cell`. Item TP is the sum of cell scores, row TP the number of joined
    rows whose every cell is a hit. Row P/R = row TP / predicted / gold rows; item P/R = item TP /
    (rows x columns); F1 is their harmonic mean (0 when P + R = 0). ``success`` is True only when all
    four of P and R are 1. A response without a table has zero predicted rows and scores 0.

    Args:
        response: the model's final answer text, holding a markdown table.
        gold: the task's :class:`~simrl.world.schema.TableGold`.

    Returns:
        A :class:`TableScore` (ratios in [0, 1], row counts after de-duplication).

    Raises:
        ValueError: when ``gold.unique_columns`` is empty or names a column not in ``gold.columns``.

    Example:
        >>> gold = TableGold(columns=[TableColumn(name="Name"), TableColumn(name="Age",
        ...     preprocess="extract_number", metric="number_near")], unique_columns=["Name"],
        ...     rows=[{"Name": "Ann", "Age": "30"}, {"Name": "Bo", "Age": "40"}])
        >>> s = score_table("| name | age |\\n|--|--|\\n| ann | 31 |\\n| Bo | 50 |", gold)
        >>> s.row_precision, s.item_precision, s.success
        (0.5, 0.75, False)
    """
    gold_rows, pred_rows, aliases = _prepare(response, gold)
    key = _key_fn(gold, gold_rows, aliases)
    gold_by_key, pred_by_key = _dedup(gold_rows, key), _dedup(pred_rows, key)
    unique = {norm_column(u) for u in gold.unique_columns}
    row_tp, item_tp = 0, 0.0
    for k, pred in pred_by_key.items():
        if k not in gold_by_key:
            continue
        cells = _score_row(gold, unique, pred, gold_by_key[k], aliases)
        item_tp += sum(cells)
        row_tp += all(cell == 1.0 for cell in cells)
    n_pred, n_gold, n_cols = len(pred_by_key), len(gold_by_key), len(gold.columns)
    row_p = row_tp / n_pred if n_pred else 0.0
    row_r = row_tp / n_gold if n_gold else 0.0
    item_p = item_tp / (n_pred * n_cols) if n_pred and n_cols else 0.0
    item_r = item_tp / (n_gold * n_cols) if n_gold and n_cols else 0.0
    return TableScore(success=row_p == row_r == item_p == item_r == 1.0, row_precision=row_p, row_recall=row_r,
                      row_f1=_f1(row_p, row_r), item_precision=item_p, item_recall=item_r,
                      item_f1=_f1(item_p, item_r), n_pred_rows=n_pred, n_gold_rows=n_gold)


def aggregate_trials(scores: list[list[TableScore]]) -> dict[str, float]:
    """Avg@N and Pass@N over instances x trials (WideSearch multi-trial reporting).

    For each metric (``success`` as 0/1, row/item precision, recall, F1) take per instance the mean
    (Avg@N) and the max (Pass@N) over its N trials, then average over instances.

    Args:
        scores: one list per instance, each holding the same number N >= 1 of :class:`TableScore`.

    Returns:
        ``{"avg@N/<metric>": ..., "pass@N/<metric>": ...}`` for the 7 metrics (values in [0, 1]).

    Raises:
        ValueError: when ``scores`` is empty, an instance has no trials, or instances differ in N.

    Example:
        >>> hit = TableScore(success=True, row_precision=1, row_recall=1, row_f1=1, item_precision=1,
        ...                  item_recall=1, item_f1=1, n_pred_rows=1, n_gold_rows=1)
        >>> miss = hit.model_copy(update={"success": False, "row_precision": 0.0, "row_f1": 0.0})
        >>> out = aggregate_trials([[hit, miss]])
        >>> out["avg@2/success"], out["pass@2/success"], out["avg@2/row_precision"]
        (0.5, 1.0, 0.5)
    """
    if not scores:
        raise ValueError("aggregate_trials needs at least one instance; got an empty list")
    counts = sorted({len(trials) for trials in scores})
    if counts[0] == 0:
        raise ValueError(f"instance {[len(t) for t in scores].index(0)} has no trials; every instance needs N >= 1")
    if len(counts) > 1:
        raise ValueError(f"every instance must have the same number of trials; found trial counts {counts}")
    n = counts[0]
    out: dict[str, float] = {}
    for metric in _METRICS:
        values = [[float(getattr(s, metric)) for s in trials] for trials in scores]
        out[f"avg@{n}/{metric}"] = sum(sum(v) / n for v in values) / len(values)
        out[f"pass@{n}/{metric}"] = sum(max(v) for v in values) / len(values)
    return out
