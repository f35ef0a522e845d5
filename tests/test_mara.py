"""marabook.mara: augmented rewards (eq. 4.1) and the flat closed-form target (eq. 4.2)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from marabook import mara, targets


def random_case(seed, n=12, p_good=0.4):
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.ones(n))
    r = np.where(rng.random(n) < p_good, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.49, n))
    return ref, r


@given(seed=st.integers(0, 10_000), beta=st.floats(1e-3, 5.0))
@settings(max_examples=80, deadline=None)
def test_gibbs_target_of_augmented_rewards_is_the_mara_target(seed, beta):
    ref, r = random_case(seed)
    bar = mara.mara_rewards(r, np.log(ref), beta, 0.5)
    np.testing.assert_allclose(targets.reverse_kl_target(ref, bar, beta), mara.mara_target(ref, r, beta, 0.5),
                               rtol=1e-9, atol=1e-300)


@given(seed=st.integers(0, 10_000), beta=st.floats(1e-3, 5.0))
@settings(max_examples=60, deadline=None)
def test_every_good_sample_gets_exactly_equal_mass(seed, beta):
    ref, r = random_case(seed)
    g = mara.mara_target(ref, r, beta, 0.5)
    good = r >= 0.5
    if good.sum() >= 2:
        np.testing.assert_allclose(g[good], g[good][0], rtol=1e-12)
    # below tau the target is proportional to pi_ref exp(R/beta), as without MARA
    bad = ~good & (g > 1e-200)  # (skip entries that underflow at tiny beta)
    if bad.sum() >= 2:
        log_ratio = np.log(g[bad]) - np.log(ref[bad]) - r[bad] / beta
        np.testing.assert_allclose(log_ratio, log_ratio[0], rtol=1e-9, atol=1e-7)


def test_hand_computed_augmentation():
    r = np.array([1.0, 1.0, 0.0, 0.8])
    lp = np.log(np.array([0.5, 0.1, 0.3, 0.1]))
    # good = R >= 0.8: samples 0, 1, 3; anchor = sample 0 (highest ref); R(z) = 1
    out = mara.mara_rewards(r, lp, 0.1, 0.8)
    np.testing.assert_allclose(out, [1.0, 1.0 + 0.1 * np.log(5), 0.0, 1.0 + 0.1 * np.log(5)])


def test_tie_in_anchor_log_prob_takes_the_highest_reward():
    out = mara.mara_rewards(np.array([0.9, 1.0, 0.95]), np.log([0.4, 0.4, 0.2]), 0.5, 0.9)
    np.testing.assert_allclose(out, [1.0, 1.0, 1.0 + 0.5 * np.log(2)])


def test_numpy_and_torch_agree_including_groups_and_percentiles():
    rng = np.random.default_rng(0)
    r = rng.random(40)
    lp = np.log(rng.dirichlet(np.ones(40)))
    groups = np.repeat([5, 2, 9, 4], 10)
    for tau in (0.5, "p90", "p50", 2.0):
        a = mara.mara_rewards(r, lp, 0.2, tau, groups=groups)
        b = mara.mara_rewards(torch.tensor(r), torch.tensor(lp), 0.2, tau, groups=torch.tensor(groups))
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float64
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12)
    t = mara.mara_rewards(torch.tensor(r, dtype=torch.float32), torch.tensor(lp, dtype=torch.float32), 0.2, 0.5)
    assert t.dtype == torch.float32


def test_torch_path_carries_no_gradient():
    r = torch.tensor([1.0, 0.0, 1.0], requires_grad=True)
    lp = torch.log(torch.tensor([0.5, 0.3, 0.2])).requires_grad_()
    out = mara.mara_rewards(r, lp, 0.1, 0.5)
    assert not out.requires_grad


def test_groups_are_independent():
    rng = np.random.default_rng(1)
    r = rng.random(30)
    lp = np.log(rng.dirichlet(np.ones(30)))
    groups = np.repeat([0, 1, 2], 10)
    base = mara.mara_rewards(r, lp, 0.3, 0.6, groups=groups)
    # permute and alter the other groups: group 0's augmented rewards do not change
    r2, lp2 = r.copy(), lp.copy()
    perm = 10 + rng.permutation(20)
    r2[10:], lp2[10:] = r[perm], lp[perm] - 3.0
    out = mara.mara_rewards(r2, lp2, 0.3, 0.6, groups=groups)
    np.testing.assert_array_equal(out[:10], base[:10])
    # each group has its own anchor: the per-group result equals the single-group call
    np.testing.assert_allclose(base[10:20], mara.mara_rewards(r[10:20], lp[10:20], 0.3, 0.6))


def test_percentile_tau_marks_the_top_of_each_group():
    r = np.arange(20, dtype=float)
    lp = np.zeros(20)  # equal reference: anchor = highest reward among the good, bonus 0
    out = mara.mara_rewards(r, lp, 1.0, "p90", groups=np.repeat([0, 1], 10))
    # p90 of 0..9 is 8.1 -> sample 9 good (anchor reward 9); of 10..19 is 18.1 -> sample 19
    np.testing.assert_allclose(out, r)
    out = mara.mara_rewards(r, np.linspace(0, -1, 20), 1.0, "p50", groups=np.repeat([0, 1], 10))
    # group 0: good = 5..9 (>= 4.5), anchor = 5 (highest ref); R_bar = 5 + (lp[5] - lp[y])
    np.testing.assert_allclose(out[5:10], 5 + (np.linspace(0, -1, 20)[5] - np.linspace(0, -1, 20)[5:10]))


def test_no_good_sample_leaves_rewards_unchanged_and_bonus_vanishes_as_beta_to_zero():
    r = np.array([0.1, 0.2, 0.3])
    lp = np.log([0.2, 0.3, 0.5])
    np.testing.assert_array_equal(mara.mara_rewards(r, lp, 0.5, 0.9), r)
    r = np.array([1.0, 1.0, 0.0])
    for beta in (1e-2, 1e-4, 1e-8):
        bonus = mara.mara_rewards(r, lp, beta, 0.5) - r
        assert np.max(np.abs(bonus)) <= beta * np.log(0.3 / 0.2) + 1e-15
    np.testing.assert_allclose(mara.mara_target(np.array([0.2, 0.3, 0.5]), [0, 0.5, 0.4], 0.1, 0.9),
                               targets.reverse_kl_target([0.2, 0.3, 0.5], [0, 0.5, 0.4], 0.1))


def test_mara_target_broadcasts_betas():
    ref, r = random_case(3)
    betas = np.array([0.01, 0.1, 1.0])
    batch = mara.mara_target(ref, r, betas[:, None], 0.5)
    for k, b in enumerate(betas):
        np.testing.assert_allclose(batch[k], mara.mara_target(ref, r, b, 0.5))


def test_bad_input():
    r, lp = np.array([1.0, 0.0]), np.log([0.5, 0.5])
    with pytest.raises(ValueError, match="rewards"):
        mara.mara_rewards(np.array([np.nan, 0.0]), lp, 0.1, 0.5)
    with pytest.raises(ValueError, match="rewards"):
        mara.mara_rewards(torch.tensor([np.nan, 0.0]), torch.tensor(lp), 0.1, 0.5)
    with pytest.raises(ValueError, match="beta"):
        mara.mara_rewards(r, lp, 0.0, 0.5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        mara.mara_rewards(r, lp[:1], 0.1, 0.5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        mara.mara_rewards(torch.tensor(r), torch.tensor([0.0]), 0.1, 0.5)
    with pytest.raises(ValueError, match="tau"):
        mara.mara_rewards(r, lp, 0.1, "top10")
    with pytest.raises(ValueError, match="groups"):
        mara.mara_rewards(r, lp, 0.1, 0.5, groups=[0.5, 1.5])
    with pytest.raises(ValueError, match="tau"):
        mara.mara_target([0.5, 0.5], r, 0.1, "p90")
    with pytest.raises(ValueError, match="beta"):
        mara.mara_target([0.5, 0.5], r, -1.0, 0.5)


# ------------------------------------------------------------------------------- each method's target
def test_method_targets_are_the_closed_forms():
    from marabook import problems, targets

    prob = problems.two_block_tokens()
    t = mara.method_targets(prob.ref_probs, prob.rewards, 0.01, 0.5, eta=0.1)
    assert set(t) == {"vanilla-reverse", "vanilla-forward", "mara-reverse", "mara-forward", "mara-forward-alg2",
                      "entropy"}
    np.testing.assert_array_equal(t["vanilla-reverse"], targets.reverse_kl_target(prob.ref_probs, prob.rewards, 0.01))
    np.testing.assert_array_equal(t["mara-reverse"], mara.mara_target(prob.ref_probs, prob.rewards, 0.01, 0.5))
    np.testing.assert_array_equal(t["entropy"], targets.entropy_regularized_target(prob.ref_probs, prob.rewards, 0.01, 0.1))
    np.testing.assert_array_equal(t["mara-forward-alg2"], mara.alg2_forward_target(prob.ref_probs, prob.rewards, 0.01, 0.5))
    for g in t.values():
        assert abs(g.sum() - 1) < 1e-12
    with pytest.raises(ValueError, match="beta"):
        mara.method_targets(prob.ref_probs, prob.rewards, 0.0, 0.5)


def test_forward_mara_small_beta_formula_is_the_limit_of_the_exact_target():
    """G(y) = pi_ref(y) / (t + log(pi_ref(y) / pi_min)) on the good set: the exact forward target of MARA's
    rewards approaches it as beta -> 0. The bad samples keep mass O(beta) and the good ones move by O(beta),
    so at beta = 1e-6 the two agree to 1e-5."""
    from marabook import problems, targets

    prob = problems.two_block_tokens()
    good = prob.rewards >= 0.5
    limit = mara.forward_mara_small_beta(prob.ref_probs, good)
    exact = targets.forward_kl_target(prob.ref_probs, mara.mara_rewards_global(prob.ref_probs, prob.rewards, 1e-6, 0.5),
                                      1e-6)
    np.testing.assert_allclose(exact, limit, atol=1e-5)
    assert limit[~good].sum() == 0 and abs(limit.sum() - 1) < 1e-12
    # not flat: the rarest good token gets the most relative to its reference probability, but not equal mass
    assert limit[good].max() / limit[good].min() > 1.5
    block2 = prob.modes["block 2"]
    assert limit[block2].sum() == pytest.approx(
        targets.forward_kl_target(prob.ref_probs, mara.mara_rewards_global(prob.ref_probs, prob.rewards, 0.01, 0.5),
                                  0.01)[block2].sum(), abs=0.01)  # chapter 4's block-2 mass at beta = 0.01
    with pytest.raises(ValueError, match="good"):
        mara.forward_mara_small_beta(prob.ref_probs, np.zeros(prob.size, bool))


def test_predictions_for_the_one_two_task_on_the_shipped_model():
    """What each objective wants on the 1-2 task (outcomes "1", "2", anything else; rewards 1, 1, 0): the
    reference ratio for vanilla in both directions, a fair coin for reverse MARA, about 0.43 for forward MARA."""
    lm = pytest.importorskip("marabook.lm")
    model, tok = lm.load_reference_lm()
    shares = {}
    for p in lm.OneTwoTask.for_reference_lm().prompts:
        a = lm.onetwo_answer_probs(model, tok, p)
        ref = np.array([a["p_1"], a["p_2"], 1 - a["p_1"] - a["p_2"]])
        for name, g in mara.method_targets(ref, np.array([1.0, 1.0, 0.0]), 0.03, 1.0).items():
            shares.setdefault(name, []).append(g[0] / (g[0] + g[1]))
    means = {k: float(np.mean(v)) for k, v in shares.items()}
    # float32 forward passes of the shipped model: its answer probabilities are exact to ~1e-6
    assert means["vanilla-reverse"] == pytest.approx(0.8055, abs=1e-3)
    assert means["vanilla-forward"] == pytest.approx(means["vanilla-reverse"], abs=1e-9)
    assert means["mara-reverse"] == pytest.approx(0.5, abs=1e-12)
    assert means["mara-forward"] == pytest.approx(0.430, abs=2e-3)


# ------------------------------------------------------------------ Algorithm 2's forward form (eq. 4.3)
def _alg2_by_hand(ref, r, tau):
    """Algorithm 2's reward and KL weights written out from the definition, independently of mara.py."""
    good = (r >= tau) & (ref > 0)
    z = max(np.flatnonzero(good), key=lambda i: (ref[i], r[i]))
    return np.where(r >= tau, r[z], r), np.where(good, ref[z], np.where(r >= tau, 0.0, ref)), good


def _lbfgs_alg2(ref, r, beta, tau):
    """Maximise F(theta) = sum_y pi r_bar + beta sum_y q log pi over softmax logits with L-BFGS (the exact
    objective of Algorithm 2 with the forward KL, up to the constant -beta sum_y q log q)."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    rb, q, _ = _alg2_by_hand(ref, r, tau)

    def neg(theta):
        lp = log_softmax(theta)
        pi = np.exp(lp)
        f = pi @ rb + beta * (q @ lp)
        grad = pi * (rb - pi @ rb) + beta * (q - q.sum() * pi)
        return -f, -grad

    theta0 = np.log(np.maximum(ref, 1e-12))
    res = minimize(neg, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-12})
    return np.exp(log_softmax(res.x)), -res.fun, rb, q


@pytest.mark.parametrize("seed,beta", [(0, 0.05), (1, 0.3), (2, 1.0), (3, 3.0)])
def test_alg2_forward_target_is_the_optimum_found_by_lbfgs(seed, beta):
    ref, r = random_case(seed)
    g = mara.alg2_forward_target(ref, r, beta, 0.5)
    pi, f_opt, rb, q = _lbfgs_alg2(ref, r, beta, 0.5)
    np.testing.assert_allclose(pi, g, atol=2e-6)
    # the closed form is at least as good as the numerical optimum, and it is stationary
    f_closed = g @ rb + beta * (q @ np.log(g))
    assert f_closed >= f_opt - 1e-10
    grad = g * (rb - g @ rb) + beta * (q - q.sum() * g)
    assert np.max(np.abs(grad)) < 1e-10


@pytest.mark.parametrize("beta", [0.01, 1.0])
def test_alg2_forward_target_is_flat_on_chapter_4s_problem(beta):
    from marabook import problems

    prob = problems.two_block_tokens()
    good = prob.rewards >= 0.5
    g, lam = mara.alg2_forward_target(prob.ref_probs, prob.rewards, beta, 0.5, return_lambda=True)
    np.testing.assert_allclose(g[good], g[good][0], rtol=1e-12)             # exactly flat
    z = np.flatnonzero(good)[np.argmax(prob.ref_probs[good])]
    assert g[good][0] == pytest.approx(beta * prob.ref_probs[z] / (lam - 1.0), rel=1e-12)  # beta q / (Lambda - r)
    assert abs(g.sum() - 1) < 1e-12
    pi, _, _, _ = _lbfgs_alg2(prob.ref_probs, prob.rewards, beta, 0.5)      # confirmed by a numerical optimiser
    np.testing.assert_allclose(pi, g, atol=2e-6)
    # the reward-augmentation form (Algorithm 1) of the same problem is far from flat
    reward_form = mara.method_targets(prob.ref_probs, prob.rewards, beta, 0.5)["mara-forward"]
    assert reward_form[good].max() / reward_form[good].min() > 50


def test_alg2_under_the_reverse_kl_is_algorithm_1():
    """With the reverse KL, Algorithm 2's modified KL has the Gibbs target q exp(r / beta), which is MARA's (4.2)."""
    for seed in range(20):
        ref, r = random_case(seed)
        rb, q = mara.alg2_terms(ref, r, 0.5)
        for beta in (0.01, 0.3, 2.0):
            np.testing.assert_allclose(targets.reverse_kl_target(q / q.sum(), rb, beta), mara.mara_target(ref, r, beta, 0.5),
                                       rtol=1e-9, atol=1e-300)


def test_alg2_terms_edge_cases_and_broadcasting():
    ref, r = random_case(5)
    rb, q, _ = _alg2_by_hand(ref, r, 0.5)
    np.testing.assert_array_equal(mara.alg2_terms(ref, r, 0.5)[0], rb)
    np.testing.assert_array_equal(mara.alg2_terms(ref, r, 0.5)[1], q)
    # no good sample: vanilla forward
    np.testing.assert_allclose(mara.alg2_forward_target(ref, r, 0.2, 2.0), targets.forward_kl_target(ref, r, 0.2))
    # a good sample outside the reference's support gets no mass; the supported good ones stay flat
    ref0 = np.array([0.5, 0.3, 0.2, 0.0])
    g = mara.alg2_forward_target(ref0, [0.0, 1.0, 1.0, 2.0], 0.1, 0.5)
    assert g[3] == 0 and g[1] == pytest.approx(g[2], rel=1e-12)
    betas = np.array([[0.01], [0.1], [1.0]])
    many = mara.alg2_forward_target(ref, r, betas, 0.5)
    for k, b in enumerate(betas[:, 0]):
        np.testing.assert_allclose(many[k], mara.alg2_forward_target(ref, r, float(b), 0.5), rtol=1e-12)
    with pytest.raises(ValueError, match="tau"):
        mara.alg2_forward_target(ref, r, 0.1, "p90")
    with pytest.raises(ValueError, match="beta"):
        mara.alg2_forward_target(ref, r, 0.0, 0.5)
    with pytest.raises(ValueError, match="rewards"):
        mara.alg2_terms(ref, r[:-1], 0.5)


def test_batch_anchors_by_hand():
    r = np.array([1.0, 1.0, 0.0, 0.8, 0.9, 0.1])
    lp = np.log([0.5, 0.1, 0.3, 0.1, 0.05, 0.9])
    good, rz, lz, thr = mara.batch_anchors(r, lp, 0.8, groups=[0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(good, [True, True, False, True, True, False])
    np.testing.assert_allclose(rz, [1.0, 1.0, 1.0, 1.0, 0.9, 0.9])
    np.testing.assert_allclose(lz, np.log([0.5, 0.5, 0.5, 0.5, 0.05, 0.05]))
    np.testing.assert_array_equal(thr, 0.8)
    _, rz, lz, _ = mara.batch_anchors(r[:3], lp[:3], 2.0)                    # no good sample: no anchor
    assert np.all(np.isneginf(rz)) and np.all(np.isneginf(lz))
    with pytest.raises(ValueError, match="ref_logprobs"):
        mara.batch_anchors(r, lp[:2], 0.5)
