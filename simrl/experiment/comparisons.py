"""The comparisons of an ablation as typed results: which pairs, the primary chosen once, one object per test.

* :func:`primary` chooses the primary comparison once (the recipe's ``primary``, else the default
  :data:`DEFAULT_PRIMARY`): a :class:`PrimaryChoice`. :func:`comparisons` lists every pair reported.
* :class:`Difference` is the result of one test of ``a - b`` over seeds (:func:`simrl.experiment.report_compare.difference`
  computes it): the primary's, each secondary one (``a``, ``b``, ``same_tasks``, ``p_holm`` set) and each test of
  the positive control (``arm`` set). :class:`PrimaryResult` and :class:`PositiveControlResult` hold them.

They are computed in :mod:`simrl.experiment.report_compare`, written into ``report.json`` as they dump
(:meth:`Difference.model_dump` writes only the identifying fields that were given) and read back from it by
``report.md`` (:mod:`simrl.experiment.report_md`) with ``model_validate``: one shape from the statistics to the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from simrl.experiment.recipe import Recipe
from simrl.experiment.stats import Bootstrap, Interval

DEFAULT_PRIMARY = ("controlled minus uncontrolled world model, else world model minus real, else an arm minus a "
                   "baseline")
"""The default primary comparison in words (:func:`primary`; ``report.md`` says it when it was not declared)."""
_OPTIONAL = ("a", "b", "arm", "same_tasks", "p_holm")


class Difference(BaseModel):
    """One test of ``a - b`` over seeds, on ``metric`` overall (``subset`` ``overall``) or success within a subset.

    Paired over the shared ``seeds`` when at least two are shared (``scipy.stats.ttest_rel``), else Welch
    (``seeds`` empty); the interval is clipped to the metric's range (``clipped``).

    Attributes:
        a, b: the pair (secondary tests); arm: the arm (positive-control tests, against the control's baseline).
        subset, metric: what is compared. seeds: the shared seeds of a paired test.
        mean, low, high, n, level, df, degenerate: the difference and its interval
            (:class:`~simrl.experiment.stats.Interval`). p, t: the two-sided p-value and the t statistic (None: no
            test, or ``t`` infinite). paired: paired or Welch. clipped: the interval was clipped.
        same_tasks: subset tests of the secondary family: the subset held as many tasks on both sides at each seed.
        p_holm: secondary tests: the Holm-adjusted p-value over the family.
    """

    a: str | None = None
    b: str | None = None
    arm: str | None = None
    subset: str
    metric: str
    seeds: list[int]
    mean: float
    low: float
    high: float
    n: int
    level: float
    df: float
    degenerate: bool
    p: float | None
    t: float | None
    paired: bool
    clipped: bool
    same_tasks: bool | None = None
    p_holm: float | None = None

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The identifying and family fields only when given (the primary's test has none of them)."""
        return {k: v for k, v in handler(self).items() if k not in _OPTIONAL or k in self.model_fields_set}

    @property
    def interval(self) -> Interval:
        """The difference's :class:`~simrl.experiment.stats.Interval`."""
        return Interval(self.mean, self.low, self.high, self.n, self.level, self.df)

    def excludes_zero(self) -> bool:
        """True when the interval is a real interval and 0 lies outside it (:meth:`Interval.excludes`)."""
        return self.interval.excludes(0.0)


class PrimaryChoice(BaseModel):
    """The primary comparison ``a - b`` on ``metric``; ``declared``: the recipe's own (else the default)."""

    a: str
    b: str
    metric: str = "success"
    declared: bool = False


class PrimaryResult(PrimaryChoice):
    """The primary comparison's result (``report.json``'s ``primary``).

    Attributes:
        test: the paired test overall (None when a side has no result). bootstrap: the task x seed stratified
            bootstrap of the paired per-task differences (None when not computed). why_not: why either is missing.
    """

    test: Difference | None = None
    bootstrap: Bootstrap | None = None
    why_not: str = ""


class SubsetControl(BaseModel):
    """One subset of the positive control: each arm's test against the baseline; ``learned_by``: the arms above 0
    whose training met the subset's situation; ``not_met``: arms above 0 whose training never met it (a gain in
    general competence on those tasks, not the skill: they do not pass the control)."""

    tests: list[Difference]
    learned_by: list[str]
    not_met: list[str] = []


class PositiveControlResult(BaseModel):
    """The positive control's result (``report.json``'s ``positive_control``): ``passed`` when every subset was
    learned by some arm (an interval above 0 against ``baseline``)."""

    baseline: str
    subsets: dict[str, SubsetControl]
    passed: bool


def arm_pairs(recipe: Recipe) -> list[tuple[str, str]]:
    """Controlled minus uncontrolled world-model arms, then each world-model arm minus each real arm."""
    arms = recipe.all_arms()
    controlled = [n for n, a in arms.items() if a.environment == "world_model" and a.schedule]
    uncontrolled = [n for n, a in arms.items() if a.environment == "world_model" and not a.schedule]
    real = [n for n, a in arms.items() if a.environment == "real"]
    return [(c, u) for c in controlled for u in uncontrolled] + \
        [(s, r) for s in controlled + uncontrolled for r in real]


def primary(recipe: Recipe, baselines: Sequence[str] = ()) -> PrimaryChoice:
    """The primary comparison, chosen once: the recipe's ``primary`` (``declared``), else the default
    (:data:`DEFAULT_PRIMARY`): the first controlled world-model arm minus the first uncontrolled one, else a
    world-model arm minus the real arm, else the first arm minus the first of the recipe's ``baselines`` present
    in ``baselines`` (``untrained`` when none is), on success.
    """
    if recipe.primary is not None:
        return PrimaryChoice(**recipe.primary.model_dump(), declared=True)
    pairs = arm_pairs(recipe)
    if not pairs:
        base = [b for b in recipe.baselines if b in baselines] or ["untrained"]
        pairs = [(next(iter(recipe.all_arms())), base[0])]
    return PrimaryChoice(a=pairs[0][0], b=pairs[0][1])


def comparisons(recipe: Recipe, baselines: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs reported as ``a - b``: the primary first, then controlled minus uncontrolled, each world-model
    arm minus the real arm, then each arm minus each of the recipe's ``baselines`` present in ``baselines``
    (in the recipe's order). All but the primary are secondary (Holm-corrected in the report)."""
    base = [b for b in recipe.baselines if b in baselines]
    p = primary(recipe, baselines)
    return list(dict.fromkeys([(p.a, p.b), *arm_pairs(recipe), *((a, b) for a in recipe.all_arms() for b in base)]))
