"""open_ended.compare: chapter 6's comparisons as one Holm-corrected family, checked against scipy by hand."""

import numpy as np
import pytest
from scipy import stats as ss

from marabook.experiments import open_ended as oe
from marabook.experiments.sweep import JobFailure


def _run(method, distinct, semantic=0.2, reward_out=0.5):
    ev = {"reward": 0.9, "distinct": distinct, "ead1": 1.0, "semantic": semantic}
    return {"method": method, "eval": {"in": ev, "out": {**ev, "reward": reward_out}}}


def test_compare_matches_welch_and_holm_by_hand():
    a = [6.0, 7.0, 6.5, 7.5, 6.0]
    b = [4.0, 4.5, 5.0, 4.0, 4.5]
    c = [6.0, 6.5, 5.5, 7.0, 6.0]
    runs = [_run("MARA-rev", x) for x in a] + [_run("RLOO", x) for x in b] + [_run("entropy", x) for x in c]
    runs.append(JobFailure(index=99, job=(0, "RLOO", 1, {}), error="RuntimeError", message="boom"))
    rows = oe.compare(runs, treatments=("MARA-rev",), controls=("RLOO", "entropy"), columns=("distinct",),
                      n_resamples=999)
    assert [(r["method"], r["against"]) for r in rows] == [("MARA-rev", "RLOO"), ("MARA-rev", "entropy")]
    p = [ss.ttest_ind(a, x, equal_var=False).pvalue for x in (b, c)]
    np.testing.assert_allclose([r["p"] for r in rows], p, rtol=1e-10)
    order = np.argsort(p)  # Holm for two: the smaller times 2, the larger times 1, kept monotone
    holm = np.empty(2)
    holm[order[0]] = min(1.0, 2 * p[order[0]])
    holm[order[1]] = min(1.0, max(holm[order[0]], p[order[1]]))
    np.testing.assert_allclose([r["p_holm"] for r in rows], holm, rtol=1e-10)
    assert rows[0]["effect"] == pytest.approx(np.mean(a) - np.mean(b))
    assert rows[0]["ci_low"] < rows[0]["effect"] < rows[0]["ci_high"]
    assert "p (Holm)" in str(oe.comparison_table(rows))


def test_compare_bad_input():
    runs = [_run("MARA-rev", 5.0), _run("MARA-rev", 6.0), _run("RLOO", 4.0), _run("RLOO", 4.5)]
    with pytest.raises(ValueError, match="columns"):
        oe.compare(runs, treatments=("MARA-rev",), controls=("RLOO",), columns=("colour",))
    with pytest.raises(ValueError, match="entropy"):
        oe.compare(runs, treatments=("MARA-rev",), controls=("entropy",), columns=("distinct",))
