"""Closed-form optima of KL-regularised RL (book chapters 1-3).

The setting is a bandit over whole samples ``y`` (a token, an answer, a molecule) with reward
``R(y)``, a reference model ``pi_ref`` and a KL coefficient ``beta > 0``. Every function here:

* takes NumPy array-likes, with the sample axis LAST (``ref_probs`` and ``rewards`` of shape
  ``(..., V)``);
* broadcasts a leading axis of betas: ``beta`` is a scalar or has a trailing axis of length 1, so
  ``beta`` of shape ``(B, 1)`` with vectors of shape ``(V,)`` gives ``(B, V)`` in one vectorised call;
* works in log space, so ``beta = 1e-6`` with reward gaps of 10 neither overflows nor returns NaN;
* rejects bad input with a ``ValueError`` naming the argument. ``ref_probs`` must be finite,
  non-negative and sum to 1 within ``1e-6`` along the last axis (it is then renormalised exactly).

Equation numbers refer to the book: (1.x) chapter 1, "KL-regularised RL is distribution matching";
(2.x) chapter 2, "The forward-KL target"; (3.x) chapter 3, "When is the target unimodal?".
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, rel_entr

from marabook._validate import (
    broadcast_last,
    check_beta,
    check_distribution,
    check_finite,
)

__all__ = [
    "log_reverse_kl_target",
    "reverse_kl_target",
    "log_normalizer",
    "forward_kl_target",
    "entropy_regularized_target",
    "kl_regularized_objective",
    "kl_regularized_gradient",
    "log_prob_ratio",
    "crossover_beta",
]

_DIRECTIONS = ("reverse", "forward")


def _prepare(ref_probs, rewards, beta, *, allow_zero_beta: bool = False):
    """Validate and broadcast (ref_probs, rewards, beta) to a common ``(..., V)`` layout."""
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    shape = broadcast_last("ref_probs", ref, "rewards", r)
    b = check_beta(beta, allow_zero=allow_zero_beta)
    try:
        shape = np.broadcast_shapes(shape, b.shape)
    except ValueError as exc:
        raise ValueError(
            f"beta with shape {b.shape} does not broadcast with ref_probs/rewards of shape {shape}"
        ) from exc
    return np.broadcast_to(ref, shape), np.broadcast_to(r, shape), np.broadcast_to(b, shape[:-1] + (1,))


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def _gibbs_logits(ref, r, b) -> np.ndarray:
    """Unnormalised log Gibbs weights ``log pi_ref + R / beta`` (-inf off the reference support)."""
    return _log(ref) + r / b


def log_reverse_kl_target(ref_probs, rewards, beta) -> np.ndarray:
    """Log-probabilities of the reverse-KL optimum, the Gibbs target ``log G_beta`` (eq. 1.3).

    ``log G_beta(y) = log pi_ref(y) + R(y)/beta - log zeta``; ``-inf`` where ``pi_ref(y) = 0``.
    """
    ref, r, b = _prepare(ref_probs, rewards, beta)
    logits = _gibbs_logits(ref, r, b)
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def reverse_kl_target(ref_probs, rewards, beta) -> np.ndarray:
    """Probabilities of the optimum of ``J(pi) = E_pi[R] - beta KL(pi || pi_ref)`` (eq. 1.3).

    The Gibbs (Boltzmann) target ``G_beta(y) = pi_ref(y) exp(R(y)/beta) / zeta`` with
    ``zeta = sum_y pi_ref(y) exp(R(y)/beta)`` (see :func:`log_normalizer`). Computed in log space:
    exact for ``beta`` down to 1e-6 with reward gaps of 10; samples with zero reference
    probability get exactly zero mass.

    Parameters
    ----------
    ref_probs : array (..., V)  reference distribution ``pi_ref``.
    rewards : array (..., V)    rewards ``R(y)``, finite.
    beta : float or array (..., 1)  KL coefficient(s), > 0.

    Returns
    -------
    array (..., V): ``G_beta``, summing to 1 along the last axis to rounding (``V * 1e-16``).

    Precision: the logits ``R/beta`` are as large as ``|R|/beta`` (1e7 for R = 10 at beta = 1e-6), so
    they, and ratios of target probabilities, carry relative errors of about ``1e-16 * |R|/beta``; that is
    the conditioning of the problem, not of the method. The normalisation itself is made exact by
    dividing by the sum after exponentiating.
    """
    g = np.exp(log_reverse_kl_target(ref_probs, rewards, beta))
    return g / g.sum(axis=-1, keepdims=True)


def log_normalizer(ref_probs, rewards, beta) -> np.ndarray:
    """``log zeta = log sum_y pi_ref(y) exp(R(y)/beta)``, the Gibbs normaliser (eq. 1.3).

    Appears in the identity ``-J(pi)/beta = KL(pi || G_beta) - log zeta`` (eq. 1.4). Returns the
    broadcast leading shape (a 0-d array for 1-D inputs).
    """
    ref, r, b = _prepare(ref_probs, rewards, beta)
    return logsumexp(_gibbs_logits(ref, r, b), axis=-1)


def _solve_forward_t(ref: np.ndarray, d: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray,
                     tol: float = 1e-14, max_iter: int = 200) -> np.ndarray:
    """Root of ``g(t) = sum_i ref_i / (t + d_i) - 1`` on the bracket ``[t_lo, t_hi]``.

    ``g`` is strictly decreasing and convex in ``t``, ``g(t_lo) >= 0 >= g(t_hi)``. Safeguarded
    Newton: a Newton step is accepted only if it stays inside the current bracket, otherwise we
    bisect; the bracket shrinks every iteration, so convergence is guaranteed.
    """
    lo, hi = t_lo.copy(), t_hi.copy()
    t = lo.copy()
    for _ in range(max_iter):
        denom = t[..., None] + d
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(ref > 0, ref / denom, 0.0)
            g = terms.sum(axis=-1) - 1.0
            dg = -np.where(ref > 0, terms / denom, 0.0).sum(axis=-1)
        pos = g > 0
        lo = np.where(pos, t, lo)
        hi = np.where(pos, hi, t)
        if np.all(np.abs(g) <= tol) or np.all(hi - lo <= 4 * np.finfo(float).eps * np.maximum(1.0, hi)):
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = t - g / dg
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        t = np.where(inside, newton, 0.5 * (lo + hi))
    return t


def forward_kl_target(ref_probs, rewards, beta, return_lambda: bool = False):
    """Optimum of ``J_fwd(pi) = E_pi[R] - beta KL(pi_ref || pi)`` (eq. 2.2).

    ``G_fwd(y) = beta pi_ref(y) / (Lambda - R(y))`` where ``Lambda > max_{y in supp pi_ref} R(y)``
    is the unique constant making ``G_fwd`` sum to 1 (eq. 2.3). The normaliser
    ``f(Lambda) = sum_y beta pi_ref(y) / (Lambda - R(y))`` is strictly decreasing, and
    ``R* + beta P* <= Lambda <= R* + beta`` with ``R*`` the on-support maximum reward and ``P*`` the
    reference mass on its maximisers. We write ``Lambda = R* + beta t`` and find ``t in [P*, 1]`` by
    safeguarded Newton on that bracket (guaranteed convergence; the normaliser is accurate to
    ~1e-13, well inside 1e-10, for beta from 1e-6 to 1e3).

    Off-support case (eq. 2.4). Let ``R_off`` be the largest reward among samples with
    ``pi_ref(y) = 0``. If ``R_off > R*`` and the on-support normaliser at ``Lambda = R_off`` is
    below 1, the optimum sets ``Lambda = R_off``, keeps ``G_fwd = beta pi_ref / (R_off - R)`` on the
    support and places the missing mass on the off-support samples whose reward equals ``R_off``
    (the KKT conditions allow any split: forward KL does not look there). **Convention: that mass
    is split equally among those maximisers.** If the normaliser at ``R_off`` is >= 1, no mass
    goes off the support and the ordinary root applies.

    Parameters
    ----------
    ref_probs, rewards : arrays (..., V); beta : float or array (..., 1), > 0.
    return_lambda : bool
        Also return ``Lambda`` with the broadcast leading shape (0-d array for 1-D inputs).

    Returns
    -------
    ``G_fwd`` of shape (..., V), or ``(G_fwd, Lambda)``.
    """
    ref, r, b = _prepare(ref_probs, rewards, beta)
    on = ref > 0
    r_star = np.max(np.where(on, r, -np.inf), axis=-1, keepdims=True)
    p_star = np.sum(np.where(on & (r == r_star), ref, 0.0), axis=-1)
    d = np.where(on, (r_star - r) / b, np.inf)  # >= 0 on the support
    t = _solve_forward_t(ref, d, p_star, np.ones_like(p_star))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(on, ref / (t[..., None] + d), 0.0)
    lam = r_star[..., 0] + b[..., 0] * t

    # Off-support maximisers (eq. 2.4).
    r_off = np.max(np.where(on, -np.inf, r), axis=-1, keepdims=True)
    has_off = np.isfinite(r_off[..., 0]) & (r_off[..., 0] > r_star[..., 0])
    if np.any(has_off):
        with np.errstate(divide="ignore", invalid="ignore"):
            on_at_off = np.where(on, b * ref / (r_off - r), 0.0)
        s = on_at_off.sum(axis=-1)
        use_off = has_off & (s < 1.0)
        off_max = (~on) & (r == r_off)
        n_off = off_max.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            off_mass = np.where(off_max, ((1.0 - s) / np.maximum(n_off, 1))[..., None], 0.0)
        g = np.where(use_off[..., None], on_at_off + off_mass, g)
        lam = np.where(use_off, r_off[..., 0], lam)
    if return_lambda:
        return g, lam
    return g


def entropy_regularized_target(ref_probs, rewards, beta, eta) -> np.ndarray:
    """Optimum of ``E_pi[R] - beta KL(pi || pi_ref) + eta H(pi)`` (eq. 2.6).

    ``pi*(y) proportional to pi_ref(y)^(beta/(beta+eta)) exp(R(y)/(beta+eta))``. ``beta = 0`` is
    allowed (entropy only: ``pi* proportional to exp(R/eta)``, uniform over equal rewards and
    ignoring ``pi_ref``, including its zeros); ``eta = 0`` recovers :func:`reverse_kl_target`.
    ``beta`` and ``eta`` broadcast like ``beta`` elsewhere and must not both be 0.
    """
    ref, r, b = _prepare(ref_probs, rewards, beta, allow_zero_beta=True)
    e = check_beta(eta, "eta", allow_zero=True)
    try:
        shape = np.broadcast_shapes(ref.shape, e.shape)
    except ValueError as exc:
        raise ValueError(f"eta with shape {e.shape} does not broadcast with shape {ref.shape}") from exc
    ref, r = np.broadcast_to(ref, shape), np.broadcast_to(r, shape)
    b, e = np.broadcast_to(b, shape[:-1] + (1,)), np.broadcast_to(e, shape[:-1] + (1,))
    temp = b + e
    if np.any(temp <= 0):
        raise ValueError("eta must be > 0 where beta == 0 (beta + eta must be positive)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_term = np.where(b > 0, (b / temp) * _log(ref), 0.0)
    logits = ref_term + r / temp
    return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))


def kl_regularized_objective(policy, ref_probs, rewards, beta, direction: str = "reverse") -> np.ndarray:
    """The KL-regularised objective (eq. 1.1 / eq. 2.1).

    ``direction="reverse"``: ``J(pi) = E_pi[R] - beta KL(pi || pi_ref)`` (eq. 1.1).
    ``direction="forward"``: ``J_fwd(pi) = E_pi[R] - beta KL(pi_ref || pi)`` (eq. 2.1).
    ``0 log 0 = 0``; a KL that is infinite (mass where the other distribution has none) gives
    ``-inf``. Returns the broadcast leading shape.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    ref, r, b = _prepare(ref_probs, rewards, beta)
    pi = check_distribution(policy, "policy")
    try:
        shape = np.broadcast_shapes(pi.shape, ref.shape)
    except ValueError as exc:
        raise ValueError(f"policy with shape {pi.shape} does not broadcast with shape {ref.shape}") from exc
    pi, ref, r = (np.broadcast_to(x, shape) for x in (pi, ref, r))
    kl = rel_entr(pi, ref) if direction == "reverse" else rel_entr(ref, pi)
    return (pi * r).sum(axis=-1) - b[..., 0] * kl.sum(axis=-1)


def kl_regularized_gradient(logits, ref_probs, rewards, beta, direction: str = "reverse") -> np.ndarray:
    """Exact gradient of the objective w.r.t. softmax logits ``theta`` (``pi = softmax(theta)``).

    Reverse (eq. 1.5): ``dJ/dtheta = pi * (A - E_pi[A])`` with ``A = R - beta log(pi / pi_ref)``;
    equivalently ``-beta * d KL(pi || G_beta) / dtheta``.
    Forward (eq. 2.5): ``dJ_fwd/dtheta = pi * (R - E_pi[R]) + beta * (pi_ref - pi)``.
    The forward case is NOT ``c * (T - pi)`` (the gradient of ``-c KL(T || pi)``) for any fixed
    ``T``: the implied ``T = pi_ref + pi (R - E_pi R) / beta`` moves with ``pi`` (chapter 2).
    Reverse needs ``pi_ref > 0`` wherever the gradient is taken (otherwise J is -inf).
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    ref, r, b = _prepare(ref_probs, rewards, beta)
    th = check_finite(logits, "logits")
    try:
        shape = np.broadcast_shapes(th.shape, ref.shape)
    except ValueError as exc:
        raise ValueError(f"logits with shape {th.shape} does not broadcast with shape {ref.shape}") from exc
    th, ref, r = (np.broadcast_to(x, shape) for x in (th, ref, r))
    log_pi = th - logsumexp(th, axis=-1, keepdims=True)
    pi = np.exp(log_pi)
    if direction == "reverse":
        if np.any(ref <= 0):
            raise ValueError("ref_probs must be > 0 everywhere for the reverse-KL gradient (J is -inf otherwise)")
        adv = r - b * (log_pi - np.log(ref))
        return pi * (adv - (pi * adv).sum(axis=-1, keepdims=True))
    return pi * (r - (pi * r).sum(axis=-1, keepdims=True)) + b * (ref - pi)


def _check_index(idx, n: int, name: str) -> int:
    if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
        raise ValueError(f"{name} must be an integer index, got {idx!r}")
    if not -n <= int(idx) < n:
        raise ValueError(f"{name} must index one of the {n} samples, got {idx}")
    return int(idx)


def log_prob_ratio(ref_probs, rewards, beta, i, j) -> np.ndarray:
    """``log G_beta(y_i) / G_beta(y_j)`` from the reference and rewards alone (eq. 3.1).

    ``log G(y_i)/G(y_j) = log pi_ref(y_i)/pi_ref(y_j) + (R(y_i) - R(y_j)) / beta``: the normaliser
    cancels, so the ratio is exact without computing ``zeta``. ``+-inf`` if one reference
    probability is zero, NaN if both are. Returns the broadcast leading shape.
    """
    ref, r, b = _prepare(ref_probs, rewards, beta)
    n = ref.shape[-1]
    i, j = _check_index(i, n, "i"), _check_index(j, n, "j")
    lref = _log(ref)
    with np.errstate(invalid="ignore"):
        return lref[..., i] - lref[..., j] + (r[..., i] - r[..., j]) / b[..., 0]


def crossover_beta(reward_1, reward_2, ref_prob_1, ref_prob_2):
    """The beta at which two samples are equally likely under ``G_beta`` (eq. 3.2).

    Setting the log-ratio (eq. 3.1) to zero gives
    ``beta* = (R_2 - R_1) / (log pi_ref(y_1) - log pi_ref(y_2))``. For ``beta < beta*`` the sample
    with the higher reward is likelier; for ``beta > beta*`` the one with the higher reference
    probability is. Special values:

    * ``inf``: equal reference probabilities, different rewards. The higher reward wins at every
      finite beta; the two only become equally likely as ``beta -> inf``.
    * ``nan``: no crossover at any ``beta > 0``: one sample has both the higher (or equal) reward
      and the higher reference probability (e.g. equal rewards: the reference bias survives every
      beta), the two are identical (tied at every beta), or a reference probability is 0.

    All arguments broadcast; reference probabilities must lie in [0, 1].
    """
    r1, r2 = check_finite(reward_1, "reward_1"), check_finite(reward_2, "reward_2")
    p1, p2 = check_finite(ref_prob_1, "ref_prob_1"), check_finite(ref_prob_2, "ref_prob_2")
    for name, p in (("ref_prob_1", p1), ("ref_prob_2", p2)):
        if np.any((p < 0) | (p > 1)):
            raise ValueError(f"{name} must lie in [0, 1]")
    try:
        r1, r2, p1, p2 = np.broadcast_arrays(r1, r2, p1, p2)
    except ValueError as exc:
        raise ValueError("reward_1, reward_2, ref_prob_1 and ref_prob_2 must broadcast together") from exc
    dr = r2 - r1
    with np.errstate(divide="ignore", invalid="ignore"):
        dl = _log(p1) - _log(p2)
        out = dr / dl
    zero_p = (p1 == 0) | (p2 == 0)
    equal_p = (dl == 0) & ~zero_p
    out = np.where(equal_p & (dr != 0), np.inf, out)
    bad = zero_p | (equal_p & (dr == 0)) | (~equal_p & ~(out > 0))
    out = np.where(bad, np.nan, out)
    return out[()] if out.ndim == 0 else out
