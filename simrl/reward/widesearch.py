"""WideSearch table metrics: row- and item-level precision, recall and F1 of a markdown table.

Our own implementation of the evaluation of ByteDance-Seed/WideSearch, ``evaluate_single_query`` in
``src/evaluation/evaluation.py`` with the table reader ``WideSearchResponse.extract_dataframe`` in
``src/evaluation/data_loader.py``: read the response's table, require its columns to be exactly the
gold's, align the key cells to the gold's spellings, preprocess every cell, drop duplicate rows on
the unique columns, inner-join predicted and gold rows on them, score each joined cell with its
column's metric (:mod:`simrl.reward.widesearch_cells`, response first), and count row and item true
positives over ``rows x required columns``. Deliberate differences, for fictional worlds without a
judge model and for a reward that stays in [0, 1]:

- Key alignment: upstream asks an LLM (``primary_key_preprocess``) to map each predicted key cell of
  an ``llm_judge`` or ``exact_match`` unique column to the gold spelling of the same entity. Here a
  predicted key cell is replaced by the first gold cell it matches under the column's own metric
  (``alias_match``: the cell or one of its aliases; ``exact_match``: equal ignoring case). Upstream
  also asks the LLM to rename unmatched column names; here the names must match after
  ``norm_column``, otherwise the table scores 0 (what upstream does when the LLM maps nothing).
- Duplicates are dropped on the aligned, preprocessed key (upstream: on the key as written, before
  alignment and preprocessing, so "Acme" and "ACME" under ``norm_str`` both join the one gold row and
  row recall can exceed 1, a reward an agent could farm by repeating rows).
- Cells are kept as the text written. Upstream reads the table with ``pandas.read_csv``, whose
  per-column type inference rewrites numbers (``"007"`` -> ``"7"``, a whole-number column with one
  blank cell -> ``"1990.0"``, ``"3.50"`` -> ``"3.5"``) and booleans; only its NA rule is kept
  (:func:`~simrl.reward.widesearch_cells.read_cell`: a blank or NA cell reads as ``"nan"``). A cell
  wholly in double quotes loses them, as in a CSV reader; other quotes stay literal.
- A body row with more cells than the header makes the table unreadable (score 0), as pandas' error
  does upstream; pandas' one exception, reading a first extra column as the index, is not copied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from simrl.reward.widesearch_cells import (
    apply_metric,
    exact_match,
    extract_number,
    norm_date,
    norm_str,
    preprocess,
    read_cell,
    score_cell,
)
from simrl.world.schema import TableColumn, TableGold  # noqa: F401  (TableColumn: the docstring examples)

__all__ = ["TableScore", "aggregate_trials", "extract_number", "norm_column", "norm_date", "norm_str",
           "parse_markdown_table", "score_cell", "score_table"]

_FENCE = re.compile(r"```markdown(.*?)```", re.DOTALL)
_PIPE_RUN = re.compile(r"(?:\|.*\n?)+")
_SKIP_CHARS = frozenset("|- :")
_METRICS = ("success", "row_precision", "row_recall", "row_f1", "item_precision", "item_recall", "item_f1")
_ALIGNED = ("alias_match", "exact_match")  # key metrics whose cells are aligned to the gold's spelling
_Row = tuple[str, ...]


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


def _fenced_or_piped(text: str) -> str | None:
    """The table text upstream picks: the first ```markdown block, else the first run of ``|`` lines."""
    fenced = _FENCE.findall(text)
    if fenced:
        return fenced[0].strip()
    pipes = [i for i, ch in enumerate(text) if ch == "|"]
    if len(pipes) < 4:
        return None
    start, end = text.rfind("\n", 0, pipes[0]), text.find("\n", pipes[-1])
    candidate = text[max(start, 0): len(text) if end == -1 else end]
    run = _PIPE_RUN.search(candidate)
    return run.group().strip() if run else None


def _unquote(cell: str) -> str:
    return cell[1:-1].replace('""', '"') if len(cell) >= 2 and cell[0] == cell[-1] == '"' else cell


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]] | None:
    """Read a response's table the way WideSearch does (``WideSearchResponse.extract_dataframe``).

    The table is the first ```` ```markdown ```` block, or else (with at least 4 ``|`` in ``text``)
    the first run of consecutive lines starting at the first ``|``. Lines without ``|`` and lines made
    only of ``|``, ``-``, ``:`` and spaces (separators, all-empty rows) are skipped; the first line left
    is the header. Cells are split on every ``|`` and stripped; columns with an empty header (the
    outer pipes) are dropped; short rows are padded with ``""``.

    Args:
        text: a model response (any string).

    Returns:
        ``(header, rows)`` with header names as written (spaces removed, lowercased) and cell strings,
        or ``None`` when ``text`` has no table.

    Raises:
        ValueError: when a body row has more cells than the header (upstream's reader fails there).

    Example:
        >>> parse_markdown_table("Here:\\n| Name | Age |\\n|---|---|\\n| Ann | 31 |\\nDone.")
        (['name', 'age'], [['Ann', '31']])
        >>> parse_markdown_table("no table") is None
        True
    """
    block = _fenced_or_piped(text)
    if block is None:
        return None
    lines = block.split("\n")
    lines[0] = lines[0].replace(" ", "").lower()
    kept = [[_unquote(c.strip()) for c in line.strip().split("|")] for line in lines
            if "|" in line and not set(line.strip()) <= _SKIP_CHARS]
    if not kept:
        return None
    named = [i for i, name in enumerate(kept[0]) if name]
    for n, row in enumerate(kept[1:], start=1):
        if len(row) > len(kept[0]):
            raise ValueError(f"table row {n} has {len(row)} cells but the header has {len(kept[0])}")
    rows = [[(row[i] if i < len(row) else "") for i in named] for row in kept[1:]]
    return [kept[0][i] for i in named], rows


def norm_column(name: str) -> str:
    """Upstream ``norm_column`` (``src/utils/utils.py``): strip, lowercase, drop spaces (``"Founded Date"`` -> ``"foundeddate"``)."""
    return name.strip().lower().replace(" ", "")


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 1e-9 else 0.0


class _Table:
    """A gold task's columns, its rows as read, and their aliases (keyed by column, then gold cell)."""

    def __init__(self, gold: TableGold) -> None:
        self.names = [norm_column(c.name) for c in gold.columns]
        self.unique = [norm_column(u) for u in gold.unique_columns]
        if not self.unique or any(u not in self.names for u in self.unique):
            raise ValueError(f"TableGold.unique_columns {gold.unique_columns!r} must be a non-empty subset of "
                             f"the columns {[c.name for c in gold.columns]!r}")
        self.columns = dict(zip(self.names, gold.columns, strict=True))
        rows = [{norm_column(k): v for k, v in row.items()} for row in gold.rows]
        self.rows = [tuple(read_cell(row.get(n, "")) for n in self.names) for row in rows]
        self.aliases = {(norm_column(c), read_cell(cell)): list(spellings)
                        for c, by_cell in gold.aliases.items() for cell, spellings in by_cell.items()}

    def pre(self, row: _Row) -> _Row:
        return tuple(preprocess(self.columns[n], cell) for n, cell in zip(self.names, row, strict=True))

    def pre_aliases(self, name: str, gold_cell: str) -> list[str]:
        return [preprocess(self.columns[name], read_cell(a)) for a in self.aliases.get((name, gold_cell), [])]

    def align(self, row: _Row) -> _Row:
        """Replace each key cell by the first gold cell it matches (stand-in for the LLM key alignment)."""
        out = list(row)
        for name in self.unique:
            column, i = self.columns[name], self.names.index(name)
            if column.metric not in _ALIGNED:
                continue
            mine = preprocess(column, row[i])
            for gold_row in self.rows:
                theirs = preprocess(column, gold_row[i])
                hit = (exact_match(mine, theirs) if column.metric == "exact_match" else
                       apply_metric(column, mine, theirs, self.pre_aliases(name, gold_row[i])))
                if hit:
                    out[i] = gold_row[i]
                    break
        return tuple(out)

    def dedup(self, rows: Sequence[_Row]) -> list[tuple[_Row, _Row]]:
        """``(as read, preprocessed)`` per row, the first row of each key kept."""
        keys = [self.names.index(u) for u in self.unique]
        out: dict[_Row, tuple[_Row, _Row]] = {}
        for row in rows:
            pre = self.pre(row)
            out.setdefault(tuple(pre[i] for i in keys), (row, pre))
        return list(out.values())

    def score_row(self, pred: _Row, gold: tuple[_Row, _Row]) -> list[float]:
        """Cell scores of one joined row: key columns count 1.0 (they joined), the others their metric."""
        return [1.0 if name in self.unique else
                apply_metric(self.columns[name], pred[i], gold[1][i], self.pre_aliases(name, gold[0][i]))
                for i, name in enumerate(self.names)]


def _read_prediction(response: str, table: _Table) -> tuple[list[str], list[_Row]] | None:
    """The predicted header and rows ordered as the gold's columns, or None when unreadable or mis-columned."""
    try:
        parsed = parse_markdown_table(response)
    except ValueError:
        return None
    if parsed is None:
        return None
    header = [norm_column(h) for h in parsed[0]]
    if len(set(header)) != len(header) or set(header) != set(table.names):
        return None
    where = [header.index(n) for n in table.names]
    return header, [tuple(read_cell(row[i]) for i in where) for row in parsed[1]]


def score_table(response: str, gold: TableGold) -> TableScore:
    """Score a markdown-table response against a table task's gold (WideSearch ``evaluate_single_query``).

    The predicted table (:func:`parse_markdown_table`) must have exactly the gold's columns (after
    :func:`norm_column`), else everything is 0. Key cells are aligned to the gold's spelling, every
    cell is preprocessed, rows are de-duplicated on the unique columns (first kept) and inner-joined
    with the gold rows on them. In a joined row the unique columns count as hits and every other
    column is scored by its metric. Item TP is the sum of cell scores, row TP the number of joined rows
    whose every cell is a hit. Row P/R = row TP / predicted / gold rows; item P/R = item TP /
    (rows x columns); F1 is their harmonic mean (0 when P + R < 1e-9). ``success`` is True when all six
    ratios are 1, or (upstream's first test) when no key column is aligned and the preprocessed tables
    are equal row for row, columns in the same order. The module docstring lists where this differs
    from upstream.

    Args:
        response: the model's final answer text, holding a markdown table.
        gold: the task's :class:`~simrl.world.schema.TableGold`.

    Returns:
        A :class:`TableScore` (ratios in [0, 1], row counts after de-duplication; 0 predicted rows
        when the response has no readable table with the right columns).

    Raises:
        ValueError: when ``gold.unique_columns`` is empty or names a column not in ``gold.columns``.

    Example:
        >>> gold = TableGold(columns=[TableColumn(name="Name"), TableColumn(name="Age",
        ...     preprocess="extract_number", metric="number_near", criterion=0.1)], unique_columns=["Name"],
        ...     rows=[{"Name": "Ann", "Age": "30"}, {"Name": "Bo", "Age": "40"}])
        >>> s = score_table("| name | age |\\n|--|--|\\n| ann | 31 |\\n| Bo | 50 |", gold)
        >>> s.row_precision, s.item_precision, s.success
        (0.5, 0.75, False)
    """
    table = _Table(gold)
    golds = table.dedup(table.rows)
    read = _read_prediction(response, table)
    if read is None:
        return TableScore(success=False, row_precision=0, row_recall=0, row_f1=0, item_precision=0,
                          item_recall=0, item_f1=0, n_pred_rows=0, n_gold_rows=len(golds))
    header, rows = read
    preds = table.dedup([table.align(row) for row in rows])
    keys = [table.names.index(u) for u in table.unique]
    by_key = {tuple(pre[i] for i in keys): (row, pre) for row, pre in golds}
    row_tp, item_tp = 0, 0.0
    for _, pre in preds:
        if (match := by_key.get(tuple(pre[i] for i in keys))) is not None:
            cells = table.score_row(pre, match)
            item_tp += sum(cells)
            row_tp += min(cells) == 1.0
    n_pred, n_gold, n_cols = len(preds), len(golds), len(table.names)
    row_p, row_r = (row_tp / n_pred if n_pred else 0.0), (row_tp / n_gold if n_gold else 0.0)
    item_p, item_r = (item_tp / (n_pred * n_cols) if n_pred else 0.0), (item_tp / (n_gold * n_cols) if n_gold else 0.0)
    same = (header == table.names and not any(table.columns[u].metric in _ALIGNED for u in table.unique)
            and sorted(p for _, p in preds) == sorted(p for _, p in golds))
    return TableScore(success=same or row_p == row_r == item_p == item_r == 1.0, row_precision=row_p,
                      row_recall=row_r, row_f1=_f1(row_p, row_r), item_precision=item_p, item_recall=item_r,
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
