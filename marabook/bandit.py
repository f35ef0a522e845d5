"""Tabular softmax policies trained the way RL trains them (book chapter 4).

A policy over V tokens, ``pi = softmax(theta)``, maximises a KL-regularised objective either

(a) :func:`train_exact`: with the exact gradient (the full expectation over tokens), or
(b) :func:`train_sampled`: from sampled batches of size N with an RLOO (leave-one-out REINFORCE)
    estimator, applying MARA to each sampled batch with a *batch* anchor exactly as an LLM trainer
    would. Many seeds run at once: ``theta`` has shape (S, V).

Reverse KL enters the sampled estimator as the per-sample penalty ``-beta (log pi - log pi_ref)``
added to the reward (the "k1 in reward" form; its score-function gradient is unbiased). Forward KL
enters as ``beta * mean_j grad log pi(y'_j)`` over N samples ``y'_j ~ pi_ref``: an SFT term on
reference samples, an unbiased estimate of ``grad(-beta KL(pi_ref || pi)) = beta (pi_ref - pi)``.

MARA comes in two forms (``mara_form``): ``"reward"`` (Algorithm 1, eq. 4.1: augmented rewards, the KL
untouched) and ``"alg2"`` (Algorithm 2, eq. 4.3: good samples scored ``R(z)`` and their KL measured against
``pi_ref(z)``). Under the reverse KL the two give identical shaped rewards, sample by sample; under the
forward KL Algorithm 2 weights each good reference sample's SFT term by ``pi_ref(z) / pi_ref(y')``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import log_softmax, softmax

from marabook.config import show_progress
from marabook._validate import check_beta, check_distribution, check_finite, check_int, check_number
from marabook.estimators import rloo_advantages
from marabook.mara import alg2_terms, batch_anchors, mara_rewards, mara_rewards_global
from marabook.targets import kl_regularized_gradient

__all__ = ["Trajectory", "OPTIMIZERS", "FLOW_RTOL", "FLOW_ATOL", "augmented_rewards_global", "train_exact",
           "train_sampled", "sample_target", "filtered_self_training", "settle_step"]

_DIRECTIONS = ("reverse", "forward")
_MARA_FORMS = ("reward", "alg2")
#: The update rules :func:`train_exact` can apply to the exact gradient: ``"adam"`` (Adam on the logits, the
#: default), ``"sgd"`` (plain gradient ascent ``theta += lr * grad``; on the expected gradient nothing is
#: sampled, so SGD is gradient ascent) and ``"flow"`` (the gradient flow ``d theta / dt = grad J``, the limit of
#: ``"sgd"`` as ``lr`` shrinks, solved by an ODE solver and read at ``t = lr * step``): chapter 5, section 5.9.
OPTIMIZERS = ("adam", "sgd", "flow")
#: Relative tolerance of the ODE solver (LSODA) behind ``optimizer="flow"``, on the logits.
FLOW_RTOL = 1e-9
#: Absolute tolerance of the ODE solver (LSODA) behind ``optimizer="flow"``, on the logits.
FLOW_ATOL = 1e-9


@dataclass
class Trajectory:
    """What a training run returns.

    ``steps``: the step index of each snapshot; ``policies``: snapshots, shape (T, V) for exact runs
    and (T, S, V) for sampled runs over S seeds; ``objective`` and ``entropy`` (nats) at each
    snapshot (same leading shape); ``final``: the final policy, (V,) or (S, V); ``settings``: the optimiser
    settings the run used (:func:`train_exact` records ``optimizer``, ``lr`` and ``steps``, with Adam's
    ``adam_betas`` and ``adam_eps`` or the flow's ``time_per_step``, ``rtol`` and ``atol``; empty for sampled runs).
    """

    steps: np.ndarray
    policies: np.ndarray
    objective: np.ndarray
    entropy: np.ndarray
    final: np.ndarray
    settings: dict = field(default_factory=dict)


def augmented_rewards_global(ref_probs, rewards, beta, tau):
    """MARA rewards over the whole token space with the global anchor (:func:`marabook.mara.mara_rewards_global`)."""
    return mara_rewards_global(ref_probs, rewards, beta, tau)


def _check_common(ref_probs, rewards, beta, direction, steps, lr, mara_form="reward"):
    if mara_form not in _MARA_FORMS:
        raise ValueError(f"mara_form must be one of {_MARA_FORMS}, got {mara_form!r}")
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be 1-D of equal length, got {ref.shape} and {r.shape}")
    b = check_beta(beta)
    if b.ndim != 0:
        raise ValueError("beta must be a scalar here")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    check_int(steps, "steps", minimum=1)
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if direction == "reverse" and np.any(ref <= 0):
        raise ValueError("ref_probs must be > 0 everywhere for reverse-KL training")
    return ref, r, float(b)


def _objective(pi, ref, r, beta, direction):
    with np.errstate(divide="ignore", invalid="ignore"):
        if direction == "reverse":
            kl = np.sum(np.where(pi > 0, pi * (np.log(pi) - np.log(ref)), 0.0), axis=-1)
        else:
            kl = np.sum(np.where(ref > 0, ref * (np.log(ref) - np.log(pi)), 0.0), axis=-1)
    return (pi * r).sum(axis=-1) - beta * kl


def _entropy(pi):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(pi > 0, pi * np.log(pi), 0.0), axis=-1)


class _Adam:
    def __init__(self, shape, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.m, self.v, self.k = np.zeros(shape), np.zeros(shape), 0
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

    def ascent(self, theta, grad, lr=None):
        self.k += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad ** 2
        m_hat = self.m / (1 - self.b1 ** self.k)
        v_hat = self.v / (1 - self.b2 ** self.k)
        return theta + (self.lr if lr is None else lr) * m_hat / (np.sqrt(v_hat) + self.eps)


def _logsumexp(th):
    """``scipy.special.logsumexp(th, axis=-1, keepdims=True)`` for finite real logits, computed by the same
    operations (the largest term kept apart, ``log1p`` of the rest), so results agree bit for bit."""
    a_max = th.max(axis=-1, keepdims=True)
    mask = th == a_max
    m = mask.sum(axis=-1, keepdims=True, dtype=th.dtype)
    s = np.exp(np.where(mask, -np.inf, th) - a_max).sum(axis=-1, keepdims=True)
    s = np.where(s == 0, s, s / m)
    return np.log1p(s) + np.log(m) + a_max


def _exact_gradient(q, r, b, direction):
    """The exact gradient of :func:`marabook.targets.kl_regularized_gradient` (eqs. 1.5 / 2.5) for inputs
    validated once: the same arithmetic without the per-call checks (a long run takes 10^5 steps)."""
    q = check_distribution(q, "ref_probs")  # renormalised once, as every call of the checked function does
    log_q = np.log(q) if direction == "reverse" else None
    b_arr = np.full(1, b)

    def grad(th):
        log_pi = th - _logsumexp(th)
        pi = np.exp(log_pi)
        if direction == "reverse":
            adv = r - b_arr * (log_pi - log_q)
            return pi * (adv - (pi * adv).sum(axis=-1, keepdims=True))
        return pi * (r - (pi * r).sum(axis=-1, keepdims=True)) + b_arr * (q - pi)
    return grad


def _check_optimizer(optimizer, lr, adam_betas, adam_eps):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    try:
        b1, b2 = adam_betas
    except (TypeError, ValueError):
        raise ValueError(f"adam_betas must be a pair (beta1, beta2), got {adam_betas!r}") from None
    for name, v in (("adam_betas[0]", b1), ("adam_betas[1]", b2)):
        if not 0.0 <= check_number(v, name) < 1.0:
            raise ValueError(f"adam_betas must lie in [0, 1), got {name} = {v!r}")
    check_number(adam_eps, "adam_eps", positive=True)
    out = {"optimizer": optimizer, "lr": float(lr)}
    if optimizer == "adam":
        out.update(adam_betas=(float(b1), float(b2)), adam_eps=float(adam_eps))
    elif optimizer == "flow":
        out.update(time_per_step=float(lr), rtol=FLOW_RTOL, atol=FLOW_ATOL)
    return out


def settle_step(steps, values, target, within: float):
    """The first of ``steps`` from which ``values`` stays within ``within`` of ``target`` to the end (the
    step a trajectory reaches its target by, and stays); None when the last value is outside. Vectorised:
    ``steps`` and ``values`` are 1-D of one length (a trajectory of :func:`train_exact` read at its
    snapshots, e.g. the share of one outcome)."""
    st, v = np.asarray(steps), check_finite(values, "values")
    if st.ndim != 1 or v.shape != st.shape or not st.size:
        raise ValueError(f"steps and values must be 1-D of one non-zero length, got {st.shape} and {v.shape}")
    check_number(target, "target")
    check_number(within, "within", positive=True)
    bad = np.flatnonzero(np.abs(v - target) > within)
    if not bad.size:
        return int(st[0])
    return None if bad[-1] == st.size - 1 else int(st[bad[-1] + 1])


def _snapshot_steps(steps: int, n: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, steps, min(n, steps + 1))).astype(int))


def train_exact(ref_probs, rewards, beta, *, direction="reverse", mara_tau=None, mara_form="reward", steps=2000,
                lr=0.1, optimizer="adam", adam_betas=(0.9, 0.999), adam_eps=1e-8, init_logits=None, n_snapshots=50,
                progress=False) -> Trajectory:
    """Gradient ascent with the exact gradient (eqs. 1.5 / 2.5) from ``pi_ref`` (or ``init_logits``).

    With ``mara_tau`` and ``mara_form="reward"`` (Algorithm 1) the rewards are replaced by
    :func:`augmented_rewards_global` (the global anchor), so reverse-KL runs converge to
    :func:`marabook.mara.mara_target` and forward-KL runs to ``forward_kl_target(ref, R_bar, beta)``. With
    ``mara_form="alg2"`` (Algorithm 2, eq. 4.3) the objective is ``E_pi[r] - beta KL(. || .)`` with the
    reward ``r`` and KL reference ``q`` of :func:`marabook.mara.alg2_terms`; forward-KL runs converge to
    :func:`marabook.mara.alg2_forward_target` (flat over the good tokens), reverse-KL runs to the same
    target as Algorithm 1. ``objective`` in the trajectory is evaluated with the task's ORIGINAL rewards and
    reference, as in :func:`train_sampled`. Deterministic.

    The optimiser (chapter 5, section 5.9: the fixed point is the objective's, the path to it is the
    optimiser's) is set by ``optimizer`` (one of :data:`OPTIMIZERS`):

    * ``"adam"`` (default): Adam on the logits with step ``lr`` (default 0.1), ``adam_betas`` (default
      (0.9, 0.999)) and ``adam_eps`` (default 1e-8), bias-corrected, as ``torch.optim.Adam``. Each logit moves
      by about ``lr`` per step whatever the size of its gradient.
    * ``"sgd"``: plain gradient ascent ``theta <- theta + lr * grad J``. On the exact gradient nothing is
      sampled, so SGD and gradient ascent are one update; it is the Euler discretisation of the gradient flow
      ``d theta / dt = grad J`` with time ``t = lr * step``, and follows the flow as closely as ``lr`` is small
      (the error is of order ``lr``), until ``lr`` passes the stability limit of the step.
    * ``"flow"``: that gradient flow itself, integrated by ``scipy.integrate.solve_ivp`` (LSODA, tolerances
      :data:`FLOW_RTOL` and :data:`FLOW_ATOL`) and read at the times ``t = lr * k`` of the snapshot steps ``k``:
      where ``"sgd"`` with step ``lr`` would be after ``k`` steps in the limit of a small step. It costs one
      solver run whatever ``steps`` is (``tests/test_dynamics_optimisers.py`` checks small-step ``"sgd"``
      against it and it against an independent solver).

    Every setting is recorded in ``Trajectory.settings``.
    """
    ref, r_task, b = _check_common(ref_probs, rewards, beta, direction, steps, lr, mara_form)
    settings = {**_check_optimizer(optimizer, lr, adam_betas, adam_eps), "steps": int(steps)}
    q, b_kl = ref, b
    if mara_tau is None:
        r = r_task
    elif mara_form == "reward":
        r = augmented_rewards_global(ref, r_task, b, mara_tau)
    else:  # sum_y q log pi = Q sum_y (q/Q) log pi: the forward gradient at (q/Q, beta Q); reverse: Q cancels
        r, q_raw = alg2_terms(ref, r_task, mara_tau)
        q = q_raw / q_raw.sum()
        b_kl = b * q_raw.sum() if direction == "forward" else b
    with np.errstate(divide="ignore"):
        theta = np.log(np.maximum(ref, 1e-300)) if init_logits is None else check_finite(init_logits, "init_logits").copy()
    if theta.shape != ref.shape:
        raise ValueError(f"init_logits must have shape {ref.shape}, got {theta.shape}")
    kl_regularized_gradient(theta, q, r, b_kl, direction)  # validates once what the loop's gradient assumes
    grad = _exact_gradient(q, r, b_kl, direction)
    opt = _Adam(theta.shape, lr, *settings["adam_betas"], eps=settings["adam_eps"]) if optimizer == "adam" else None
    if optimizer == "flow":
        stp = _snapshot_steps(steps, n_snapshots)
        sol = solve_ivp(lambda t, th: grad(th), (0.0, lr * steps), theta, method="LSODA", t_eval=lr * stp,
                        rtol=FLOW_RTOL, atol=FLOW_ATOL)
        if not sol.success:
            raise RuntimeError(f"the gradient-flow ODE solver failed: {sol.message}")
        pol = softmax(sol.y.T, axis=-1)
        return Trajectory(stp, pol, _objective(pol, ref, r_task, b, direction), _entropy(pol), pol[-1], settings)
    keep = set(_snapshot_steps(steps, n_snapshots).tolist())
    snaps, stp = [], []
    iterator = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"exact {direction}", disable=not show_progress())
    for k in iterator:
        if k in keep:
            snaps.append(theta)
            stp.append(k)
        if k == steps:
            break
        theta = opt.ascent(theta, grad(theta)) if opt is not None else theta + lr * grad(theta)
    pol = softmax(np.array(snaps), axis=-1)
    return Trajectory(np.array(stp), pol, _objective(pol, ref, r_task, b, direction), _entropy(pol), pol[-1],
                      settings)


def train_sampled(ref_probs, rewards, beta, *, direction="reverse", mara_tau=None, mara_form="reward", batch_size=64,
                  steps=5000, lr=0.1, seeds=(0,), n_snapshots=50, lr_decay=True, progress=False) -> Trajectory:
    """Policy-gradient training from sampled batches, vectorised over seeds.

    Each step, for every seed: draw ``batch_size`` tokens from the current policy, score them,
    apply MARA to the batch (anchor = the good sampled token with the highest reference
    log-probability; a batch without a good token is left unchanged), add the reverse-KL penalty to
    the reward (reverse) or prepare an SFT term on ``batch_size`` reference samples (forward), form
    RLOO advantages (each sample's baseline is the mean of the other N-1), and take an Adam step on
    the logits. ``lr_decay`` anneals the step size as ``lr / sqrt(1 + k / 100)`` so the sampled
    policy settles near its target. ``objective`` in the trajectory is evaluated exactly with the
    task's ORIGINAL rewards (MARA only changes what the optimiser sees).

    ``mara_form="alg2"`` (Algorithm 2, eq. 4.3) uses the same batch anchor ``z`` but scores each good sampled
    token ``R(z)`` and measures its KL against ``pi_ref(z)``: reverse, the penalty becomes
    ``-beta (log pi(y) - log pi_ref(z))`` (the same shaped reward as Algorithm 1, to rounding); forward, each
    good reference sample's SFT term is weighted by ``pi_ref(z) / pi_ref(y')`` (its threshold and anchor are
    the policy batch's; a batch without a good token leaves both terms unchanged), an unbiased estimate of
    ``beta (q - Q pi)``, the gradient of ``beta sum_y q(y) log pi(y)``.
    """
    ref, r, b = _check_common(ref_probs, rewards, beta, direction, steps, lr, mara_form)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (RLOO needs a leave-one-out baseline), got {batch_size!r}")
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    if not seeds:
        raise ValueError("seeds must be non-empty")
    n_seeds, v, n = len(seeds), ref.size, int(batch_size)
    rngs = [np.random.default_rng(s) for s in seeds]
    with np.errstate(divide="ignore"):
        log_ref = np.log(ref)
    theta = np.tile(np.log(np.maximum(ref, 1e-300)), (n_seeds, 1))
    opt = _Adam(theta.shape, lr)
    keep = set(_snapshot_steps(steps, n_snapshots).tolist())
    snaps, stp = [], []
    ref_cdf = np.cumsum(ref)
    iterator = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"sampled {direction}{' + MARA' if mara_tau is not None else ''}",
                        disable=not show_progress())
    rows = np.arange(n_seeds)[:, None]
    for k in iterator:
        pi = softmax(theta, axis=-1)
        if k in keep:
            snaps.append(pi)
            stp.append(k)
        if k == steps:
            break
        u = np.stack([g.random(n) for g in rngs])                       # (S, N)
        ys = np.minimum((np.cumsum(pi, axis=-1)[:, None, :] < u[..., None]).sum(-1), v - 1)
        rew, log_q = r[ys], log_ref[ys]                                 # (S, N)
        if mara_tau is not None:
            groups = np.repeat(np.arange(n_seeds), n)                   # one anchor per seed's batch
            if mara_form == "reward":
                rew = mara_rewards(rew.ravel(), log_q.ravel(), b, mara_tau, groups=groups).reshape(n_seeds, n)
            else:
                good, r_z, lp_z, thr = (x.reshape(n_seeds, n) for x in
                                        batch_anchors(rew.ravel(), log_q.ravel(), mara_tau, groups=groups))
                rew, log_q = np.where(good, r_z, rew), np.where(good, lp_z, log_q)
                has_anchor, anchor_lp, thr = good.any(axis=1), lp_z[:, 0], thr[:, 0]
        if direction == "reverse":
            log_pi = log_softmax(theta, axis=-1)
            rew = rew - b * (log_pi[rows, ys] - log_q)
        adv = rloo_advantages(rew.ravel(), n).reshape(n_seeds, n)      # RLOO (eq. 5.2), one group per seed
        grad = np.zeros_like(theta)
        np.add.at(grad, (np.repeat(rows, n, axis=1), ys), adv)
        grad = (grad - adv.sum(axis=1, keepdims=True) * pi) / n          # sum_i A_i (e_{y_i} - pi) / N
        if direction == "forward":
            u_ref = np.stack([g.random(n) for g in rngs])
            y_ref = np.minimum(np.searchsorted(ref_cdf, u_ref, side="right"), v - 1)
            counts = np.zeros_like(theta)
            if mara_tau is not None and mara_form == "alg2":           # weights q(y') / pi_ref(y') on good y'
                ok = has_anchor[:, None] & (r[y_ref] >= thr[:, None])
                w = np.exp(np.where(ok, anchor_lp[:, None] - log_ref[y_ref], 0.0))
                np.add.at(counts, (np.repeat(rows, n, axis=1), y_ref), w)
                grad = grad + b * (counts - w.sum(axis=1, keepdims=True) * pi) / n  # beta * mean w grad log pi
            else:
                np.add.at(counts, (np.repeat(rows, n, axis=1), y_ref), 1.0)
                grad = grad + b * (counts / n - pi)                      # beta * mean grad log pi(y'_j)
        step_lr = lr / np.sqrt(1.0 + k / 100.0) if lr_decay else lr
        theta = opt.ascent(theta, grad, lr=step_lr)
        theta -= theta.max(axis=-1, keepdims=True)
    pol = np.array(snaps)                                               # (T, S, V)
    return Trajectory(np.array(stp), pol, _objective(pol, ref, r, b, direction), _entropy(pol), pol[-1])


def sample_target(ref_probs, rewards, beta, n: int, seed: int) -> tuple[np.ndarray, float]:
    """``n`` exact samples from the Gibbs target G_beta (eq. 1.3) by rejection from the reference (chapter 2).

    Draw ``y ~ pi_ref`` and keep it with probability ``exp((R(y) - max R) / beta)``; kept samples are
    distributed as ``pi_ref exp(R / beta)`` normalised, with no normaliser needed. Maximum likelihood on
    them is a true forward-KL step toward G_beta (the paper's Remark B.2). Returns the sample indices and
    the acceptance rate, which is ``zeta exp(-max R / beta)`` and collapses as beta shrinks: why nobody does
    this for a language model. With 0/1 rewards and small beta it is exactly "sample, keep the correct ones"
    (rejection-sampling fine-tuning, RAFT / STaR).
    """
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be 1-D of one shape, got {ref.shape} and {r.shape}")
    b = float(check_beta(beta))
    n = check_int(n, "n")
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    accept = np.exp((r - r[ref > 0].max()) / b)
    kept, drawn = [], 0
    while len(kept) < n:
        batch = max(n, 1024)
        y = rng.choice(ref.size, size=batch, p=ref)
        ok = rng.random(batch) < accept[y]
        drawn += batch
        kept.extend(y[ok].tolist())
        if drawn > 10_000_000 and not kept:
            raise ValueError("beta is too small: no sample accepted in 10 million draws from the reference")
    return np.array(kept[:n]), len(kept) / drawn


def filtered_self_training(ref_probs, rewards, tau, *, n: int = 64, rounds: int = 200, seeds: int = 100,
                           seed: int = 0) -> np.ndarray:
    """Iterated filtering (STaR-style): sample ``n`` answers from the current policy, keep those with
    ``R >= tau``, refit the policy by maximum likelihood (for a categorical policy: the kept answers'
    frequencies), repeat. ``seeds`` independent runs from ``ref_probs``; a round with nothing kept leaves the
    policy unchanged. Returns the policies, shape ``(rounds + 1, seeds, V)``.

    In expectation one round maps pi to pi restricted to the good set, so every round after the first has
    the filtered reference as its fixed point; but each refit on finitely many samples moves the shares at
    random (a Wright-Fisher drift), and an answer that draws no sample is gone for good (chapter 2).
    """
    ref = check_distribution(ref_probs, "ref_probs")
    r = check_finite(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be 1-D of one shape, got {ref.shape} and {r.shape}")
    t = float(tau)
    if not np.isfinite(t):
        raise ValueError(f"tau must be a finite number, got {tau!r}")
    good = r >= t
    if not (good & (ref > 0)).any():
        raise ValueError(f"tau={tau!r} leaves no answer with reference support above the threshold")
    n, rounds, seeds = check_int(n, "n"), check_int(rounds, "rounds"), check_int(seeds, "seeds")
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    pi = np.tile(ref, (seeds, 1))
    out = [pi.copy()]
    for _ in range(rounds):
        counts = np.stack([rng.multinomial(n, row / row.sum()) for row in pi]) * good
        kept = counts.sum(axis=1, keepdims=True)
        pi = np.where(kept > 0, counts / np.maximum(kept, 1), pi)
        out.append(pi.copy())
    return np.stack(out)
