"""The ablation report: ``report.json`` (numbers), ``report.md`` (tables, plain statements) and plots.

:func:`build_report` turns per-seed evaluations (:class:`~simrl.evaluation.results.EvalResult`) of every
arm and baseline into ``report.json``: the preregistered primary comparison first (paired t test over
seeds and a task x seed stratified bootstrap, :mod:`simrl.experiment.report_compare`), the Holm-corrected
secondary comparisons (other pairs, each arm against each baseline, task-property subsets), per arm and
metric the mean over seeds with its 95% Student-t interval (:func:`simrl.experiment.stats.mean_ci`) and the
per-seed values, success per task-property subset, what each arm's environment was and which
evaluation tasks were dropped as unsolvable. :func:`render_report` (``simrl report DIR``) re-renders
``report.md`` and the plots from ``report.json`` alone (and the run folders' ``metrics.jsonl``); every
sentence in ``report.md`` is generated from the numbers.

Intervals of rates (every metric but ``mean_turns`` and ``env_failures``) are clipped to [0, 1],
differences of rates to [-1, 1], counts to [0, inf); ``clipped`` marks those that were.

``report.json`` layout (version 2)::

    {"version": 2, "recipe": str, "level": 0.95, "evaluation": {...}, "headline": [metric, ...],
     "primary": PRIMARY, "positive_control": POSITIVE | null, "secondary": [TEST + {"a", "b", "p_holm"}, ...],
     "comparisons": [[a, b], ...],
     "dropped": {seed: {"count": int, "ids": [task_id, ...]}}, "expressible": EXPRESSIBLE,
     "arms": {name: ENTRY}, "baselines": {name: ENTRY}}
    EXPRESSIBLE = {"subsets": {"all" | SUBSET: {"tasks", "expressible", "expert_path"}}, "not": [{"task_id", "why"}]} | {}
    PRIMARY = {"a", "b", "metric", "declared": bool, "test": TEST | null, "why_not": str,
               "bootstrap": {"mean", "low", "high", "level", "runs", "tasks", "reps", "seed"} | null}
    TEST = {"subset": "overall" | SUBSET, "metric", "paired": bool, "seeds": [shared seeds], "mean", "low",
            "high", "n", "level", "df", "degenerate", "clipped", "p": float | null, "t": float | null}
    POSITIVE = {"baseline", "subsets": {SUBSET: {"tests": [{"arm"} + TEST], "learned_by": [arm], "not_met": [arm]}},
                "passed": bool}

PRIMARY, TEST and POSITIVE are the dumps of the typed results of :mod:`simrl.experiment.comparisons`
(:class:`~simrl.experiment.comparisons.PrimaryResult`, :class:`~simrl.experiment.comparisons.Difference`,
:class:`~simrl.experiment.comparisons.PositiveControlResult`), which ``report.md`` reads back.
    ENTRY = {"kind", "description", "world_model", "failed": {seed: reason},
             "seeds": {seed: {"metrics": {...}, "subsets": {SUBSET: {tasks, episodes, success}},
                              "edge_cases": {case: {episodes, success, mean_turns}}, "run_dir": str | null}},
             "metrics": {metric: INTERVAL}, "subsets": {SUBSET: INTERVAL}, "edge_cases": {case: INTERVAL},
             "fidelity": FIDELITY (only for an arm that names one: Arm.fidelity)}
    FIDELITY = {"source", "label", "overall", "ci": [low, high] | null, "n", "unparsed", "compliance"} | {"source", "missing"}
    INTERVAL = {"mean", "low", "high", "n", "level", "df", "degenerate", "clipped"}

Subsets (``EvalResult.subsets``) are task properties fixed before the run, the same tasks in every arm;
edge cases (``EvalResult.edge_cases``) are what the policy happened to meet: kept, described, never compared.
Version 1 reports (before the primary / secondary split) are not read: re-run ``simrl ablate``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.evaluation.edge_cases import NONE
from simrl.evaluation.results import EvalResult
from simrl.experiment.comparisons import PrimaryChoice
from simrl.experiment.recipe import PositiveControl
from simrl.experiment.report_compare import (
    OVERALL,
    UNBOUNDED,
    clip,
    positive_control,
    primary_test,
    secondary_tests,
)
from simrl.experiment.stats import Interval, mean_ci

REPORT_JSON, REPORT_MD, PLOTS = "report.json", "report.md", "plots"
VERSION = 2
__all__ = ["OVERALL", "UNBOUNDED", "build_report", "clipped", "headline_metrics", "load_report",
           "render_report", "write_report"]


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


def clipped(ci: Interval, low: float = 0.0, high: float = 1.0) -> dict[str, Any]:
    """``ci.to_dict()`` with ``low`` / ``high`` clipped to the metric's range (``clipped`` says whether they were).

    >>> clipped(Interval(0.9, 0.7, 1.1, 3))["high"], clipped(Interval(0.5, 0.4, 0.6, 3))["clipped"]
    (1.0, False)
    """
    return clip(ci.to_dict(), low, high)


def _ci(values: list[float], metric: str, level: float) -> dict[str, Any]:
    ci = mean_ci(values, level)
    return clipped(ci, 0.0, float("inf")) if metric in UNBOUNDED else clipped(ci)


def _subsets(ev: EvalResult) -> dict[str, dict[str, Any]]:
    """``EvalResult.subsets`` as plain dicts."""
    return {k: dict(v.model_dump()) for k, v in ev.subsets.items()}


def _entry(env: Mapping[str, str], evals: Mapping[int, EvalResult], failed: Mapping[int, str],
           run_dirs: Mapping[int, str | None], level: float) -> dict[str, Any]:
    """One arm's or baseline's ENTRY (see the module docstring)."""
    seeds = sorted(evals)
    out: dict[str, Any] = {
        "kind": env.get("kind", "arm"), "description": env.get("description", ""),
        "world_model": env.get("world_model", ""), "failed": {str(s): r for s, r in sorted(failed.items())},
        "seeds": {str(s): {"metrics": evals[s].metrics, "subsets": _subsets(evals[s]),
                           "edge_cases": {k: v.model_dump() for k, v in evals[s].edge_cases.items()},
                           "run_dir": run_dirs.get(s)} for s in seeds},
        "metrics": {}, "subsets": {}, "edge_cases": {}} | ({"fidelity": env["fidelity"]} if env.get("fidelity") else {})
    for m in sorted({m for s in seeds for m in evals[s].metrics}):
        out["metrics"][m] = _ci([evals[s].metrics[m] for s in seeds if m in evals[s].metrics], m, level)
    recs = [out["seeds"][str(s)] for s in seeds]
    for name in dict.fromkeys(k for r in recs for k in r["subsets"]):
        out["subsets"][name] = _ci([r["subsets"][name]["success"] for r in recs if name in r["subsets"]],
                                   "success", level)
    for c in sorted({c for s in seeds for c in evals[s].edge_cases}, key=lambda c: (c == NONE, c)):
        out["edge_cases"][c] = _ci([evals[s].edge_cases[c].success for s in seeds if c in evals[s].edge_cases],
                                   "success", level)
    return out


def _dropped(everything: Mapping[str, Mapping[int, EvalResult]]) -> dict[str, dict[str, Any]]:
    """Seed -> the evaluation tasks dropped as unsolvable (the same for every arm of a seed: the first seen)."""
    out: dict[str, dict[str, Any]] = {}
    for evals in everything.values():
        for s, ev in sorted(evals.items()):
            if str(s) not in out:
                out[str(s)] = {"count": ev.dropped, "ids": list(ev.dropped_ids)}
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def build_report(arms: Mapping[str, Mapping[int, EvalResult]], baselines: Mapping[str, Mapping[int, EvalResult]],
                 *, comparisons: Sequence[tuple[str, str]], primary: PrimaryChoice,
                 failed: Mapping[str, Mapping[int, str]] | None = None,
                 run_dirs: Mapping[str, Mapping[int, str | None]] | None = None,
                 evaluation: Mapping[str, Any] | None = None, recipe: str = "",
                 environments: Mapping[str, Mapping[str, str]] | None = None, level: float = 0.95,
                 bootstrap_reps: int = 10_000, bootstrap_seed: int = 0,
                 positive: PositiveControl | None = None,
                 met: Mapping[str, Mapping[str, float | None]] | None = None) -> dict[str, Any]:
    """Assemble ``report.json`` (a dict) from per-seed evaluations.

    Args:
        arms: arm name -> seed -> its held-out evaluation (finished runs only).
        baselines: baseline name (``candidates``, ``warmstart``, ``untrained``) -> seed -> evaluation.
        comparisons: ``(a, b)`` pairs (arm or baseline names) reported as ``a - b`` (secondary, Holm-corrected).
        primary: the primary comparison (:func:`simrl.experiment.comparisons.primary`: the recipe's, or the default).
        failed: arm -> seed -> why the run failed (listed, and left out of the statistics).
        run_dirs: arm -> seed -> run folder relative to the report folder (for the learning curves).
        evaluation: what was evaluated (env, split, tasks, trials...), copied into the report.
        environments: arm -> ``{kind, description, world_model[, fidelity]}``: what the arm's environment was
            (``kind`` e.g. ``world model (oracle) + mcpmark (inject)``; ``world_model`` the backend or ``real``).
        level: confidence level of every interval. bootstrap_reps, bootstrap_seed: the primary's bootstrap.
        positive: the recipe's preregistered positive control
            (:func:`simrl.experiment.report_compare.positive_control`), or None.
        met: arm -> how often its training met each skill's situation (:func:`read_met_in_training`), for the
            positive control (an arm that never met a situation does not pass its subset).

    The primary, secondary and positive-control results are the typed ones of :mod:`simrl.experiment.comparisons`,
    dumped.
    """
    failed, run_dirs, envs = failed or {}, run_dirs or {}, environments or {}
    entries = {name: _entry(envs.get(name, {}), arms.get(name, {}), failed.get(name, {}), run_dirs.get(name, {}),
                            level) for name in list(arms) + [a for a in failed if a not in arms]}
    base = {name: _entry({"kind": "baseline"}, evals, {}, {}, level) for name, evals in baselines.items() if evals}
    metrics = sorted({m for e in [*entries.values(), *base.values()] for m in e["metrics"]})
    everything, evals = {**entries, **base}, {**arms, **baselines}
    pairs = list(dict.fromkeys([(primary.a, primary.b), *map(tuple, comparisons)]))
    control = positive_control(positive, list(entries), everything, level, met)
    return {"version": VERSION, "recipe": recipe, "level": level, "evaluation": dict(evaluation or {}),
            "headline": headline_metrics(metrics),
            "primary": primary_test(primary, everything, evals, level, reps=bootstrap_reps,
                                    seed=bootstrap_seed).model_dump(),
            "positive_control": control.model_dump() if control is not None else None,
            "secondary": [d.model_dump() for d in secondary_tests(pairs, primary, everything, level)],
            "comparisons": [list(c) for c in pairs],
            "dropped": _dropped(evals), "expressible": _expressible(evals), "arms": entries, "baselines": base}


def _expressible(everything: Mapping[str, Mapping[int, EvalResult]]) -> dict[str, Any]:
    """How many evaluation tasks some sequence of candidates solves (:func:`simrl.evaluation.expressible.summary`
    of the first evaluation: every arm and seed shares the evaluation set); ``{}`` when not checked."""
    from simrl.evaluation.expressible import summary

    first = next((ev for evals in everything.values() for _, ev in sorted(evals.items()) if ev.per_task), None)
    return summary(first.per_task) if first is not None else {}


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
    version = report.get("version") if isinstance(report, dict) else None
    if isinstance(version, int) and 0 < version < VERSION:
        raise SimrlError(f"{path} is report version {version} (before the primary / secondary comparisons); "
                         f"re-run `simrl ablate RECIPE --out {out_dir}` (finished runs are reused)")
    if version != VERSION or "arms" not in report:
        raise SimrlError(f"{path} is not a simrl report (version {VERSION}); re-run `simrl ablate`")
    return report


def render_report(out_dir: str | Path) -> list[Path]:
    """Re-render ``report.md`` and the PNG plots from ``report.json`` and the run folders (``simrl report DIR``).

    Returns:
        the paths written: ``report.md`` and ``plots/{final_scores,subsets,learning_curves}.png``
        (the subsets only when the evaluation has task-property subsets, the learning curves only when
        some run folder has a ``metrics.jsonl``).

    Raises:
        SimrlError: no or bad ``report.json``; a run of the report whose ``metrics.jsonl`` logs a step
            twice (:func:`simrl.experiment.locks.check_no_duplicated_steps`).
    """
    from simrl.experiment.locks import check_no_duplicated_steps
    from simrl.experiment.report_md import markdown
    from simrl.experiment.report_plots import plot_all

    out = Path(out_dir)
    report = load_report(out)
    for entry in report["arms"].values():  # never draw curves or claims from a run two trainers wrote
        for rec in entry.get("seeds", {}).values():
            if rec.get("run_dir"):
                check_no_duplicated_steps(out / rec["run_dir"])
    plots = plot_all(report, out, out / PLOTS)
    (out / REPORT_MD).write_text(markdown(report, [p.relative_to(out) for p in plots]), encoding="utf-8")
    return [out / REPORT_MD, *plots]


def read_met_in_training(out: Path, run_dirs: Mapping[str, Mapping[int, str | None]]) -> dict[str, dict[str, float | None]]:
    """Arm -> how often its training episodes met each skill's situation, from the ``metrics.jsonl`` of its runs
    (``run_dirs``: arm -> seed -> run folder relative to ``out``; missing files are skipped), by
    :func:`simrl.experiment.skills.met_in_training`."""
    from simrl.experiment import skills
    from simrl.experiment.report_plots import read_metrics

    met = {}
    for arm, seeds in run_dirs.items():
        files = [out / d / "metrics.jsonl" for d in seeds.values() if d]
        met[arm] = skills.met_in_training(read_metrics(f) for f in files if f.is_file())
    return met
