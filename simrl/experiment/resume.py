"""Whether a run folder may go on under a recipe: a run never changes silently.

A run folder's ``recipe.yaml`` is the recipe it was started with. Resuming it (``simrl train``, the
default; ``simrl ablate``'s runs) under a recipe that differs in a field that decides the run — its
world, environment, arm, policy, trainer, budget, warm start or evaluation — is refused with one line
naming the differing fields (:func:`check_resume`); ``simrl train --dry-run`` says the same before
anything runs. Fields that do not change what a run computes are not compared: :data:`IGNORED`, and the
other arms of the recipe (a run trains one arm; adding an arm leaves the others' runs as they are).

The one deliberate change is a longer run: ``--extend`` continues a run under a recipe whose only
difference is a larger ``budget.steps`` (:func:`extend_run`: the stale summary, final policy and
evaluation go; the old recipe is kept as ``recipe.steps-<N>.yaml``). Anything else is a new run in
another ``--out``.
"""

from __future__ import annotations

import shutil
from typing import Any

import yaml

from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import Recipe, parse_recipe, recipe_yaml

IGNORED = ("name", "description", "logging", "seeds", "primary", "baselines")
"""Recipe fields a run's results do not depend on (its own seed is its folder's): never compared."""
REPORT_ONLY = ("fidelity",)
"""Arm fields that change what the report shows, not what the run does: never a reason to refuse a resume."""
EXTENDABLE = "budget.steps"
"""The one field ``--extend`` may change (upwards)."""


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves).

    >>> flatten({"budget": {"steps": 2, "batch": 4}, "seeds": [0]})
    {'budget.steps': 2, 'budget.batch': 4, 'seeds': [0]}
    """
    if not isinstance(data, dict) or not data:
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def without_report_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped recipe without the arm fields that only feed the report (:data:`REPORT_ONLY`)."""
    arms = data.get("arms")
    if not isinstance(arms, dict):
        return data
    return data | {"arms": {n: {k: v for k, v in a.items() if k not in REPORT_ONLY} if isinstance(a, dict) else a
                            for n, a in arms.items()}}


def _design(data: dict[str, Any], arm: str | None) -> dict[str, Any]:
    """The fields of a dumped recipe that decide the run of ``arm`` (None: every arm), flattened."""
    kept = {k: v for k, v in without_report_fields(data).items() if k not in IGNORED}
    if arm is not None:
        arms = {n: {k: v for k, v in a.items() if k not in REPORT_ONLY} if isinstance(a, dict) else a
                for n, a in _all_arms(data).items()}
        kept = {k: v for k, v in kept.items() if k not in ("arms", "grid")} | {"arm": arms.get(arm)}
    return flatten(kept)


def _all_arms(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped recipe's arms, grid arms included (:meth:`Recipe.all_arms` on the raw mapping)."""
    try:
        return {n: a.model_dump(mode="json") for n, a in parse_recipe(data).all_arms().items()}
    except SimrlError:  # written by another simrl version: the arms as they are
        return dict(data.get("arms") or {})


def changed_fields(old_yaml: str, recipe: Recipe, arm: str | None = None) -> list[str]:
    """``["budget.steps: 24 -> 30", ...]``: the fields of the run of ``arm`` that ``recipe`` changes
    relative to ``old_yaml`` (a run's ``recipe.yaml``), in the recipe's order; empty when none."""
    old = yaml.safe_load(old_yaml)
    if not isinstance(old, dict):
        return ["recipe.yaml: not a recipe"]
    try:  # written by an older simrl: fields added since then count with their defaults
        old = parse_recipe(old).model_dump(mode="json")
    except SimrlError:
        pass
    a, b = _design(old, arm), _design(recipe.model_dump(mode="json"), arm)
    return [f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}" for k in dict.fromkeys([*b, *a]) if a.get(k) != b.get(k)]


def _short(value: Any) -> str:
    text = "(none)" if value is None else yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume(files: runs.RunFiles, recipe: Recipe, arm: str | None = None, *, extend: bool = False,
                 started: bool | None = None) -> list[str]:
    """Refuse to go on with a started run under a recipe that changes it; returns the changes ``--extend``
    accepts (empty: nothing changes, or a new run).

    Args:
        files: the run folder.
        recipe: the recipe it is to go on with.
        arm: the run's arm (None: every arm is compared).
        extend: accept a larger ``budget.steps`` (the only change accepted).
        started: whether the folder holds a run (default :meth:`~simrl.experiment.runs.RunFiles.started`;
            a trainer with checkpoints of its own says so itself).

    Raises:
        SimrlError: one line: the run folder, its differing fields, and how to start a new run (another
            ``--out``) or, when only ``budget.steps`` grew, to extend it (``--extend``).
    """
    if not files.recipe.is_file() or not (files.started() if started is None else started):
        return []
    changes = changed_fields(files.recipe.read_text(encoding="utf-8"), recipe, arm)
    if not changes:
        return []
    longer = _longer_only(changes, files.recipe.read_text(encoding="utf-8"), recipe)
    if extend and longer:
        return changes
    shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
    how = ("pass --extend to continue it to the new budget.steps, or choose another --out for a new run"
           if longer else "choose another --out for a new run (--extend only continues a run to more budget.steps)")
    raise SimrlError(f"{files.root} was started with another recipe ({shown}); {how}")


def _longer_only(changes: list[str], old_yaml: str, recipe: Recipe) -> bool:
    """Whether the only change is a larger ``budget.steps``."""
    if [c.split(":", 1)[0] for c in changes] != [EXTENDABLE]:
        return False
    old = yaml.safe_load(old_yaml).get("budget", {}).get("steps")
    return isinstance(old, int) and recipe.budget.steps > old


def extend_run(files: runs.RunFiles, recipe: Recipe) -> None:
    """Make a finished or started run continue under ``recipe`` (its ``budget.steps`` larger): the old
    recipe is kept as ``recipe.steps-<N>.yaml``; ``summary.json``, ``final.pt`` and ``eval/`` (results
    of the shorter run) are removed; the new ``recipe.yaml`` is written. The trainer then resumes from
    the latest checkpoint."""
    old = yaml.safe_load(files.recipe.read_text(encoding="utf-8"))
    steps = old.get("budget", {}).get("steps", "old") if isinstance(old, dict) else "old"
    runs.write_atomic(files.root / f"recipe.steps-{steps}.yaml", files.recipe.read_bytes())
    for path in (files.summary, files.final):
        path.unlink(missing_ok=True)
    shutil.rmtree(files.root / "eval", ignore_errors=True)
    runs.write_atomic(files.recipe, recipe_yaml(recipe))
