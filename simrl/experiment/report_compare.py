"""The comparisons of an ablation report: the preregistered primary test and the Holm-corrected secondary ones.

* **Primary** (:func:`primary_test`): the recipe's ``primary`` comparison ``a - b`` on its metric, declared
  before running (or the default, marked as such). Paired over seeds (:func:`simrl.experiment.stats.paired_test`:
  ``scipy.stats.ttest_rel`` and a ``scipy.stats.t`` interval), plus the task x seed stratified bootstrap of
  the per-(seed, task) differences (:func:`simrl.experiment.stats.stratified_bootstrap`, Agarwal et al., 2021).
* **Secondary** (:func:`secondary_tests`): every other requested pair on the primary's metric, and every pair
  (the primary's included) on success within each task-property subset of ``EvalResult.subsets``
  (membership fixed before the run from the task and the episode seeds, so the same tasks in every arm).
  Their p-values are Holm-corrected as one family (:func:`simrl.experiment.stats.holm`, Holm 1979).

Edge cases an episode *met* depend on the policy, so they never define a comparison here. Every test is a
:class:`simrl.experiment.comparisons.Difference`; the primary's result a
:class:`~simrl.experiment.comparisons.PrimaryResult`, the positive control's a
:class:`~simrl.experiment.comparisons.PositiveControlResult`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simrl.evaluation.results import OVERALL  # defined with the subsets; re-exported here
from simrl.experiment.comparisons import (
    Difference,
    PositiveControlResult,
    PrimaryChoice,
    PrimaryResult,
    SubsetControl,
)
from simrl.experiment.recipe import PositiveControl
from simrl.experiment.skills import SUBSET_SITUATIONS
from simrl.experiment.stats import holm, paired_test, stratified_bootstrap, welch_test

UNBOUNDED = ("mean_turns", "env_failures")
"""Counts, not rates: their intervals are clipped to [0, inf); every other metric's to [0, 1]."""


def clip(d: dict[str, Any], low: float, high: float) -> dict[str, Any]:
    """``d`` with ``low`` / ``high`` clipped to ``[low, high]``; ``clipped`` says whether they were.

    A confidence interval intersected with the parameter's range keeps its coverage; the raw t interval
    of a rate near 0 or 1 over few seeds can pass the bounds.

    >>> clip({"low": 0.7, "high": 1.1}, 0.0, 1.0)
    {'low': 0.7, 'high': 1.0, 'clipped': True}
    """
    raw = (d["low"], d["high"])
    d["low"], d["high"] = max(low, d["low"]), min(high, d["high"])
    d["clipped"] = (d["low"], d["high"]) != raw
    return d


def per_seed(entry: Mapping[str, Any], subset: str, metric: str) -> dict[int, float]:
    """Seed -> ``metric`` overall (``subset`` is ``overall``) or success on the task-property ``subset``."""
    out = {}
    for s, rec in entry["seeds"].items():
        if subset == OVERALL and metric in rec["metrics"]:
            out[int(s)] = rec["metrics"][metric]
        elif subset != OVERALL and subset in rec.get("subsets", {}):
            out[int(s)] = rec["subsets"][subset]["success"]
    return out


def difference(a: Mapping[str, Any], b: Mapping[str, Any], subset: str, metric: str,
               level: float) -> Difference | None:
    """``a - b`` over seeds (two ENTRYs of ``report.json``): paired by seed when at least two seeds are shared,
    else Welch; the interval clipped to the metric's range ([-1, 1] for rates).

    Returns:
        the :class:`~simrl.experiment.comparisons.Difference` (``seeds``: the shared seeds when paired; ``p``
        None when there is no test), or None when either side has no value.
    """
    va, vb = per_seed(a, subset, metric), per_seed(b, subset, metric)
    if not va or not vb:
        return None
    common = sorted(set(va) & set(vb))
    paired = len(common) >= 2
    test = (paired_test([va[s] for s in common], [vb[s] for s in common], level) if paired
            else welch_test(list(va.values()), list(vb.values()), level))
    bounds = (-float("inf"), float("inf")) if metric in UNBOUNDED else (-1.0, 1.0)
    ci, t = test.interval, test.statistic
    low, high = max(bounds[0], ci.low), min(bounds[1], ci.high)
    return Difference(subset=subset, metric=metric, seeds=common if paired else [], mean=ci.mean, low=low, high=high,
                      n=ci.n, level=ci.level, df=ci.df, degenerate=ci.degenerate, p=test.p,
                      t=t if t is not None and math.isfinite(t) else None, paired=test.paired,
                      clipped=(low, high) != (ci.low, ci.high))


def task_scores(ev: Any, metric: str) -> list[tuple[tuple[str, int], float]] | None:
    """Per task of an :class:`~simrl.evaluation.results.EvalResult`: ``((task_id, occurrence), score)``.

    The score over the task's trials: mean success (``success``, ``avg@k``), max success (``pass@k``),
    mean reward (``reward``). ``occurrence`` numbers repeated ids (pooled held-out worlds). None for a
    metric with no per-task value (the F1s).
    """
    if metric in ("success", "reward") or metric.startswith(("avg@", "pass@")):
        seen: dict[str, int] = {}
        out = []
        for t in ev.per_task:
            values = [float(v) for v in (t.reward if metric == "reward" else t.success)]
            if not values:
                continue
            k = seen[t.task_id] = seen.get(t.task_id, -1) + 1
            out.append(((t.task_id, k), max(values) if metric.startswith("pass@") else sum(values) / len(values)))
        return out
    return None


def paired_matrix(evals_a: Mapping[int, Any], evals_b: Mapping[int, Any], seeds: Sequence[int],
                  metric: str) -> np.ndarray | None:
    """``(seeds, tasks)`` matrix of per-task differences ``a - b``, over the tasks both sides have at every seed.

    None when the metric has no per-task score or no task is common to all.
    """
    per: list[tuple[dict, dict]] = []
    for s in seeds:
        sa, sb = task_scores(evals_a[s], metric), task_scores(evals_b[s], metric)
        if sa is None or sb is None:
            return None
        per.append((dict(sa), dict(sb)))
    keys = [k for k, _ in task_scores(evals_a[seeds[0]], metric) or []]
    keys = [k for k in keys if all(k in da and k in db for da, db in per)]
    if not keys:
        return None
    return np.array([[da[k] - db[k] for k in keys] for da, db in per])


def primary_test(spec: PrimaryChoice, entries: Mapping[str, Mapping[str, Any]],
                 evals: Mapping[str, Mapping[int, Any]], level: float, *, reps: int = 10_000,
                 seed: int = 0) -> PrimaryResult:
    """The primary comparison's :class:`~simrl.experiment.comparisons.PrimaryResult`.

    Args:
        spec: the comparison (:func:`simrl.experiment.comparisons.primary`).
        entries: arm / baseline name -> its ENTRY of ``report.json``.
        evals: name -> seed -> :class:`~simrl.evaluation.results.EvalResult` (the per-task results).
        level: confidence level. reps, seed: the bootstrap's replicates and generator seed.

    ``test`` is :func:`difference` overall (None when a side has no result); ``bootstrap`` the stratified
    bootstrap of the paired per-task differences over the shared seeds (None, with ``why_not``, when the
    seeds are not paired, the metric has no per-task score or no task is shared).
    """
    a, b, metric = spec.a, spec.b, spec.metric
    if a not in entries or b not in entries or not entries[a]["seeds"] or not entries[b]["seeds"]:
        missing = [n for n in (a, b) if n not in entries or not entries[n]["seeds"]]
        return PrimaryResult(**spec.model_dump(), why_not=f"no finished evaluation of {' and '.join(missing)}")
    test = difference(entries[a], entries[b], OVERALL, metric, level)
    if test is None:
        return PrimaryResult(**spec.model_dump(), why_not=f"no {metric} value on one side")
    if not test.paired:
        return PrimaryResult(**spec.model_dump(), test=test,
                             why_not="fewer than two seeds shared by both sides: no paired bootstrap")
    matrix = paired_matrix(evals[a], evals[b], test.seeds, metric)
    if matrix is None:
        return PrimaryResult(**spec.model_dump(), test=test,
                             why_not=f"{metric} has no per-task score, or no task is shared: no task x seed bootstrap")
    return PrimaryResult(**spec.model_dump(), test=test,
                         bootstrap=stratified_bootstrap(matrix, level, reps=reps, seed=seed))


def positive_control(spec: PositiveControl | None, arms: Sequence[str], entries: Mapping[str, Mapping[str, Any]],
                     level: float, met: Mapping[str, Mapping[str, float | None]] | None = None
                     ) -> PositiveControlResult | None:
    """The positive control (``recipe.positive_control``): did some arm learn each skill?

    For each subset of ``spec.subsets``, every arm minus ``spec.baseline`` on success within the subset
    (:func:`difference`, paired over seeds, ``arm`` set); the subset is *learned* when some arm's interval lies
    above 0 and that arm's training met the subset's situation. ``met``: arm -> how often its training episodes
    met each situation (:func:`simrl.experiment.skills.met_in_training`); an arm whose share is 0 for the
    subset's counter (:data:`simrl.experiment.skills.SUBSET_SITUATIONS`) never met it, so its gain is general
    competence on those tasks, listed as ``not_met``; unknown shares (None, or no ``met``) count as met.

    Returns:
        None without a spec; else the :class:`~simrl.experiment.comparisons.PositiveControlResult` (``passed``:
        every subset learned by some arm).
    """
    if spec is None:
        return None
    subsets = {}
    for subset in spec.subsets:
        tests = []
        for arm in arms:
            if arm in entries and spec.baseline in entries:
                d = difference(entries[arm], entries[spec.baseline], subset, "success", level)
                if d is not None:
                    tests.append(Difference(arm=arm, **d.model_dump()))
        above = [t.arm for t in tests if t.arm and not t.degenerate and t.low > 0]
        flag = SUBSET_SITUATIONS.get(subset)
        never = [a for a in above if flag is not None and (met or {}).get(a, {}).get(flag) == 0.0]
        subsets[subset] = SubsetControl(tests=tests, learned_by=[a for a in above if a not in never], not_met=never)
    return PositiveControlResult(baseline=spec.baseline, subsets=subsets,
                                 passed=all(s.learned_by for s in subsets.values()))


def _same_tasks(a: Mapping[str, Any], b: Mapping[str, Any], subset: str) -> bool:
    """True when ``subset`` holds as many tasks in ``a`` as in ``b`` at every seed both have (membership is
    fixed before the run, so a difference means the two were not evaluated on the same tasks)."""
    sa, sb = a["seeds"], b["seeds"]
    return all(sa[s]["subsets"][subset]["tasks"] == sb[s]["subsets"][subset]["tasks"]
               for s in set(sa) & set(sb) if subset in sa[s]["subsets"] and subset in sb[s]["subsets"])


def secondary_tests(pairs: Sequence[tuple[str, str]], primary: PrimaryChoice,
                    entries: Mapping[str, Mapping[str, Any]], level: float) -> list[Difference]:
    """Every secondary test, with ``p_holm`` (Holm-adjusted over all of them).

    Each pair is compared on the primary's metric overall (except the primary itself) and on success
    within each task-property subset both sides have (``same_tasks``: False when the subset's task count
    differs between the two at some seed).
    """
    out = []
    for a, b in pairs:
        if a not in entries or b not in entries:
            continue
        if (a, b) != (primary.a, primary.b):
            d = difference(entries[a], entries[b], OVERALL, primary.metric, level)
            if d is not None:
                out.append(Difference(a=a, b=b, **d.model_dump()))
        for subset in [s for s in entries[a].get("subsets", {}) if s in entries[b].get("subsets", {})]:
            d = difference(entries[a], entries[b], subset, "success", level)
            if d is not None:
                out.append(Difference(a=a, b=b, **d.model_dump(), same_tasks=_same_tasks(entries[a], entries[b], subset)))
    return [d.model_copy(update={"p_holm": adjusted}) for d, adjusted in zip(out, holm([d.p for d in out]))]
