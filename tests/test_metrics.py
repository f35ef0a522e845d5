"""marabook.metrics against hand-computed cases."""

import numpy as np
import pytest

from marabook import metrics as M


def test_entropy_hand_computed():
    assert M.entropy([1.0, 0.0, 0.0]) == 0.0
    np.testing.assert_allclose(M.entropy([0.5, 0.5], base=2), 1.0)
    np.testing.assert_allclose(M.entropy([0.25] * 4, base=2), 2.0)
    # H(0.9, 0.1) = -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325082973...
    np.testing.assert_allclose(M.entropy([0.9, 0.1]), 0.3250829733914482, rtol=1e-12)
    np.testing.assert_allclose(M.entropy([[0.5, 0.5], [1.0, 0.0]], base=2), [1.0, 0.0])


def test_effective_modes():
    np.testing.assert_allclose(M.effective_num_modes([0.2] * 5), 5.0)
    np.testing.assert_allclose(M.effective_num_modes([1.0, 0.0]), 1.0)
    assert 1.0 < M.effective_num_modes([0.9, 0.1]) < 2.0


def test_kl_and_tv_hand_computed():
    # KL((0.5,0.5) || (0.9,0.1)) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5108256...
    np.testing.assert_allclose(M.kl_divergence([0.5, 0.5], [0.9, 0.1]), 0.5108256237659907, rtol=1e-12)
    np.testing.assert_allclose(M.kl_divergence([0.5, 0.5], [0.5, 0.5]), 0.0)
    assert M.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
    np.testing.assert_allclose(M.kl_divergence([1.0, 0.0], [0.5, 0.5], base=2), 1.0)
    np.testing.assert_allclose(M.total_variation([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]), 0.5)
    np.testing.assert_allclose(M.total_variation([1, 0], [0, 1]), 1.0)


def test_mass_on():
    np.testing.assert_allclose(M.mass_on([0.1, 0.2, 0.7], np.array([True, False, True])), 0.8)
    with pytest.raises(ValueError, match="mask"):
        M.mass_on([0.5, 0.5], [1, 0])
    with pytest.raises(ValueError, match="mask"):
        M.mass_on([0.5, 0.5], np.array([True, False, True]))


def test_bad_input():
    with pytest.raises(ValueError, match="p must"):
        M.entropy([0.5, 0.6])
    with pytest.raises(ValueError, match="q must"):
        M.kl_divergence([0.5, 0.5], [0.5, np.nan])
    with pytest.raises(ValueError, match="base"):
        M.entropy([0.5, 0.5], base=1)
    with pytest.raises(ValueError, match="q must have"):
        M.total_variation([0.5, 0.5], [1.0, 0.0, 0.0])


def test_entropy_on_mask():
    mask = np.array([True, True, False, True])
    np.testing.assert_allclose(M.entropy_on([0.2, 0.2, 0.4, 0.2], mask), np.log(3))
    np.testing.assert_allclose(M.entropy_on([0.5, 0.0, 0.5, 0.0], mask, base=2), 0.0)
    np.testing.assert_allclose(M.entropy_on([0.1, 0.3, 0.6, 0.0], mask, base=2), M.entropy([0.25, 0.75], base=2))
    assert np.isnan(M.entropy_on([0.0, 0.0, 1.0, 0.0], mask))
