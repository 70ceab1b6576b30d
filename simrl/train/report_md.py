"""``report.md`` from ``report.json``: tables and plain statements, every sentence generated from the numbers.

Intervals print as ``mean [low, high]``; a single-seed value prints without an interval and is said
to be one run. Whether two intervals overlap and whether a difference's interval holds 0 is computed,
never written by hand (:mod:`simrl.train.report` builds the numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simrl.train.report import OVERALL


def fmt(d: Mapping[str, Any], metric: str = "success", signed: bool = False) -> str:
    """``0.62 [0.55, 0.69]`` (or ``0.62 (1 seed)`` when degenerate); turns and counts with one decimal.

    >>> fmt({"mean": 0.625, "low": 0.5, "high": 0.75, "n": 3, "degenerate": False})
    '0.62 [0.50, 0.75]'
    >>> fmt({"mean": 0.1, "low": 0.1, "high": 0.1, "n": 1, "degenerate": True}, signed=True)
    '+0.10 (1 seed)'
    """
    spec = ".1f" if metric in ("mean_turns", "env_failures") else ".2f"
    sign = "+" if signed else ""
    head = f"{d['mean']:{sign}{spec}}"
    if d.get("degenerate"):
        return f"{head} ({d['n']} seed{'s' if d['n'] != 1 else ''})"
    return f"{head} [{d['low']:{spec}}, {d['high']:{spec}}]"


def _with_n(d: Mapping[str, Any]) -> str:
    """``fmt(d)`` plus the seed count (a degenerate interval already names it)."""
    return fmt(d) if d.get("degenerate") else f"{fmt(d)} ({d['n']} seeds)"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _overlap(x: Mapping[str, Any], y: Mapping[str, Any]) -> str:
    if x.get("degenerate") or y.get("degenerate"):
        return "at least one side is a single run, so there is no interval to compare"
    apart = x["low"] > y["high"] or y["low"] > x["high"]
    return "the intervals do not overlap" if apart else "the intervals overlap"


def _verdict(d: Mapping[str, Any]) -> str:
    how = f"paired over seeds {', '.join(map(str, d['seeds']))}" if d["paired"] else "unpaired (Welch)"
    if d.get("degenerate"):
        return f"{fmt(d, d['metric'], True)}, {how}: too few seeds for an interval"
    holds = d["low"] <= 0.0 <= d["high"]
    tail = ("the interval includes 0: these seeds cannot tell the two apart" if holds else
            f"the interval excludes 0: {'higher' if d['mean'] > 0 else 'lower'} at the {d['level']:.0%} level")
    return f"{fmt(d, d['metric'], True)}, {how}; {tail}"


def _entries(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {**report["arms"], **report["baselines"]}


def statements(report: Mapping[str, Any]) -> list[str]:
    """The summary bullets: each arm-vs-arm comparison on success (the first, the headline, also per edge
    case), the baselines, the failed runs."""
    entries, out = _entries(report), []
    pairs = [(a, b) for a, b in report.get("comparisons", []) if b not in report["baselines"]]
    for i, (a, b) in enumerate(pairs):  # arm-vs-baseline differences are in the Differences table
        if a not in entries or b not in entries or "success" not in entries[a]["metrics"] \
                or "success" not in entries[b]["metrics"]:
            continue
        x, y = entries[a]["metrics"]["success"], entries[b]["metrics"]["success"]
        line = f"**{a}** success {_with_n(x)} vs **{b}** {_with_n(y)}; {_overlap(x, y)}."
        for d in report["differences"]:
            if (d["a"], d["b"], d["subset"], d["metric"]) == (a, b, OVERALL, "success"):
                line += f" Difference {a} − {b}: {_verdict(d)}."
        out.append(line)
        for d in report["differences"]:
            if i == 0 and (d["a"], d["b"]) == (a, b) and d["subset"] != OVERALL:
                xa, yb = entries[a]["edge_cases"][d["subset"]], entries[b]["edge_cases"][d["subset"]]
                out.append(f"  - on episodes that met `{d['subset']}`: {a} {fmt(xa)} vs {b} {fmt(yb)}; "
                           f"difference {_verdict(d)}.")
    for name, e in report["baselines"].items():
        if "success" in e["metrics"]:
            out.append(f"Baseline **{name}**: success {_with_n(e['metrics']['success'])}.")
    failed = [f"{arm} seed {s} ({why.splitlines()[0][:120] if why else 'no reason given'})"
              for arm, e in report["arms"].items() for s, why in e["failed"].items()]
    if failed:
        out.append(f"{len(failed)} run(s) failed and are left out of the statistics: " + "; ".join(failed) + ".")
    if not out:
        out.append("No finished runs to compare.")
    return out


def _score_rows(report: Mapping[str, Any], headline: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, e in _entries(report).items():
        cells = [fmt(e["metrics"][m], m) if m in e["metrics"] else "—" for m in headline]
        rows.append([name, e["kind"], str(len(e["seeds"])), *cells])
    return rows


def _seed_rows(report: Mapping[str, Any], headline: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, e in _entries(report).items():
        for s, rec in e["seeds"].items():
            rows.append([name, s, *(f"{rec['metrics'][m]:.2f}" if m in rec["metrics"] else "—" for m in headline)])
        rows += [[name, s, *(["failed"] * len(headline))] for s in e["failed"]]
    return rows


def _edge_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    entries = _entries(report)
    cases = []
    for e in entries.values():
        cases += [c for c in e["edge_cases"] if c not in cases]
    cases = sorted(cases, key=lambda c: (c == "none", c))
    rows = []
    for name, e in entries.items():
        cells = []
        for c in cases:
            n = sum(rec["edge_cases"].get(c, {}).get("episodes", 0) for rec in e["seeds"].values())
            cells.append(f"{fmt(e['edge_cases'][c])} ({n} ep.)" if c in e["edge_cases"] else "—")
        rows.append([name, *cells])
    return cases, rows


def markdown(report: Mapping[str, Any], plots: Sequence[Path] = ()) -> str:
    """The whole ``report.md`` text."""
    ev, headline = report.get("evaluation", {}), report["headline"]
    lines = [f"# Ablation report: {report.get('recipe') or 'unnamed recipe'}", ""]
    if ev:
        lines += ["Held-out evaluation in the real environment: " + ", ".join(f"{k} {v}" for k, v in ev.items()) + ".",
                  ""]
    lines += [f"Intervals are {report['level']:.0%} Student-t intervals over seeds (mean [low, high]), those of "
              "rates clipped to [0, 1] (differences to [-1, 1]); differences are paired by seed when the seeds "
              "match, else Welch's.", "", "## Summary", ""]
    lines += [s if s.startswith("  -") else f"- {s}" for s in statements(report)]
    lines += ["", "## Final scores", ""] + _table(["arm", "kind", "seeds", *headline], _score_rows(report, headline))
    diffs = [d for d in report["differences"] if d["subset"] == OVERALL]
    if diffs:
        rows = [[f"{d['a']} − {d['b']}", d["metric"], fmt(d, d["metric"], True),
                 "paired" if d["paired"] else "Welch", "no" if d["low"] <= 0 <= d["high"] else "yes"] for d in diffs]
        lines += ["", "## Differences", ""] + _table(["a − b", "metric", "difference", "test", "excludes 0"], rows)
    cases, rows = _edge_rows(report)
    if cases:
        lines += ["", "## Success by edge case met", "",
                  "An episode counts under every edge case it met (`none`: it met none); episodes summed over seeds.",
                  ""] + _table(["arm", *cases], rows)
    lines += ["", "## Per-seed values", ""] + _table(["arm", "seed", *headline], _seed_rows(report, headline))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem.replace('_', ' ')}]({p.as_posix()})" for p in plots]
    return "\n".join(lines) + "\n"
