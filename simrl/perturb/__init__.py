"""Perturbations of tool results: a typed taxonomy, schedules with curricula, and the inject wrapper.

- :mod:`simrl.perturb.taxonomy`: :class:`PerturbationType`, :class:`Recovery`, the
  :class:`Perturbation` base (one hook, ``apply``; ``control_instruction`` / ``complies`` for
  control mode) and :func:`perturbation_class`.
- :mod:`simrl.perturb.schedule`: :class:`Schedule` (YAML in ``recipes/schedules/``), curricula,
  :func:`load_schedule`.
- :mod:`simrl.perturb.inject`: :class:`PerturbedEnv`, the wrapper that applies a schedule to any
  environment.
- :mod:`simrl.perturb.preview`: expected rates over training (``simrl perturb preview``).
- :mod:`simrl.perturb.summary`: :func:`perturbed_factory` for rollouts, results split by perturbation met.
"""

from simrl.perturb.inject import OUTCOMES, PerturbedEnv, compliance_rates, render
from simrl.perturb.schedule import Entry, Schedule, load_schedule, parse_schedule, rate
from simrl.perturb.summary import Split, perturbed_factory, split_by_perturbation, split_table
from simrl.perturb.taxonomy import (
    EpisodeState,
    Perturbation,
    PerturbationType,
    PerturbContext,
    Recovery,
    all_classes,
    perturbation_class,
)

__all__ = ["OUTCOMES", "compliance_rates", "Entry", "EpisodeState", "Perturbation", "PerturbationType", "PerturbContext", "PerturbedEnv",
           "Recovery", "Schedule", "all_classes", "load_schedule", "parse_schedule", "perturbation_class",
           "Split", "rate", "render", "perturbed_factory", "split_by_perturbation", "split_table"]
