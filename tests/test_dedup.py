"""REINVENT's de-duplicated fixed point (chapter 7, eqs. 7.3-7.4; marabook.chem.dedup): the closed form against
a hand-built case, the exact expected dynamics from random starts, sampled de-duplicated training, and MARA."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("rdkit")

from marabook import chem, mara  # noqa: E402
from marabook.chem.dedup import (_batch_mara, dedup_fixed_point, dedup_flow, dedup_stability, dedup_stationarity,  # noqa: E402
                                 inclusion, simulate_dedup)

# a Zipf prior over 20 molecules, three good ones of unequal prior support (ranks 2, 5, 10), B = 8: the
# fixed point's probabilities straddle 1/B, so the batch size matters (unlike chapter 7's five-molecule toy)
N = 20
PRIOR = 1 / np.arange(1, N + 1) / np.sum(1 / np.arange(1, N + 1))
SCORES = np.full(N, 0.3)
GOOD = [1, 4, 9]
SCORES[GOOD] = [0.9, 0.95, 0.95]
SIGMA, B = 4.0, 8


def test_hand_built_two_molecule_case():
    # choose the answer pi = (0.25, 0.75) and lambda = 2 with B = 2, then build the right-hand side of eq. 7.4:
    # q = 1 - (1 - pi)^2 = (0.4375, 0.9375), pi / q = (4/7, 0.8), a = log pi + lambda * pi / q
    a = np.array([np.log(0.25) + 2 * 4 / 7, np.log(0.75) + 2 * 0.8])
    prior = np.array([0.5, 0.5])
    scores = a - np.log(0.5)  # sigma = 1: log prior + S = a
    np.testing.assert_allclose(dedup_fixed_point(prior, scores, 1.0, 2), [0.25, 0.75], atol=1e-12)
    np.testing.assert_allclose(inclusion(np.array([0.25, 0.75]), 2), [0.4375, 0.9375], rtol=1e-15)
    # and the same molecules counted with multiplicity (B = 1) give the Gibbs target e^a / sum e^a instead
    np.testing.assert_allclose(dedup_fixed_point(prior, scores, 1.0, 1), np.exp(a) / np.exp(a).sum(), rtol=1e-12)


def test_the_batch_size_moves_the_fixed_point():
    points = {b: dedup_fixed_point(PRIOR, SCORES, SIGMA, b) for b in (1, 8, 64, 512)}
    gibbs = chem.dap_fixed_point(PRIOR, SCORES, SIGMA)
    np.testing.assert_allclose(points[1], gibbs, rtol=1e-10)
    # every larger batch flattens it further: the likeliest molecule loses mass, the rarest gains
    top, rare = np.argmax(gibbs), np.argmin(gibbs)
    for small, large, gap in ((1, 8, 0.1), (8, 64, 0.05), (64, 512, 0.001)):  # measured 0.21, 0.10, 0.006
        assert points[large][top] < points[small][top] - gap
        assert points[large][rare] > points[small][rare]
    for b, pi in points.items():
        assert np.abs(dedup_stationarity(pi, PRIOR, SCORES, SIGMA, b)).max() < 1e-12


def test_a_score_shift_moves_the_deduplicated_point_but_not_the_gibbs_target():
    np.testing.assert_allclose(dedup_fixed_point(PRIOR, SCORES + 0.5, SIGMA, 1), dedup_fixed_point(PRIOR, SCORES, SIGMA, 1),
                               rtol=1e-10)
    shifted = dedup_fixed_point(PRIOR, SCORES + 0.5, SIGMA, B)
    assert np.abs(shifted - dedup_fixed_point(PRIOR, SCORES, SIGMA, B)).max() > 0.01


def test_the_fixed_point_is_stable_and_every_start_reaches_it():
    ev = dedup_stability(PRIOR, SCORES, SIGMA, B)
    assert ev.shape == (N - 1,)  # the shift of all logits (a zero eigenvalue) is removed
    assert ev.real.max() < -0.05 and np.abs(ev.imag).max() < 1e-6
    target = dedup_fixed_point(PRIOR, SCORES, SIGMA, B)
    rng = np.random.default_rng(0)
    for _ in range(3):
        start = rng.dirichlet(np.ones(N))
        np.testing.assert_allclose(dedup_flow(PRIOR, SCORES, SIGMA, B, start=start, steps=3000, lr=0.15), target,
                                   atol=1e-10)


def test_sampled_deduplicated_training_settles_on_eq_7_4():
    target = dedup_fixed_point(PRIOR, SCORES, SIGMA, B)

    def error(lr):
        runs = [simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=8000, lr=lr, seed=s) for s in range(4)]
        return np.abs(np.mean([r.mean_probs for r in runs], axis=0) - target).max(), runs

    err_small, runs = error(0.05)
    err_large, _ = error(0.1)
    assert err_small < 0.006                    # measured 0.0029
    assert err_small < 0.6 * err_large          # a constant step's bias shrinks with the step (measured 0.0092)
    gibbs = chem.dap_fixed_point(PRIOR, SCORES, SIGMA)
    assert np.abs(runs[0].mean_probs - gibbs).max() > 0.15  # and the Gibbs target is far away
    assert 4 < runs[0].mean_distinct < B
    again = simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=8000, lr=0.05, seed=0)
    np.testing.assert_array_equal(again.mean_probs, runs[0].mean_probs)


def test_maras_flat_target_survives_deduplication():
    s_bar = mara.mara_rewards_global(PRIOR, SCORES, 1 / SIGMA, 0.85)
    for b in (1, 8, 64, 512):
        pi = dedup_fixed_point(PRIOR, s_bar, SIGMA, b)
        assert np.ptp(pi[GOOD]) < 1e-12 * pi[GOOD].max()
    np.testing.assert_allclose(dedup_fixed_point(PRIOR, s_bar, SIGMA, 1), mara.mara_target(PRIOR, SCORES, 1 / SIGMA, 0.85),
                               rtol=1e-10)
    # simulated: the global anchor keeps the good molecules level within noise; the trainer's per-batch anchor
    # (the batch's best-supported good molecule) favours the global anchor, molecule 1 (measured +5%)
    glob = np.mean([simulate_dedup(PRIOR, s_bar, SIGMA, B, steps=8000, lr=0.1, seed=s).mean_probs for s in range(4)], 0)
    batch = np.mean([simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=8000, lr=0.1, seed=s, mara_tau=0.85).mean_probs
                     for s in range(4)], 0)
    assert glob[GOOD].max() / glob[GOOD].min() - 1 < 0.02
    assert batch[1] / batch[[4, 9]].max() - 1 > 0.03


def test_the_simulations_mara_is_mara_rewards():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        sc = rng.choice([0.2, 0.5, 0.85, 0.9, 0.95], size=n)
        lp = np.round(rng.normal(-5, 2, size=n), 1)  # rounded: ties in the prior log-likelihood happen
        np.testing.assert_allclose(_batch_mara(sc, lp, 0.25, 0.85), mara.mara_rewards(sc, lp, 0.25, 0.85), rtol=1e-15)


def test_bad_input_is_refused_by_name():
    cases = [
        (lambda: dedup_fixed_point(PRIOR, SCORES, SIGMA, 0), "batch_size"),
        (lambda: dedup_fixed_point(PRIOR, SCORES - 5, SIGMA, B), "scores"),
        (lambda: dedup_stability(PRIOR, SCORES, SIGMA, B, eps=0.0), "eps"),
        (lambda: dedup_flow(PRIOR, SCORES, SIGMA, B, start=np.ones(3) / 3), "agent_probs"),
        (lambda: dedup_flow(PRIOR, SCORES, SIGMA, B, lr=-1.0), "lr"),
        (lambda: simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=10, lr=0.1, seed=0, tail=1.5), "tail"),
        (lambda: simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=10, lr=0.1, seed=0, reduction="max"), "reduction"),
        (lambda: simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=0, lr=0.1, seed=0), "steps"),
        (lambda: simulate_dedup(PRIOR, SCORES, -1.0, B, steps=10, lr=0.1, seed=0), "sigma"),
        (lambda: simulate_dedup(PRIOR, SCORES, SIGMA, B, steps=10, lr=0.1, seed=0, mara_tau=0.0), "mara_tau"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()
