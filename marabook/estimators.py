"""KL estimators and policy-gradient advantages (book chapter 5, eqs. 5.2-5.4).

NumPy arrays or torch tensors in, the same type out; torch is never imported unless a tensor is
passed, so the NumPy chapters and :mod:`marabook.bandit` use these without torch installed.

* :func:`kl_k1`, :func:`kl_k2`, :func:`kl_k3`: Schulman's estimators of KL(pi || pi_ref) from samples
  y ~ pi (eq. 5.3);
* :func:`rloo_advantages`, :func:`grpo_advantages`, :func:`compute_advantages`: group baselines (eq. 5.2);
* :func:`expected_kl_gradients`: the exact expected gradient of each way a trainer can put a KL
  estimator into its objective (eq. 5.4).
"""

from __future__ import annotations

import math

import numpy as np

from marabook._validate import check_int, is_torch

__all__ = ["kl_k1", "kl_k2", "kl_k3", "rloo_advantages", "grpo_advantages", "compute_advantages",
           "expected_kl_gradients", "advantage_algorithm", "ADVANTAGES", "ADVANTAGE_ALGORITHMS"]

#: Advantage estimators by the algorithm that uses them (chapter 5, eq. 5.2).
ADVANTAGE_ALGORITHMS = {
    "rloo": "leave-one-out baseline (RLOO; Kool et al. 2019, Ahmadian et al. 2024)",
    "grpo": "group mean subtracted, divided by the group std (GRPO; Shao et al. 2024)",
    "dr_grpo": "group mean subtracted, no std division (Dr. GRPO; Liu et al. 2025)",
    "reinforce": "the rewards themselves, no baseline (REINFORCE)",
}
# the spellings of the first edition, still accepted: they name the mechanics, not the algorithm
_ADVANTAGE_ALIASES = {"mean": "dr_grpo", "std": "grpo", "none": "reinforce"}
#: Every accepted ``advantage`` name (algorithm names and the first edition's spellings).
ADVANTAGES = ("rloo", "mean", "std", "none", "grpo", "dr_grpo", "reinforce")


def advantage_algorithm(name: str, argument: str = "advantage") -> str:
    """The algorithm name (a key of :data:`ADVANTAGE_ALGORITHMS`) for any accepted spelling."""
    if name not in ADVANTAGES:
        raise ValueError(f"{argument} must be one of {ADVANTAGES}, got {name!r}")
    return _ADVANTAGE_ALIASES.get(name, name)


# --------------------------------------------------------------------------------------------
# KL estimators (eq. 5.3): samples y ~ pi, x = log pi_ref(y) - log pi(y)
# --------------------------------------------------------------------------------------------

def _log_ratio(logp, ref_logp):
    """``x = ref_logp - logp`` after checking both inputs (NumPy or torch, same shape, finite)."""
    if is_torch(logp) != is_torch(ref_logp):
        raise ValueError("logp and ref_logp must both be torch tensors or both array-like")
    if is_torch(logp):
        import torch

        if logp.shape != ref_logp.shape:
            raise ValueError(f"ref_logp must have the shape of logp: {tuple(ref_logp.shape)} vs "
                             f"{tuple(logp.shape)}")
        if not bool(torch.isfinite(logp).all()):
            raise ValueError("logp must be finite (mask padded positions before estimating KL)")
        if not bool(torch.isfinite(ref_logp).all()):
            raise ValueError("ref_logp must be finite (mask padded positions before estimating KL)")
        return ref_logp - logp
    a = np.asarray(logp, dtype=float)
    b = np.asarray(ref_logp, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"ref_logp must have the shape of logp: {b.shape} vs {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("logp must be finite (mask padded positions before estimating KL)")
    if not np.all(np.isfinite(b)):
        raise ValueError("ref_logp must be finite (mask padded positions before estimating KL)")
    return b - a


def kl_k1(logp, ref_logp):
    """k1 estimator of KL(pi || pi_ref): ``-x = log pi(y) - log pi_ref(y)`` for y ~ pi (eq. 5.3).

    Unbiased (its mean over y ~ pi is the KL) but can be negative per sample. Works elementwise on
    NumPy arrays or torch tensors (per token, or per sequence on summed log-probs).
    """
    return -_log_ratio(logp, ref_logp)


def kl_k2(logp, ref_logp):
    """k2 estimator ``x**2 / 2`` with ``x = log pi_ref(y) - log pi(y)``, y ~ pi (eq. 5.3).

    Non-negative and low-variance but biased (its mean is the KL only to second order in x).
    """
    x = _log_ratio(logp, ref_logp)
    return 0.5 * x * x


def kl_k3(logp, ref_logp):
    """k3 estimator ``exp(x) - 1 - x`` with ``x = log pi_ref(y) - log pi(y)``, y ~ pi (eq. 5.3).

    Unbiased for KL(pi || pi_ref) (``E_pi[exp(x)] = 1``) and non-negative per sample. Used per token
    in the loss by :attr:`RLConfig.kl` ``= "reverse_k3"``.
    """
    return _k3(_log_ratio(logp, ref_logp))


def _k3(x):
    """k3 of a log-ratio ``x`` that is already known to be finite (the trainer's inner loop)."""
    if is_torch(x):
        import torch

        return torch.expm1(x) - x
    return np.expm1(x) - x


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------

def _grouped(rewards, group_size):
    check_int(group_size, "group_size", minimum=2)
    if is_torch(rewards):
        import torch

        if rewards.ndim != 1 or rewards.numel() == 0:
            raise ValueError(f"rewards must be a non-empty 1-D tensor, got shape {tuple(rewards.shape)}")
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError("rewards must be finite (no NaN or inf)")
        r = rewards
    else:
        r = np.asarray(rewards, dtype=float)
        if r.ndim != 1 or r.size == 0:
            raise ValueError(f"rewards must be a non-empty 1-D array, got shape {r.shape}")
        if not np.all(np.isfinite(r)):
            raise ValueError("rewards must be finite (no NaN or inf)")
    if r.shape[0] % group_size:
        raise ValueError(f"len(rewards) = {r.shape[0]} is not a multiple of group_size = {group_size}")
    return r.reshape(-1, group_size)


def rloo_advantages(rewards, group_size):
    """RLOO advantages: ``A_i = r_i - mean_{j != i} r_j`` within each group (eq. 5.2).

    ``rewards`` has shape (num_prompts * group_size,), laid out group after group (all samples of
    prompt 0, then prompt 1, ...). The leave-one-out baseline does not depend on ``r_i``, so
    ``A_i grad log pi(y_i)`` is an unbiased estimate of ``grad E[r]``. NumPy or torch in, same out.
    """
    return _rloo(_grouped(rewards, group_size))


def _rloo(g):
    k = g.shape[1]
    total = g.sum(1, keepdims=True) if not is_torch(g) else g.sum(1, keepdim=True)
    return (g - (total - g) / (k - 1)).reshape(-1)


def grpo_advantages(rewards, group_size, scale_by_std: bool = True, eps: float = 1e-4):
    """GRPO-style group-normalised advantages ``(r_i - mean) / (std + eps)`` (eq. 5.2, right).

    With ``scale_by_std=False`` only the group mean is subtracted (the "Dr. GRPO" form; RLOO up to
    a factor ``k / (k - 1)``). The std is the unbiased sample std of the group (``ddof=1``), and
    ``eps = 1e-4``, as in TRL. Layout as in :func:`rloo_advantages`.
    """
    if not isinstance(scale_by_std, (bool, np.bool_)):
        raise ValueError(f"scale_by_std must be a bool, got {scale_by_std!r}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return _centred(_grouped(rewards, group_size), scale_by_std, eps)


def _centred(g, scale_by_std: bool, eps: float = 1e-4):
    if is_torch(g):
        centred = g - g.mean(1, keepdim=True)
        if scale_by_std:
            centred = centred / (g.std(1, keepdim=True, unbiased=True) + eps)
    else:
        centred = g - g.mean(1, keepdims=True)
        if scale_by_std:
            centred = centred / (g.std(1, ddof=1, keepdims=True) + eps)
    return centred.reshape(-1)


def compute_advantages(rewards, group_size, method: str = "rloo"):
    """Advantages by algorithm (:data:`ADVANTAGE_ALGORITHMS`): ``"rloo"``; ``"grpo"`` (mean subtracted,
    divided by the group std); ``"dr_grpo"`` (mean subtracted only); ``"reinforce"`` (the rewards
    themselves). The first edition's ``"std"``, ``"mean"`` and ``"none"`` are accepted for the last three."""
    return _advantages(_grouped(rewards, group_size), advantage_algorithm(method, "method"))


def _advantages(g, algorithm: str):
    """Advantages of rewards already grouped (G, k) and checked; ``algorithm`` already resolved."""
    if algorithm == "rloo":
        return _rloo(g)
    if algorithm == "dr_grpo":
        return _centred(g, scale_by_std=False)
    if algorithm == "grpo":
        return _centred(g, scale_by_std=True)
    return g.reshape(-1) * 1.0


def expected_kl_gradients(logits, ref_probs) -> dict:
    """Exact expected gradients (w.r.t. the logits of ``pi = softmax(logits)``) of the ways a trainer
    can put a KL estimator into its objective, next to the true KL gradients (chapter 5, eq. 5.4).

    Returns a dict of arrays of shape (V,):

    * ``"reverse KL"``: ``grad KL(pi || pi_ref)``; ``"forward KL"``: ``grad KL(pi_ref || pi) = pi - pi_ref``.
    * ``"k1 in reward"``: ``E_pi[k1(y) grad log pi(y)]`` (score function, k1 treated as a reward
      to minimise) -- equals the reverse-KL gradient.
    * ``"k1 in loss"``, ``"k2 in loss"``, ``"k3 in loss"``: ``E_pi[grad k(y)]`` with the sample ``y``
      held fixed and the estimator differentiated through ``log pi(y)`` (what autograd does when the
      estimator is added to the loss). k1 gives 0, k2 the reverse-KL gradient, k3 the *forward*-KL
      gradient.
    """
    from scipy.special import log_softmax

    th = np.asarray(logits, dtype=float)
    if th.ndim != 1 or th.size < 2 or not np.all(np.isfinite(th)):
        raise ValueError("logits must be a finite 1-D array with at least 2 entries")
    ref = np.asarray(ref_probs, dtype=float)
    if ref.shape != th.shape:
        raise ValueError(f"ref_probs must have the shape of logits {th.shape}, got {ref.shape}")
    if np.any(ref <= 0) or not np.all(np.isfinite(ref)) or abs(ref.sum() - 1) > 1e-6:
        raise ValueError("ref_probs must be a strictly positive distribution summing to 1")
    ref = ref / ref.sum()
    log_pi = log_softmax(th)
    pi = np.exp(log_pi)
    log_ratio = log_pi - np.log(ref)  # log pi - log pi_ref = k1 per outcome
    kl_rev = float(pi @ log_ratio)
    # d log pi(y) / d theta = e_y - pi, so E_pi[f(y) grad log pi(y)] = pi * (f - E_pi f)
    def score(f):
        return pi * (f - pi @ f)
    x = -log_ratio  # log pi_ref - log pi
    return {
        "reverse KL": pi * (log_ratio - kl_rev),
        "forward KL": pi - ref,
        "k1 in reward": score(log_ratio),
        "k1 in loss": score(np.ones_like(pi)),  # grad of (-x) through log pi is grad log pi
        "k2 in loss": score(-x),  # grad (x^2/2) = x * grad x = -x * grad log pi
        "k3 in loss": score(1.0 - np.exp(x)),  # grad (e^x - 1 - x) = (1 - e^x) grad log pi
    }
