"""marabook.problems: the canonical examples have the numbers the chapters quote."""

import numpy as np
import pytest

from marabook import problems


def test_bimodal_tokens_reference_and_rewards():
    p = problems.bimodal_tokens()
    assert p.size == 100 and abs(p.ref_probs.sum() - 1) < 1e-12
    assert np.all(np.diff(p.ref_probs) < 0)  # decaying reference
    a, b = p.peaks["mode 1"], p.peaks["mode 2"]
    assert (a, b) == (20, 70)
    np.testing.assert_allclose(np.log(p.ref_probs[[a, b]]), [-4.0265, -5.9265], atol=1e-3)
    np.testing.assert_allclose(p.rewards[[a, b]], [0.75, 1.0], atol=1e-6)
    assert not np.any(p.modes["mode 1"] & p.modes["mode 2"])


def test_bad_input():
    with pytest.raises(ValueError, match="n_tokens"):
        problems.bimodal_tokens(n_tokens=1)
    with pytest.raises(ValueError, match="centers"):
        problems.bimodal_tokens(centers=(20, 200))
    with pytest.raises(ValueError, match="width"):
        problems.bimodal_tokens(width=0)


def test_two_block_tokens():
    p = problems.two_block_tokens()
    assert p.rewards.sum() == 20 and p.rewards[10:20].all() and p.rewards[60:70].all()
    ratio = p.ref_probs[p.modes["block 1"]].sum() / p.ref_probs[p.modes["block 2"]].sum()
    np.testing.assert_allclose(ratio, np.exp(0.05 * 50))
    with pytest.raises(ValueError, match="blocks"):
        problems.two_block_tokens(blocks=((10, 20), (15, 30)))
    with pytest.raises(ValueError, match="blocks"):
        problems.two_block_tokens(blocks=((10, 200),))
