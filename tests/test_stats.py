"""marabook.stats: every test against a hand computation or against scipy on a hand-made example."""

import numpy as np
import pytest
from scipy import stats as st

from marabook import stats


def test_holm_on_a_known_p_vector():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])         # capped at 1
    assert stats.holm([0.2]) == pytest.approx([0.2])                    # a family of one is not adjusted
    # the step-down procedure at 0.05: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05/1, so all three are rejected
    adj = stats.holm([0.01, 0.02, 0.04])
    assert list(adj <= 0.05) == [True, True, True] and adj == pytest.approx([0.03, 0.04, 0.04])


def test_two_sample_is_scipy_welch_and_mann_whitney():
    t, c = [15.0, 16.0, 14.0, 18.0], [10.0, 12.0, 11.0, 13.0]
    r = stats.two_sample(t, c)
    assert r.pvalue == pytest.approx(st.ttest_ind(t, c, equal_var=False, alternative="greater").pvalue)
    assert r.test == "welch" and r.n == (4, 4)
    u = stats.two_sample(t, c, alternative="two-sided", test="mannwhitney")
    assert u.pvalue == pytest.approx(st.mannwhitneyu(t, c, alternative="two-sided").pvalue)
    assert stats.two_sample(c, t, alternative="less").pvalue == pytest.approx(r.pvalue)
    assert stats.two_sample([1.0, 1.0], [1.0, 1.0]).pvalue == 1.0      # identical: no evidence either way


def test_van_elteren_by_hand_and_against_scipy_with_one_stratum():
    # two strata, each t = (3, 4), c = (1, 2): rank sum 7, expected 5, weight 1/5, variance 2*2/12*5 = 5/3
    z = (2 * 2 / 5) / np.sqrt(2 * (1 / 25) * (5 / 3))
    r = stats.stratified([([3, 4], [1, 2]), ([30, 40], [10, 20])])
    assert r.statistic == pytest.approx(z) and r.pvalue == pytest.approx(st.norm.sf(z)) and r.n == (4, 4)
    # one stratum (with ties): the Mann-Whitney U test, normal approximation without continuity correction
    t, c = [3.0, 5.0, 5.0, 8.0, 9.0], [1.0, 2.0, 5.0, 4.0, 6.0]
    for alt in stats.ALTERNATIVES:
        ref = st.mannwhitneyu(t, c, alternative=alt, method="asymptotic", use_continuity=False).pvalue
        assert stats.stratified([(t, c)], alternative=alt).pvalue == pytest.approx(ref)


def test_stouffer_is_scipy_combine_pvalues_of_welch_tests():
    strata = [([5.0, 6.0, 7.0], [4.0, 5.0, 5.5]), ([2.0, 3.0, 3.5, 4.0], [2.5, 2.0, 1.0, 3.0])]
    ps = [st.ttest_ind(t, c, equal_var=False, alternative="greater").pvalue for t, c in strata]
    w = [np.sqrt(3 * 3 / 6), np.sqrt(4 * 4 / 8)]
    ref = st.combine_pvalues(ps, method="stouffer", weights=w).pvalue
    assert stats.stratified(strata, method="stouffer").pvalue == pytest.approx(ref)


def test_bootstrap_intervals_with_known_answers_and_coverage():
    # the mean of (0, 1) resampled is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is (0, 1)
    assert stats.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # ratio of means of (2, 4) over (1, 2): resampled between 2/2 = 1 (prob 1/16 > 2.5%) and 4/1 = 4
    assert stats.bootstrap_ci([2.0, 4.0], [1.0, 2.0]) == pytest.approx((1.0, 4.0))
    assert stats.bootstrap_ci([3.0, 3.0], [1.0, 1.0], effect="difference") == (2.0, 2.0)
    assert stats.bootstrap_ci([1.0, 2.0, 3.0], seed=4) == stats.bootstrap_ci([1.0, 2.0, 3.0], seed=4)
    # coverage of the 90% interval for a normal mean, n = 40: close to 0.90 (percentile bootstrap runs a bit low)
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        lo, hi = stats.bootstrap_ci(rng.normal(1.0, 2.0, 40), confidence=0.90, n_resamples=999, seed=i)
        hits += lo <= 1.0 <= hi
    assert 0.80 <= hits / 200 <= 0.97


def test_compare_family_puts_the_pieces_together():
    cells = [{"task": "a", "treatment": [15, 16, 14], "control": [10, 12, 11]},
             {"task": "b", "treatment": [10, 11, 12], "control": [10, 12, 11]},
             {"task": "c", "treatment": [500, 520, 510], "control": [600, 590, 610], "alternative": "less"}]
    rows = stats.compare_family(cells, n_resamples=999)
    ps = [stats.two_sample(c["treatment"], c["control"], alternative=c.get("alternative", "greater")).pvalue
          for c in cells]
    assert [r["task"] for r in rows] == ["a", "b", "c"] and [r["p"] for r in rows] == pytest.approx(ps)
    assert [r["p_holm"] for r in rows] == pytest.approx(stats.holm(ps)) and rows[0]["family_size"] == 3
    assert rows[0]["effect"] == pytest.approx(15 / 11) and rows[0]["ci_low"] <= 15 / 11 <= rows[0]["ci_high"]
    assert rows[2]["alternative"] == "less"
    diff = stats.compare_family(cells[:1], effect="difference", n_resamples=999)[0]
    assert diff["effect"] == pytest.approx(4.0)


@pytest.mark.parametrize("call, name", [
    (lambda: stats.holm([]), "pvalues"),
    (lambda: stats.holm([0.2, 1.5]), "pvalues"),
    (lambda: stats.holm([0.2, float("nan")]), "pvalues"),
    (lambda: stats.two_sample([1.0], [1.0, 2.0]), "treatment"),
    (lambda: stats.two_sample([1.0, 2.0], [1.0, float("nan")]), "control"),
    (lambda: stats.two_sample([1.0, 2.0], [1.0, 2.0], alternative="bigger"), "alternative"),
    (lambda: stats.two_sample([1.0, 2.0], [1.0, 2.0], test="ttest"), "test"),
    (lambda: stats.stratified([]), "strata"),
    (lambda: stats.stratified([([1.0, 2.0], [1.0])]), "strata"),
    (lambda: stats.stratified([1.0, 2.0]), "strata"),
    (lambda: stats.stratified([([1.0, 2.0], [1.0, 3.0])], method="fisher"), "method"),
    (lambda: stats.stratified([([1.0, 2.0], [1.0, 3.0])], method="stouffer", alternative="two-sided"), "alternative"),
    (lambda: stats.bootstrap_ci([1.0, 2.0], confidence=1.5), "confidence"),
    (lambda: stats.bootstrap_ci([1.0, 2.0], n_resamples=10), "n_resamples"),
    (lambda: stats.bootstrap_ci([1.0, 2.0], [1.0, 2.0], effect="odds"), "effect"),
    (lambda: stats.compare_family([]), "cells"),
    (lambda: stats.compare_family([{"treatment": [1.0, 2.0]}]), "cells"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


def test_welch_on_two_constant_but_different_samples_is_undefined():
    """No spread on either side gives no estimate of the noise: NaN (as documented), not scipy's t = -inf, p = 0;
    compare_family then leaves the cell out of Holm's family. Mann-Whitney stays defined (ranks need no spread)."""
    r = stats.two_sample([43.0, 43.0], [52.0, 52.0], alternative="two-sided")
    assert np.isnan(r.pvalue) and np.isnan(r.statistic)
    assert stats.two_sample([1.0, 1.0], [1.0, 1.0]).pvalue == 1.0  # all equal: no evidence either way
    assert np.isfinite(stats.two_sample([43.0, 43.0], [52.0, 53.0], alternative="two-sided").pvalue)
    assert np.isfinite(stats.two_sample([43.0, 43.0], [52.0, 52.0], test="mannwhitney").pvalue)
    fam = stats.compare_family([{"treatment": [43.0, 43.0], "control": [52.0, 52.0]},
                                {"treatment": [1.0, 2.0, 3.0], "control": [2.0, 3.0, 4.0]}], effect="difference",
                               alternative="two-sided", n_resamples=200)
    assert np.isnan(fam[0]["p_holm"]) and fam[1]["family_size"] == 1 and fam[1]["p_holm"] == fam[1]["p"]
