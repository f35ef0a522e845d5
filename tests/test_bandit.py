"""marabook.bandit: exact training reaches the closed forms; sampled RLOO training gets close."""

import numpy as np
import pytest

from marabook import bandit, mara, targets
from marabook.metrics import total_variation

V = 100
Y = np.arange(V)
REF = np.exp(-0.05 * Y) / np.exp(-0.05 * Y).sum()
R = (((Y >= 10) & (Y < 20)) | ((Y >= 60) & (Y < 70))).astype(float)  # two blocks of good tokens


def exact_target(beta, direction, tau):
    if direction == "reverse":
        return targets.reverse_kl_target(REF, R, beta) if tau is None else mara.mara_target(REF, R, beta, tau)
    r = R if tau is None else bandit.augmented_rewards_global(REF, R, beta, tau)
    return targets.forward_kl_target(REF, r, beta)


@pytest.mark.parametrize("beta", [0.01, 1.0])
@pytest.mark.parametrize("direction", ["reverse", "forward"])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_exact_gradient_training_converges_to_the_closed_form(beta, direction, tau):
    traj = bandit.train_exact(REF, R, beta, direction=direction, mara_tau=tau, steps=4000, lr=0.1)
    # Exact gradient ascent converges geometrically, slowest at small beta (the curvature of J scales
    # with beta): after 4000 steps the measured TV is <= 1.3e-5 everywhere except reverse MARA at
    # beta = 0.01 (4.7e-4). 1e-3 is that convergence budget; a wrong target is off by > 0.05.
    assert total_variation(traj.final, exact_target(beta, direction, tau)) < 1e-3
    assert traj.policies.shape[1] == V and traj.steps[0] == 0 and traj.steps[-1] == 4000
    if tau is None:  # the task's objective (original rewards) improves on the reference
        assert traj.objective[-1] > traj.objective[0]


def test_mara_target_is_flat_over_both_blocks_and_vanilla_is_not():
    g = mara.mara_target(REF, R, 0.01, 0.5)
    good = R >= 0.5
    np.testing.assert_allclose(g[good], 1 / good.sum(), rtol=1e-6)  # at beta = 0.01, ~all mass on good
    v = targets.reverse_kl_target(REF, R, 0.01)
    assert v[60:70].sum() < 0.1 < g[60:70].sum()


@pytest.mark.parametrize("beta", [0.01, 1.0])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_sampled_rloo_reverse_kl_ends_near_exact_target(beta, tau):
    traj = bandit.train_sampled(REF, R, beta, direction="reverse", mara_tau=tau, batch_size=64,
                                steps=5000, lr=0.1, seeds=(0, 1))
    tv = total_variation(traj.final, exact_target(beta, "reverse", tau))
    other = exact_target(beta, "reverse", 0.5 if tau is None else None)  # the other method's target
    assert traj.final.shape == (2, V)
    # Sampled RLOO with one anchor per batch: final TV measured over seeds 0-7 is <= 0.016 except one
    # excursion of 0.049 (MARA, beta = 0.01, seed 6: a batch anchor is not the global anchor). The
    # tolerance is set by what must be told apart, not by those numbers: the vanilla and MARA targets
    # are >= 0.30 apart in TV here, so half that distance decides which target training reached.
    gap = total_variation(exact_target(beta, "reverse", tau), other)
    assert gap > 0.3
    assert np.all(tv < gap / 2), tv
    assert np.all(total_variation(traj.final, other) > gap / 2)


# --- Algorithm 2's form (eq. 4.3): the same update under the reverse KL, a flat target under the forward KL ----

@pytest.mark.parametrize("beta", [0.01, 1.0])
def test_exact_training_of_the_alg2_form_reaches_its_targets(beta):
    fwd = bandit.train_exact(REF, R, beta, direction="forward", mara_tau=0.5, mara_form="alg2", steps=4000, lr=0.1)
    target = mara.alg2_forward_target(REF, R, beta, 0.5)
    # measured after 4000 steps: TV ~1e-15 at both betas (the forward curvature does not shrink with beta)
    assert total_variation(fwd.final, target) < 1e-6
    good = R >= 0.5
    assert fwd.final[good].max() / fwd.final[good].min() < 1 + 1e-6          # flat over both blocks
    rev = bandit.train_exact(REF, R, beta, direction="reverse", mara_tau=0.5, mara_form="alg2", steps=300, lr=0.1)
    same = bandit.train_exact(REF, R, beta, direction="reverse", mara_tau=0.5, steps=300, lr=0.1)
    np.testing.assert_allclose(rev.policies, same.policies, atol=1e-12)    # reverse: gradient-equivalent


def test_sampled_alg2_reverse_is_algorithm_1_sample_by_sample():
    a = bandit.train_sampled(REF, R, 0.01, direction="reverse", mara_tau=0.5, mara_form="alg2", steps=300, seeds=(0, 1))
    b = bandit.train_sampled(REF, R, 0.01, direction="reverse", mara_tau=0.5, steps=300, seeds=(0, 1))
    np.testing.assert_allclose(a.policies, b.policies, atol=1e-9)           # same draws, same shaped rewards


@pytest.mark.parametrize("beta", [0.01, 1.0])
def test_sampled_alg2_forward_ends_near_its_flat_target(beta):
    traj = bandit.train_sampled(REF, R, beta, direction="forward", mara_tau=0.5, mara_form="alg2", batch_size=64,
                                steps=5000, lr=0.1, seeds=(0, 1))
    target = mara.alg2_forward_target(REF, R, beta, 0.5)
    reward_form = exact_target(beta, "forward", 0.5)
    # measured (seeds 0-2): TV 0.042-0.055 to the flat target, >= 0.59 to the reward form's; the two targets
    # are >= 0.59 apart, so half that distance decides which one training reached
    gap = total_variation(target, reward_form)
    assert gap > 0.5
    assert np.all(total_variation(traj.final, target) < gap / 2)
    assert np.all(total_variation(traj.final, reward_form) > gap / 2)


def test_sampled_training_is_reproducible_and_seed_dependent():
    a = bandit.train_sampled(REF, R, 0.1, steps=50, seeds=(3, 4))
    b = bandit.train_sampled(REF, R, 0.1, steps=50, seeds=(3, 4))
    np.testing.assert_array_equal(a.final, b.final)
    assert not np.allclose(a.final[0], a.final[1])
    c = bandit.train_sampled(REF, R, 0.1, steps=50, seeds=(4,))
    np.testing.assert_array_equal(c.final[0], a.final[1])  # each seed's stream is independent


def test_bad_input():
    with pytest.raises(ValueError, match="direction"):
        bandit.train_exact(REF, R, 0.1, direction="both")
    with pytest.raises(ValueError, match="beta"):
        bandit.train_exact(REF, R, 0.0)
    with pytest.raises(ValueError, match="batch_size"):
        bandit.train_sampled(REF, R, 0.1, batch_size=1)
    with pytest.raises(ValueError, match="steps"):
        bandit.train_sampled(REF, R, 0.1, steps=0)
    with pytest.raises(ValueError, match="rewards"):
        bandit.train_exact(REF, R[:-1], 0.1)
    with pytest.raises(ValueError, match="ref_probs"):
        bandit.train_exact(np.r_[0.0, REF[1:] / REF[1:].sum()], R, 0.1, direction="reverse")
    with pytest.raises(ValueError, match="mara_form"):
        bandit.train_exact(REF, R, 0.1, mara_tau=0.5, mara_form="alg3")
    with pytest.raises(ValueError, match="mara_form"):
        bandit.train_sampled(REF, R, 0.1, mara_tau=0.5, mara_form=None)


def test_augmented_rewards_global_bad_input_and_values():
    out = bandit.augmented_rewards_global(REF, R, 0.1, 0.5)
    np.testing.assert_allclose(out[10], 1.0)  # the anchor (best-supported good token) keeps its reward
    np.testing.assert_allclose(out[60], 1.0 + 0.1 * 0.05 * 50)
    with pytest.raises(ValueError, match="rewards"):
        bandit.augmented_rewards_global(REF, np.r_[np.nan, R[1:]], 0.1, 0.5)
    with pytest.raises(ValueError, match="ref_probs"):
        bandit.augmented_rewards_global(REF * 2, R, 0.1, 0.5)
    with pytest.raises(ValueError, match="tau"):
        bandit.augmented_rewards_global(REF, R, 0.1, "best")


# --- Remark B.2: maximum likelihood on samples from the target (chapter 2) --------------------------------

def test_sample_target_draws_from_the_gibbs_target():
    from marabook import bandit as B, targets as T
    ref, r = np.array([0.68, 0.30, 0.02]), np.array([0.0, 1.0, 1.0])
    n = 40_000
    for beta in (1.0, 0.1):
        y, rate = B.sample_target(ref, r, beta, n, seed=3)
        freq = np.bincount(y, minlength=3) / n
        g = T.reverse_kl_target(ref, r, beta)
        # each frequency is a binomial mean: 5 standard errors, sqrt(g(1-g)/n) <= 0.0025
        assert np.all(np.abs(freq - g) <= 5 * np.sqrt(g * (1 - g) / n) + 1e-12)
        expected_rate = float(np.sum(ref * np.exp((r - r.max()) / beta)))  # zeta e^{-max R / beta}
        assert rate == pytest.approx(expected_rate, abs=0.01)


def test_filtered_self_training_is_a_martingale_that_fixes():
    from marabook import bandit as B
    ref, r = np.array([0.68, 0.30, 0.02]), np.array([0.0, 1.0, 1.0])
    tr = B.filtered_self_training(ref, r, 0.5, n=64, rounds=300, seeds=400, seed=1)
    assert tr.shape == (301, 400, 3)
    # after one round the wrong answer is gone and, in expectation, the reference's 15:1 ratio is kept
    assert np.all(tr[1:, :, 0] == 0)
    for k in (1, 20, 300):
        share = tr[k, :, 1]
        assert abs(share.mean() - 0.9375) <= 4 * share.std() / np.sqrt(400) + 1e-9
    # yet nearly every run ends on one answer (Wright-Fisher drift with ~62 kept samples a round fixes in
    # ~2.8 * 62 rounds on average; a few runs take longer than 300), and it ends on the rare good answer with
    # probability equal to its initial share 0.0625 (a martingale's fixation probability), within 4 SE
    fixed = tr[-1].max(axis=1) == 1.0
    assert fixed.mean() >= 0.95
    on_rare = (tr[-1, :, 2] == 1.0).mean()
    assert abs(on_rare - 0.0625) <= 4 * np.sqrt(0.0625 * 0.9375 / 400)


def test_remark_b2_functions_reject_bad_input():
    from marabook import bandit as B
    ref, r = np.array([0.68, 0.30, 0.02]), np.array([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="beta"):
        B.sample_target(ref, r, 0.0, 10, seed=0)
    with pytest.raises(ValueError, match="n"):
        B.sample_target(ref, r, 0.1, 0, seed=0)
    with pytest.raises(ValueError, match="tau"):
        B.filtered_self_training(ref, r, 2.0)
    with pytest.raises(ValueError, match="tau"):
        B.filtered_self_training(ref, r, float("nan"))
    with pytest.raises(ValueError, match="rewards"):
        B.filtered_self_training(ref, r[:2], 0.5)
