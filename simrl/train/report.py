"""The ablation report: ``report.json`` (numbers), ``report.md`` (tables, plain statements) and plots.

:func:`build_report` turns per-seed evaluations (:class:`~simrl.train.evaluate.EvalResult`) of every
arm and baseline into ``report.json``: per arm and metric the mean over seeds with its 95% Student-t
interval (:func:`simrl.train.stats.mean_ci`) and the per-seed values, success per edge case, and the
differences the recipe asks about (controlled minus uncontrolled, each arm minus the warm start) with
their intervals (:func:`simrl.train.stats.diff_ci`, paired by seed when the seeds match).
:func:`render_report` (``simrl report DIR``) re-renders ``report.md`` and the plots from ``report.json``
and the run folders' ``metrics.jsonl``; every sentence in ``report.md`` is generated from the numbers.

Intervals of rates (every metric but ``mean_turns`` and ``env_failures``) are clipped to [0, 1],
differences of rates to [-1, 1], counts to [0, inf); ``clipped`` marks those that were.

``report.json`` layout (version 1)::

    {"version": 1, "recipe": str, "level": 0.95, "evaluation": {...}, "headline": [metric, ...],
     "arms": {name: ENTRY}, "baselines": {name: ENTRY},
     "differences": [{"a", "b", "subset", "metric", "paired", "seeds", "mean", "low", "high", "n", ...}]}
    ENTRY = {"kind", "seeds": {seed: {"metrics": {...}, "edge_cases": {case: {episodes, success, mean_turns}},
             "run_dir": str | null}}, "failed": {seed: reason}, "metrics": {metric: INTERVAL},
             "edge_cases": {case: INTERVAL}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.train.evaluate import NONE, EvalResult
from simrl.train.stats import Interval, diff_ci, mean_ci

REPORT_JSON, REPORT_MD, PLOTS = "report.json", "report.md", "plots"
VERSION = 1
OVERALL = "overall"


def headline_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics shown in tables, in a fixed order: success, pass@k, avg@k, reward, F1s, mean turns.

    >>> headline_metrics(["mean_turns", "reward", "pass@3", "success", "env_failures", "item_f1"])
    ['success', 'pass@3', 'reward', 'item_f1', 'mean_turns']
    """
    order = ["success", "pass@", "avg@", "reward", "item_f1", "row_f1", "mean_turns"]
    picked = []
    for head in order:
        picked += sorted(m for m in metrics if (m == head or (head.endswith("@") and m.startswith(head)
                                                               and "/" not in m)) and m not in picked)
    return picked


UNBOUNDED = ("mean_turns", "env_failures")
"""Counts, not rates: their intervals are clipped to [0, inf); every other metric's to [0, 1]."""


def clipped(ci: Interval, low: float = 0.0, high: float = 1.0) -> dict[str, Any]:
    """``ci.to_dict()`` with ``low`` / ``high`` clipped to the metric's range (``clipped`` says whether they were).

    A confidence interval intersected with the parameter's range keeps its coverage; the raw t interval
    of a rate near 0 or 1 over few seeds can pass the bounds.

    >>> clipped(Interval(0.9, 0.7, 1.1, 3))["high"], clipped(Interval(0.5, 0.4, 0.6, 3))["clipped"]
    (1.0, False)
    """
    d = ci.to_dict()
    d["low"], d["high"] = max(low, ci.low), min(high, ci.high)
    d["clipped"] = (d["low"], d["high"]) != (ci.low, ci.high)
    return d


def _ci(values: list[float], metric: str, level: float) -> dict[str, Any]:
    ci = mean_ci(values, level)
    return clipped(ci, 0.0, float("inf")) if metric in UNBOUNDED else clipped(ci)


def _entry(kind: str, evals: Mapping[int, EvalResult], failed: Mapping[int, str],
           run_dirs: Mapping[int, str | None], level: float) -> dict[str, Any]:
    """One arm's or baseline's ENTRY (see the module docstring)."""
    seeds = sorted(evals)
    out: dict[str, Any] = {"kind": kind, "failed": {str(s): r for s, r in sorted(failed.items())}, "seeds": {
        str(s): {"metrics": evals[s].metrics, "edge_cases": {k: v.model_dump() for k, v in evals[s].edge_cases.items()},
                 "run_dir": run_dirs.get(s)} for s in seeds}, "metrics": {}, "edge_cases": {}}
    names = sorted({m for s in seeds for m in evals[s].metrics})
    for m in names:
        values = [evals[s].metrics[m] for s in seeds if m in evals[s].metrics]
        out["metrics"][m] = _ci(values, m, level)
    cases = sorted({c for s in seeds for c in evals[s].edge_cases}, key=lambda c: (c == NONE, c))
    for c in cases:
        values = [evals[s].edge_cases[c].success for s in seeds if c in evals[s].edge_cases]
        out["edge_cases"][c] = _ci(values, "success", level)
    return out


def _per_seed(entry: Mapping[str, Any], subset: str, metric: str) -> dict[int, float]:
    """Seed -> value of ``metric`` (``subset`` overall) or of edge-case success (``subset`` a case)."""
    out = {}
    for s, rec in entry["seeds"].items():
        if subset == OVERALL and metric in rec["metrics"]:
            out[int(s)] = rec["metrics"][metric]
        elif subset != OVERALL and subset in rec["edge_cases"]:
            out[int(s)] = rec["edge_cases"][subset]["success"]
    return out


def difference(a: Mapping[str, Any], b: Mapping[str, Any], subset: str, metric: str,
               level: float) -> dict[str, Any] | None:
    """``a - b`` over seeds with its interval: paired by seed when at least two seeds are shared, else Welch.

    Returns:
        the interval's dict plus ``paired`` and ``seeds`` (the shared seeds when paired), or None when
        either side has no value.
    """
    va, vb = _per_seed(a, subset, metric), _per_seed(b, subset, metric)
    if not va or not vb:
        return None
    common = sorted(set(va) & set(vb))
    paired = len(common) >= 2
    if paired:
        ci = diff_ci([va[s] for s in common], [vb[s] for s in common], level, paired=True)
    else:
        ci = diff_ci(list(va.values()), list(vb.values()), level, paired=False)
    bounds = (-1.0, 1.0) if metric not in UNBOUNDED else (-float("inf"), float("inf"))
    return {"subset": subset, "metric": metric, "paired": paired, "seeds": common if paired else [],
            **clipped(ci, *bounds)}


def build_report(arms: Mapping[str, Mapping[int, EvalResult]], baselines: Mapping[str, Mapping[int, EvalResult]],
                 *, comparisons: Sequence[tuple[str, str]], failed: Mapping[str, Mapping[int, str]] | None = None,
                 run_dirs: Mapping[str, Mapping[int, str | None]] | None = None,
                 evaluation: Mapping[str, Any] | None = None, recipe: str = "", arm_kinds: Mapping[str, str] | None = None,
                 level: float = 0.95) -> dict[str, Any]:
    """Assemble ``report.json`` (a dict) from per-seed evaluations.

    Args:
        arms: arm name -> seed -> its held-out evaluation (finished runs only).
        baselines: ``untrained`` / ``warmstart`` -> seed -> evaluation.
        comparisons: ``(a, b)`` pairs (arm or baseline names) whose difference ``a - b`` is reported,
            overall for success, pass@k and the F1s, and for success on each edge case both met.
        failed: arm -> seed -> why the run failed (listed, and left out of the statistics).
        run_dirs: arm -> seed -> run folder relative to the report folder (for the learning curves).
        evaluation: what was evaluated (env, split, tasks, trials...), copied into the report.
        arm_kinds: arm -> a short description (``real``, ``world model``, ``world model + mcpmark``).
        level: confidence level of every interval.
    """
    failed, run_dirs, kinds = failed or {}, run_dirs or {}, arm_kinds or {}
    entries = {name: _entry(kinds.get(name, "arm"), arms.get(name, {}), failed.get(name, {}),
                            run_dirs.get(name, {}), level) for name in list(arms) + [a for a in failed if a not in arms]}
    base = {name: _entry("baseline", evals, {}, {}, level) for name, evals in baselines.items() if evals}
    metrics = sorted({m for e in [*entries.values(), *base.values()] for m in e["metrics"]})
    headline = headline_metrics(metrics)
    everything = {**entries, **base}
    diffs = []
    for a, b in comparisons:
        if a not in everything or b not in everything:
            continue
        cases = [c for c in everything[a]["edge_cases"] if c in everything[b]["edge_cases"]]
        compared = [m for m in headline if m == "success" or m.startswith("pass@") or m.endswith("_f1")]
        for subset, metric in [(OVERALL, m) for m in compared] + [(c, "success") for c in cases]:
            d = difference(everything[a], everything[b], subset, metric, level)
            if d is not None:
                diffs.append({"a": a, "b": b, **d})
    return {"version": VERSION, "recipe": recipe, "level": level, "evaluation": dict(evaluation or {}),
            "headline": headline, "comparisons": [list(c) for c in comparisons], "arms": entries,
            "baselines": base, "differences": diffs}


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``report.json`` into ``out_dir`` and render ``report.md`` and the plots; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return [out / REPORT_JSON, *render_report(out)]


def load_report(out_dir: str | Path) -> dict[str, Any]:
    """Read ``report.json`` of an ablation folder.

    Raises:
        SimrlError: no report.json (the message says how to make one), or not the expected layout.
    """
    path = Path(out_dir) / REPORT_JSON
    if not path.is_file():
        raise SimrlError(f"no {REPORT_JSON} in {out_dir}: run `simrl ablate RECIPE --out {out_dir}` first")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SimrlError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(report, dict) or report.get("version") != VERSION or "arms" not in report:
        raise SimrlError(f"{path} is not a simrl report (version {VERSION}); re-run `simrl ablate`")
    return report


def render_report(out_dir: str | Path) -> list[Path]:
    """Re-render ``report.md`` and the PNG plots from ``report.json`` and the run folders (``simrl report DIR``).

    Returns:
        the paths written: ``report.md`` and ``plots/{final_scores,edge_cases,learning_curves}.png``
        (the learning curves only when some run folder has a ``metrics.jsonl``).

    Raises:
        SimrlError: no or bad ``report.json``; a run of the report whose ``metrics.jsonl`` logs a step
            twice (:func:`simrl.train.locks.check_no_duplicated_steps`).
    """
    from simrl.train.locks import check_no_duplicated_steps
    from simrl.train.report_md import markdown
    from simrl.train.report_plots import plot_all

    out = Path(out_dir)
    report = load_report(out)
    for entry in report["arms"].values():  # never draw curves or claims from a run two trainers wrote
        for rec in entry.get("seeds", {}).values():
            if rec.get("run_dir"):
                check_no_duplicated_steps(out / rec["run_dir"])
    plots = plot_all(report, out, out / PLOTS)
    (out / REPORT_MD).write_text(markdown(report, [p.relative_to(out) for p in plots]), encoding="utf-8")
    return [out / REPORT_MD, *plots]


def interval(d: Mapping[str, Any]) -> Interval:
    """An interval dict of ``report.json`` back as an :class:`~simrl.train.stats.Interval`."""
    return Interval(d["mean"], d["low"], d["high"], d["n"], d.get("level", 0.95), d.get("df", 0.0))
