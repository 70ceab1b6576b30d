"""The outputs of a fidelity evaluation: ``scores.json``, ``scores.md`` and the printed tables.

``scores.json`` is keyed by backend, then dimension (:func:`summarise`); the tables put the backends
side by side, one row per (domain, dimension), so a world model reads against the oracle and the
trivial baselines.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simrl.fidelity.rules import domain_of
from simrl.fidelity.scoring import DIMENSIONS, aggregate

ROWS = (*DIMENSIONS, "overall")


def summarise(rows: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    """The ``scores.json`` object from prediction rows (:class:`~simrl.fidelity.evaluate.Prediction`).

    ``{backend: {"format": .., ..., "overall": .., "n": scored, "unparsed": k, "failed": k,
    "skipped": {reason: k}, "by_domain": {domain: {dim: .., "n": ..}}, "judge": {the same for the
    LLM judge, plus "failed"}}}``; domains are the scorer's (search, mcp, bfcl, generic). Means are
    over scored predictions only (an unparsed prediction is scored as empty; failed and skipped ones
    are not scored).
    """
    out: dict[str, Any] = {}
    for name in names:
        mine = [r for r in rows if r.backend == name]
        entry = aggregate([(domain_of(r.domain), r.scores) for r in mine if r.scores is not None])
        entry["unparsed"] = sum(r.unparsed for r in mine)
        entry["failed"] = sum(1 for r in mine if r.error and not r.skipped)
        entry["skipped"] = dict(Counter(r.error for r in mine if r.skipped))
        judged = [(domain_of(r.domain), r.judge) for r in mine if r.judge is not None]
        if judged or any(r.judge_error for r in mine):
            entry["judge"] = aggregate(judged) | {"failed": sum(1 for r in mine if r.judge_error)}
        out[name] = entry
    return out


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def table_rows(scores: dict[str, Any], judge: bool = False) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: one row per (domain, dimension) and the all-domains rows, backends as columns; the
    overall score's 95% interval over transitions follows its row."""
    names = [n for n in scores if not n.startswith("_")]
    pick = (lambda e: e.get("judge") or {}) if judge else (lambda e: e)
    domains = sorted({d for n in names for d in pick(scores[n]).get("by_domain", {})})
    header = ["domain", "dimension", *names]
    rows = []
    for domain in [*domains, "all"]:
        for dim in ROWS:
            cells = []
            for n in names:
                entry = pick(scores[n])
                entry = entry if domain == "all" else entry.get("by_domain", {}).get(domain, {})
                cells.append(_cell(entry.get(dim)))
            rows.append([domain, dim, *cells])
            if dim == "overall":
                cis = [(pick(scores[n]) if domain == "all" else pick(scores[n]).get("by_domain", {}).get(domain, {}))
                       .get("ci", {}).get(dim) for n in names]
                rows.append([domain, "overall 95% CI", *("-" if c is None else f"[{c[0]:.1f}, {c[1]:.1f}]"
                                                         for c in cis)])
        counts = [str((pick(scores[n]) if domain == "all" else pick(scores[n]).get("by_domain", {}).get(domain, {}))
                      .get("n", 0)) for n in names]
        rows.append([domain, "n", *counts])
    return header, rows


def markdown(scores: dict[str, Any]) -> str:
    """``scores.md``: the rule-based table (and the judge's, when there is one) as markdown tables."""
    parts = []
    for judge in (False, True):
        if judge and not any("judge" in e for n, e in scores.items() if not n.startswith("_")):
            continue
        header, rows = table_rows(scores, judge)
        title = "LLM judge (1-5 normalised to 0-100)" if judge else "Rule-based fidelity (0-100)"
        lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def rich_tables(scores: dict[str, Any]) -> list[Any]:
    """The same tables for the terminal (rich), best backend of each row in bold."""
    from rich.table import Table

    tables = []
    for judge in (False, True):
        if judge and not any("judge" in e for n, e in scores.items() if not n.startswith("_")):
            continue
        header, rows = table_rows(scores, judge)
        table = Table(title="LLM judge (0-100)" if judge else "World-model fidelity (rule-based, 0-100)")
        for i, col in enumerate(header):
            table.add_column(col, justify="right" if i >= 2 else "left")
        for row in rows:
            values = [float(c) for c in row[2:] if c not in ("-",)] if row[1] not in ("n", "overall 95% CI") else []
            best = max(values) if values else None
            table.add_row(row[0], row[1], *(f"[bold]{c}[/bold]" if best is not None and c != "-" and float(c) == best
                                             else c for c in row[2:]), end_section=row[1] == "n")
        tables.append(table)
    return tables


def write_scores(scores: dict[str, Any], out_dir: Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``scores.json`` (with ``meta`` under ``"_meta"`` when given) and ``scores.md`` into ``out_dir``."""
    data = scores | ({"_meta": meta} if meta else {})
    (out_dir / "scores.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "scores.md").write_text(markdown(scores), encoding="utf-8")
