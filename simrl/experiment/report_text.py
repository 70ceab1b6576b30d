"""The text pieces of ``report.md``: intervals, p-values and Markdown tables, shared by its sections
(:mod:`simrl.experiment.report_md`, :mod:`simrl.experiment.report_fidelity`)."""

from __future__ import annotations

from collections.abc import Sequence

from simrl.experiment.stats import Interval


def fmt(ci: Interval, metric: str = "success", signed: bool = False) -> str:
    """``0.62 [0.55, 0.69]`` (or ``0.62 (1 seed)`` when degenerate); turns and counts with one decimal.

    >>> fmt(Interval(0.625, 0.5, 0.75, 3, df=2.0))
    '0.62 [0.50, 0.75]'
    >>> fmt(Interval(0.1, 0.1, 0.1, 1), signed=True)
    '+0.10 (1 seed)'
    >>> fmt(Interval(-1.0, -1.0, -1.0, 2, df=1.0), signed=True)
    '-1.00 (the same at all 2 seeds: no spread)'
    """
    spec = ".1f" if metric in ("mean_turns", "env_failures") else ".2f"
    sign = "+" if signed else ""
    head = f"{ci.mean:{sign}{spec}}"
    if ci.degenerate:
        return f"{head} ({ci.n} seed{'s' if ci.n != 1 else ''})"
    if ci.low == ci.high:
        return f"{head} (the same at all {ci.n} seeds: no spread)"
    return f"{head} [{ci.low:{spec}}, {ci.high:{spec}}]"


def pval(p: float | None) -> str:
    """A p-value for a table: ``0.042``, ``< 0.001``, or ``—`` (no test).

    >>> pval(0.04213), pval(1e-5), pval(None)
    ('0.042', '< 0.001', '—')
    """
    return "—" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p: float | None) -> str:
    """``p = 0.042`` or ``p < 0.001`` (``p: none`` without a test).

    >>> p_is(0.04213), p_is(1e-5)
    ('p = 0.042', 'p < 0.001')
    """
    return "p: none" if p is None else f"p {'<' if p < 0.001 else '='} {max(p, 0.001):.3f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table: the header, its rule, one line per row.

    >>> table(["a", "b"], [["1", "2"]])
    ['| a | b |', '|---|---|', '| 1 | 2 |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]
