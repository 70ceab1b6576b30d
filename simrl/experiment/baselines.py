"""Baselines: policies evaluated beside the trained arms, on the same tasks and episodes (``recipe.baselines``).

:data:`BASELINES` is the one registry of their names, in report order (the default of ``recipe.baselines``).
A baseline makes its policy from the run's trainer kind (its ``load_policy`` hook,
:class:`simrl.experiment.recipe_training.TrainerKind`) and, when it names one, a file a run wrote
(``needs``): it is evaluated per seed by :func:`simrl.experiment.heldout.evaluate_baseline`, and skipped by
``simrl ablate`` for a seed none of whose runs wrote that file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simrl.rollout import Policy

Loader = Callable[[Path | None, int], Policy]
"""``(checkpoint, seed) -> policy``: the trainer kind's ``load_policy`` hook bound to the recipe (checkpoint
None: the untrained policy a run of ``seed`` starts from)."""


def _candidates(load: Loader, seed: int, file: Path | None) -> Policy:
    from simrl.policies.scorer import RandomCandidatePolicy

    return RandomCandidatePolicy(seed=seed)


@dataclass(frozen=True)
class Baseline:
    """One baseline: what it is, how its policy is made, and the run file it needs.

    Attributes:
        description: one line (the recipe field's help, the report).
        policy: ``(load, seed, file) -> Policy``; ``file`` is the run file named by ``needs`` (else None).
        needs: a file inside a run folder the policy is loaded from (``warmstart.pt``), or None.
    """

    description: str
    policy: Callable[[Loader, int, Path | None], Policy]
    needs: str | None = None


BASELINES: dict[str, Baseline] = {
    "candidates": Baseline("a uniform random choice among the candidate actions of each turn "
                           "(RandomCandidatePolicy, seeded by the seed): the floor a trained policy must beat",
                           _candidates),
    "warmstart": Baseline("the behaviour-cloned policy a run starts from (its warmstart.pt)",
                          lambda load, seed, file: load(file, seed), needs="warmstart.pt"),
    "untrained": Baseline("the trainer's initial policy of the seed, before any warm start",
                          lambda load, seed, file: load(None, seed)),
}
"""Baseline name -> :class:`Baseline`, in report order."""
