"""Tables fit the console by wrapping between words, never by cutting a name (an 80-column log showed
``sim-u…`` and ``heldou…``)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from simrl.tables import fit_table, print_table

ARMS = ("sim-controlled", "sim-uncontrolled", "real")


def _summary() -> Table:
    table = Table(title="quickstart: 3 run(s) -> runs/quickstart")
    for col in ("arm", "seed", "steps", "first reward", "final reward", "final success", "env failures",
                "eval success", "time"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm in ARMS:
        table.add_row(arm, "0", "24", "0.123", "0.456", "40%", "3", "heldout 40%  heldout-1 30%", "12 s")
    return table


def _printed(table: Table, width: int) -> str:
    console = Console(file=io.StringIO(), width=width)
    print_table(table, console)
    return console.file.getvalue()


@pytest.mark.parametrize("width", [80, 60])
def test_a_narrow_table_wraps_between_words_and_keeps_every_name(width):
    text = _printed(_summary(), width)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width and "…" not in text
    for arm in ARMS:  # each name whole on one line: wrapped around, never cut
        assert any(line.split()[:1] == [arm] for line in lines), text
    assert text.count("heldout-1") == 3 and text.count("30%") == 3


def test_a_table_that_fits_is_left_as_it_is():
    wide = _printed(_summary(), 200)
    assert "┃ arm              ┃" in wide and "heldout 40%  heldout-1 30%" in wide  # box and one line per row
    assert all(column.width is None for column in fit_table(_summary(), 200).columns)


def test_words_longer_than_the_console_fold_rather_than_vanish():
    table = Table("name", "value")
    table.add_row("a-very-long-identifier-without-spaces", "x" * 30)
    text = _printed(table, 30)
    assert max(map(len, text.splitlines())) <= 30 and "…" not in text
    assert "".join(text.split()).count("x") == 30
