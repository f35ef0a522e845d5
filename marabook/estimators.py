"""KL estimators and policy-gradient advantages (book chapter 5, eqs. 5.2-5.4).

NumPy arrays or torch tensors in, the same type out; torch is never imported unless a tensor is
passed, so the NumPy chapters and :mod:`marabook.bandit` use these without torch installed.

* :func:`kl_k1`, :func:`kl_k2`, :func:`kl_k3`: Schulman's estimators of KL(pi || pi_ref) from samples
  y ~ pi (eq. 5.3);
* :func:`rloo_advantages`, :func:`grpo_advantages`, :func:`compute_advantages`: group baselines (eq. 5.2);
* :func:`expected_kl_gradients`: the exact expected gradient of each way a trainer can put a KL
  estimator into its objective (eq. 5.4);
* :func:`policy_loss`: the language-model trainer's loss, as named terms (policy gradient, KL or SFT
  term, entropy estimate), eqs. 5.1-5.5 -- torch.
"""

from __future__ import annotations

import math

import numpy as np

from marabook._validate import check_int, is_torch

__all__ = ["kl_k1", "kl_k2", "kl_k3", "rloo_advantages", "grpo_advantages", "compute_advantages",
           "expected_kl_gradients", "advantage_algorithm", "policy_loss", "ADVANTAGES", "ADVANTAGE_ALGORITHMS",
           "KL_PLACEMENTS"]

#: Advantage estimators by the algorithm that uses them (chapter 5, eq. 5.2).
ADVANTAGE_ALGORITHMS = {
    "rloo": "leave-one-out baseline (RLOO; Kool et al. 2019, Ahmadian et al. 2024)",
    "grpo": "group mean subtracted, divided by the group std (GRPO; Shao et al. 2024)",
    "dr_grpo": "group mean subtracted, no std division (Dr. GRPO; Liu et al. 2025)",
    "reinforce": "the rewards themselves, no baseline (REINFORCE)",
}
#: Every accepted ``advantage`` name: one spelling per estimator, the name of its algorithm.
ADVANTAGES = tuple(ADVANTAGE_ALGORITHMS)


def advantage_algorithm(name: str, argument: str = "advantage") -> str:
    """``name`` itself when it is an algorithm of :data:`ADVANTAGE_ALGORITHMS`, else a ValueError naming ``argument``."""
    if name not in ADVANTAGES:
        raise ValueError(f"{argument} must be one of {ADVANTAGES}, got {name!r}")
    return name


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
    in the loss by ``RLConfig(kl="reverse", kl_estimator="k3_loss")`` (:func:`policy_loss`).
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


def compute_advantages(rewards, group_size, method: str = "rloo", *, validate: bool = True):
    """Advantages by algorithm (:data:`ADVANTAGE_ALGORITHMS`, eq. 5.2): ``"rloo"``; ``"grpo"`` (mean
    subtracted, divided by the group std); ``"dr_grpo"`` (mean subtracted only); ``"reinforce"`` (the
    rewards themselves). Layout as in :func:`rloo_advantages`.

    ``validate=False`` skips the value checks (finite rewards; for tensors, each costs a host
    synchronisation) for a caller whose rewards are already checked, such as the trainer's inner loop;
    the shapes are still checked."""
    method = advantage_algorithm(method, "method")
    if validate:
        g = _grouped(rewards, group_size)
    else:
        check_int(group_size, "group_size", minimum=2)
        if rewards.ndim != 1 or rewards.shape[0] % group_size:
            raise ValueError(f"rewards must be 1-D with a length that is a multiple of group_size = {group_size}")
        g = rewards.reshape(-1, group_size)
    return _advantages(g, method)


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


# --------------------------------------------------------------------------------------------
# The language-model trainer's loss (eqs. 5.1-5.5)
# --------------------------------------------------------------------------------------------

#: Where a KL term enters the trainer's objective (``RLConfig.kl_placement``): ``"k1_reward"`` (k1 is
#: subtracted from the reward before the advantages, eq. 5.3, so it is not a loss term), ``"k3_loss"``
#: (k3 per token added to the loss, eq. 5.4), ``"sft"`` (the forward KL's SFT term on reference
#: samples, eq. 5.5), or None (no KL).
KL_PLACEMENTS = ("k1_reward", "k3_loss", "sft", None)


def policy_loss(token_logprobs, completion_mask, advantages, *, beta: float = 0.0, kl_placement=None,
                ref_token_logprobs=None, sft_token_logprobs=None, normalizer=None, sft_weights=None) -> dict:
    """The trainer's loss for one (micro-)batch of completions, as named terms (chapter 5, torch tensors).

    ``token_logprobs`` (N, T): ``log pi`` of each sampled completion token under the policy (with
    gradient); ``completion_mask`` (N, T): 1 on the completion's tokens (masked positions count nowhere); ``advantages`` (N,) (eq. 5.2; treated
    as constants). The returned dict holds

    * ``"pg_loss"``: ``-sum_i A_i log pi(y_i) / normalizer`` with the sequence log-probability
      ``log pi(y_i) = sum_t log pi(y_i,t | ...)`` (eq. 5.1): the score-function (REINFORCE) estimate of
      ``-grad E[A]``;
    * ``"kl_loss"``: with ``kl_placement="k3_loss"``, ``sum_i sum_t k3_i,t / normalizer``, k3 of each token's
      log-ratio against ``ref_token_logprobs`` (eq. 5.3); differentiated through ``log pi`` its expected
      gradient is the *forward* KL's (eq. 5.4). Zero otherwise;
    * ``"sft_loss"``: with ``kl_placement="sft"``, ``-sum_j log pi(y'_j) / normalizer`` over the
      reference samples ``y' ~ pi_ref`` whose token log-probs under the policy are ``sft_token_logprobs``
      (eq. 5.5: ``KL(pi_ref || pi)`` up to a constant); with ``sft_weights`` (one per reference sample, no
      gradient) ``-sum_j w_j log pi(y'_j) / normalizer``, Algorithm 2's forward term (eq. 4.3, weights from
      ``marabook.rl.config.alg2_sft_weights``). Zero otherwise;
    * ``"entropy"``: ``sum_i -log pi(y_i) / normalizer`` (no gradient), the Monte-Carlo estimate of the
      sequence entropy ``H(pi)``; a diagnostic (the entropy *bonus* acts through the reward, see
      :func:`marabook.rl.shape_rewards`);
    * ``"loss"`` = ``pg_loss + beta * (kl_loss + sft_loss)``, the tensor to differentiate.

    ``kl_placement="k1_reward"`` adds no term here: k1 is already inside the rewards the advantages came
    from (eq. 5.3). ``normalizer`` (default N) is the number of completions in the *whole* batch: summed over
    micro-batches the terms then equal those of the batch in one piece (gradient accumulation).
    Shapes are checked; values are not (no host synchronisation in the trainer's inner loop).
    """
    import torch

    if not isinstance(token_logprobs, torch.Tensor) or token_logprobs.ndim != 2:
        raise ValueError("token_logprobs must be a 2-D tensor (completions, tokens)")
    if not isinstance(completion_mask, torch.Tensor) or completion_mask.shape != token_logprobs.shape:
        raise ValueError(f"completion_mask must be a tensor of shape {tuple(token_logprobs.shape)}")
    n = token_logprobs.shape[0]
    if not isinstance(advantages, torch.Tensor) or advantages.shape != (n,):
        raise ValueError(f"advantages must be a tensor of shape ({n},)")
    if kl_placement not in KL_PLACEMENTS:
        raise ValueError(f"kl_placement must be one of {KL_PLACEMENTS}, got {kl_placement!r}")
    if not (isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if normalizer is None:
        normalizer = n
    if not (isinstance(normalizer, (int, float)) and not isinstance(normalizer, bool) and normalizer > 0):
        raise ValueError(f"normalizer must be a positive number, got {normalizer!r}")
    zero = token_logprobs.new_zeros(())
    mask = completion_mask.to(token_logprobs.dtype)
    logp = (token_logprobs * mask).sum(-1)                                          # eq. 5.1
    pg_loss = -(advantages.detach() * logp).sum() / normalizer                      # eq. 5.2
    kl_loss = sft_loss = zero
    if kl_placement == "k3_loss":
        if not isinstance(ref_token_logprobs, torch.Tensor) or ref_token_logprobs.shape != token_logprobs.shape:
            raise ValueError(f"ref_token_logprobs must be a tensor of shape {tuple(token_logprobs.shape)} "
                             "with kl_placement='k3_loss'")
        k3 = _k3(ref_token_logprobs.detach() - token_logprobs) * mask              # eq. 5.3, per token
        kl_loss = k3.sum() / normalizer
    elif kl_placement == "sft":
        if not isinstance(sft_token_logprobs, torch.Tensor) or sft_token_logprobs.ndim != 2:
            raise ValueError("sft_token_logprobs must be a 2-D tensor with kl_placement='sft'")
        if sft_weights is None:
            sft_loss = -sft_token_logprobs.sum() / normalizer                       # eq. 5.5
        else:                                                                       # eq. 4.3, weighted
            if not isinstance(sft_weights, torch.Tensor) or sft_weights.shape != sft_token_logprobs.shape[:1]:
                raise ValueError(f"sft_weights must be a tensor of shape ({sft_token_logprobs.shape[0]},), one "
                                 "weight per reference sample")
            sft_loss = -(sft_weights.detach()[:, None] * sft_token_logprobs).sum() / normalizer
    loss = pg_loss + beta * (kl_loss + sft_loss)
    return {"loss": loss, "pg_loss": pg_loss, "kl_loss": kl_loss, "sft_loss": sft_loss,
            "entropy": -logp.detach().sum() / normalizer}
