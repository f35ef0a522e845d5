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


# ---------------------------------------------------------------- text diversity (chapter 6)
def test_ngrams_and_distinct_hand_computed():
    from marabook.metrics import distinct_n, ngrams

    assert ngrams(["a b c", "A b"], 2) == [("a", "b"), ("b", "c"), ("a", "b")]  # never across texts
    assert distinct_n(["a b c", "a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a"], 2) == 0.0
    assert ngrams(["x-y"], 1, tokenize=lambda t: t.split("-")) == [("x",), ("y",)]


def test_ead_hand_computed():
    from marabook.metrics import ead

    # unigrams a b a b: 2 distinct of C = 4; expected distinct under uniform V = 4: 4 (1 - (3/4)^4)
    assert ead(["a b", "a b"], 1, vocab_size=4) == pytest.approx(2 / (4 * (1 - 0.75 ** 4)))
    # a single n-gram is always "as distinct as expected": EAD = 1 / (V (1 - (1 - 1/V))) = 1
    assert ead(["a b"], 2, vocab_size=50257) == pytest.approx(1.0)
    # repeating the same text halves distinct-n but EAD accounts for the expected repeats
    one = ead(["the cat sat"], 1, vocab_size=10)
    two = ead(["the cat sat", "the cat sat"], 1, vocab_size=10)
    assert two < one
    assert ead(["a"], 3, vocab_size=10) == 0.0
    with pytest.raises(ValueError, match="vocab_size"):
        ead(["a"], 1, vocab_size=1)
    with pytest.raises(ValueError, match="n must"):
        ead(["a"], 0, vocab_size=10)
    with pytest.raises(ValueError, match="texts"):
        ead("a b", 1, vocab_size=10)


def test_distinct_answers_rule():
    from marabook.metrics import distinct_answers, normalize_answer

    assert normalize_answer("  Red. ") == "red"
    assert normalize_answer("Light   BLUE!") == "light blue"
    assert distinct_answers(["Red.", " red", "RED", "blue!", "", "  ", "..."]) == 2
    assert distinct_answers(["a", "A"], normalize=lambda t: t) == 2
    with pytest.raises(ValueError, match="texts"):
        distinct_answers([])


def test_mean_pairwise_cosine_distance_hand_computed():
    from marabook.metrics import mean_pairwise_cosine_distance

    e = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    expected = (1.0 + 2 * (1 - 1 / np.sqrt(2))) / 3
    assert mean_pairwise_cosine_distance(e) == pytest.approx(expected)
    assert mean_pairwise_cosine_distance([[1.0, 1.0], [2.0, 2.0]]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="embeddings"):
        mean_pairwise_cosine_distance([[1.0, 0.0]])
    with pytest.raises(ValueError, match="zero"):
        mean_pairwise_cosine_distance([[1.0, 0.0], [0.0, 0.0]])


def test_bootstrap_se():
    from marabook.metrics import bootstrap_se

    assert bootstrap_se([2.0, 2.0, 2.0]) == 0.0
    v = np.random.default_rng(1).normal(size=200)
    # the bootstrap SE of a mean approaches std / sqrt(n) (ddof 0) for large n; with 4000 resamples
    # the estimate's own relative error is ~1 / sqrt(2 * 4000) = 1.1%, so rel=0.08 is a 7-SE band
    assert bootstrap_se(v, n_boot=4000) == pytest.approx(v.std() / np.sqrt(v.size), rel=0.08)
    assert bootstrap_se(v, seed=3) == bootstrap_se(v, seed=3)
    with pytest.raises(ValueError, match="values"):
        bootstrap_se([1.0])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_se([1.0, 2.0], n_boot=5)


# --- modes (chapter 3's definition) ---------------------------------------------------------------------

def test_modes_hand_cases():
    m = M.modes([0.1, 0.3, 0.1, 0.2, 0.3])
    # index 2 climbs to its likelier neighbour 1; index 3 climbs to 4
    assert [x["peak"] for x in m] == [1, 4]
    assert [x["mass"] for x in m] == pytest.approx([0.5, 0.5], abs=1e-15)
    # a shoulder is not a mode: the plateau [0.2, 0.2] steps up to 0.6
    assert M.modes([0.2, 0.2, 0.6]) == [{"peak": 2, "top": [2], "mass": 1.0}]
    # a flat distribution is one mode whose top is everything
    assert M.modes([0.25] * 4) == [{"peak": 0, "top": [0, 1, 2, 3], "mass": 1.0}]
    # a tie between two higher neighbours goes left
    m = M.modes([0.3, 0.1, 0.3, 0.3])
    assert [(x["peak"], round(x["mass"], 12)) for x in m] == [(0, 0.4), (2, 0.6)]


def test_count_modes_uses_the_mass_floor():
    p = np.array([0.49, 0.01, 0.02, 0.01, 0.47])
    assert len(M.modes(p)) == 3
    assert M.count_modes(p, 0.05) == 2   # the bump at index 2 holds 0.02 + ties: below the floor
    assert [round(x["mass"], 12) for x in M.modes(p)] == [0.5, 0.02, 0.48]
    assert M.count_modes(p, 0.49) == 1 and M.count_modes(p, 0.5) == 1


def test_modes_of_the_two_bump_targets_follow_the_crossover():
    """The reverse target of chapter 1's two-bump problem has two modes of real mass only near beta*."""
    from marabook import problems, targets
    prob = problems.bimodal_tokens()
    counts = {b: M.count_modes(targets.reverse_kl_target(prob.ref_probs, prob.rewards, b), 0.05)
              for b in (0.01, 0.13, 10.0)}
    assert counts == {0.01: 1, 0.13: 2, 10.0: 1}  # beta* ~ 0.13 (3.2); large beta: the reference's one bump


def test_modes_reject_bad_input():
    with pytest.raises(ValueError, match="p"):
        M.modes([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="min_mass"):
        M.count_modes([0.5, 0.5], 0.0)
    with pytest.raises(ValueError, match="p"):
        M.modes([0.5, 0.6])
