"""The statistics of paired runs, power and several metrics (remote_run.stats), against scipy."""

import math
import random

import pytest
from scipy import stats as scipy_stats

from remote_run import stats


@pytest.mark.parametrize("q,df", [(0.975, 1), (0.975, 4), (0.8, 4), (0.995, 9), (0.025, 2), (0.6, 30), (0.9, 200)])
def test_t_quantile_matches_scipy(q, df):
    assert stats.t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9, abs=1e-9)


def test_the_paired_t_test_and_its_interval_match_scipy():
    rng = random.Random(7)
    for n in (2, 3, 5, 10, 30):
        a = [rng.gauss(10, 1) for _ in range(n)]
        b = [x + rng.gauss(0.3, 0.5) for x in a]
        ours, theirs = stats.paired(a, b), scipy_stats.ttest_rel(b, a)
        assert ours.t == pytest.approx(theirs.statistic, rel=1e-9)
        assert ours.p == pytest.approx(theirs.pvalue, rel=1e-7, abs=1e-12)
        low, high = theirs.confidence_interval(0.95)
        assert (ours.low, ours.high) == (pytest.approx(low, rel=1e-8), pytest.approx(high, rel=1e-8))


def test_paired_needs_two_pairs_and_handles_no_spread():
    assert stats.paired([1.0], [2.0]) is None
    same = stats.paired([1.0, 2.0], [1.5, 2.5])
    assert (same.p, same.low, same.high) == (0.0, 0.5, 0.5)
    assert stats.paired([1.0, 2.0], [1.0, 2.0]).p == 1.0


def test_the_signed_rank_test_matches_scipy_exact_and_with_ties():
    rng = random.Random(3)
    for n in (3, 6, 12, 25):
        diffs = [rng.gauss(0.2, 1) for _ in range(n)]
        assert stats.signed_rank_p(diffs) == pytest.approx(
            scipy_stats.wilcoxon(diffs, method="exact").pvalue, rel=1e-9)
    tied = [1.0, -1.0, 2.0, 2.0, 3.0, -0.5, 4.0, 2.0, 0.0, 5.0, -3.0, 1.0]
    assert stats.signed_rank_p(tied) == pytest.approx(
        scipy_stats.wilcoxon(tied, zero_method="wilcox", method="approx", correction=False).pvalue, rel=1e-9)
    many = [rng.gauss(0.1, 1) for _ in range(40)]
    assert stats.signed_rank_p(many) == pytest.approx(
        scipy_stats.wilcoxon(many, method="approx", correction=False).pvalue, rel=1e-9)
    assert stats.signed_rank_p([0.0, 0.0]) is None


def test_holm_holds_the_family_and_rejects_in_order():
    assert stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": True, "c": False, "b": False}  # 0.03 > 0.05/2
    assert stats.holm({"a": 0.01, "b": 0.02, "c": 0.04}) == {"a": True, "b": True, "c": True}
    assert stats.holm({"a": 0.2}) == {"a": False}


def test_the_detectable_effect_is_the_power_formula_and_pairs_needed_reach_it():
    error, df = 0.5 / math.sqrt(5), 4
    expected = (scipy_stats.t.ppf(0.975, df) + scipy_stats.t.ppf(0.8, df)) * error
    assert stats.detectable(error, df) == pytest.approx(expected, rel=1e-9)
    n = stats.pairs_needed(0.5, 0.3)
    assert stats.detectable(0.5 / math.sqrt(n), n - 1) <= 0.3 < stats.detectable(0.5 / math.sqrt(n - 1), n - 2)
    assert stats.pairs_needed(0.5, 0.0) is None and stats.pairs_needed(0.0, 0.1) == 2


def test_a_paired_t_test_at_the_detectable_effect_finds_it_about_four_times_in_five():
    rng, n, std = random.Random(11), 6, 1.0
    effect = stats.detectable(std / math.sqrt(n), n - 1)
    found = sum(stats.paired([0.0] * n, [rng.gauss(effect, std) for _ in range(n)]).p < 0.05 for _ in range(2000))
    assert 0.75 <= found / 2000 <= 0.85  # the formula's power is 80 % (a t approximation of the noncentral t)
