"""Wiring helpers: a perturbed environment factory for rollouts, and results split by what each
episode met (``traj.info["perturbation_types"]``, written by :func:`simrl.rollout.finish_trajectory`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl.envs.base import Environment
from simrl.perturb.inject import Mode, PerturbedEnv
from simrl.perturb.schedule import Schedule, load_schedule
from simrl.types import Trajectory


def perturbed_factory(make_env: Callable[[], Environment], schedule: Schedule | str | Path | None, *,
                      progress: float = 0.0, mode: Mode = "inject", seed: int = 0,
                      control_retries: int = 0) -> Callable[[], Environment]:
    """``make_env`` wrapped in :class:`PerturbedEnv` (``schedule`` a Schedule, a YAML path or a shipped
    name); ``make_env`` itself when ``schedule`` is None. ``control_retries``: in control mode, how many
    times a non-compliant world-model prediction is re-sampled before the perturbation is injected.
    Validates everything before returning.

    Raises:
        SpecError: the schedule is missing or invalid.
        SimrlError: progress outside [0, 1] or a bad mode (checked on a first environment).
    """
    if schedule is None:
        return make_env
    sched = schedule if isinstance(schedule, Schedule) else load_schedule(schedule)
    PerturbedEnv.check_options(progress, mode)
    return lambda: PerturbedEnv(make_env(), sched, progress=progress, mode=mode, seed=seed,
                                control_retries=control_retries)


@dataclass(frozen=True)
class Split:
    """Episodes that met one perturbation type (``"none"``: no perturbation at all)."""

    name: str
    episodes: int
    success: float
    mean_turns: float


def split_by_perturbation(trajs: Iterable[Trajectory]) -> list[Split]:
    """Success rate and mean turns per perturbation type met (an episode counts once for each type it met),
    then ``none`` for episodes that met none; types in alphabetical order."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajs:
        for name in t.info.get("perturbation_types") or ["none"]:
            groups.setdefault(name, []).append(t)
    order = sorted(k for k in groups if k != "none") + (["none"] if "none" in groups else [])
    return [Split(k, len(groups[k]), sum(t.status == "success" for t in groups[k]) / len(groups[k]),
                  sum(len(t.turns) for t in groups[k]) / len(groups[k])) for k in order]


def split_table(trajs: Iterable[Trajectory]) -> Any:
    """:func:`split_by_perturbation` as a ``rich`` table (for ``simrl rollout``'s summary)."""
    from rich.table import Table

    table = Table(title="results by perturbation met")
    for col in ("perturbation", "episodes", "success", "mean turns"):
        table.add_column(col, justify="left" if col == "perturbation" else "right")
    for s in split_by_perturbation(trajs):
        table.add_row(s.name, str(s.episodes), f"{s.success:.1%}", f"{s.mean_turns:.1f}")
    return table
