"""Student-t intervals over seeds: quantiles against printed tables, hand-computed intervals, doctests."""

from __future__ import annotations

import doctest
import math

import pytest

from simrl.train import evaluate, report, report_md, stats
from simrl.train.stats import Interval, diff_ci, mean_ci, t_cdf, t_quantile

# Two-sided 95% (p = 0.975) and 90% (p = 0.95) quantiles as printed in Student-t tables (NIST e-Handbook 1.3.6.7.2).
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 100: 1.984}
TABLE_95 = {1: 6.314, 2: 2.920, 5: 2.015, 10: 1.812, 30: 1.697}


@pytest.mark.parametrize("module", [stats, evaluate, report, report_md])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_t_quantiles_match_the_printed_tables():
    for df, q in TABLE_975.items():
        assert t_quantile(0.975, df) == pytest.approx(q, abs=6e-4)
    for df, q in TABLE_95.items():
        assert t_quantile(0.95, df) == pytest.approx(q, abs=6e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))
    assert t_cdf(t_quantile(0.9, 2.5), 2.5) == pytest.approx(0.9, abs=1e-9)  # non-integer df (Welch)
    assert 3.182 < t_quantile(0.975, 2.5) < 4.303
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_cdf(1.0, 0)


def test_mean_ci_by_hand():
    ci = mean_ci([1, 2, 3])  # mean 2, s = 1, t(0.975, 2) = 4.3027 -> half-width 4.3027 / sqrt(3) = 2.4841
    mean, low, high = ci
    assert mean == 2.0 and ci.n == 3 and ci.df == 2 and not ci.degenerate
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean - low == pytest.approx(high - mean)
    ci90 = mean_ci([0.2, 0.4, 0.6, 0.8], level=0.9)  # s = 0.2582, t(0.95, 3) = 2.3534
    assert ci90.half_width == pytest.approx(2.353363 * 0.258199 / 2, rel=1e-5)
    one = mean_ci([0.7])
    assert one.degenerate and tuple(one) == (0.7, 0.7, 0.7) and one.to_dict()["degenerate"] is True


def test_differences_by_hand():
    paired = diff_ci([0.6, 0.7, 0.65], [0.3, 0.35, 0.4])  # d = 0.3, 0.35, 0.25: mean 0.3, s 0.05
    assert paired.mean == pytest.approx(0.3) and paired.half_width == pytest.approx(4.302653 * 0.05 / math.sqrt(3))
    welch = diff_ci([1, 2, 3, 4], [0, 0, 6], paired=False)
    se2 = (5 / 3) / 4 + 12 / 3  # s_a^2 = 5/3 (n 4), s_b^2 = 12 (n 3)
    df = se2 ** 2 / (((5 / 3) / 4) ** 2 / 3 + (12 / 3) ** 2 / 2)
    assert welch.df == pytest.approx(df) and welch.mean == pytest.approx(0.5)
    assert welch.half_width == pytest.approx(t_quantile(0.975, df) * math.sqrt(se2))
    assert diff_ci([0.5], [0.2, 0.3], paired=False).degenerate


def test_bad_input():
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="equal lengths"):
        diff_ci([1.0, 2.0], [1.0])


def test_interval_overlap():
    assert Interval(0.5, 0.4, 0.6, 3).overlaps(Interval(0.65, 0.6, 0.7, 3))
    assert not Interval(0.5, 0.4, 0.59, 3).overlaps(Interval(0.65, 0.6, 0.7, 3))
