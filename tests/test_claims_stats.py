"""The claims' statistics (benchmarks/claims/stats.py): one-sided t bounds, the three-way
verdict and the minimum detectable effect, against hand-worked cases with t quantiles from a
printed t table (3 decimals)."""
import math

import pytest

from benchmarks.claims import stats

# printed t table (one-sided upper-tail quantiles)
T95 = {2: 2.920, 3: 2.353, 4: 2.132}
T80 = {4: 0.941}


def test_t_quantiles_match_the_table():
    for df, q in T95.items():
        assert stats.t_quantile(0.95, df) == pytest.approx(q, abs=1e-3)
    assert stats.t_quantile(0.80, 4) == pytest.approx(T80[4], abs=1e-3)


def test_bounds_of_a_hand_worked_case():
    # d = 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); half-width t_{0.95,2} / sqrt(3)
    s = stats.paired_summary([1.0, 2.0, 3.0], sesoi=3.0)
    half = T95[2] / math.sqrt(3)
    assert s["mean"] == pytest.approx(2.0) and s["sd"] == pytest.approx(1.0)
    assert s["lower"] == pytest.approx(2.0 - half, abs=1e-3)
    assert s["upper"] == pytest.approx(2.0 + half, abs=1e-3)
    assert s["verdict"] == stats.HOLDS  # lower 0.31 > 0, upper 3.69 >= 3


def test_three_way_verdicts_on_constructed_differences():
    # positive and tightly below the paper's gain: holds, and smaller than claimed
    assert stats.paired_summary([1.0, 2.0, 3.0], sesoi=4.0)["verdict"] == f"{stats.HOLDS} ({stats.SMALLER})"
    # d = -1, 0, 1, 2: mean 0.5, sd sqrt(5/3), bounds 0.5 -+ 2.353 sd / 2 = [-1.02, 2.02]
    d = [-1.0, 0.0, 1.0, 2.0]
    s = stats.paired_summary(d, sesoi=3.8)
    half = T95[3] * math.sqrt(5.0 / 3.0) / 2.0
    assert s["lower"] == pytest.approx(0.5 - half, abs=1e-3) and s["upper"] == pytest.approx(0.5 + half, abs=1e-3)
    assert s["verdict"] == stats.SMALLER  # upper 2.02 < 3.8, lower < 0
    assert stats.paired_summary(d, sesoi=1.0)["verdict"] == stats.INCONCLUSIVE  # 1.0 inside the interval
    assert stats.paired_summary(d, sesoi=None)["verdict"] == stats.INCONCLUSIVE  # no size claimed
    # a large mean with one negative seed can still hold (the old "> 0 in every seed" could not)
    # (mean 4.8, sd 3.05, lower bound 4.8 - 2.132 x 3.05 / sqrt(5) = 1.89 > 0)
    assert stats.paired_summary([5.0, 6.0, 7.0, -0.5, 6.5], sesoi=4.0)["verdict"] == stats.HOLDS
    # and positive in every seed is not enough when the spread is large: 0.1 and 9.9 (lower < 0)
    assert stats.paired_summary([0.1, 9.9], sesoi=1.0)["verdict"] == stats.INCONCLUSIVE
    # one seed: no sd, no bounds, never a verdict other than inconclusive
    one = stats.paired_summary([10.0], sesoi=1.0)
    assert one["verdict"] == stats.INCONCLUSIVE and math.isnan(one["sd"]) and math.isnan(one["mde"])


def test_mde_against_a_hand_computation():
    # sd 2, n 5: (t_{0.95,4} + t_{0.80,4}) * 2 / sqrt(5)
    assert stats.mde(2.0, 5) == pytest.approx((T95[4] + T80[4]) * 2.0 / math.sqrt(5.0), abs=2e-3)
    # the seeds the MDE needs: the first n whose MDE is <= the target, and not the one before
    n = stats.seeds_for_mde(1.9, 1.7)
    assert stats.mde(1.9, n) <= 1.7 < stats.mde(1.9, n - 1)
    assert stats.seeds_for_mde(1.0, 0.001, max_n=10) is None
