"""What a language-model RL run is: :class:`RLConfig` (every knob, checked once), the KL settings, the
:class:`Task` protocol, and :func:`shape_rewards` (book chapter 5; see :mod:`marabook.rl.trainer` for the
loop that uses them).

The KL is set by two settings: its *direction* (``kl``: ``"reverse"``, ``"forward"`` or ``"none"``) and,
for the reverse KL, where its estimator goes (``kl_estimator``): ``"k1_reward"`` (k1 subtracted from the
reward, eq. 5.3; optimum: the Gibbs target, eq. 1.3) or ``"k3_loss"`` (k3 added to the loss per token, the
form GRPO uses; its gradient is the *forward* KL's, eq. 5.4). The forward KL is estimated by an SFT term
on reference samples (eq. 5.5). The pair is resolved once, into :attr:`RLConfig.kl_placement`.

MARA comes in two forms (``mara_form``, chapter 4): ``"reward"`` (Algorithm 1, eq. 4.1: good samples' rewards
augmented, the KL untouched) and ``"alg2"`` (Algorithm 2, eq. 4.3: good samples scored with the anchor's reward
``R(z)`` and measured against the anchor's reference probability ``pi_ref(z)`` in the forward-KL term). Under
the reverse KL with k1 in the reward the two are one update (the shaped rewards agree sample by sample,
chapter 4), so ``"alg2"`` is accepted with the forward KL only; under the forward KL its optimum is flat over
the good samples (eq. 4.3), the augmented reward's is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, Sequence

from marabook._validate import check_int, check_number
from marabook.checkpoints import OMIT_DEFAULT
from marabook.estimators import KL_PLACEMENTS, advantage_algorithm, kl_k1
from marabook.mara import Threshold, augment, batch_anchors, mara_rewards
from marabook.plumbing import PRECISIONS, default_device as _default_device

__all__ = ["RLConfig", "LoraSettings", "Task", "shape_rewards", "default_device", "KL_DIRECTIONS", "KL_ESTIMATORS",
           "KL_PLACEMENTS", "MARA_FORMS", "group_anchors", "alg2_sft_weights"]

#: The KL directions: ``KL(pi || pi_ref)``, ``KL(pi_ref || pi)``, or no KL term.
KL_DIRECTIONS = ("reverse", "forward", "none")
#: Where the KL enters the objective, per direction (the first is the default).
KL_ESTIMATORS = {"reverse": ("k1_reward", "k3_loss"), "forward": ("sft",), "none": (None,)}
#: MARA's forms: ``"reward"`` (Algorithm 1, eq. 4.1) and ``"alg2"`` (Algorithm 2, eq. 4.3; forward KL only).
MARA_FORMS = ("reward", "alg2")


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"`` (:func:`marabook.plumbing.default_device`)."""
    return str(_default_device())


def kl_placement(kl: str, kl_estimator: str | None = None, beta: float = 1.0) -> str | None:
    """Where the KL term goes (an entry of :data:`~marabook.estimators.KL_PLACEMENTS`) for a direction
    ``kl`` and an estimator placement ``kl_estimator`` (None: the direction's default); None when there is
    no KL term (``kl="none"`` or ``beta == 0``)."""
    if kl not in KL_DIRECTIONS:
        raise ValueError(f"kl must be one of {KL_DIRECTIONS}, got {kl!r}")
    allowed = KL_ESTIMATORS[kl]
    if kl_estimator is not None and kl_estimator not in allowed:
        raise ValueError(f"kl_estimator must be one of {allowed} for kl={kl!r}, got {kl_estimator!r}")
    return None if beta == 0 else (kl_estimator or allowed[0])


def group_anchors(rewards, ref_logprobs, tau, groups=None):
    """Each group's MARA anchor for torch tensors (:func:`marabook.mara.batch_anchors`, computed on the host):
    ``(good, anchor_reward, anchor_logprob, threshold)``, float64/bool tensors of shape (N,) on ``rewards``'
    device. ``good``: ``R >= threshold`` (a percentile resolved per group or per batch); ``anchor_reward`` and
    ``anchor_logprob``: ``R(z)`` and ``log pi_ref(z)`` of the sample's group (``-inf`` in a group without a
    good sample). ``tau``: a number, ``"pNN"`` or a :class:`marabook.mara.Threshold`."""
    import torch

    as_np = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    out = batch_anchors(as_np(rewards), as_np(ref_logprobs), tau,
                        groups=None if groups is None else groups.detach().cpu().numpy())
    return tuple(torch.as_tensor(a, device=rewards.device) for a in out)


def alg2_sft_weights(rewards, ref_logprobs, ref_sample_rewards, ref_sample_logprobs, tau, groups=None):
    """Algorithm 2's weights of the forward-KL SFT term, one per reference sample (eqs. 4.3 and 5.5, torch).

    Algorithm 2's forward term is ``-beta sum_y q(y) log pi(y)`` with ``q = pi_ref`` on bad samples and
    ``q = pi_ref(z)`` on good ones (eq. 4.3). From reference samples ``y' ~ pi_ref`` it is estimated without
    bias by ``-beta mean_j w_j log pi(y'_j)`` with the importance weight ``w = q(y') / pi_ref(y')``: ``pi_ref(z) /
    pi_ref(y') = exp(log pi_ref(z) - log pi_ref(y'))`` for a good ``y'`` in a group with an anchor, 1 otherwise.
    The anchor ``z`` and the threshold are the group's, from the policy samples (``rewards``, ``ref_logprobs``,
    ``groups``; ``group_anchors``), as in :func:`marabook.bandit.train_sampled`; the reference samples
    (``ref_sample_rewards``, their sequence ``ref_sample_logprobs``) are laid out like the policy samples (the
    trainer draws ``group_size`` of each prompt), so sample ``j`` of either belongs to group ``groups[j]``. A
    good reference sample rarer than the anchor gets a weight above 1: unbiased, and heavy-tailed when the
    anchor is much likelier than the good samples the reference draws."""
    import torch

    if ref_sample_rewards.shape != rewards.shape or ref_sample_logprobs.shape != rewards.shape:
        raise ValueError(f"ref_sample_rewards and ref_sample_logprobs must have the shape of rewards "
                         f"{tuple(rewards.shape)} (reference samples laid out like the policy samples)")
    good, _, anchor_lp, thr = group_anchors(rewards, ref_logprobs, tau, groups)
    lp = ref_sample_logprobs.detach().to(torch.float64)
    ok = torch.isfinite(anchor_lp) & (ref_sample_rewards.detach().to(torch.float64) >= thr)
    w = torch.where(ok, torch.exp(torch.where(ok, anchor_lp - lp, torch.zeros_like(lp))), torch.ones_like(lp))
    return w.to(ref_sample_logprobs.dtype)


def shape_rewards(rewards, logp, ref_logp, *, beta, kl="reverse", mara_tau=None, groups=None,
                  entropy_coef: float = 0.0, tau_scope: str = "group", kl_estimator: str | None = None,
                  mara_form: str = "reward", validate: bool = True):
    """The rewards the advantages are computed from (torch tensors, no gradient), steps 3-4 of a step.

    1. MARA (eq. 4.1) when ``mara_tau`` is set: per group of ``groups``, good samples
       (``R >= tau``) get ``R(z) + beta * (log pi_ref(z) - log pi_ref(y))`` with ``z`` the group's
       good sample of highest reference log-probability (:func:`marabook.mara.mara_rewards`). A
       percentile ``mara_tau`` (``"p90"``) is taken per group (``tau_scope="group"``) or over the batch
       (``"batch"``), see :class:`marabook.mara.Threshold`. With ``mara_form="alg2"`` (Algorithm 2, eq. 4.3,
       forward KL) good samples get ``R(z)`` alone: their KL side is the weighted SFT term
       (``alg2_sft_weights``);
    2. the reverse-KL penalty when the KL is reverse with k1 in the reward: ``- beta * k1 = - beta
       (log pi(y) - log pi_ref(y))`` per sequence (eq. 5.3). Other placements act in the loss, not here
       (:func:`marabook.estimators.policy_loss`);
    3. an entropy bonus when ``entropy_coef = eta > 0``: ``- eta * log pi(y)``, an unbiased per-sample
       estimate of ``eta * H(pi)``; with the reverse KL the optimum is then
       ``pi_ref^(beta/(beta+eta)) exp(R/(beta+eta))`` (eq. 2.6, :func:`marabook.targets.entropy_regularized_target`).

    Every setting is checked. ``validate=False`` skips the checks of the tensors' values (finite, shapes;
    each a host synchronisation), for a caller whose own forward passes guarantee them: the trainer.
    """
    placement = kl_placement(kl, kl_estimator, check_number(beta, "beta", minimum=0.0))
    entropy_coef = check_number(entropy_coef, "entropy_coef", minimum=0.0)
    threshold = None if mara_tau is None else Threshold.parse(mara_tau, tau_scope)
    _check_mara_form(mara_form, mara_tau, kl)
    r = rewards
    if threshold is not None and mara_form == "alg2":                      # eq. 4.3: good samples score R(z)
        import torch

        good, anchor_reward, _, _ = group_anchors(r, ref_logp, threshold, groups)
        r = torch.where(good, anchor_reward.to(r.dtype), r)
    elif threshold is not None:                                            # eq. 4.1
        r = (mara_rewards(r, ref_logp, beta, threshold, groups=groups) if validate
             else augment(r, ref_logp, beta, threshold, groups))
    if placement == "k1_reward":                                           # - beta * k1 (eq. 5.3)
        r = r - beta * (kl_k1(logp, ref_logp) if validate else logp - ref_logp)
    if entropy_coef > 0:
        r = r - entropy_coef * logp
    return r


def _check_mara_form(mara_form, mara_tau, kl) -> None:
    if mara_form not in MARA_FORMS:
        raise ValueError(f"mara_form must be one of {MARA_FORMS}, got {mara_form!r}")
    if mara_form == "alg2" and mara_tau is None:
        raise ValueError("mara_form='alg2' (Algorithm 2) needs MARA on: set mara_tau")
    if mara_form == "alg2" and kl != "forward":
        raise ValueError(f"mara_form='alg2' needs kl='forward', got kl={kl!r}: with the reverse KL (k1 in the "
                         "reward) Algorithm 2 gives the same shaped reward, sample by sample, as Algorithm 1, so "
                         "use mara_form='reward'; k3 in the loss has no per-token form of it")


class Task(Protocol):
    """What the trainer needs from a task (see :class:`marabook.lm.OneTwoTask`).

    ``prompts``: the prompt texts, already formatted for the model (chat template applied if any).
    ``reward(prompts, completions)``: one float per completion (completions are decoded text,
    without the EOS token). ``metrics(prompts, completions)``: a dict of floats logged every step
    (e.g. the entropy over valid answers).
    """

    prompts: Sequence[str]

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> Sequence[float]: ...

    def metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict: ...


@dataclass
class LoraSettings:
    """LoRA adapters (through ``peft``, ``pip install "marabook[lm]"``): ``rank``, ``alpha`` (the update is
    scaled by ``alpha / rank``), ``target_modules`` (None: peft's default for the architecture, e.g. the
    attention projections; ``"all-linear"``; or a list of module names), ``dropout``."""

    rank: int = 8
    alpha: float = 16.0
    target_modules: str | list | None = None
    dropout: float = 0.0

    def __post_init__(self):
        check_int(self.rank, "rank", minimum=1)
        check_number(self.alpha, "alpha", positive=True)
        check_number(self.dropout, "dropout", minimum=0.0)
        if not (self.target_modules is None or isinstance(self.target_modules, str)
                or (isinstance(self.target_modules, (list, tuple)) and all(isinstance(m, str) for m in self.target_modules))):
            raise ValueError(f"target_modules must be None, a string or a list of module names, got {self.target_modules!r}")
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)


@dataclass
class RLConfig:
    """Every knob of a run (saved in checkpoints and results); checked here, once.

    ``beta``: KL coefficient; ``kl``: the KL direction, ``"reverse"``, ``"forward"`` or ``"none"``;
    ``kl_estimator``: where a reverse KL goes, ``"k1_reward"`` (default) or ``"k3_loss"`` (resolved once
    into :attr:`kl_placement`); ``advantage``: an algorithm name of
    :data:`marabook.estimators.ADVANTAGE_ALGORITHMS` (``"rloo"``, ``"grpo"``, ``"dr_grpo"``, ``"reinforce"``);
    ``mara_tau``: ``None`` (vanilla) or MARA's threshold (number or ``"pNN"``), and ``tau_scope``
    (``"group"`` or ``"batch"``) where a percentile is taken; ``group_size`` completions per prompt,
    ``prompts_per_step`` prompts per batch (drawn with replacement from ``task.prompts``); ``steps``
    optimiser steps of Adam with learning rate ``lr`` and gradient-norm clipping ``max_grad_norm``
    (``None``: off); ``max_new_tokens`` per completion; ``temperature`` for sampling; ``seed`` for every
    random draw of the run; ``entropy_coef`` (eta) adds an entropy bonus ``eta * H(pi)``; ``mara_form``:
    ``"reward"`` (Algorithm 1, eq. 4.1, the default) or ``"alg2"`` (Algorithm 2, eq. 4.3: needs ``mara_tau`` and
    ``kl="forward"``; with the reverse KL it is Algorithm 1's update, so it is refused there, see
    ``MARA_FORMS``).

    Fields added after runs were stored (``mara_form``) carry :data:`marabook.checkpoints.OMIT_DEFAULT`: at
    their default they are left out of the config's fingerprint and checkpoint record, so every sweep store
    and checkpoint written before they existed still resumes.

    Memory and speed on real-size models (the update is the same, see :class:`~marabook.rl.Trainer`):
    ``micro_batch_size`` completions per forward/backward pass with gradient accumulation (None: the whole
    batch at once); ``gradient_checkpointing`` (recompute activations in the backward pass; Hugging Face
    models); ``lora`` (a ``LoraSettings`` or its dict: train low-rank adapters, the reference is the
    base model with the adapters switched off, no second copy); ``precision`` (``"auto"``: fp32 on CPU,
    bf16 on GPUs that support it natively, fp16 with a gradient scaler on older ones such as the T4; see
    :func:`marabook.plumbing.autocast_dtype`).
    """

    beta: float = 0.01
    kl: str = "reverse"
    advantage: str = "rloo"
    mara_tau: float | str | None = None
    group_size: int = 8
    prompts_per_step: int = 4
    steps: int = 100
    lr: float = 3e-3
    max_grad_norm: float | None = 1.0
    max_new_tokens: int = 8
    temperature: float = 1.0
    seed: int = 0
    entropy_coef: float = 0.0
    tau_scope: str = "group"
    kl_estimator: str | None = None
    micro_batch_size: int | None = None
    gradient_checkpointing: bool = False
    lora: LoraSettings | dict | None = None
    precision: str = "auto"
    mara_form: str = field(default="reward", metadata=OMIT_DEFAULT)

    def __post_init__(self):
        check_number(self.beta, "beta", minimum=0.0)
        self.kl_placement  # noqa: B018 - parses kl and kl_estimator
        advantage_algorithm(self.advantage)
        if self.mara_tau is not None:
            Threshold.parse(self.mara_tau, self.tau_scope)
            if self.beta <= 0:
                raise ValueError("beta must be > 0 when mara_tau is set (MARA's bonus is beta-scaled)")
        elif self.tau_scope not in ("group", "batch"):
            raise ValueError(f"tau_scope must be 'group' or 'batch', got {self.tau_scope!r}")
        check_int(self.group_size, "group_size", minimum=2)
        for name in ("prompts_per_step", "steps", "max_new_tokens"):
            check_int(getattr(self, name), name, minimum=1)
        check_number(self.lr, "lr", positive=True)
        if self.max_grad_norm is not None:
            check_number(self.max_grad_norm, "max_grad_norm", positive=True)
        check_number(self.temperature, "temperature", positive=True)
        check_int(self.seed, "seed", minimum=-(2 ** 63))
        check_number(self.entropy_coef, "entropy_coef", minimum=0.0)
        if self.micro_batch_size is not None:
            check_int(self.micro_batch_size, "micro_batch_size", minimum=1)
        if not isinstance(self.gradient_checkpointing, bool):
            raise ValueError(f"gradient_checkpointing must be a bool, got {self.gradient_checkpointing!r}")
        if isinstance(self.lora, dict):
            try:
                self.lora = LoraSettings(**self.lora)
            except TypeError as exc:
                raise ValueError(f"lora must be LoraSettings or a dict of its fields: {exc}") from None
        elif self.lora is not None and not isinstance(self.lora, LoraSettings):
            raise ValueError(f"lora must be None, LoraSettings or a dict, got {self.lora!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check_mara_form(self.mara_form, self.mara_tau, self.kl)

    @cached_property
    def kl_placement(self) -> str | None:
        """The KL term's placement, decided once.

        ``"k1_reward"`` (k1 in the reward, eq. 5.3), ``"k3_loss"`` (k3 in the loss, eq. 5.4), ``"sft"`` (forward
        KL, eq. 5.5), or None (``kl="none"`` or ``beta = 0``)."""
        return kl_placement(self.kl, self.kl_estimator, self.beta)

    @cached_property
    def threshold(self) -> Threshold | None:
        """MARA's threshold, parsed (None when MARA is off)."""
        return None if self.mara_tau is None else Threshold.parse(self.mara_tau, self.tau_scope)

    @cached_property
    def algorithm(self) -> str:
        """The advantage algorithm (``"rloo"``, ``"grpo"``, ``"dr_grpo"`` or ``"reinforce"``)."""
        return advantage_algorithm(self.advantage)

    @property
    def label(self) -> str:
        """Short name for plots, e.g. ``"MARA reverse beta=0.01"``."""
        method = "vanilla" if self.mara_tau is None else "MARA (alg. 2)" if self.mara_form == "alg2" else "MARA"
        ent = f" eta={self.entropy_coef:g}" if self.entropy_coef else ""
        kl = f"{self.kl} (k3 in loss)" if self.kl_estimator == "k3_loss" else self.kl
        return f"{method} {kl} beta={self.beta:g}{ent}"
