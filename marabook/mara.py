"""MARA: Mode Anchored Reward Augmentation (book chapter 4).

Given a threshold ``tau`` that defines good samples (``R(y) >= tau``), the anchor ``z`` of a group is
its good sample with the highest reference log-probability. MARA replaces the rewards by

    R_bar(y) = R(y)                                           if R(y) < tau
    R_bar(y) = R(z) + beta * (log pi_ref(z) - log pi_ref(y))   if R(y) >= tau        (eq. 4.1)

and any KL-regularised RL algorithm then runs unchanged on ``R_bar``. Under the reverse KL the
optimum becomes flat over the good samples (eq. 4.2, :func:`mara_target`). The paper's Algorithm 2 writes
the same update as a modified KL (good samples scored with the anchor's reward ``R(z)`` and measured
against the anchor's reference probability ``pi_ref(z)``): gradient-equivalent under the reverse KL, a
different objective under the forward KL, whose optimum is flat too (eq. 4.3, :func:`alg2_forward_target`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from marabook._validate import check_beta, check_distribution, check_finite, is_torch
from marabook.targets import entropy_regularized_target, forward_kl_target, reverse_kl_target

__all__ = ["mara_rewards", "mara_target", "parse_tau", "Threshold", "mara_rewards_global", "method_targets",
           "forward_mara_small_beta", "batch_anchors", "alg2_terms", "alg2_forward_target"]

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def parse_tau(tau):
    """Return ``("value", float)`` for a numeric tau or ``("percentile", q)`` for ``"pQ"`` strings.

    ``"p90"`` means: in each group, the 90th percentile of that group's rewards (linear
    interpolation between order statistics, NumPy's default), so roughly the top 10% are good.
    """
    if isinstance(tau, str):
        m = _PERCENTILE.match(tau.strip().lower())
        if not m or not 0.0 <= float(m.group(1)) <= 100.0:
            raise ValueError(f"tau must be a number or a percentile string like 'p90', got {tau!r}")
        return "percentile", float(m.group(1))
    if isinstance(tau, bool):
        raise ValueError(f"tau must be a number or a percentile string like 'p90', got {tau!r}")
    try:
        value = float(tau)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tau must be a number or a percentile string like 'p90', got {tau!r}") from exc
    if not np.isfinite(value):
        raise ValueError(f"tau must be finite, got {tau!r}")
    return "value", value


@dataclass(frozen=True)
class Threshold:
    """MARA's good-sample threshold, parsed and checked once (at a config's construction).

    ``kind`` is ``"value"`` (``R >= value`` is good) or ``"percentile"`` (``value`` = Q: the Q-th
    percentile of the rewards); ``scope`` says over which rewards a percentile is taken: ``"group"``
    (each prompt group, the default) or ``"batch"`` (the whole batch; anchors stay per group). With
    groups of 8 a per-group 90th percentile interpolates between the two largest rewards, so it admits only
    each group's best sample and its exact ties (usually the same answer), and MARA moves no mass between
    answers; in a group whose rewards are all equal (all 0, say) every sample is good, and MARA then flattens
    the group (chapter 6.3). Per-batch percentiles are what the paper used for reward models.
    """

    kind: str
    value: float
    scope: str = "group"

    @classmethod
    def parse(cls, tau, scope: str = "group") -> "Threshold":
        """From a number, a ``"pQ"`` string, or a Threshold (returned as is)."""
        if isinstance(tau, Threshold):
            return tau
        if scope not in ("group", "batch"):
            raise ValueError(f"tau_scope must be 'group' or 'batch', got {scope!r}")
        kind, value = parse_tau(tau)
        return cls(kind, value, scope)

    def for_batch(self, rewards) -> "Threshold":
        """A batch-scope percentile resolved to a value on this batch's ``rewards``; otherwise itself."""
        if self.kind != "percentile" or self.scope != "batch":
            return self
        if is_torch(rewards):
            import torch

            return Threshold("value", float(torch.quantile(rewards.detach().double(), self.value / 100.0)))
        return Threshold("value", float(np.quantile(np.asarray(rewards, dtype=float), self.value / 100.0)))

    def __str__(self) -> str:
        return f"p{self.value:g}" + (" (batch)" if self.scope == "batch" else "") if self.kind == "percentile" \
            else f"{self.value:g}"


def mara_rewards(rewards, ref_logprobs, beta, tau, groups=None):
    """MARA-augmented rewards (eq. 4.1), per group, for NumPy arrays or torch tensors.

    Parameters
    ----------
    rewards : 1-D array or tensor (N,)
        Rewards of N samples; finite.
    ref_logprobs : 1-D array or tensor (N,)
        ``log pi_ref(y)`` of the same samples (for sequences: the sum of token log-probs); finite.
    beta : float > 0
        The KL coefficient of the trainer that will consume the rewards.
    tau : float, str or Threshold
        Good-sample threshold. A number (``R >= tau`` is good), ``"pQ"``: the Q-th percentile of
        each group's rewards (see :func:`parse_tau`), or a :class:`Threshold` (for batch-scope percentiles).
    groups : 1-D integer array or tensor (N,), optional
        Group id per sample (e.g. the prompt index); each group gets its own anchor. ``None``: one group.

    Returns
    -------
    Same type, dtype and device as ``rewards``. Below-tau rewards are unchanged; a group with no
    sample at or above tau is left unchanged. The anchor is the good sample with the highest
    ``ref_logprobs`` (ties: the highest reward among them). The torch path is vectorised (no
    Python loop over samples or groups) and carries no gradient.
    """
    b = check_beta(beta)
    if b.ndim != 0:
        raise ValueError("beta must be a scalar for mara_rewards")
    threshold = Threshold.parse(tau).for_batch(rewards)
    kind, tau_value = threshold.kind, threshold.value
    if is_torch(rewards) or is_torch(ref_logprobs):
        return _mara_torch(rewards, ref_logprobs, float(b), kind, tau_value, groups)
    r = check_finite(rewards, "rewards")
    lp = check_finite(ref_logprobs, "ref_logprobs")
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D array, got shape {r.shape}")
    if lp.shape != r.shape:
        raise ValueError(f"ref_logprobs must have the same shape as rewards: {lp.shape} vs {r.shape}")
    good, r_z, best_lp, _ = _anchors_numpy(r, lp, kind, tau_value, groups)
    out = np.where(good, r_z + float(b) * (best_lp - lp), r)
    dtype = np.asarray(rewards).dtype
    return out.astype(dtype) if dtype.kind == "f" else out  # keep float32 inputs float32


def _anchors_numpy(r, lp, kind, tau_value, groups):
    """Per sample: good mask, its group's anchor reward and anchor log-prob (-inf without a good sample),
    and its group's threshold."""
    g = _group_ids_numpy(groups, r.size)
    n_groups = int(g.max()) + 1
    if kind == "percentile":
        thresholds = np.array([np.percentile(r[g == k], tau_value) for k in range(n_groups)])
        # one call per group of a vectorised percentile; groups are few (prompts per batch)
        thr = thresholds[g]
    else:
        thr = np.full_like(r, tau_value)
    good = r >= thr
    best_lp = np.full(n_groups, -np.inf)
    np.maximum.at(best_lp, g[good], lp[good])
    is_cand = good & (lp == best_lp[g])
    r_z = np.full(n_groups, -np.inf)
    np.maximum.at(r_z, g[is_cand], r[is_cand])
    return good, r_z[g], best_lp[g], thr


def batch_anchors(rewards, ref_logprobs, tau, groups=None):
    """Each group's anchor, as Algorithms 1 and 2 pick it (chapter 4), for NumPy arrays.

    Returns ``(good, anchor_reward, anchor_logprob, threshold)``, each of shape (N,): whether the sample is
    good (``R >= tau``, a percentile resolved per group or per batch as in :func:`mara_rewards`), and for its
    group the anchor's reward ``R(z)``, its ``log pi_ref(z)`` (both ``-inf`` in a group with no good sample)
    and the threshold used. Algorithm 1 pays good samples ``R(z) + beta (log pi_ref(z) - log pi_ref(y))``
    (eq. 4.1); Algorithm 2 scores them ``R(z)`` and measures their KL against ``pi_ref(z)`` (eq. 4.3).
    """
    threshold = Threshold.parse(tau).for_batch(rewards)
    r = check_finite(rewards, "rewards")
    lp = check_finite(ref_logprobs, "ref_logprobs")
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D array, got shape {r.shape}")
    if lp.shape != r.shape:
        raise ValueError(f"ref_logprobs must have the same shape as rewards: {lp.shape} vs {r.shape}")
    return _anchors_numpy(r, lp, threshold.kind, threshold.value, groups)


def _group_ids_numpy(groups, n: int) -> np.ndarray:
    if groups is None:
        return np.zeros(n, dtype=np.int64)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {g.shape}")
    if g.dtype.kind not in "iu":
        raise ValueError(f"groups must hold integer ids, got dtype {g.dtype}")
    return np.unique(g, return_inverse=True)[1].reshape(n)


def augment(rewards, ref_logprobs, beta: float, threshold: Threshold, groups):
    """:func:`mara_rewards` for torch tensors a trainer has already validated (eq. 4.1).

    The trainer checked ``beta`` and parsed ``threshold`` when its config was built, and ``rewards``
    (the task's output) and ``ref_logprobs`` (its own forward pass) in the step; this path repeats
    none of those checks, so the inner loop has no extra host synchronisations.
    """
    t = threshold.for_batch(rewards)
    return _mara_torch(rewards, ref_logprobs, beta, t.kind, t.value, groups, check=False)


def _mara_torch(rewards, ref_logprobs, beta: float, kind: str, tau_value: float, groups, check: bool = True):
    import torch

    if not (isinstance(rewards, torch.Tensor) and isinstance(ref_logprobs, torch.Tensor)):
        raise ValueError("rewards and ref_logprobs must both be torch tensors (or both NumPy arrays)")
    if rewards.ndim != 1 or rewards.numel() == 0:
        raise ValueError(f"rewards must be a non-empty 1-D tensor, got shape {tuple(rewards.shape)}")
    if ref_logprobs.shape != rewards.shape:
        raise ValueError(f"ref_logprobs must have the same shape as rewards: "
                         f"{tuple(ref_logprobs.shape)} vs {tuple(rewards.shape)}")
    with torch.no_grad():
        r = rewards.detach().to(torch.float64)
        lp = ref_logprobs.detach().to(device=r.device, dtype=torch.float64)
        if check and not torch.isfinite(r).all():
            raise ValueError("rewards must be finite (no NaN or inf)")
        if check and not torch.isfinite(lp).all():
            raise ValueError("ref_logprobs must be finite (no NaN or inf)")
        n = r.numel()
        if groups is None:
            g = torch.zeros(n, dtype=torch.long, device=r.device)
        else:
            g = torch.as_tensor(groups, device=r.device)
            if g.shape != (n,):
                raise ValueError(f"groups must have shape ({n},), got {tuple(g.shape)}")
            if g.is_floating_point() or g.dtype == torch.bool:
                raise ValueError(f"groups must hold integer ids, got dtype {g.dtype}")
            g = torch.unique(g, return_inverse=True)[1]
        n_groups = int(g.max()) + 1
        if kind == "percentile":
            # pad each group into a row of a (G, max_n) matrix and take a NaN-aware quantile per row
            order = torch.argsort(g, stable=True)
            counts = torch.bincount(g, minlength=n_groups)
            starts = torch.cumsum(counts, 0) - counts
            pos = torch.arange(n, device=r.device) - starts[g[order]]
            padded = torch.full((n_groups, int(counts.max())), float("nan"), dtype=r.dtype, device=r.device)
            padded[g[order], pos] = r[order]
            thr = torch.nanquantile(padded, tau_value / 100.0, dim=1)[g]
        else:
            thr = torch.full_like(r, tau_value)
        good = r >= thr
        neg_inf = torch.full((n_groups,), float("-inf"), dtype=r.dtype, device=r.device)
        best_lp = neg_inf.scatter_reduce(0, g[good], lp[good], reduce="amax", include_self=True)
        is_cand = good & (lp == best_lp[g])
        r_z = neg_inf.scatter_reduce(0, g[is_cand], r[is_cand], reduce="amax", include_self=True)
        out = torch.where(good, r_z[g] + beta * (best_lp[g] - lp), r)
        return out.to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def mara_target(ref_probs, rewards, beta, tau) -> np.ndarray:
    """Closed-form reverse-KL optimum under MARA with the global anchor (eq. 4.2).

    ``G_bar(y) proportional to pi_ref(y) exp(R(y)/beta)`` below tau, and to the single constant
    ``pi_ref(z) exp(R(z)/beta)`` for every good ``y`` with ``pi_ref(y) > 0``, where ``z`` is the good
    sample with the highest reference probability (ties: highest reward). Good samples outside the
    reference's support keep zero mass (the reverse KL forbids it). ``tau`` must be a number here
    (a percentile of the full space has no batch to refer to). Broadcasts ``beta`` like
    :mod:`marabook.targets`. If no sample is good, this is :func:`reverse_kl_target`.
    """
    kind, tau_value = parse_tau(tau)
    if kind != "value":
        raise ValueError("tau must be a number for mara_target (percentiles are per batch)")
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be 1-D of equal length, got {ref.shape} and {r.shape}")
    b = check_beta(beta)
    good = (r >= tau_value) & (ref > 0)
    if not good.any():
        return reverse_kl_target(ref, r, b)
    with np.errstate(divide="ignore"):
        log_ref = np.log(ref)
    lz = log_ref[good].max()
    rz = r[good & (log_ref == lz)].max()
    logits = np.where(good, lz + rz / b, log_ref + r / b)
    logits = np.where((r >= tau_value) & (ref == 0), -np.inf, logits)
    m = logits.max(axis=-1, keepdims=True)
    w = np.exp(logits - m)
    return w / w.sum(axis=-1, keepdims=True)


def mara_rewards_global(ref_probs, rewards, beta, tau) -> np.ndarray:
    """MARA rewards (eq. 4.1) over the whole sample space with the global anchor: the rewards whose
    KL-regularised optimum is the MARA target. Samples with zero reference probability keep their reward
    (no policy reaches them under the reverse KL, and their log-probability is undefined)."""
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be 1-D of equal length, got {ref.shape} and {r.shape}")
    on = ref > 0
    out = r.copy()
    out[on] = mara_rewards(r[on], np.log(ref[on]), beta, tau)
    return out


def alg2_terms(ref_probs, rewards, tau):
    """Algorithm 2's reward ``r`` and KL reference ``q`` over the whole space, global anchor (eq. 4.3, chapter 4).

    For a good ``y`` (``R(y) >= tau``): ``r(y) = R(z)`` and ``q(y) = pi_ref(z)``, with ``z`` the good sample of
    highest reference probability (ties: highest reward); elsewhere ``r = R`` and ``q = pi_ref``. A good sample
    the reference never produces gets ``r = R(z)`` and ``q = 0`` (no reference sample ever carries its KL term).
    ``q`` is a positive measure, not a distribution: its total is ``Q = pi_ref(bad) + |good| pi_ref(z)``, which
    may exceed 1. No supported good sample: ``(R, pi_ref)`` unchanged. ``tau`` must be a number.
    """
    kind, tau_value = parse_tau(tau)
    if kind != "value":
        raise ValueError("tau must be a number for alg2_terms (percentiles are per batch)")
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be 1-D of equal length, got {ref.shape} and {r.shape}")
    good = r >= tau_value
    on_good = good & (ref > 0)
    if not on_good.any():
        return r.copy(), ref.copy()
    pz = ref[on_good].max()
    rz = r[on_good & (ref == pz)].max()
    return np.where(good, rz, r), np.where(on_good, pz, np.where(good, 0.0, ref))


def alg2_forward_target(ref_probs, rewards, beta, tau, return_lambda: bool = False):
    """Optimum of Algorithm 2's forward-KL objective, global anchor (eq. 4.3, chapter 4).

    With ``(r, q)`` from :func:`alg2_terms`, the objective is ``E_pi[r] - beta sum_y q(y) log(q(y)/pi(y))``
    (the forward KL with ``pi_ref`` replaced by ``q`` in the good samples' terms; since ``q`` need not sum to 1
    this is the unnormalised KL, whose extra ``sum pi - sum q`` is constant on the simplex). Its stationary
    point is ``pi(y) = beta q(y) / (Lambda - r(y))``: the same value ``beta pi_ref(z) / (Lambda - R(z))`` on
    every good sample, so the target is exactly flat there, with ``Lambda > max_{q > 0} r`` the unique root of
    the normaliser (eq. 4.4). Because ``beta sum_y q log pi = (beta Q) sum_y (q/Q) log pi``, this is
    :func:`marabook.targets.forward_kl_target` of the normalised ``q/Q`` at coefficient ``beta Q``: the same
    bracket, safeguarded Newton and off-support rule (eq. 2.4), and ``beta`` broadcasts the same way
    (shape ``(B, 1)`` gives ``(B, V)``). ``return_lambda`` also returns ``Lambda``.
    """
    b = check_beta(beta)
    r, q = alg2_terms(ref_probs, rewards, tau)
    total = q.sum()
    return forward_kl_target(q / total, r, b * total, return_lambda=return_lambda)


def method_targets(ref_probs, rewards, beta, tau, eta=None) -> dict:
    """The exact target of each method of the book on one problem (what each objective wants, chapters 1-4).

    ``{"vanilla-reverse": G_beta (eq. 1.3), "vanilla-forward": G_fwd (eq. 2.2), "mara-reverse": the flat
    MARA target (eq. 4.2), "mara-forward": the forward target of MARA's rewards (Algorithm 1),
    "mara-forward-alg2": the forward target of Algorithm 2's modified KL (eq. 4.3), flat over the good
    samples}``, MARA with the global anchor, and ``"entropy"`` (eq. 2.6) when ``eta`` is given. (Under the
    reverse KL the two algorithms share one target, ``"mara-reverse"``.) Any task whose answer probabilities under the
    reference are known fits: for the 1-2 task, the outcomes "1", "2" and "anything else" with rewards
    1, 1, 0. Sampled training may or may not reach these (chapter 5 draws both). ``beta`` broadcasts like
    :mod:`marabook.targets`: a column of betas, shape ``(B, 1)``, gives ``(B, V)`` targets.
    """
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    b = check_beta(beta)
    if b.ndim > 0:  # one set of targets per beta, stacked along the leading axes of beta
        rows = [method_targets(ref, r, float(x), tau, eta) for x in b.reshape(-1)]
        return {k: np.stack([row[k] for row in rows]).reshape(b.shape[:-1] + np.shape(rows[0][k])) for k in rows[0]}
    b = float(b)
    out = {"vanilla-reverse": reverse_kl_target(ref, r, b), "vanilla-forward": forward_kl_target(ref, r, b),
           "mara-reverse": mara_target(ref, r, b, tau),
           "mara-forward": forward_kl_target(ref, mara_rewards_global(ref, r, b, tau), b),
           "mara-forward-alg2": alg2_forward_target(ref, r, b, tau)}
    if eta is not None:
        out["entropy"] = entropy_regularized_target(ref, r, b, eta)
    return out


def forward_mara_small_beta(ref_probs, good) -> np.ndarray:
    """The forward-KL target of MARA's rewards (Algorithm 1) as beta -> 0 (chapter 4): a collapse, not a plateau.

    With the global anchor z, MARA's good rewards are ``R(z) + beta log(pi_ref(z) / pi_ref(y))``; the forward
    target ``beta pi_ref / (Lambda - R_bar)`` then has ``Lambda - R_bar(y) = beta (t + log(pi_ref(y) / pi_min))``
    on the good set (pi_min: its least likely member), so

        G(y) = pi_ref(y) / (t + log(pi_ref(y) / pi_min))    for good y, 0 elsewhere,

    independent of beta, with t > 0 fixed by normalisation (the bad samples' mass vanishes with beta). The
    rarest good sample's term is ``pi_min / t`` and t is small, so it takes most of the mass: a collapse onto
    the rarest good sample. Algorithm 2's forward form (:func:`alg2_forward_target`) is flat instead.
    """
    from scipy.optimize import brentq

    ref = check_distribution(ref_probs, "ref_probs")
    g = np.asarray(good, dtype=bool)
    if g.shape != ref.shape or not (g & (ref > 0)).any():
        raise ValueError("good must be a boolean mask of ref_probs' shape with at least one supported sample")
    g = g & (ref > 0)
    p = ref[g]
    logratio = np.log(p / p.min())

    def total(t):
        return np.sum(p / (t + logratio)) - 1.0

    hi = 1.0
    while total(hi) > 0:  # total decreases in t; at t -> 0+ it diverges (the rarest sample's term)
        hi *= 2.0
    t = brentq(total, 1e-300, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    out = np.zeros_like(ref)
    out[g] = p / (t + logratio)
    return out / out.sum()
