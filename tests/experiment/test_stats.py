"""Statistics over seeds: t intervals, the paired test against scipy and a textbook example, Holm, the bootstrap."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats as sps

from simrl.evaluation import edge_cases
from simrl.experiment import report, report_compare, report_md, report_plots, report_text, stats
from simrl.experiment.stats import (
    Interval,
    diff_ci,
    holm,
    mean_ci,
    paired_test,
    stratified_bootstrap,
    welch_test,
)

# Student's sleep data (Cushny & Peebles, 1905; "Student", Biometrika 1908): extra hours of sleep of 10
# patients under two drugs. The paired t test as printed in R's `t.test(extra ~ group, data = sleep,
# paired = TRUE)`: mean difference -1.58, t = -4.0621, df = 9, p = 0.002833, 95% CI [-2.4598858, -0.7001142].
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.mark.parametrize("module", [stats, edge_cases, report, report_compare, report_md, report_text, report_plots])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_paired_test_on_the_sleep_data():
    t = paired_test(DRUG1, DRUG2)
    assert t.paired and t.interval.n == 10 and t.interval.df == 9
    assert t.interval.mean == pytest.approx(-1.58)
    assert t.statistic == pytest.approx(-4.0621, abs=1e-4) and t.p == pytest.approx(0.002833, abs=1e-6)
    assert (t.interval.low, t.interval.high) == pytest.approx((-2.4598858, -0.7001142), abs=1e-7)
    assert t.interval.excludes(0.0)


def test_paired_test_matches_scipy_on_fixed_numbers():
    a = [0.62, 0.55, 0.71, 0.60, 0.58, 0.66, 0.69]  # 7 seeds of two arms' success
    b = [0.57, 0.56, 0.62, 0.61, 0.50, 0.60, 0.64]
    got, ref = paired_test(a, b, level=0.9), sps.ttest_rel(a, b)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-12) and got.statistic == pytest.approx(ref.statistic)
    ci = ref.confidence_interval(confidence_level=0.9)
    assert (got.interval.low, got.interval.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    d = np.subtract(a, b)  # the interval by hand: mean +- t.ppf(0.95, 6) * s / sqrt(7)
    half = sps.t.ppf(0.95, 6) * d.std(ddof=1) / math.sqrt(7)
    assert got.interval.half_width == pytest.approx(half) and got.interval.mean == pytest.approx(d.mean())
    flat = paired_test([0.5, 0.6, 0.7], [0.3, 0.4, 0.5])  # no spread: t infinite, p 0, the point
    assert flat.p == 0.0 and flat.interval.low == flat.interval.high == pytest.approx(0.2)
    assert paired_test([0.5, 0.6], [0.5, 0.6]).p == 1.0 and paired_test([0.5], [0.2]).p is None


def test_mean_and_welch_intervals():
    ci = mean_ci([1, 2, 3])  # mean 2, s = 1, t(0.975, 2) = 4.3027 -> half-width 4.3027 / sqrt(3) = 2.4841
    assert tuple(ci) == pytest.approx((2.0, 2.0 - 2.484138, 2.0 + 2.484138)) and ci.df == 2
    ref = sps.t.interval(0.9, 3, loc=0.5, scale=sps.sem([0.2, 0.4, 0.6, 0.8]))
    assert (mean_ci([0.2, 0.4, 0.6, 0.8], 0.9).low, mean_ci([0.2, 0.4, 0.6, 0.8], 0.9).high) == pytest.approx(ref)
    assert mean_ci([0.7]).degenerate and tuple(mean_ci([0.7])) == (0.7, 0.7, 0.7)
    w, ref = welch_test([1, 2, 3, 4], [0, 0, 6]), sps.ttest_ind([1, 2, 3, 4], [0, 0, 6], equal_var=False)
    assert not w.paired and w.p == pytest.approx(ref.pvalue) and w.interval.df == pytest.approx(ref.df)
    ci = ref.confidence_interval(0.95)
    assert (w.interval.low, w.interval.high) == pytest.approx((ci.low, ci.high))
    assert diff_ci([0.5], [0.2, 0.3], paired=False).degenerate
    assert diff_ci([0.6, 0.7, 0.65], [0.3, 0.35, 0.4]).mean == pytest.approx(0.3)


def test_intervals_are_the_textbook_t_intervals_on_random_seeds():
    """scipy's confidence_interval gives the numbers of x̄ ± t_{1-α/2, df} · se computed by hand (the formula
    stats.py used before it called scipy) to within a few ulps, at every seed count and level."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 7, 10):
        for level in (0.9, 0.95, 0.99):
            a, b = rng.integers(0, 11, n) / 10.0, rng.random(n)
            q = sps.t.ppf(0.5 + level / 2.0, n - 1)
            for got, x in ((mean_ci(a, level), a), (paired_test(a, b, level).interval, a - b)):
                half = q * x.std(ddof=1) / math.sqrt(n)
                assert (got.low, got.high) == pytest.approx((x.mean() - half, x.mean() + half), rel=0, abs=1e-13)
            se2 = a.var(ddof=1) / n + b.var(ddof=1) / n
            w = welch_test(a, b, level).interval
            half = sps.t.ppf(0.5 + level / 2.0, w.df) * math.sqrt(se2)
            d = a.mean() - b.mean()
            assert (w.low, w.high) == pytest.approx((d - half, d + half), rel=0, abs=1e-13)


def test_holm_textbook_examples():
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") -> 0.05 0.08 0.09 0.09 0.09
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    # Holm-Bonferroni with four hypotheses at alpha 0.05: only the two smallest are rejected
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert holm([0.9, None, 0.5]) == [pytest.approx(1.0), None, pytest.approx(1.0)] and holm([]) == []


def test_stratified_bootstrap_is_reproducible_and_covers_the_paired_mean():
    rng = np.random.default_rng(7)
    diffs = rng.choice([-1.0, 0.0, 0.0, 1.0], size=(7, 60)) * 0.5 + 0.1  # 7 seeds x 60 tasks
    one, two = stratified_bootstrap(diffs, seed=3, reps=2000), stratified_bootstrap(diffs, seed=3, reps=2000)
    assert one == two and one.mean == pytest.approx(diffs.mean())
    assert one.low < diffs.mean() < one.high and (one.runs, one.tasks, one.reps) == (7, 60, 2000)
    other = stratified_bootstrap(diffs, seed=4, reps=2000)
    assert (other.low, other.high) != (one.low, one.high)
    assert other.low == pytest.approx(one.low, abs=0.02)  # a different seed, about the same interval
    # stratified by task: seeds are resampled within each task, so with no seed-to-seed variation at any
    # task there is nothing to resample (a pooled bootstrap over all cells would give a wide interval)
    same = np.tile(rng.random(40), (5, 1))
    flat = stratified_bootstrap(same, reps=500)
    assert flat.low == pytest.approx(flat.high) == pytest.approx(same.mean())
    narrow = stratified_bootstrap(diffs, level=0.5, seed=3, reps=2000)
    assert one.low < narrow.low < narrow.high < one.high
    with pytest.raises(ValueError, match="matrix"):
        stratified_bootstrap([1.0, 2.0])
    with pytest.raises(ValueError, match="reps"):
        stratified_bootstrap(diffs, reps=10)


def test_bad_input():
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0])


def test_interval_overlap_and_exclusion():
    assert Interval(0.5, 0.4, 0.6, 3).overlaps(Interval(0.65, 0.6, 0.7, 3))
    assert not Interval(0.5, 0.4, 0.59, 3).overlaps(Interval(0.65, 0.6, 0.7, 3))
    assert Interval(0.1, 0.05, 0.2, 3, df=2).excludes(0.0) and not Interval(0.1, -0.05, 0.2, 3, df=2).excludes(0.0)
    assert not Interval(0.1, 0.1, 0.1, 1).excludes(0.0)  # a single run: no interval to exclude anything
