"""REINVENT's fixed point when each distinct molecule of a batch enters the loss once (book chapter 7, eqs. 7.3-7.4).

REINVENT 2 and 3, and :class:`marabook.chem.ReinventTrainer`, train on each *distinct* molecule of a sampled
batch once (in REINVENT 4 this is the staged-learning option ``unique_sequences``, off by default; with it off,
REINVENT 4 keeps repeats in the loss but scores each in-batch repeat 0, a different rule not modelled here). Molecule
``k`` then enters the loss with the probability ``q(k) = 1 - (1 - pi(k))^B`` that a batch of ``B`` contains it,
not with weight ``pi(k)``, and the fixed point moves from the Gibbs target (eq. 7.2) to eq. (7.4).

The derivation (chapter 7, section 7.3) assumes, and every function here computes under, the following:

1. a *tabular* agent: one free logit per molecule, ``pi = softmax(theta)`` over a finite set of molecules;
2. each step draws ``B`` molecules i.i.d. from the current agent (the sampling is not differentiated);
3. the loss is the DAP loss (eq. 7.1) *summed* over the batch's distinct molecules (REINVENT divides it by
   their number ``K``; :func:`simulate_dedup` can do either, to measure what the division changes);
4. no experience replay and no diversity filter: the scores are fixed numbers per molecule;
5. ``sum_k pi_prior(k) exp(sigma S(k)) >= 1``, which scores ``S >= 0`` guarantee.

Under 1-5 the stationary point is unique (see :func:`dedup_fixed_point`), and chapter 7 checks that it is
stable (:func:`dedup_stability`) and that sampled, de-duplicated training settles on it (:func:`simulate_dedup`).
Unlike eq. (7.2), eq. (7.4) is *not* invariant to adding a constant to every score (assumption 5 is not a
convention): the shift enters each molecule's equation through ``lambda * pi / q``, which is not constant.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from marabook._validate import check_beta, check_finite, check_int, check_number

__all__ = ["dedup_stationarity", "dedup_fixed_point", "dedup_stability", "dedup_flow", "simulate_dedup", "DedupRun"]


def check_tabular(prior_probs, scores):
    """``(prior, scores)`` as float arrays: a positive 1-D distribution and finite scores of its shape."""
    p = np.asarray(prior_probs, dtype=float)
    sc = check_finite(scores, "scores")
    if p.ndim != 1 or p.shape != sc.shape or not np.all(np.isfinite(p)) or np.any(p <= 0) or abs(p.sum() - 1) > 1e-6:
        raise ValueError("prior_probs must be a positive 1-D distribution with the shape of scores")
    return p, sc


def inclusion(pi, batch_size: int):
    """q = 1 - (1 - pi)^B, the probability that a batch of B i.i.d. draws contains each molecule (stable form)."""
    with np.errstate(divide="ignore"):  # pi = 1 gives log1p(-1) = -inf and q = 1, as it should
        return -np.expm1(batch_size * np.log1p(-np.minimum(pi, 1.0)))


def _check_agent(agent_probs, shape):
    pi = np.asarray(agent_probs, dtype=float)
    if pi.shape != shape or not np.all(np.isfinite(pi)) or np.any(pi <= 0) or abs(pi.sum() - 1) > 1e-6:
        raise ValueError("agent_probs must be a positive distribution with the shape of prior_probs")
    return pi


def dedup_stationarity(agent_probs, prior_probs, scores, sigma: float, batch_size: int) -> np.ndarray:
    """The exact expected gradient (w.r.t. the logits of a tabular agent, up to the factor -2) of the DAP loss
    *summed over a batch's distinct molecules*, as REINVENT's de-duplication trains it (chapter 7, eq. 7.3):

        g(k) = q(k) d(k) - pi(k) sum_y q(y) d(y),   q = 1 - (1 - pi)^B,   d = log pi_prior + sigma S - log pi.

    Zero exactly at :func:`dedup_fixed_point`; with ``batch_size=1`` (q = pi) it is the gradient of eq. 7.1.
    Gradient descent on the loss moves the logits along ``+g``. Assumptions 1-4 of the module ``marabook.chem.dedup``.
    """
    p, sc = check_tabular(prior_probs, scores)
    s = float(check_beta(sigma, "sigma"))
    b = check_int(batch_size, "batch_size")
    pi = _check_agent(agent_probs, p.shape)
    q = inclusion(pi, b)
    d = np.log(p) + s * sc - np.log(pi)
    return q * d - pi * np.sum(q * d)


def dedup_fixed_point(prior_probs, scores, sigma: float, batch_size: int) -> np.ndarray:
    """REINVENT's fixed point when each distinct molecule of a batch enters the loss once (chapter 7, eq. 7.4).

    Molecule k enters the loss with the probability ``q(k) = 1 - (1 - pi(k))^B`` that a batch of B contains
    it. The expected gradient (:func:`dedup_stationarity`) vanishes where ``q(k) d(k) = pi(k) lambda`` with
    ``lambda = sum_y q(y) d(y)``, i.e. where

        log pi(k) + lambda * pi(k) / q(k) = log pi_prior(k) + sigma S(k)   for every k,

    with lambda fixed by normalisation. ``pi / q`` grows from 1/B (rare molecules) to 1 (certain ones), so
    likely molecules are pulled down harder than under eq. 7.2: the de-duplicated fixed point is flatter than
    the Gibbs target :func:`marabook.chem.dap_fixed_point`, and equals it when ``batch_size=1`` or when every
    pi(k) << 1/B.

    Assumptions (chapter 7 states them where it derives eq. 7.4): a tabular agent, B i.i.d. draws from it per
    step, the DAP loss summed over the distinct molecules, no replay or diversity filter, and
    ``sum pi_prior exp(sigma S) >= 1`` (true for scores >= 0). The last makes the solution unique: if
    lambda < 0, every ``pi(k) > pi_prior(k) exp(sigma S(k))`` and the total would exceed 1, so lambda >= 0;
    for lambda >= 0 the left side is strictly increasing in ``log pi(k)`` (``pi / q = 1 / sum_{j<B} (1-pi)^j``
    increases with pi), so each lambda gives one ``pi(lambda)`` whose total strictly decreases in lambda,
    and exactly one lambda normalises it. Equal right-hand sides therefore give equal probabilities, which is
    why MARA's flat target (eq. 8.1) stays flat under de-duplication. Solved in log space: an inner
    bisection per molecule, an outer root-find for lambda.
    """
    from scipy.optimize import brentq

    p, sc = check_tabular(prior_probs, scores)
    s = float(check_beta(sigma, "sigma"))
    b = check_int(batch_size, "batch_size")
    a = np.log(p) + s * sc
    if np.logaddexp.reduce(a) < 0:
        raise ValueError("scores must make sum(prior_probs * exp(sigma * scores)) >= 1 (scores >= 0 do)")

    def solve(lam: float) -> np.ndarray:
        # u = log pi(k) solves u + lam * h(e^u) = a(k); h = pi / q lies in [1/B, 1], so u is bracketed
        lo = a - lam - 1e-12
        hi = np.minimum(a - lam / b, 0.0)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            pi = np.exp(mid)
            g = mid + lam * pi / inclusion(pi, b) - a
            lo, hi = np.where(g < 0, mid, lo), np.where(g < 0, hi, mid)
        return np.exp(0.5 * (lo + hi))

    def excess(lam: float) -> float:
        return float(np.sum(solve(lam))) - 1.0

    lam_lo = max(0.0, float(a.max()))  # below a.max() the likeliest molecule would need pi > 1
    if excess(lam_lo) < 0:
        lam_lo = 0.0
    lam_hi = max(1.0, 2 * lam_lo)
    while excess(lam_hi) > 0:
        lam_hi *= 2.0
    lam = brentq(excess, lam_lo, lam_hi, xtol=1e-14, rtol=1e-15, maxiter=500)
    pi = solve(lam)
    return pi / pi.sum()


def dedup_stability(prior_probs, scores, sigma: float, batch_size: int, eps: float = 1e-6) -> np.ndarray:
    """Eigenvalues of the linearised expected dynamics ``d theta / dt = g(theta)`` (eq. 7.3, :func:`dedup_stationarity`)
    at the fixed point :func:`dedup_fixed_point` (chapter 7).

    ``g`` does not change when a constant is added to every logit and its entries sum to zero, so its Jacobian
    has one zero eigenvalue along that shift; the N - 1 returned here are those on the logits that change the
    distribution (central differences with step ``eps``, sorted by real part, largest first). All real parts
    negative: the fixed point is locally stable under gradient descent with a small enough step.
    """
    p, sc = check_tabular(prior_probs, scores)
    check_number(eps, "eps", positive=True)
    pi = dedup_fixed_point(p, sc, sigma, batch_size)
    theta = np.log(pi)
    n = p.size

    def g(th):
        z = np.exp(th - th.max())
        return dedup_stationarity(z / z.sum(), p, sc, sigma, batch_size)

    jac = np.empty((n, n))
    for k in range(n):
        step = np.zeros(n)
        step[k] = eps
        jac[:, k] = (g(theta + step) - g(theta - step)) / (2 * eps)
    basis = np.linalg.qr(np.eye(n) - 1.0 / n)[0][:, : n - 1]  # orthonormal basis of the sum-zero logits
    ev = np.linalg.eigvals(basis.T @ jac @ basis)
    return ev[np.argsort(-ev.real)]


def dedup_flow(prior_probs, scores, sigma: float, batch_size: int, *, start=None, steps: int = 2000,
               lr: float = 0.25) -> np.ndarray:
    """Iterate the exact expected de-duplicated update (chapter 7): ``theta <- theta + lr * 2 g(theta)`` with ``g``
    eq. (7.3) (:func:`dedup_stationarity`), i.e. plain gradient descent on the expected loss summed over a batch's
    distinct molecules, from ``start`` (agent probabilities; default the prior). Returns the final probabilities.
    Chapter 7 starts it from random distributions to check that every start reaches the one fixed point
    (:func:`dedup_fixed_point`). The step must be small against the largest eigenvalue of
    :func:`dedup_stability` (``lr * 2 |eigenvalue| < 2``)."""
    p, sc = check_tabular(prior_probs, scores)
    check_int(steps, "steps")
    eta = check_number(lr, "lr", positive=True)
    theta = np.log(p if start is None else _check_agent(start, p.shape))
    for _ in range(steps):
        pi = np.exp(theta - np.logaddexp.reduce(theta))
        theta = theta + eta * 2.0 * dedup_stationarity(pi / pi.sum(), p, sc, sigma, batch_size)
    return np.exp(theta - np.logaddexp.reduce(theta))


class DedupRun(NamedTuple):
    """What :func:`simulate_dedup` returns: the agent's probabilities averaged over the last ``tail`` share of
    the steps, the final probabilities, the mean number of distinct molecules per batch, and the probabilities
    every ``record_every`` steps (empty without recording)."""

    mean_probs: np.ndarray
    final_probs: np.ndarray
    mean_distinct: float
    trajectory: np.ndarray


def _batch_mara(scores, prior_logp, beta: float, tau: float) -> np.ndarray:
    """:func:`marabook.mara.mara_rewards` (eq. 4.1, one group, a numeric tau) without its input checks, which cost
    more than a whole simulated step: good molecules get ``S(z) + beta (log pi_prior(z) - log pi_prior(y))``, ``z``
    the good one of highest prior log-likelihood (ties: highest score). The tests compare the two."""
    good = scores >= tau
    if not good.any():
        return scores
    best = prior_logp[good].max()
    s_z = scores[good & (prior_logp == best)].max()
    return np.where(good, s_z + beta * (best - prior_logp), scores)


def simulate_dedup(prior_probs, scores, sigma: float, batch_size: int, *, steps: int, lr: float, seed: int,
                   tail: float = 0.5, reduction: str = "sum", mara_tau: float | None = None,
                   start=None, record_every: int = 0) -> DedupRun:
    """Sampled, de-duplicated REINVENT on a tabular agent (chapter 7's check of eq. 7.4 by simulation).

    Each step draws ``batch_size`` molecules i.i.d. from the agent (``numpy.random.default_rng(seed)``), keeps
    each distinct one once (set D), and takes one plain gradient step of size ``lr`` on the logits for the DAP
    loss ``sum_{y in D} (log pi_prior(y) + sigma S(y) - log pi(y))^2`` (eq. 7.1), whose gradient is
    ``-2 (1[k in D] e(k) - pi(k) sum_{y in D} e(y))``; ``reduction="mean"`` divides it by ``|D|``, as REINVENT
    does. With ``mara_tau`` the scores of the batch's distinct molecules go through MARA
    (:func:`marabook.mara.mara_rewards`, eq. 4.1) with ``beta = 1/sigma`` first, anchored on the batch's
    best-supported good molecule, as :class:`marabook.chem.MaraTransform` does in the trainer (for MARA's global anchor pass
    :func:`marabook.mara.mara_rewards_global`'s scores and no ``mara_tau``). Starts at ``start`` (agent
    probabilities; default the prior). No replay, no diversity filter.
    """
    p, sc = check_tabular(prior_probs, scores)
    s = float(check_beta(sigma, "sigma"))
    b = check_int(batch_size, "batch_size")
    n_steps = check_int(steps, "steps")
    eta = check_number(lr, "lr", positive=True)
    check_int(seed, "seed", minimum=0)
    tail = check_number(tail, "tail", positive=True)
    if tail > 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    check_int(record_every, "record_every", minimum=0)
    if mara_tau is not None:
        check_number(mara_tau, "mara_tau", positive=True)
    logp_prior = np.log(p)
    theta = logp_prior.copy() if start is None else np.log(_check_agent(start, p.shape))
    rng = np.random.default_rng(seed)
    first_avg = n_steps - max(1, int(round(tail * n_steps)))
    total, n_avg, distinct, traj = np.zeros_like(p), 0, 0, []
    for t in range(n_steps):
        logpi = theta - np.logaddexp.reduce(theta)
        pi = np.exp(logpi)
        present = np.flatnonzero(rng.multinomial(b, pi / pi.sum()))
        s_d = sc[present] if mara_tau is None else _batch_mara(sc[present], logp_prior[present], 1.0 / s, mara_tau)
        e = logp_prior[present] + s * s_d - logpi[present]
        step = -pi * e.sum()
        step[present] += e
        theta = theta + eta * 2.0 * (step / present.size if reduction == "mean" else step)
        distinct += present.size
        if t >= first_avg:
            total += pi
            n_avg += 1
        if record_every and t % record_every == 0:
            traj.append(pi)
    final = np.exp(theta - np.logaddexp.reduce(theta))
    return DedupRun(total / n_avg, final, distinct / n_steps, np.array(traj))
