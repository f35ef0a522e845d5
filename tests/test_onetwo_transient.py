"""experiments.onetwo_transient: the 1-2 runs over their whole trajectory (issue 27, item 7), hand-computed."""

import numpy as np
import pytest
from scipy import stats as st

from marabook import stats
from marabook.experiments import onetwo_transient as ot


def _cfg(method="vanilla", beta=0.01, kl="reverse", seed=0):
    return {"mara_tau": None if method == "vanilla" else 1.0, "kl": kl, "beta": beta, "seed": seed,
            "advantage": "rloo", "group_size": 8}


def _exact(shares, final=None, p_valid=0.99, **cfg):
    """A run with exact evaluations at steps 0, 20, 40, ... (the first is the reference)."""
    final = shares[-1] if final is None else final
    return {"config": _cfg(**cfg), "trajectory": [{"step": 20 * i, "share_1": s, "p_valid": 0.99, "entropy_bits": 0.0}
                                                  for i, s in enumerate(shares)],
            "final": {"share_1": final, "p_valid": p_valid, "entropy_bits": float(ot.binary_entropy_bits(final))}}


def test_binary_entropy_by_hand():
    h = ot.binary_entropy_bits([0.0, 0.5, 1.0, 0.8])
    assert h[:3].tolist() == [0.0, 1.0, 0.0]
    assert h[3] == pytest.approx(-(0.8 * np.log2(0.8) + 0.2 * np.log2(0.2)))  # 0.7219
    assert h[3] == pytest.approx(0.721928, abs=1e-6)
    with pytest.raises(ValueError, match="share"):
        ot.binary_entropy_bits(1.2)


def test_measures_of_an_exact_trajectory_by_hand():
    run = _exact([0.8, 0.99, 0.9, 0.8])
    m = ot.run_measures(run)
    assert m["source"] == "exact" and m["points"] == 3  # step 0 (the reference) is left out
    assert m["mean_share"] == pytest.approx((0.99 + 0.9 + 0.8) / 3)
    assert m["collapsed_fraction"] == pytest.approx(1 / 3)  # only 0.99 (0.081 bits) is below 0.2 bits
    assert m["peak_share"] == 0.99 and m["final_share"] == 0.8
    assert ot.run_measures(run, collapse_bits=0.5)["collapsed_fraction"] == pytest.approx(2 / 3)  # 0.9: 0.469 bits


def test_measures_of_a_sampled_trajectory_by_hand():
    run = {"config": _cfg(), "share_1_every_5": [1.0, 0.5, 31 / 32, float("nan")],
           "final": {"share_1": 0.9, "p_valid": 1.0, "entropy_bits": 0.469}}
    steps, share, source = ot.trajectory_of(run)
    assert steps.tolist() == [5, 10, 15, 20] and source == "sampled"
    m = ot.run_measures(run)
    assert m["points"] == 3  # the NaN (no valid sample) is left out
    assert m["mean_share"] == pytest.approx((1.0 + 0.5 + 31 / 32) / 3)
    assert m["collapsed_fraction"] == pytest.approx(1 / 3)  # 31/32 has 0.2006 bits: not collapsed
    live = {"config": _cfg(), "history": [{"step": 1, "share_1": 0.75}, {"step": 2, "share_1": 1.0}],
            "final": {"share_1": 0.9, "p_valid": 1.0, "entropy_bits": 0.469}}
    assert ot.run_measures(live)["mean_share"] == pytest.approx(0.875)


def test_bad_runs_are_refused_by_name():
    with pytest.raises(ValueError, match="trajectory"):
        ot.run_measures({"config": _cfg(), "final": {}})
    with pytest.raises(ValueError, match="collapse_bits"):
        ot.run_measures(_exact([0.8, 0.9]), collapse_bits=1.5)
    with pytest.raises(ValueError, match="reference"):
        ot.transient_summary([_exact([0.8, 0.9])], 1.5, lambda *a: 0.5)
    with pytest.raises(ValueError, match="measure"):
        ot.method_comparison([_exact([0.8, 0.9])], "share")


def test_reference_share_is_the_common_step_zero():
    runs = [_exact([0.8, 0.9]), _exact([0.8, 0.7], seed=1)]
    assert ot.reference_share(runs) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="disagree"):
        ot.reference_share([_exact([0.8, 0.9]), _exact([0.7, 0.9])])


def test_summary_tests_against_constants_with_holm_over_the_table():
    ref = 0.8
    vanilla = [_exact([ref, 0.95, 0.9], seed=0), _exact([ref, 0.99, 0.85], seed=1), _exact([ref, 0.97, 0.8], seed=2),
               _exact([ref, 0.9, 0.1], p_valid=0.2, seed=3)]  # the last stopped answering: a failure
    mara = [_exact([ref, 0.6, 0.5], method="MARA", seed=s) for s in range(2)] + \
           [_exact([ref, 0.7, 0.45], method="MARA", seed=2)]
    rows = ot.transient_summary(vanilla + mara, ref, {("vanilla", "reverse", 0.01): ref, ("MARA", "reverse", 0.01): 0.5},
                                n_resamples=999)
    v, m = rows  # vanilla first
    assert (v["method"], v["runs"], v["failed"], m["method"]) == ("vanilla", 4, 1, "MARA")
    assert v["final_share_mean"] == pytest.approx(0.85)  # (0.9 + 0.85 + 0.8) / 3, the failed run left out
    assert v["mean_share_mean"] == pytest.approx(np.mean([(0.95 + 0.9) / 2, (0.99 + 0.85) / 2, (0.97 + 0.8) / 2]))
    # Welch against a constant control is the one-sample t-test
    p_final = st.ttest_1samp([0.9, 0.85, 0.8], ref).pvalue
    assert v["final_vs_reference"]["p"] == pytest.approx(p_final)
    assert v["final_vs_reference"]["diff"] == pytest.approx(0.05)
    assert v["final_vs_target"] is v["final_vs_reference"]  # vanilla's target is the reference: one test
    # family: 2 tests for vanilla, 4 for MARA
    assert v["final_vs_reference"]["family_size"] == 6
    ps = [v["final_vs_reference"]["p"], v["mean_vs_reference"]["p"]] + \
         [m[k]["p"] for k in ("final_vs_reference", "final_vs_target", "mean_vs_reference", "mean_vs_target")]
    assert sorted(x for x in (v["final_vs_reference"]["p_holm"], v["mean_vs_reference"]["p_holm"],
                              m["final_vs_reference"]["p_holm"], m["final_vs_target"]["p_holm"],
                              m["mean_vs_reference"]["p_holm"], m["mean_vs_target"]["p_holm"])) == \
        pytest.approx(sorted(stats.holm(ps)))
    assert m["final_vs_target"]["diff"] == pytest.approx((0.5 + 0.5 + 0.45) / 3 - 0.5)
    table = ot.transient_table(rows)
    assert len(table.columns) == 8 and len(table.rows) == 2
    assert table.rows[0][1] == "4 (1)" and table.rows[0][0] == "reverse vanilla 0.01"


def test_method_comparison_is_stratified_by_beta():
    runs, a = [], {}
    for b, (mara, van) in {0.01: ([0.99, 0.95, 0.9], [0.5, 0.6, 0.4]), 0.03: ([0.97, 0.98], [0.3, 0.9])}.items():
        runs += [_exact([0.8, 0.5], final=0.5, method="MARA", beta=b, seed=i) for i in range(len(mara))]
        runs += [_exact([0.8, 0.8], final=0.8, beta=b, seed=i) for i in range(len(van))]
        for r, e in zip(runs[-len(mara) - len(van):], mara + van):
            r["final"]["entropy_bits"] = e
        a[b] = (np.array(mara), np.array(van))
    out = ot.method_comparison(runs, "final_entropy", kl="reverse")
    assert [r["beta"] for r in out["strata"]] == [0.01, 0.03]
    assert out["strata"][0]["p"] == pytest.approx(st.mannwhitneyu(*a[0.01], alternative="greater").pvalue)
    assert [r["p_holm"] for r in out["strata"]] == pytest.approx(stats.holm([r["p"] for r in out["strata"]]).tolist())
    assert out["stratified"].pvalue == pytest.approx(stats.stratified([a[0.01], a[0.03]]).pvalue)
    assert ot.method_comparison(runs[:2], "final_entropy") == {"strata": [], "stratified": None}  # too few runs
