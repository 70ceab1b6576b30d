"""Tables that wrap instead of truncating: every rich table the CLI prints fits the console without cutting a word.

rich shrinks a table wider than the console by narrowing its widest columns evenly and then cuts what
no longer fits with an ellipsis, so an 80-column log (a batch job: ``COLUMNS=80``, or any file, which
rich prints 80 columns wide) showed ``sim-u…`` for ``sim-uncontrolled``. :func:`fit_table` sets the
column widths itself instead: each column gets at least its longest word (header included), and the
room left goes to the columns whose text is longest, so cells wrap between words and no name is cut.
When even the longest words do not fit side by side, words are folded onto the next line (still
nothing dropped). :func:`print_table` prints a table that way.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def _plain(cell: Any) -> str | None:
    """A cell's plain text (markup removed), or None for a renderable that is not text."""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return None


def _sizes(table: Table) -> list[tuple[int, int, int, int]] | None:
    """Per column the longest word of a cell, the longest word with the header's, the longest line of a
    cell, the longest line with the header's; None when a cell is not text (rich's own layout is kept)."""
    sizes = []
    for column in table.columns:
        header, cells = _plain(column.header), [_plain(c) for c in column.cells]
        if header is None or any(t is None for t in cells):
            return None
        word = max((len(w) for t in cells for w in t.split()), default=0)
        head = max([word, *(len(w) for w in header.split())])
        line = max((len(ln) for t in cells for ln in t.splitlines()), default=0)
        word = line if column.no_wrap else word  # a column asked not to wrap keeps its lines whole
        full = max([line, *(len(ln) for ln in header.splitlines())])
        sizes.append((max(1, word), max(1, head), max(1, word, line), max(1, full)))
    return sizes


def _grow(widths: list[int], targets: list[int], spare: int) -> int:
    """Widen columns toward ``targets``, one cell at a time to the one furthest from its target; returns the
    room left."""
    while spare > 0:
        need = [t - w for w, t in zip(widths, targets)]
        i = max(range(len(widths)), key=need.__getitem__)
        if need[i] <= 0:
            break
        widths[i] += 1
        spare -= 1
    return spare


def _natural(table: Table) -> int:
    """The table's width when nothing wraps."""
    return Console(width=100_000).measure(table).maximum


def _room(table: Table, sizes: list[tuple[int, int, int, int]], width: int) -> int:
    """Character cells left for the columns' text in ``width`` after borders and padding."""
    return width - (_natural(table) - sum(size[-1] for size in sizes))


def fit_table(table: Table, width: int) -> Table:
    """Give ``table``'s columns widths that fit ``width`` console columns without cutting a cell's word.

    Each column gets the longest word of its cells; the room left goes first to the headers' words,
    then to the cells' lines, then to the headers' lines, each time to the column furthest from fitting
    (so short columns stay on one line and long text wraps between words). When the headers' words do not fit beside each other with the
    table's borders, the borders go (a space between columns, a rule under the header); a header word
    still longer than its column folds onto the next line, and when even the cells' longest words are
    too wide side by side, every column folds instead of cutting. A table that fits as it is, or holds
    cells that are not text, is left to rich.

    Args:
        table: a rich table with its rows added (changed in place).
        width: the console width in character cells.

    Returns:
        ``table`` itself.
    """
    sizes = _sizes(table)
    if sizes is None or _natural(table) <= width:
        return table
    for column in table.columns:
        column.overflow = "fold"
    if sum(size[1] for size in sizes) > _room(table, sizes, width):  # no room for borders: a space between columns
        table.box, table.padding, table.show_edge = box.SIMPLE_HEAD, (0, 0), False
    room = _room(table, sizes, width)
    widths = [size[0] for size in sizes]
    if sum(widths) > room:
        return table
    spare = room - sum(widths)
    for level in (1, 2, 3):  # the headers' words, the cells' lines, the headers' lines
        spare = _grow(widths, [size[level] for size in sizes], spare)
    for column, w in zip(table.columns, widths):
        column.width = w
    return table


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` on ``console`` (default: stdout) fitted to its width by :func:`fit_table`."""
    console = console or Console()
    console.print(fit_table(table, console.width))
