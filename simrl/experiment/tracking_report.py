"""An ablation's results in its trackers: the held-out results, the baselines, the comparisons and the plots.

The trainers log each run's training metrics (:mod:`simrl.experiment.tracking`); once the report is
written, :func:`log_report` adds what the ablation measured, in the same project and group (one group
per ablation, as W&B groups and trackio projects do):

* each arm x seed run ``<arm>-seed<S>``: its held-out result, ``heldout/<metric>`` and
  ``heldout/subset/<subset>`` (success on a task-property subset), at the last training step;
* each baseline x seed, a run of its own ``baseline-<name>-seed<S>`` (TensorBoard:
  ``tensorboard/baselines/<name>/seed-<S>``): the same values at step 0;
* a run ``report`` (TensorBoard: ``tensorboard/report``): the primary comparison (``primary/mean``, ``low``,
  ``high``, ``p``, ``bootstrap_low``, ``bootstrap_high``), every secondary comparison
  (``secondary/<a> - <b>/<metric>/{mean,low,high,p_holm}``, the arms against the baselines, i.e. the
  positive controls, among them; a subset's as ``secondary/<a> - <b>/<subset>/...``), each arm's and
  baseline's mean over seeds with its interval (``mean/<name>/<metric>/{mean,low,high}``), the plots as
  images (``plots/<name>``) and ``report.md`` as text (TensorBoard, W&B).

:func:`where` says where the files went and the command that opens them. A tracker that fails is a
warning: ``report.json`` is the record.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from simrl.experiment.comparisons import Difference, PrimaryResult
from simrl.experiment.recipe import Recipe
from simrl.experiment.report_compare import OVERALL
from simrl.experiment.tracking import RunTracking, Tracker, run_tracking

REPORT_RUN = "report"
"""The name of the run that holds the comparisons and plots (also its TensorBoard folder)."""


def _seed_values(rec: Mapping[str, Any]) -> dict[str, float]:
    """A seed's held-out metrics and subset successes as ``heldout/...`` scalars."""
    values = {f"heldout/{k}": v for k, v in rec.get("metrics", {}).items()}
    values |= {f"heldout/subset/{k}": v["success"] for k, v in rec.get("subsets", {}).items()}
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _interval(prefix: str, d: Mapping[str, Any] | None, keys: Sequence[str] = ("mean", "low", "high")) -> dict:
    return {f"{prefix}/{k}": float(d[k]) for k in keys if d and isinstance(d.get(k), int | float)}


def _test(prefix: str, t: Difference | None, p: str) -> dict[str, float]:
    """``prefix/mean``, ``low``, ``high`` and ``prefix/<p>`` (``p`` or ``p_holm``, when there is one) of a test."""
    if t is None:
        return {}
    pvalue = t.p if p == "p" else t.p_holm
    return {f"{prefix}/{k}": float(v) for k, v in (("mean", t.mean), ("low", t.low), ("high", t.high), (p, pvalue))
            if v is not None}


def report_values(report: Mapping[str, Any]) -> dict[str, float]:
    """The ``report`` run's scalars: primary, secondary comparisons and the means over seeds (module docstring)."""
    p = PrimaryResult.model_validate(report["primary"])
    values = _test("primary", p.test, "p")
    if p.bootstrap is not None:
        values |= {"primary/bootstrap_low": p.bootstrap.low, "primary/bootstrap_high": p.bootstrap.high}
    for t in (Difference.model_validate(d) for d in report["secondary"]):
        where = "" if t.subset == OVERALL else f"/{t.subset}"
        values |= _test(f"secondary/{t.a} - {t.b}{where}/{t.metric}", t, "p_holm")
    for group in ("arms", "baselines"):
        for name, entry in report.get(group, {}).items():
            for metric, d in entry.get("metrics", {}).items():
                values |= _interval(f"mean/{name}/{metric}", d)
    return values


def _open(run: RunTracking, first_step: int | None, what: str) -> Tracker | None:
    tracker = Tracker(run)
    try:
        tracker.start(first_step)
    except Exception as err:  # noqa: BLE001 - SimrlError or a tool's own: a warning, the report is written
        print(f"warning: {what} not logged to the trackers: {err}", file=sys.stderr)
        return None
    return tracker


def log_report(recipe: Recipe, out: Path, report: Mapping[str, Any], plots: Sequence[Path] = ()) -> list[str]:
    """Log ``report`` (``report.json`` of the ablation in ``out``) and its ``plots`` to ``recipe``'s trackers.

    Returns:
        the runs logged (``<arm>-seed<S>``, ``baseline-<name>-seed<S>``, ``report``); empty without trackers.
    """
    if not recipe.logging.report_to:
        return []
    done = []
    for arm, entry in report.get("arms", {}).items():
        for seed, rec in entry.get("seeds", {}).items():
            run = run_tracking(recipe, arm, int(seed), out)
            if (tracker := _open(run, None, run.name)) is not None:
                tracker.log(_seed_values(rec), recipe.budget.steps)
                tracker.close()
                done.append(run.name)
    for base, entry in report.get("baselines", {}).items():
        for seed, rec in entry.get("seeds", {}).items():
            run = run_tracking(recipe, base, int(seed), out)
            run = replace(run, name=f"baseline-{base}-seed{seed}", board=f"baselines/{base}/seed-{seed}",
                          config={**run.config, "arm": None, "baseline": base})
            if (tracker := _open(run, 0, run.name)) is not None:
                tracker.log(_seed_values(rec), 0)
                tracker.close()
                done.append(run.name)
    run = run_tracking(recipe, REPORT_RUN, 0, out)
    run = replace(run, name=REPORT_RUN, board=REPORT_RUN, config={**run.config, "arm": None, "seed": None})
    if (tracker := _open(run, 0, "the report")) is not None:
        tracker.log(report_values(report), 0)
        md = out / "report.md"
        images = {"plots/" + re.sub(r"[^\w-]", "_", p.stem): p for p in plots if p.suffix == ".png"}
        tracker.media(images, {"report": md.read_text(encoding="utf-8")} if md.is_file() else {})
        tracker.close()
        done.append(run.name)
    return done


def where(recipe: Recipe, out: Path) -> list[str]:
    """One line per tracker of ``recipe``: where its files are and the command that opens them."""
    import os

    run = run_tracking(recipe, REPORT_RUN, 0, out)
    lines = []
    for name in recipe.logging.report_to:
        if name == "tensorboard":
            lines.append(f"tensorboard: {run.root / 'tensorboard'} (open: tensorboard --logdir "
                         f"{run.root / 'tensorboard'})")
        elif name == "trackio":
            folder = os.environ.get("TRACKIO_DIR") or str(run.root / "trackio")
            lines.append(f"trackio: {folder}, project {run.project}, group {run.group} (open: TRACKIO_DIR={folder} "
                         f"trackio show --project {run.project})")
        elif name == "wandb":
            folder = os.environ.get("WANDB_DIR") or str(run.root)
            offline = os.environ.get("WANDB_MODE") in ("offline", "disabled")
            lines.append(f"wandb: project {run.project}, group {run.group}, run files in {folder}/wandb"
                         + (f" (offline; upload: wandb sync {folder}/wandb/offline-run-*)" if offline else ""))
    return lines
