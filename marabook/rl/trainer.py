"""The language-model trainer of the book (chapter 5): config, reward shaping, and the loop.

:class:`Trainer` maximises ``E[R(x, y)] - beta * D`` with one on-policy gradient step per batch and
no ratio clipping; read :meth:`Trainer.train_step` top to bottom. ``D`` is set by two settings of
:class:`RLConfig`: the KL *direction* (``kl``) and, for the reverse KL, where its estimator goes
(``kl_estimator``):

* ``kl="reverse"``, ``kl_estimator="k1_reward"`` (default): KL(pi || pi_ref) estimated per sequence by
  k1 = ``log pi(y) - log pi_ref(y)`` and *subtracted from the reward* before advantages (eq. 5.3). Its
  optimum is the Gibbs target ``pi_ref exp(R / beta)`` (eq. 1.3).
* ``kl="reverse"``, ``kl_estimator="k3_loss"``: the per-token k3 estimator *added to the loss* (the
  form TRL's GRPO uses). Differentiated through ``log pi`` with the sample held fixed, it gives the
  gradient of the *forward* KL, not the reverse one (eq. 5.4). The first edition spelled this
  ``kl="reverse_k3"``, which is still accepted.
* ``kl="forward"``: KL(pi_ref || pi), whose gradient ``-E_{y ~ pi_ref}[grad log pi(y)]`` is estimated by
  an SFT term on fresh reference samples (eq. 5.5).
* ``kl="none"``: no regulariser.

Advantages (``advantage``) are named after the algorithms that use them: ``"rloo"``, ``"grpo"``
(divide by the group std), ``"dr_grpo"`` (mean only), ``"reinforce"``; see
:data:`marabook.estimators.ADVANTAGE_ALGORITHMS`. Dividing by the std rescales rewards but not
``beta``; with MARA, whose bonus is of order ``beta``, that breaks the balance that makes the target
flat (chapter 5, "a pitfall"). MARA (``mara_tau``) replaces the task rewards by
:func:`marabook.mara.mara_rewards`, per prompt group, before the KL penalty and the advantages.

Every setting is checked once, when the config is built; the step itself only checks what the task
returns.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, Sequence

import numpy as np

from marabook._validate import check_int, check_number
from marabook.estimators import _advantages, _k3, advantage_algorithm, kl_k1
from marabook.mara import Threshold, augment, mara_rewards
from marabook.plumbing import TrainLoop, default_device as _default_device
from marabook.rl.sequences import decode_completions, encode_prompts, sample_completions, sample_texts, token_logprobs

__all__ = ["shape_rewards", "Task", "RLConfig", "Trainer", "default_device", "KL_MODES", "KL_ESTIMATORS"]

#: The first edition's ``kl`` values; ``"reverse_k3"`` = ``kl="reverse", kl_estimator="k3_loss"``.
KL_MODES = ("reverse", "reverse_k3", "forward", "none")
#: Where the KL enters the objective, per direction (the first is the default).
KL_ESTIMATORS = {"reverse": ("k1_reward", "k3_loss"), "forward": ("sft",), "none": (None,)}


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"`` (:func:`marabook.plumbing.default_device`)."""
    return str(_default_device())


def _kl_mode(kl: str, kl_estimator: str | None) -> str:
    """One internal name per (direction, estimator placement)."""
    if kl not in KL_MODES:
        raise ValueError(f"kl must be one of {KL_MODES}, got {kl!r}")
    if kl == "reverse_k3":
        if kl_estimator not in (None, "k3_loss"):
            raise ValueError(f"kl_estimator must be None or 'k3_loss' with kl='reverse_k3', got {kl_estimator!r}")
        return "reverse_k3"
    allowed = KL_ESTIMATORS[kl]
    if kl_estimator is not None and kl_estimator not in allowed:
        raise ValueError(f"kl_estimator must be one of {allowed} for kl={kl!r}, got {kl_estimator!r}")
    return "reverse_k3" if (kl, kl_estimator) == ("reverse", "k3_loss") else kl


def shape_rewards(rewards, logp, ref_logp, *, beta, kl="reverse", mara_tau=None, groups=None,
                  entropy_coef: float = 0.0, tau_scope: str = "group", kl_estimator: str | None = None):
    """The rewards the advantages are computed from (torch tensors, no gradient), with every argument checked.

    1. MARA (eq. 4.1) when ``mara_tau`` is set: per group of ``groups``, good samples
       (``R >= tau``) get ``R(z) + beta * (log pi_ref(z) - log pi_ref(y))`` with ``z`` the group's
       good sample of highest reference log-probability (:func:`marabook.mara.mara_rewards`). A
       percentile ``mara_tau`` (``"p90"``) is taken per group (``tau_scope="group"``) or over the batch
       (``"batch"``), see :class:`marabook.mara.Threshold`;
    2. the reverse-KL penalty when the KL is reverse with k1 in the reward: ``- beta * k1 = - beta
       (log pi(y) - log pi_ref(y))`` per sequence (eq. 5.3). Other placements act in the loss, not here;
    3. an entropy bonus when ``entropy_coef = eta > 0``: ``- eta * log pi(y)``, an unbiased per-sample
       estimate of ``eta * H(pi)``; with the reverse KL the optimum is then
       ``pi_ref^(beta/(beta+eta)) exp(R/(beta+eta))`` (eq. 2.6, :func:`marabook.targets.entropy_regularized_target`).
    """
    mode = _kl_mode(kl, kl_estimator)
    beta = check_number(beta, "beta", minimum=0.0)
    entropy_coef = check_number(entropy_coef, "entropy_coef", minimum=0.0)
    r = rewards
    if mara_tau is not None:
        r = mara_rewards(r, ref_logp, beta, Threshold.parse(mara_tau, tau_scope), groups=groups)
    if mode == "reverse" and beta > 0:
        r = r - beta * kl_k1(logp, ref_logp)
    if entropy_coef > 0:
        r = r - entropy_coef * logp
    return r


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
class RLConfig:
    """Every knob of a run (saved in checkpoints and results); checked here, once.

    ``beta``: KL coefficient; ``kl``: the KL direction, ``"reverse"``, ``"forward"`` or ``"none"``
    (``"reverse_k3"`` also accepted, see the module docstring); ``kl_estimator``: where a reverse KL
    goes, ``"k1_reward"`` (default) or ``"k3_loss"``; ``advantage``: an algorithm name of
    :data:`marabook.estimators.ADVANTAGE_ALGORITHMS` (or a first-edition spelling, :data:`ADVANTAGES`);
    ``mara_tau``: ``None`` (vanilla) or MARA's threshold (number or ``"pNN"``), and ``tau_scope``
    (``"group"`` or ``"batch"``) where a percentile is taken; ``group_size`` completions per prompt,
    ``prompts_per_step`` prompts per batch (drawn with replacement from ``task.prompts``); ``steps``
    optimiser steps of Adam with learning rate ``lr`` and gradient-norm clipping ``max_grad_norm``
    (``None``: off); ``max_new_tokens`` per completion; ``temperature`` for sampling; ``seed`` for every
    random draw of the run; ``entropy_coef`` (eta) adds an entropy bonus ``eta * H(pi)``.
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

    def __post_init__(self):
        check_number(self.beta, "beta", minimum=0.0)
        self.kl_mode  # noqa: B018 - parses kl and kl_estimator
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

    @cached_property
    def kl_mode(self) -> str:
        """``"reverse"`` (k1 in the reward), ``"reverse_k3"`` (k3 in the loss), ``"forward"`` or ``"none"``."""
        return _kl_mode(self.kl, self.kl_estimator)

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
        """Short name for plots: e.g. ``"MARA reverse beta=0.01"``."""
        method = "vanilla" if self.mara_tau is None else "MARA"
        ent = f" eta={self.entropy_coef:g}" if self.entropy_coef else ""
        return f"{method} {self.kl} beta={self.beta:g}{ent}"


class Trainer(TrainLoop):
    """The one policy-gradient loop every LM experiment of the book uses (chapter 5).

    ``Trainer(policy, tokenizer, task, config, ref_model=None, device=None, checkpoint_dir=None,
    checkpoint_every=0)``. ``policy`` is trained in place; ``ref_model`` defaults to a frozen copy of
    the policy as passed in. Each step of :meth:`train_step`:

    1. draw ``prompts_per_step`` prompts, repeat each ``group_size`` times;
    2. sample completions from the policy; decode; score with ``task.reward``;
    3. (MARA) augment the rewards per prompt group with the reference sequence log-probs;
    4. (reverse KL, k1 in the reward) subtract ``beta * k1`` per sequence from the rewards;
    5. advantages per group; loss ``-mean(A * log pi(y))`` (+ ``beta`` times the k3 or SFT term);
    6. one Adam step; log reward, KL, task metrics.

    :meth:`train`, checkpoints and resume come from :class:`marabook.plumbing.TrainLoop`: with
    ``checkpoint_dir`` set, the state is saved every ``checkpoint_every`` steps and at the end, and a
    new Trainer pointed at the same directory resumes; a resumed run ends with the same numbers as an
    uninterrupted one. On CUDA the forward passes run under bf16 autocast.
    """

    trained_module = "policy"

    def __init__(self, policy, tokenizer, task, config: RLConfig, *, ref_model=None, device=None,
                 checkpoint_dir=None, checkpoint_every: int = 0, progress: bool = True):
        import torch

        if not isinstance(config, RLConfig):
            raise ValueError("config must be an RLConfig")
        if not getattr(task, "prompts", None):
            raise ValueError("task must have a non-empty list of prompts")
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer must define eos_token_id")
        if ref_model is policy:
            raise ValueError("ref_model must be a separate copy of the model, not the policy itself")
        self._init_loop(checkpoint_dir, checkpoint_every, progress)
        self.config, self.task, self.tokenizer = config, task, tokenizer
        self.device = _default_device(device)
        self.policy = policy.to(self.device)
        self.ref = (ref_model if ref_model is not None else copy.deepcopy(policy)).to(self.device)
        self.ref.eval()  # only ever called under torch.no_grad()
        self.policy.eval()  # no dropout: sampling and scoring see the same function
        self.eos = int(tokenizer.eos_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)
        self.optimizer = torch.optim.Adam([p for p in self.policy.parameters() if p.requires_grad],
                                          lr=config.lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self._autocast = None
        if self.device.type == "cuda":
            self._autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        self._resume_if_checkpointed()

    @property
    def position(self) -> int:
        return self.step

    @property
    def end(self) -> int:
        return self.config.steps

    def _postfix(self, entry):
        return {"reward": f"{entry['reward']:.2f}", "kl": f"{entry['kl']:.3f}"}

    # ---- pieces of a step --------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]):
        """Left-padded prompt ids and mask on the trainer's device (:func:`encode_prompts`)."""
        return encode_prompts(self.tokenizer, prompts, self.device)

    def decode(self, completion_ids, mask) -> list[str]:
        """Completion texts without EOS and padding (:func:`decode_completions`)."""
        return decode_completions(self.tokenizer, completion_ids, mask)

    def sample(self, model, prompt_ids, prompt_mask, num_samples=1):
        c = self.config
        return sample_completions(model, prompt_ids, prompt_mask, max_new_tokens=c.max_new_tokens,
                                  eos_token_id=self.eos, pad_token_id=self.pad, generator=self.generator,
                                  temperature=c.temperature, autocast=self._autocast, num_samples=num_samples)

    def shape_rewards(self, rewards, logp, ref_logp, groups):
        """Steps 3-4 (and the entropy bonus) with this trainer's checked config: :func:`shape_rewards`
        without re-checking what the config already guarantees."""
        c = self.config
        r = rewards
        if c.threshold is not None:
            r = augment(r, ref_logp, c.beta, c.threshold, groups)          # eq. 4.1
        if c.kl_mode == "reverse" and c.beta > 0:
            r = r - c.beta * (logp - ref_logp)                             # - beta * k1 (eq. 5.3)
        if c.entropy_coef > 0:
            r = r - c.entropy_coef * logp
        return r

    shaped_rewards = shape_rewards  # the first edition's name for this method

    def train_step(self) -> dict:
        """One sample-score-update step; returns (and records) its log entry."""
        import torch

        c, t0 = self.config, time.perf_counter()
        # 1. prompts, each repeated group_size times (groups are laid out one after another)
        idx = torch.randint(len(self.task.prompts), (c.prompts_per_step,), generator=self.generator,
                            device=self.device).tolist()
        prompts = [self.task.prompts[i] for i in idx for _ in range(c.group_size)]
        groups = torch.arange(c.prompts_per_step, device=self.device).repeat_interleave(c.group_size)
        u_ids, u_mask = self.encode_prompts([self.task.prompts[i] for i in idx])
        p_ids, p_mask = u_ids.repeat_interleave(c.group_size, 0), u_mask.repeat_interleave(c.group_size, 0)
        # 2. sample, decode, score (the task is the caller's code: its output is checked)
        comp, cmask = self.sample(self.policy, u_ids, u_mask, num_samples=c.group_size)
        texts = self.decode(comp, cmask)
        rewards = torch.as_tensor(np.asarray(self.task.reward(prompts, texts), dtype=np.float64),
                                  dtype=torch.float32, device=self.device)
        if rewards.shape != (len(prompts),) or not bool(torch.isfinite(rewards).all()):
            raise ValueError("task.reward must return one finite float per completion")

        # log-probabilities under the policy (with gradient) and the reference (without)
        forward = c.kl_mode == "forward" and c.beta > 0
        n = comp.shape[0]
        if forward:
            # reference samples for the SFT term, scored in the same policy forward pass
            r_ids, r_mask = self.sample(self.ref, u_ids, u_mask, num_samples=c.group_size)
            width = max(comp.shape[1], r_ids.shape[1])
            both = torch.cat([_pad_right(comp, width, self.pad), _pad_right(r_ids, width, self.pad)])
            both_mask = torch.cat([_pad_right(cmask, width, 0), _pad_right(r_mask, width, 0)])
            tok_both = token_logprobs(self.policy, p_ids.repeat(2, 1), p_mask.repeat(2, 1), both, both_mask,
                                      self._autocast)
            tok_lp, ref_sample_lp = tok_both[:n, :comp.shape[1]], tok_both[n:].sum(-1)
        else:
            tok_lp = token_logprobs(self.policy, p_ids, p_mask, comp, cmask, self._autocast)
        with torch.no_grad():
            ref_tok_lp = token_logprobs(self.ref, p_ids, p_mask, comp, cmask, self._autocast)
        logp, ref_logp = tok_lp.sum(-1), ref_tok_lp.sum(-1)           # sequence log-probs (eq. 5.1)

        # 3-5. shaped rewards, advantages, loss
        shaped = self.shape_rewards(rewards, logp.detach(), ref_logp, groups)
        adv = _advantages(shaped.reshape(-1, c.group_size), c.algorithm)   # eq. 5.2
        loss = -(adv.detach() * logp).mean()
        kl_seq = logp.detach() - ref_logp                              # k1 per sequence, for the log
        extra = 0.0
        if c.kl_mode == "reverse_k3" and c.beta > 0:
            k3 = _k3(ref_tok_lp - tok_lp) * cmask  # zero at masked positions (both lp are 0 there)
            extra = k3.sum(-1).mean()
            loss = loss + c.beta * extra
        elif forward:
            sft = -ref_sample_lp.mean()  # eq. 5.5: an unbiased estimate of KL(pi_ref || pi) + const
            extra = sft
            loss = loss + c.beta * sft

        # 6. one optimiser step, and the log
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float("nan")
        if c.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm))
        self.optimizer.step()
        self.step += 1
        entry = {
            "step": self.step,
            "reward": float(rewards.mean()),
            "shaped_reward": float(shaped.mean()),
            "kl": float(kl_seq.mean()),
            "loss": float(loss.detach()),
            "reg_term": float(extra.detach()) if isinstance(extra, torch.Tensor) else float(extra),
            "grad_norm": grad_norm,
            "completion_tokens": float(cmask.sum(-1).float().mean()),
            "seconds": time.perf_counter() - t0,
        }
        for k, v in self.task.metrics(prompts, texts).items():
            entry[k] = float(v)
        self.history.append(entry)
        return entry

    def evaluate(self, n_per_prompt: int = 64, seed: int = 12345) -> dict:
        """Sample ``n_per_prompt`` completions for every task prompt with a fresh generator (so
        evaluation never disturbs the training stream) and return mean reward and task metrics."""
        c = self.config
        texts = sample_texts(self.policy, self.tokenizer, self.task.prompts, n_per_prompt=n_per_prompt,
                             max_new_tokens=c.max_new_tokens, seed=seed, temperature=c.temperature,
                             autocast=self._autocast)
        prompts = [p for p in self.task.prompts for _ in range(n_per_prompt)]
        out = {"reward": float(np.mean(self.task.reward(prompts, texts)))}
        out.update({k: float(v) for k, v in self.task.metrics(prompts, texts).items()})
        out["samples"] = texts
        return out


def _pad_right(x, width: int, value: int):
    """Right-pad a (batch, T) tensor of token ids to ``width`` columns with ``value``."""
    import torch

    return x if x.shape[1] == width else torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)
