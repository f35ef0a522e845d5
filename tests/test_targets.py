"""marabook.targets: the closed forms are optima, and behave as PAPER.md section 1-2 says."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import logsumexp, rel_entr, softmax

from marabook import problems
from marabook import targets as T

# ----------------------------------------------------------------------------- helpers


def random_problem(rng, v, zero_ref=0):
    ref = rng.dirichlet(np.ones(v))
    if zero_ref:
        ref[rng.choice(v, zero_ref, replace=False)] = 0.0
        ref /= ref.sum()
    rewards = rng.normal(size=v)
    return ref, rewards


def objective_independent(pi, ref, r, beta, eta=0.0, direction="reverse"):
    """The objective written out directly, independent of marabook (0 log 0 = 0)."""
    if direction == "reverse":
        kl = np.sum(rel_entr(pi, ref))
    else:
        kl = np.sum(rel_entr(ref, pi))
    ent = -np.sum(np.where(pi > 0, pi * np.log(np.where(pi > 0, pi, 1.0)), 0.0))
    return float(pi @ r - beta * kl + eta * ent)


def objective_gradient_independent(pi, ref, r, beta, eta=0.0, direction="reverse"):
    """dJ/dpi of the objective above, written out by hand (support points only: pi > 0)."""
    logpi = np.log(pi)
    if direction == "reverse":
        with np.errstate(divide="ignore"):
            g = r - beta * (logpi - np.log(ref) + 1.0)
    else:
        g = r + beta * ref / pi
    return g - eta * (logpi + 1.0)


def maximise_numerically(ref, r, beta, eta=0.0, direction="reverse"):
    """Generic maximiser over softmax logits: L-BFGS-B with the analytic gradient, several starts.

    The analytic gradient (chain rule through the softmax, dJ/dtheta = pi * (g - <pi, g>)) lets L-BFGS
    converge to the limit of double precision instead of the ~1e-8 floor of finite differences.
    Returns the numerical optimum and its objective value.
    """
    v = len(ref)

    def neg(theta):
        pi = softmax(theta)
        g = objective_gradient_independent(pi, ref, r, beta, eta, direction)
        return -objective_independent(pi, ref, r, beta, eta, direction), -pi * (g - pi @ g)

    rng = np.random.default_rng(0)
    best = None
    for start in range(4):
        x0 = np.log(np.where(ref > 0, ref, 1e-3)) if start == 0 else rng.normal(size=v)
        res = minimize(neg, x0, jac=True, method="L-BFGS-B",
                       options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 20000})
        if best is None or res.fun < best.fun:
            best = res
    return softmax(best.x), -best.fun


# Evaluating J in double precision on these problems (|r| ~ 1, |log pi| <~ 20, V = 5) rounds at ~1e-14;
# objective gaps below this are noise, so every bound below adds it before taking a square root.
J_EVAL_ERR = 1e-13


def assert_closed_form_is_the_optimum(g, pi_num, j_num, ref, r, beta, eta=0.0, direction="reverse"):
    """What is robust about comparing a closed form with a numerical optimiser.

    1. The closed form is at least as good as anything the optimiser found (up to rounding of J).
    2. The distance between them is bounded by the objective gap the optimiser left, through the
       curvature of J: for reverse KL (and entropy) J(G) - J(pi) = (beta + eta) KL(pi || G) exactly,
       so Pinsker gives max|pi - G| <= TV <= sqrt(gap / (2 (beta + eta))); the forward objective is
       beta * min(ref)-strongly concave on the simplex, so ||pi - G||_2 <= sqrt(2 gap / (beta min ref)).
       The tolerance is therefore what the optimiser achieved, not a number tuned to pass.
    3. The optimiser did converge (gap small), so the comparison is not vacuous.
    """
    j_g = objective_independent(g, ref, r, beta, eta, direction)
    assert j_g >= j_num - J_EVAL_ERR, (j_g, j_num)
    gap = max(j_g - j_num, 0.0) + J_EVAL_ERR
    if direction == "reverse":
        bound = np.sqrt(gap / (2 * (beta + eta)))
    else:
        bound = np.sqrt(2 * gap / (beta * ref[ref > 0].min()))
    assert np.max(np.abs(g - pi_num)) <= bound, (np.max(np.abs(g - pi_num)), bound)
    assert bound < 1e-4, f"the optimiser did not converge (objective gap {gap:.2e})"


# ----------------------------------------------------------------------------- optimality


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("beta", [0.2, 1.0, 3.0])
def test_reverse_target_is_the_numerical_optimum(seed, beta):
    ref, r = random_problem(np.random.default_rng(seed), 5)
    g = T.reverse_kl_target(ref, r, beta)
    pi_num, j_num = maximise_numerically(ref, r, beta)
    assert_closed_form_is_the_optimum(g, pi_num, j_num, ref, r, beta)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("beta", [0.2, 1.0, 3.0])
def test_forward_target_is_the_numerical_optimum(seed, beta):
    ref, r = random_problem(np.random.default_rng(100 + seed), 5)
    g, lam = T.forward_kl_target(ref, r, beta, return_lambda=True)
    pi_num, j_num = maximise_numerically(ref, r, beta, direction="forward")
    assert_closed_form_is_the_optimum(g, pi_num, j_num, ref, r, beta, direction="forward")
    assert lam > r.max()
    # Lambda comes from a root-finder converged to machine precision; g is then a closed-form expression
    np.testing.assert_allclose(g, beta * ref / (lam - r), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta,eta", [(0.5, 0.5), (1.0, 0.2), (0.0, 0.7), (0.3, 0.0)])
def test_entropy_regularized_target_is_the_numerical_optimum(seed, beta, eta):
    ref, r = random_problem(np.random.default_rng(200 + seed), 5)
    g = T.entropy_regularized_target(ref, r, beta, eta)
    pi_num, j_num = maximise_numerically(ref, r, beta, eta)
    assert_closed_form_is_the_optimum(g, pi_num, j_num, ref, r, beta, eta)


def test_the_optimality_check_rejects_a_wrong_closed_form():
    ref, r = random_problem(np.random.default_rng(0), 5)
    pi_num, j_num = maximise_numerically(ref, r, 0.2)
    wrong = T.reverse_kl_target(ref, r, 0.2 * 1.01)  # a 1% error in beta
    with pytest.raises(AssertionError):
        assert_closed_form_is_the_optimum(wrong, pi_num, j_num, ref, r, 0.2)


def test_entropy_only_ignores_reference_and_is_uniform_over_equal_rewards():
    ref = np.array([0.9, 0.1, 0.0, 0.0])
    g = T.entropy_regularized_target(ref, [1.0, 1.0, 1.0, 0.0], 0.0, 0.5)
    np.testing.assert_allclose(g[:3], g[0])
    np.testing.assert_allclose(g[3] / g[0], np.exp(-1 / 0.5))
    np.testing.assert_allclose(T.entropy_regularized_target(ref, [0, 1, 2, 3], 0.4, 0.0),
                               T.reverse_kl_target(ref, [0, 1, 2, 3], 0.4))


def test_forward_off_support_matches_numerical_optimum():
    # Reward 2 off the support: the on-support normaliser at Lambda = 2 is 0.5*0.1/2 + 0.5*0.1/1 < 1,
    # so the optimum places the rest on the off-support maximisers (split equally: our convention).
    ref = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    r = np.array([0.0, 1.0, 2.0, 2.0, -1.0])
    beta = 0.1
    g, lam = T.forward_kl_target(ref, r, beta, return_lambda=True)
    on = beta * ref[:2] / (2.0 - r[:2])
    np.testing.assert_allclose(g[:2], on, rtol=1e-14)
    np.testing.assert_allclose(g[2:4], (1 - on.sum()) / 2, rtol=1e-14)
    assert g[4] == 0.0 and lam == 2.0
    pi_num, j_num = maximise_numerically(ref, r, beta, direction="forward")
    assert objective_independent(g, ref, r, beta, direction="forward") >= j_num - J_EVAL_ERR
    # Off the support J is only strongly concave in the on-support coordinates (beta*min ref = 0.05):
    # the bound of assert_closed_form_is_the_optimum holds there, and for the total off-support mass
    # (one minus the on-support mass); the split among tied off-support maximisers is a convention.
    gap = objective_independent(g, ref, r, beta, direction="forward") - j_num + J_EVAL_ERR
    bound = np.sqrt(2 * max(gap, J_EVAL_ERR) / (beta * 0.5))
    assert np.max(np.abs(pi_num[:2] - g[:2])) <= bound < 1e-4
    assert abs(pi_num[2:4].sum() - g[2:4].sum()) <= 2 * bound


def test_forward_off_support_is_ignored_when_on_support_normaliser_reaches_one():
    ref = np.array([0.5, 0.5, 0.0])
    r = np.array([0.0, 1.0, 1.05])
    beta = 1.0  # normaliser at Lambda = 1.05: 0.5/1.05 + 0.5/0.05 >= 1 -> no off-support mass
    g, lam = T.forward_kl_target(ref, r, beta, return_lambda=True)
    assert g[2] == 0.0 and lam > 1.05
    pi_num, j_num = maximise_numerically(ref, r, beta, direction="forward")
    # The optimum sits on the boundary (an off-support logit at -inf), which the optimiser approaches
    # only slowly: compare objective values tightly and bound the distance on the support by the gap
    # (strong concavity in the on-support coordinates, modulus beta * min ref = 0.5).
    j_g = objective_independent(g, ref, r, beta, direction="forward")
    assert j_g >= j_num - J_EVAL_ERR
    bound = np.sqrt(2 * (max(j_g - j_num, 0) + J_EVAL_ERR) / (beta * 0.5))
    assert np.max(np.abs(pi_num[:2] - g[:2])) <= bound < 1e-3


# ----------------------------------------------------------------------------- identities


@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 10.0), v=st.integers(2, 12))
@settings(max_examples=60, deadline=None)
def test_identity_minus_J_over_beta_is_kl_to_gibbs_minus_log_zeta(seed, beta, v):
    rng = np.random.default_rng(seed)
    ref, r = random_problem(rng, v)
    pi = rng.dirichlet(np.ones(v))
    j = T.kl_regularized_objective(pi, ref, r, beta)
    g = T.reverse_kl_target(ref, r, beta)
    rhs = np.sum(rel_entr(pi, g)) - T.log_normalizer(ref, r, beta)
    np.testing.assert_allclose(-j / beta, rhs, rtol=1e-9, atol=1e-9)


@given(seed=st.integers(0, 10_000), v=st.integers(2, 30), zeros=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_forward_normaliser_accurate_over_twelve_decades_of_beta(seed, v, zeros):
    rng = np.random.default_rng(seed)
    ref, r = random_problem(rng, v, zero_ref=min(zeros, v - 1))
    r = r * rng.uniform(0.1, 10)
    betas = np.logspace(-6, 3, 28)[:, None]
    g, lam = T.forward_kl_target(ref, r, betas, return_lambda=True)
    assert g.shape == (28, v) and lam.shape == (28,)
    assert np.all(np.abs(g.sum(-1) - 1) <= 1e-10)
    assert np.all(g >= 0) and np.all(np.isfinite(g))
    on = ref > 0
    # Lambda strictly above the on-support maximum, within the bracket [R* + beta P*, R* + beta]
    r_star = r[on].max()
    p_star = ref[on & (r == r_star)].sum()
    off_used = g[:, ~on].sum(-1) > 0
    assert np.all((lam[~off_used] > r_star))
    assert np.all(lam[~off_used] <= r_star + betas[~off_used, 0] * (1 + 1e-12))
    assert np.all(lam[~off_used] >= r_star + betas[~off_used, 0] * p_star * (1 - 1e-12))


@given(seed=st.integers(0, 10_000), v=st.integers(2, 40), gap=st.floats(0.0, 10.0))
@settings(max_examples=60, deadline=None)
def test_reverse_target_is_exact_at_tiny_beta(seed, v, gap):
    rng = np.random.default_rng(seed)
    ref, _ = random_problem(rng, v, zero_ref=1 if v > 2 else 0)
    r = rng.uniform(0, gap, size=v)
    for beta in (1e-6, 1e-3, 1.0, 1e3):
        g = T.reverse_kl_target(ref, r, beta)
        assert np.all(np.isfinite(g))
        # normalised after exponentiating: the sum is 1 to V * eps (<= 40 * 2.2e-16 ~ 1e-14)
        assert abs(g.sum() - 1) < 1e-12
        assert np.all(g[ref == 0] == 0)
    # at beta = 1e-6 the log-ratio between any two support points is exactly what eq. 3.1 says
    i, j = np.flatnonzero(ref > 0)[:2]
    logg = T.log_reverse_kl_target(ref, r, 1e-6)
    # both sides are ~ (R_i - R_j)/beta <= 1e7: their rounding is ~1e7 * 1e-16 = 1e-9 absolute (rtol 1e-12
    # covers it for large ratios; atol 1e-6 for ratios near 0, where the difference of two 1e7-size logits
    # still carries that absolute rounding)
    np.testing.assert_allclose(logg[i] - logg[j], T.log_prob_ratio(ref, r, 1e-6, i, j), rtol=1e-12, atol=1e-6)


def test_reverse_target_spike_at_beta_1e6_with_gap_10():
    g = T.reverse_kl_target([0.5, 0.25, 0.25], [0.0, 10.0, 9.0], 1e-6)
    np.testing.assert_array_equal(g, [0.0, 1.0, 0.0])


# ----------------------------------------------------------------------------- limits


def test_limits_beta_to_zero_and_infinity_both_directions():
    ref = np.array([0.1, 0.3, 0.2, 0.4])
    r = np.array([1.0, 0.5, 1.0, 0.0])
    # beta -> 0: all mass on the reward maximisers, split in proportion to the reference (1 : 2)
    for fn, tol in ((T.reverse_kl_target, 1e-12), (T.forward_kl_target, 1e-6)):
        np.testing.assert_allclose(fn(ref, r, 1e-7), [1 / 3, 0, 2 / 3, 0], atol=tol)
        # beta -> infinity: back to the reference
        np.testing.assert_allclose(fn(ref, r, 1e7), ref, atol=1e-6)


def test_three_action_examples_from_the_paper():
    eq_sup = problems.three_action_equal_support()
    np.testing.assert_allclose(T.reverse_kl_target(eq_sup.ref_probs, eq_sup.rewards, 1e-3), [0, 0, 1], atol=1e-40)
    np.testing.assert_allclose(T.reverse_kl_target(eq_sup.ref_probs, eq_sup.rewards, 0.5), [0.07, 0.42, 0.51], atol=0.01)
    # 0.1 reward gap at beta = 1e-3 -> exp(100) ~ 2.7e43
    np.testing.assert_allclose(np.exp(T.log_prob_ratio(eq_sup.ref_probs, [0, 0.9, 1.0], 1e-3, 2, 1)), 2.688e43, rtol=1e-3)
    eq_rew = problems.three_action_equal_reward()
    betas = np.logspace(-4, 3, 15)[:, None]
    for fn in (T.reverse_kl_target, T.forward_kl_target):
        g = fn(eq_rew.ref_probs, eq_rew.rewards, betas)
        np.testing.assert_allclose(g[:, 1] / g[:, 2], 15.0, rtol=1e-9)  # the bias survives every beta
    np.testing.assert_allclose(T.reverse_kl_target(eq_rew.ref_probs, eq_rew.rewards, 1e-3), [0, 0.9375, 0.0625], atol=1e-12)


# ----------------------------------------------------------------------------- broadcasting


def test_beta_column_broadcasts_like_a_loop():
    rng = np.random.default_rng(3)
    ref, r = random_problem(rng, 7)
    betas = np.array([1e-3, 0.05, 0.3, 2.0, 50.0])
    for fn in (T.reverse_kl_target, T.forward_kl_target):
        batch = fn(ref, r, betas[:, None])
        assert batch.shape == (5, 7)
        for k, b in enumerate(betas):
            np.testing.assert_allclose(batch[k], fn(ref, r, b), rtol=1e-12, atol=1e-300)
    j = T.kl_regularized_objective(ref, ref, r, betas[:, None])
    assert j.shape == (5,)
    lr = T.log_prob_ratio(ref, r, betas[:, None], 0, 1)
    assert lr.shape == (5,)
    # batches of problems broadcast too: (2, V) problems x (3, 1, 1) betas -> (3, 2, V)
    ref2 = np.stack([ref, ref[::-1]])
    out = T.reverse_kl_target(ref2, r, betas[:3, None, None])
    assert out.shape == (3, 2, 7)
    np.testing.assert_allclose(out[1, 1], T.reverse_kl_target(ref[::-1], r, betas[1]))


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    ref, r = random_problem(rng, 6)
    theta = rng.normal(size=6)
    for direction in ("reverse", "forward"):
        grad = T.kl_regularized_gradient(theta, ref, r, 0.7, direction)
        num = np.zeros(6)
        for k in range(6):
            e = np.zeros(6)
            e[k] = 1e-6
            num[k] = (T.kl_regularized_objective(softmax(theta + e), ref, r, 0.7, direction)
                      - T.kl_regularized_objective(softmax(theta - e), ref, r, 0.7, direction)) / 2e-6
        np.testing.assert_allclose(grad, num, atol=1e-7)
    # at the target the gradient vanishes
    for direction, fn in (("reverse", T.reverse_kl_target), ("forward", T.forward_kl_target)):
        g = fn(ref, r, 0.7)
        np.testing.assert_allclose(T.kl_regularized_gradient(np.log(g), ref, r, 0.7, direction), 0, atol=1e-12)


def test_objective_infinite_kl_gives_minus_inf():
    assert T.kl_regularized_objective([0.5, 0.5], [1.0, 0.0], [0, 0], 1.0) == -np.inf
    assert T.kl_regularized_objective([1.0, 0.0], [0.5, 0.5], [0, 0], 1.0, "forward") == -np.inf


# ----------------------------------------------------------------------------- log-ratio, crossover


def test_crossover_beta_makes_samples_equally_likely_and_flips_preference():
    ref = np.array([np.exp(-4.05), np.exp(-5.95)])
    ref = np.append(ref, 1 - ref.sum())
    r = np.array([0.75, 1.0, 0.0])
    b_star = T.crossover_beta(r[0], r[1], ref[0], ref[1])
    np.testing.assert_allclose(b_star, 0.25 / 1.9)
    assert abs(T.log_prob_ratio(ref, r, b_star, 0, 1)) < 1e-12
    assert T.log_prob_ratio(ref, r, 0.10, 0, 1) < 0 < T.log_prob_ratio(ref, r, 0.15, 0, 1)


def test_crossover_beta_special_values():
    assert T.crossover_beta(0.0, 1.0, 0.3, 0.3) == np.inf  # equal support: only equal at infinity
    assert np.isnan(T.crossover_beta(1.0, 1.0, 0.30, 0.02))  # equal reward: never equal
    assert np.isnan(T.crossover_beta(1.0, 0.5, 0.30, 0.02))  # sample 1 dominates
    assert np.isnan(T.crossover_beta(1.0, 1.0, 0.3, 0.3))  # tied everywhere: no single crossover
    assert np.isnan(T.crossover_beta(0.0, 1.0, 0.0, 0.5))
    out = T.crossover_beta([0.75, 0.0], 1.0, [0.2, 0.1], 0.05)
    np.testing.assert_allclose(out, [0.25 / np.log(4), 1 / np.log(2)])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [T.reverse_kl_target, T.log_reverse_kl_target, T.forward_kl_target, T.log_normalizer])
def test_bad_input_names_the_argument(fn):
    ref, r = [0.5, 0.5], [0.0, 1.0]
    with pytest.raises(ValueError, match="beta"):
        fn(ref, r, 0.0)
    with pytest.raises(ValueError, match="beta"):
        fn(ref, r, -1.0)
    with pytest.raises(ValueError, match="beta"):
        fn(ref, r, np.array([0.1, 0.2]))  # bare (B,) vector would broadcast along tokens
    with pytest.raises(ValueError, match="rewards"):
        fn(ref, [0.0, np.nan], 1.0)
    with pytest.raises(ValueError, match="rewards"):
        fn(ref, [0.0, np.inf], 1.0)
    with pytest.raises(ValueError, match="rewards"):
        fn(ref, [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="ref_probs"):
        fn([0.6, 0.6], r, 1.0)
    with pytest.raises(ValueError, match="ref_probs"):
        fn([1.5, -0.5], r, 1.0)
    with pytest.raises(ValueError, match="ref_probs"):
        fn(["a", "b"], r, 1.0)


def test_bad_input_other_functions():
    ref, r = [0.5, 0.5], [0.0, 1.0]
    with pytest.raises(ValueError, match="eta"):
        T.entropy_regularized_target(ref, r, 0.0, 0.0)
    with pytest.raises(ValueError, match="eta"):
        T.entropy_regularized_target(ref, r, 1.0, -0.1)
    with pytest.raises(ValueError, match="direction"):
        T.kl_regularized_objective(ref, ref, r, 1.0, direction="sideways")
    with pytest.raises(ValueError, match="policy"):
        T.kl_regularized_objective([0.2, 0.2], ref, r, 1.0)
    with pytest.raises(ValueError, match="i must"):
        T.log_prob_ratio(ref, r, 1.0, 5, 0)
    with pytest.raises(ValueError, match="j must"):
        T.log_prob_ratio(ref, r, 1.0, 0, 1.5)
    with pytest.raises(ValueError, match="ref_prob_1"):
        T.crossover_beta(0, 1, 1.5, 0.2)
    with pytest.raises(ValueError, match="reward_2"):
        T.crossover_beta(0, np.nan, 0.5, 0.2)
    with pytest.raises(ValueError, match="ref_probs"):
        T.kl_regularized_gradient([0.0, 0.0], [1.0, 0.0], r, 1.0)
