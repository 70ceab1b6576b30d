"""Statistics of an ablation: t intervals over seeds, paired t tests, Holm's correction, a stratified bootstrap.

An ablation has few seeds (3-10), so intervals use Student's t, not the normal approximation; scipy's
t tests compute them (``TtestResult.confidence_interval``); only the cases scipy answers with NaN (one
value, no spread) are decided here:

* mean (:func:`mean_ci`): ``x̄ ± t_{1-α/2, n-1} · s / √n`` (``s`` the sample standard deviation, n-1
  denominator), ``scipy.stats.ttest_1samp(x, 0).confidence_interval``; NIST/SEMATECH e-Handbook of
  Statistical Methods, §7.2.2.1.
* paired difference (:func:`paired_test`, :func:`diff_ci` with ``paired``): the same seeds in both arms;
  the interval of the mean of the per-seed differences ``d_i = a_i - b_i`` and the two-sided p-value,
  ``scipy.stats.ttest_rel`` (NIST e-Handbook §7.3.1).
* unpaired difference (Welch, 1947): ``scipy.stats.ttest_ind(equal_var=False)`` with the
  Welch–Satterthwaite degrees of freedom.
* many tests at once (:func:`holm`): Holm's step-down adjusted p-values (Holm, 1979, "A simple sequentially
  rejective multiple test procedure", Scand. J. Statist. 6:65-70), which control the family-wise error rate.
* task x seed (:func:`stratified_bootstrap`): the stratified bootstrap of Agarwal et al., "Deep
  Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021 (``StratifiedBootstrap``
  of google-research/rliable, ``rliable/library.py``, with ``task_bootstrap=False``): every task's runs
  (seeds) are resampled with replacement, tasks kept, and the percentile interval of the mean taken.
  Implemented here with numpy because rliable 1.2 pins ``arch<8``, whose 7.x releases fail to import
  under pandas 3, and because rliable draws its indices from numpy's global generator (not seedable per call).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Interval:
    """A mean (or difference) with its two-sided confidence interval.

    Unpacks as ``mean, low, high = interval``. ``degenerate`` is True when there were fewer than two
    values (or zero degrees of freedom): the interval is then the point itself, not a real interval.

    Attributes:
        mean: the estimate. low, high: the interval's ends. n: values (or pairs) it rests on.
        level: confidence level in (0, 1). df: degrees of freedom of the t quantile (0 if degenerate).
    """

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95
    df: float = 0.0

    @property
    def degenerate(self) -> bool:
        """True when the interval is only the point estimate (fewer than two values)."""
        return self.df <= 0

    @property
    def half_width(self) -> float:
        """``(high - low) / 2``."""
        return (self.high - self.low) / 2.0

    def __iter__(self) -> Iterator[float]:
        return iter((self.mean, self.low, self.high))

    def overlaps(self, other: Interval) -> bool:
        """True when the two intervals share at least one point."""
        return self.low <= other.high and other.low <= self.high

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside ``[low, high]`` (never for a degenerate interval)."""
        return not self.degenerate and not self.low <= value <= self.high

    def to_dict(self) -> dict[str, float | int | bool]:
        """JSON-ready ``{mean, low, high, n, level, df, degenerate}``."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "level": self.level,
                "df": self.df, "degenerate": self.degenerate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Interval:
        """An interval written by :meth:`to_dict` (``report.json``'s intervals), read back."""
        return cls(d["mean"], d["low"], d["high"], d["n"], d.get("level", 0.95), d.get("df", 0.0))


def _check(values: Sequence[float], level: float, what: str) -> np.ndarray:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    out = np.asarray([float(v) for v in values], dtype=float)
    if out.size == 0:
        raise ValueError(f"{what}: no values (an interval needs at least one)")
    if np.isnan(out).any():
        raise ValueError(f"{what}: NaN among the values {out.tolist()}")
    return out


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of ``values`` (one per seed) with its Student-t confidence interval.

    Args:
        values: per-seed scores (any unit; the interval is in the same unit).
        level: two-sided confidence level.

    Returns:
        :class:`Interval`; for one value, ``low == high == mean`` and ``degenerate`` is True.

    Raises:
        ValueError: no values, a NaN, or ``level`` outside (0, 1).

    >>> m, lo, hi = mean_ci([1, 2, 3])  # s = 1, t(0.975, 2) = 4.3027 -> half-width 4.3027/sqrt(3) = 2.4841
    >>> float(m), round(lo, 4), round(hi, 4)
    (2.0, -0.4841, 4.4841)
    >>> mean_ci([0.5]).degenerate, tuple(mean_ci([0.5]))
    (True, (0.5, 0.5, 0.5))
    """
    vals = _check(values, level, "mean_ci")
    n, mean = vals.size, float(vals.mean())
    if n < 2 or np.ptp(vals) == 0.0:  # scipy: NaN; the interval is the point
        return Interval(mean, mean, mean, n, level, float(n - 1) if n > 1 else 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note for nearly equal values
        ci = sps.ttest_1samp(vals, 0.0).confidence_interval(level)
    return Interval(mean, float(ci.low), float(ci.high), n, level, float(n - 1))


@dataclass(frozen=True)
class Test:
    """A difference ``a - b`` with its interval and the two-sided p-value of its t test.

    Attributes:
        interval: the :class:`Interval` of the difference. p: two-sided p-value (None when there is no
            test: fewer than two values). statistic: the t statistic (None likewise; ``inf`` for a
            nonzero difference with no spread). paired: True for a paired test, False for Welch's.
    """

    interval: Interval
    p: float | None
    statistic: float | None
    paired: bool


def paired_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Test:
    """The paired t test of ``a - b`` (``a[i]``, ``b[i]`` from seed i): mean difference, interval, p-value.

    The interval is ``d̄ ± t_{1-α/2, n-1} · s_d / √n`` and the p-value two-sided, both from
    ``scipy.stats.ttest_rel(a, b)`` (``confidence_interval(level)``, ``pvalue``). With no spread in the differences the t statistic is
    infinite (p = 0) for a nonzero difference, and undefined for a zero one (reported as p = 1: no
    evidence of any difference).

    Raises:
        ValueError: empty inputs, NaNs, unequal lengths, ``level`` outside (0, 1).

    >>> t = paired_test([0.6, 0.7, 0.65], [0.3, 0.35, 0.4])  # d = 0.3, 0.35, 0.25: s_d = 0.05, t = 10.392
    >>> round(t.interval.mean, 4), round(t.interval.half_width, 4), round(t.p, 4)  # df 2: p = 1 - t/sqrt(2+t^2)
    (0.3, 0.1242, 0.0091)
    """
    va, vb = _check(a, level, "paired_test (a)"), _check(b, level, "paired_test (b)")
    if va.size != vb.size:
        raise ValueError(f"paired differences need equal lengths (one value per seed): {va.size} vs {vb.size}")
    d = va - vb
    n, mean = d.size, float(d.mean())
    if n < 2:
        return Test(Interval(mean, mean, mean, n, level, 0.0), None, None, True)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        point = Interval(mean, mean, mean, n, level, float(n - 1))
        return Test(point, 0.0 if mean else 1.0, math.copysign(math.inf, mean) if mean else None, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note for nearly equal values
        res = sps.ttest_rel(va, vb)
        ci = res.confidence_interval(level)
    return Test(Interval(mean, float(ci.low), float(ci.high), n, level, float(n - 1)), float(res.pvalue),
                float(res.statistic), True)


def welch_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Test:
    """Welch's unequal-variance t test of ``mean(a) - mean(b)`` (``scipy.stats.ttest_ind(equal_var=False)``).

    The interval is ``(ā - b̄) ± t_{1-α/2, ν} · √(s_a²/n_a + s_b²/n_b)`` with the Welch–Satterthwaite ``ν``.
    Degenerate (the point, no p-value) when a side has one value or both have no spread.

    Raises:
        ValueError: empty inputs, NaNs, ``level`` outside (0, 1).
    """
    va, vb = _check(a, level, "welch_test (a)"), _check(b, level, "welch_test (b)")
    mean, n = float(va.mean() - vb.mean()), min(va.size, vb.size)
    if va.size < 2 or vb.size < 2:
        return Test(Interval(mean, mean, mean, n, level, 0.0), None, None, False)
    se2 = float(va.var(ddof=1)) / va.size + float(vb.var(ddof=1)) / vb.size
    if se2 == 0.0:
        return Test(Interval(mean, mean, mean, n, level, float(va.size + vb.size - 2)), None, None, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note for nearly equal values
        res = sps.ttest_ind(va, vb, equal_var=False)
        ci = res.confidence_interval(level)
    return Test(Interval(mean, float(ci.low), float(ci.high), n, level, float(res.df)), float(res.pvalue),
                float(res.statistic), False)


def diff_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95, *, paired: bool = True) -> Interval:
    """Confidence interval of ``mean(a) - mean(b)``: :func:`paired_test`'s or :func:`welch_test`'s interval.

    Raises:
        ValueError: empty inputs, NaNs, or unequal lengths when paired.

    >>> d = diff_ci([3, 4, 5], [1, 2, 3], paired=True)  # differences all 2: zero spread
    >>> tuple(d), d.n
    ((2.0, 2.0, 2.0), 3)
    >>> w = diff_ci([1, 2, 3], [0, 1, 2], paired=False)  # se = sqrt(1/3 + 1/3); df = 4 -> 2.7764 * 0.8165 = 2.2670
    >>> round(w.mean, 4), round(w.half_width, 4), w.df
    (1.0, 2.267, 4.0)
    """
    return (paired_test(a, b, level) if paired else welch_test(a, b, level)).interval


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm, 1979), in the input order; None stays None (no test).

    With the m p-values sorted ascending, ``p'_(i) = max_{j ≤ i} min(1, (m - j + 1) · p_(j))``; rejecting
    every hypothesis whose adjusted p is below α controls the family-wise error rate at α.

    >>> holm([0.01, 0.04, 0.03, 0.005])  # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running max
    [0.03, 0.06, 0.06, 0.02]
    >>> holm([0.2, None])
    [0.2, None]
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m, out, running = len(tested), list(pvalues), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 15)
    return out


@dataclass(frozen=True)
class Bootstrap:
    """A stratified-bootstrap percentile interval of a mean over a runs x tasks matrix.

    Attributes:
        mean: the mean of the matrix. low, high: the percentile interval. level: its confidence level.
        runs, tasks: the matrix's shape. reps: bootstrap replicates. seed: the generator's seed.
    """

    mean: float
    low: float
    high: float
    level: float
    runs: int
    tasks: int
    reps: int
    seed: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready fields."""
        return asdict(self)


def stratified_bootstrap(scores: np.ndarray | Sequence[Sequence[float]], level: float = 0.95, *,
                         reps: int = 10_000, seed: int = 0, chunk: int = 500) -> Bootstrap:
    """Percentile interval of the mean of a ``(runs, tasks)`` matrix, resampling runs within each task.

    Every replicate draws, independently for each task (column), ``runs`` row indices with replacement and
    takes the mean of the resampled matrix (Agarwal et al., NeurIPS 2021; rliable's ``StratifiedBootstrap``).
    For a paired comparison pass the per-(seed, task) differences ``a - b``: each seed's pair stays together.

    Args:
        scores: ``(runs, tasks)`` values, e.g. per seed and task the difference of two arms' success.
        level: two-sided level of the percentile interval.
        reps: bootstrap replicates (at least 100). seed: seed of ``numpy.random.default_rng`` (the same
            seed gives the same interval). chunk: replicates drawn at once (memory: chunk x runs x tasks).

    Raises:
        ValueError: not a 2-D matrix, an empty one, NaNs, ``reps < 100``, ``level`` outside (0, 1).
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"stratified_bootstrap needs a non-empty (runs, tasks) matrix, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("stratified_bootstrap: NaN among the scores")
    if reps < 100 or not 0.0 < level < 1.0:
        raise ValueError(f"need reps >= 100 and level in (0, 1), got reps={reps}, level={level}")
    rng, (runs, tasks) = np.random.default_rng(seed), x.shape
    cols, stats_ = np.arange(tasks), np.empty(reps)
    for start in range(0, reps, chunk):
        k = min(chunk, reps - start)
        rows = rng.integers(0, runs, size=(k, runs, tasks))
        stats_[start:start + k] = x[rows, cols].mean(axis=(1, 2))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats_, [alpha, 1.0 - alpha])
    return Bootstrap(float(x.mean()), float(low), float(high), level, runs, tasks, reps, seed)
