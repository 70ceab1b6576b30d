"""Confidence intervals over seeds: Student's t for a mean, and for a difference of two arms.

An ablation has few seeds (3-5), so intervals use Student's t, not the normal approximation:

* mean:        ``x̄ ± t_{1-α/2, n-1} · s / √n`` (``s`` the sample standard deviation, n-1 denominator);
  NIST/SEMATECH e-Handbook of Statistical Methods, §7.2.2.1 (confidence limits for the mean).
* paired difference (the same seeds in both arms): the interval of the mean of the per-seed
  differences ``d_i = a_i - b_i``; NIST e-Handbook §7.3.1 / any paired-t text.
* unpaired difference (Welch, 1947): ``(ā - b̄) ± t_{1-α/2, ν} · √(s_a²/n_a + s_b²/n_b)`` with the
  Welch–Satterthwaite ``ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``.

The t quantile is computed here (no SciPy): the t CDF through the regularised incomplete beta
function, ``P(T ≤ t) = 1 - ½·I_{ν/(ν+t²)}(ν/2, ½)`` for ``t ≥ 0`` (Abramowitz & Stegun 26.7.1 /
26.5.27), evaluated with the continued fraction of Numerical Recipes §6.4 (modified Lentz), and
inverted by bisection to 1e-10. Non-integer ``ν`` (Welch) works the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Numerical Recipes §6.4, modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 ≤ x ≤ 1``.

    >>> round(betainc(2, 3, 0.4), 6)  # = 1 - (1-x)^4 - 4x(1-x)^3 for integer a=2, b=3 -> 0.5248
    0.5248
    """
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """``P(T ≤ t)`` for Student's t with ``df > 0`` degrees of freedom.

    >>> round(t_cdf(1.0, 1), 6)  # Cauchy: 1/2 + atan(1)/pi = 0.75
    0.75
    """
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`).

    >>> [round(t_quantile(0.975, df), 3) for df in (1, 2, 4, 10, 30)]  # the printed t tables
    [12.706, 4.303, 2.776, 2.228, 2.042]
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    while hi - lo > 1e-10 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


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

    def to_dict(self) -> dict[str, float | int | bool]:
        """JSON-ready ``{mean, low, high, n, level, df, degenerate}``."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "level": self.level,
                "df": self.df, "degenerate": self.degenerate}


def _moments(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample variance with n-1 denominator; 0.0 for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var


def _check(values: Sequence[float], level: float, what: str) -> list[float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{what}: no values (an interval needs at least one)")
    if any(math.isnan(v) for v in out):
        raise ValueError(f"{what}: NaN among the values {out}")
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
    >>> m, round(lo, 4), round(hi, 4)
    (2.0, -0.4841, 4.4841)
    >>> mean_ci([0.5]).degenerate, tuple(mean_ci([0.5]))
    (True, (0.5, 0.5, 0.5))
    """
    vals = _check(values, level, "mean_ci")
    n = len(vals)
    mean, var = _moments(vals)
    if n < 2:
        return Interval(mean, mean, mean, n, level, 0.0)
    half = t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half, n, level, float(n - 1))


def diff_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95, *, paired: bool = True) -> Interval:
    """Confidence interval of ``mean(a) - mean(b)`` (e.g. controlled minus uncontrolled, per seed).

    Args:
        a, b: per-seed scores of the two arms. With ``paired``, ``a[i]`` and ``b[i]`` come from the
            same seed (same length required): the interval is :func:`mean_ci` of the differences.
            Without, Welch's unequal-variance interval with the Welch–Satterthwaite df.
        level: two-sided confidence level.

    Raises:
        ValueError: empty inputs, NaNs, or unequal lengths when paired.

    >>> d = diff_ci([3, 4, 5], [1, 2, 3], paired=True)  # differences all 2: zero spread
    >>> tuple(d), d.n
    ((2.0, 2.0, 2.0), 3)
    >>> w = diff_ci([1, 2, 3], [0, 1, 2], paired=False)  # se = sqrt(1/3 + 1/3); df = 4 -> 2.7764 * 0.8165 = 2.2670
    >>> round(w.mean, 4), round(w.half_width, 4), w.df
    (1.0, 2.267, 4.0)
    """
    va, vb = _check(a, level, "diff_ci (a)"), _check(b, level, "diff_ci (b)")
    if paired:
        if len(va) != len(vb):
            raise ValueError(f"paired differences need equal lengths (one value per seed): {len(va)} vs {len(vb)}")
        return mean_ci([x - y for x, y in zip(va, vb)], level)
    (ma, sa), (mb, sb) = _moments(va), _moments(vb)
    mean, na, nb = ma - mb, len(va), len(vb)
    if na < 2 or nb < 2:
        return Interval(mean, mean, mean, min(na, nb), level, 0.0)
    ea, eb = sa / na, sb / nb
    se2 = ea + eb
    if se2 == 0.0:
        return Interval(mean, mean, mean, min(na, nb), level, float(na + nb - 2))
    df = se2 ** 2 / (ea ** 2 / (na - 1) + eb ** 2 / (nb - 1))
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(se2)
    return Interval(mean, mean - half, mean + half, min(na, nb), level, df)
