"""The language-model trainer of the book (chapter 5): one on-policy loop, read top to bottom.

:class:`Trainer` maximises ``E[R(x, y)] - beta * D`` (``D`` the KL set by :class:`~marabook.rl.config.RLConfig`)
with one gradient step per batch and no ratio clipping. :meth:`Trainer.train_step` is the whole algorithm in
three calls: :meth:`Trainer.rollout` (sample, score, reference log-probs: no gradient), :meth:`Trainer.loss`
(shaped rewards, advantages and the named terms of :func:`marabook.estimators.policy_loss`) and one optimiser
step. Chapter 5 writes the same step from the equations (``naive_step``) and the tests check that the two
agree. Advantages are named after their algorithms (``"rloo"``, ``"grpo"``, ``"dr_grpo"``, ``"reinforce"``);
dividing by the group std (GRPO) rescales rewards but not ``beta``, which breaks MARA's flat target
(chapter 5, "a pitfall"). The loop, checkpoints and device choice come from
:class:`marabook.plumbing.TrainLoop`, shared with chapter 8's REINVENT trainer.

Only the necessary work is done: each prompt of a step runs through the policy and the reference once and its
key/value cache serves all of its completions; the language-model head runs only where a token is scored
(:func:`marabook.rl.shared_prompt_logprobs`).
"""

from __future__ import annotations

import copy
import inspect
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from marabook.estimators import compute_advantages, policy_loss
from marabook.plumbing import TrainLoop, autocast_dtype, default_device as _default_device, pad_right
from marabook.checkpoints import config_record
from marabook.rl.config import RLConfig, alg2_sft_weights, shape_rewards
from marabook.rl.scaling import AdaptersOff, TrainingMode, add_lora, enable_checkpointing
from marabook.rl.sequences import (completion_token_ids, decode_completions, encode_prompts, sample_completions,
                                   sample_texts, shared_prompt_logprobs)

__all__ = ["Trainer", "Rollout"]


@dataclass
class Rollout:
    """One step's data, everything :meth:`Trainer.loss` needs (all tensors on the trainer's device).

    ``prompt_ids``/``prompt_mask`` (P, L): the step's prompts, one row per prompt group, left-padded;
    ``prompt_index`` (N,): the prompt row each completion continues (completions come group after group,
    ``group_size`` each, so it is also the MARA/advantage group); ``completion_ids``/``completion_mask``
    (N, T): the sampled tokens up to and including EOS; ``rewards`` (N,): the task's raw rewards;
    ``ref_token_logprobs`` (N, T): ``log pi_ref`` of each completion token; ``ref_sample_ids`` /
    ``ref_sample_mask`` (N, T'): completions sampled from the reference (forward KL only, eq. 5.5), laid out like
    the completions; ``ref_sample_rewards`` / ``ref_sample_logprobs`` (N,): their task rewards and ``log pi_ref``
    (Algorithm 2 only, ``mara_form="alg2"``: they set the weights of its SFT term, eq. 4.3); ``prompts``/``texts``: the prompt of each completion and its decoded text; ``seconds``: where the time went.
    """

    prompt_ids: object
    prompt_mask: object
    prompt_index: object
    completion_ids: object
    completion_mask: object
    rewards: object
    ref_token_logprobs: object
    prompts: list
    texts: list
    ref_sample_ids: object = None
    ref_sample_mask: object = None
    seconds: dict = field(default_factory=dict)
    ref_sample_rewards: object = None
    ref_sample_logprobs: object = None

    @property
    def size(self) -> int:
        """The number of completions N."""
        return int(self.completion_ids.shape[0])

    @property
    def ref_logprobs(self):
        """``log pi_ref(y)`` per completion (eq. 5.1), shape (N,)."""
        return self.ref_token_logprobs.sum(-1)


class Trainer(TrainLoop):
    """The one policy-gradient loop every LM experiment of the book uses (chapter 5).

    ``Trainer(policy, tokenizer, task, config, ref_model=None, device=None, checkpoint_dir=None,
    checkpoint_every=0)``. ``policy`` is trained in place; ``ref_model`` defaults to a frozen copy of
    the policy as passed in (with ``config.lora``: no copy, the reference is the policy with its adapters
    switched off). Each step of :meth:`train_step`:

    1. draw ``prompts_per_step`` prompts; sample ``group_size`` completions of each from the policy;
       decode (special tokens inside a completion stay visible) and score with ``task.reward`` (which also
       receives ``completion_ids`` when it accepts them); reference log-probs (:meth:`rollout`);
    2. (MARA) augment the rewards per prompt group with the reference sequence log-probs (eq. 4.1);
       (reverse KL, k1 in the reward) subtract ``beta * k1`` per sequence (eq. 5.3); (MARA in Algorithm 2's
       form, ``mara_form="alg2"``, forward KL) good completions score the anchor's reward ``R(z)`` instead;
    3. advantages per group (eq. 5.2); the loss :func:`marabook.estimators.policy_loss`: policy gradient
       plus ``beta`` times the k3 or SFT term (:meth:`loss`); under Algorithm 2 each reference sample's SFT
       term is weighted by ``q(y')/pi_ref(y')``, ``pi_ref(z)/pi_ref(y')`` for a good ``y'``
       (``marabook.rl.config.alg2_sft_weights``, eq. 4.3), so the term estimates ``-sum_y q(y) log pi(y)``;
    4. one Adam step; log reward, KL, the loss terms, task metrics, and where the time went.

    With ``config.micro_batch_size`` the loss runs over micro-batches of completions with gradient
    accumulation: the same update, in bounded memory (without it the whole batch is one micro-batch).
    :meth:`~marabook.plumbing.TrainLoop.train`, checkpoints and resume come from
    :class:`marabook.plumbing.TrainLoop` (with LoRA only the adapters are saved); a resumed run ends with the
    same numbers as an uninterrupted one. Precision follows the device (:func:`marabook.plumbing.autocast_dtype`).
    """

    trained_module = "policy"

    def __init__(self, policy, tokenizer, task, config: RLConfig, *, ref_model=None, device=None,
                 checkpoint_dir=None, checkpoint_every: int = 0, progress: bool = True):
        import torch

        if not isinstance(config, RLConfig):
            raise ValueError("config must be an RLConfig")
        prompts = getattr(task, "prompts", None)
        if not prompts or isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("task must have a non-empty list of prompt strings (task.prompts)")
        for name in ("reward", "metrics"):
            if not callable(getattr(task, name, None)):
                raise ValueError(f"task must have a {name}(prompts, completions) method")
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer must define eos_token_id")
        if ref_model is policy:
            raise ValueError("ref_model must be a separate copy of the model, not the policy itself")
        if config.lora is not None and ref_model is not None:
            raise ValueError("ref_model must be None with lora: the reference is the base model, adapters off")
        self._init_loop(checkpoint_dir, checkpoint_every, progress)
        self.config, self.task, self.tokenizer = config, task, tokenizer
        self.device = _default_device(device)
        if config.lora is not None:
            policy = add_lora(policy, config.lora, config.seed)
            self.trainable_only = True  # checkpoints hold the adapters only
        self.policy = policy.to(self.device)
        self.ref = None if config.lora is not None else \
            (ref_model if ref_model is not None else copy.deepcopy(policy)).to(self.device).eval()
        self.policy.eval()  # no dropout: sampling and scoring see the same function
        if config.gradient_checkpointing:
            enable_checkpointing(self.policy)
        self.eos = int(tokenizer.eos_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)
        self.optimizer = torch.optim.Adam([p for p in self.policy.parameters() if p.requires_grad], lr=config.lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        dtype = autocast_dtype(self.device, config.precision)
        self._autocast = None if dtype is None else (lambda: torch.autocast(self.device.type, dtype=dtype))
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None
        self._reward_takes_ids = _accepts(task.reward, "completion_ids")
        self._resume_if_checkpointed()

    @classmethod
    def from_reference(cls, model, tokenizer, task, config: RLConfig, *, min_new_tokens: int | None = None,
                       device=None, progress: bool = True) -> "Trainer":
        """A trainer whose policy is a trainable copy of ``model``, which itself stays the frozen reference (with
        ``config.lora``: the adapters go on the copy and the reference is the copy with them switched off).
        ``min_new_tokens`` (default: ``task.max_new_tokens`` when the task defines it, e.g. a chat task's
        longest accepted string plus end of turn): ``config.max_new_tokens`` below it raises a ValueError,
        since every completion would be cut before it could be accepted."""
        need = getattr(task, "max_new_tokens", None) if min_new_tokens is None else min_new_tokens
        if need is not None and config.max_new_tokens < need:
            raise ValueError(f"max_new_tokens must be >= {need} for this task (its longest accepted string plus end "
                             f"of turn), got {config.max_new_tokens}")
        policy = copy.deepcopy(model)
        for p in policy.parameters():
            p.requires_grad_(True)
        return cls(policy, tokenizer, task, config, ref_model=None if config.lora else model, device=device,
                   progress=progress)

    @property
    def position(self) -> int:
        return self.step

    @property
    def end(self) -> int:
        return self.config.steps

    def _postfix(self, entry):
        return {"reward": f"{entry['reward']:.2f}", "kl": f"{entry['kl']:.3f}"}

    # ---- one step ------------------------------------------------------------------------------
    def train_step(self) -> dict:
        """One sample-score-update step; returns (and records) its log entry."""
        t0 = time.perf_counter()
        batch = self.rollout()                                   # 1. sample, score, reference log-probs
        t1 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss, stats = self.loss(batch, backward=True)            # 2-3. shaped rewards, advantages, loss, backward
        t2 = time.perf_counter()
        grad_norm = self._optimizer_step()                       # 4. one optimiser step
        self.step += 1
        t3 = time.perf_counter()
        entry = {"step": self.step, "reward": float(batch.rewards.mean()), **stats, "loss": float(loss),
                 "grad_norm": grad_norm, "completion_tokens": float(batch.completion_mask.sum(-1).float().mean()),
                 "seconds": t3 - t0, **{f"seconds_{k}": v for k, v in batch.seconds.items()},
                 "seconds_loss": t2 - t1, "seconds_update": t3 - t2}
        entry.update({k: float(v) for k, v in self.task.metrics(batch.prompts, batch.texts).items()})
        self.history.append(entry)
        return entry

    def rollout(self) -> Rollout:
        """Step 1, no gradient: draw ``prompts_per_step`` prompts (with replacement, from the trainer's
        generator), sample ``group_size`` completions of each from the policy, score them with the task, and
        compute their reference log-probs (and, for the forward KL, sample the reference too)."""
        import torch

        c, t0 = self.config, time.perf_counter()
        idx = torch.randint(len(self.task.prompts), (c.prompts_per_step,), generator=self.generator,
                            device=self.device).tolist()
        p_ids, p_mask = self.encode_prompts([self.task.prompts[i] for i in idx])
        prompt_index = torch.arange(c.prompts_per_step, device=self.device).repeat_interleave(c.group_size)
        prompts = [self.task.prompts[i] for i in idx for _ in range(c.group_size)]
        comp, cmask = self.sample(self.policy, p_ids, p_mask, num_samples=c.group_size)
        t1 = time.perf_counter()
        texts, rewards = self.score(prompts, comp, cmask)
        t2 = time.perf_counter()
        ref_ids = ref_mask = ref_rewards = ref_sample_lp = None
        with torch.no_grad(), self.reference() as ref:
            if c.kl_placement == "sft":  # fresh reference samples for the SFT term (eq. 5.5)
                ref_ids, ref_mask = self.sample(ref, p_ids, p_mask, num_samples=c.group_size)
                if c.mara_form == "alg2":  # Algorithm 2 weighs them by q/pi_ref: their log pi_ref and reward (eq. 4.3)
                    ref_sample_lp = self.logprobs(ref, p_ids, p_mask, prompt_index, ref_ids, ref_mask).sum(-1)
            ref_tok_lp = self.logprobs(ref, p_ids, p_mask, prompt_index, comp, cmask)
        if ref_sample_lp is not None:
            ref_rewards = self.score(prompts, ref_ids, ref_mask)[1]
        t3 = time.perf_counter()
        return Rollout(p_ids, p_mask, prompt_index, comp, cmask, rewards, ref_tok_lp, prompts, texts, ref_ids,
                       ref_mask, {"sample": t1 - t0, "reward": t2 - t1, "reference": t3 - t2}, ref_rewards,
                       ref_sample_lp)

    def loss(self, batch: Rollout, *, backward: bool = False):
        """Steps 2-3 on a :class:`Rollout`: ``(loss, stats)``.

        The rewards are shaped (:meth:`shape_rewards`: MARA, k1, entropy bonus) and turned into advantages per
        group (eq. 5.2); the loss is :func:`marabook.estimators.policy_loss`, summed over micro-batches of
        ``config.micro_batch_size`` completions (one micro-batch when None), each normalised by the batch size so
        that the sum is the loss of the batch in one piece. ``backward=True`` runs each micro-batch's backward
        pass before the next forward (bounded memory) and returns the loss detached; ``backward=False`` returns
        the loss with its graph, e.g. to check it against your own computation. ``stats`` holds the mean shaped
        reward, the k1 estimate of the KL per sequence (``kl``) and the named terms of the loss (under Algorithm 2
        also ``sft_weight_mean``, the mean weight of its SFT term).
        """
        import torch

        if not isinstance(batch, Rollout):
            raise ValueError("batch must be a Rollout (from Trainer.rollout)")
        c, n = self.config, batch.size
        chunks = _chunks(n, c.micro_batch_size or n)
        with TrainingMode(self.policy, c.gradient_checkpointing):
            # log pi(y) of every completion enters the shaped rewards before any advantage when k1 or the entropy
            # bonus is in the reward: in one micro-batch the pass below serves both; in several, a first pass
            # without gradient (only when needed)
            terms = self._policy_terms(batch, chunks[0]) if len(chunks) == 1 else None
            logp = terms[0].sum(-1).detach() if terms is not None else None
            if logp is None and (c.kl_placement == "k1_reward" or c.entropy_coef > 0):
                with torch.no_grad():
                    logp = torch.cat([self.logprobs(self.policy, batch.prompt_ids, batch.prompt_mask,
                                                    batch.prompt_index[s], batch.completion_ids[s],
                                                    batch.completion_mask[s]).sum(-1) for s in chunks])
            shaped = self.shape_rewards(batch.rewards, logp if logp is not None else torch.zeros_like(batch.rewards),
                                        batch.ref_logprobs, batch.prompt_index)
            adv = compute_advantages(shaped, c.group_size, c.algorithm, validate=False)         # eq. 5.2
            sft_w = self.sft_weights(batch)                  # Algorithm 2's q/pi_ref per reference sample, or None
            total, sums, seen = 0.0, {}, []
            for s in chunks:
                tok_lp, sft_lp = terms if terms is not None else self._policy_terms(batch, s)
                t = policy_loss(tok_lp, batch.completion_mask[s], adv[s], beta=c.beta, kl_placement=c.kl_placement,
                                ref_token_logprobs=batch.ref_token_logprobs[s], sft_token_logprobs=sft_lp,
                                normalizer=n, sft_weights=None if sft_w is None else sft_w[s])
                if backward:
                    self._backward(t["loss"])
                total = total + (t["loss"].detach() if backward else t["loss"])
                sums = {k: sums.get(k, 0.0) + float(v.detach()) for k, v in t.items() if k != "loss"}
                seen.append(tok_lp.sum(-1).detach())
        logp = torch.cat(seen) if logp is None else logp
        stats = {"shaped_reward": float(shaped.mean()), "kl": float((logp - batch.ref_logprobs).mean()), **sums}
        if sft_w is not None:
            stats["sft_weight_mean"] = float(sft_w.mean())
        return total, stats

    # ---- pieces of a step --------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]):
        """Left-padded prompt ids and mask on the trainer's device (:func:`encode_prompts`)."""
        return encode_prompts(self.tokenizer, prompts, self.device)

    def decode(self, completion_ids, mask) -> list[str]:
        """Completion texts without the final EOS and padding (:func:`decode_completions`)."""
        return decode_completions(self.tokenizer, completion_ids, mask)

    def reference(self):
        """A context giving the reference model: the frozen copy, or (LoRA) the policy with adapters off."""
        if self.ref is not None:
            return nullcontext(self.ref)
        return AdaptersOff(self.policy)

    def sample(self, model, prompt_ids, prompt_mask, num_samples=1):
        c = self.config
        return sample_completions(model, prompt_ids, prompt_mask, max_new_tokens=c.max_new_tokens,
                                  eos_token_id=self.eos, pad_token_id=self.pad, generator=self.generator,
                                  temperature=c.temperature, autocast=self._autocast, num_samples=num_samples)

    def logprobs(self, model, prompt_ids, prompt_mask, prompt_index, comp, cmask):
        """Token log-probs of completions ``comp`` of the prompts ``prompt_ids[prompt_index]`` under ``model``
        (each prompt computed once, :func:`~marabook.rl.shared_prompt_logprobs`)."""
        return shared_prompt_logprobs(model, prompt_ids, prompt_mask, prompt_index, comp, cmask, self._autocast)

    def score(self, prompts, comp, cmask):
        """Decode completions and score them with the task; returns ``(texts, rewards)``."""
        import torch

        texts = self.decode(comp, cmask)
        kw = {"completion_ids": completion_token_ids(comp, cmask, self.eos)} if self._reward_takes_ids else {}
        raw = self.task.reward(prompts, texts, **kw)
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task.reward must return one float per completion, got {type(raw).__name__}: {exc}") \
                from None
        rewards = torch.as_tensor(values, dtype=torch.float32, device=self.device)
        if rewards.shape != (len(prompts),) or not bool(torch.isfinite(rewards).all()):
            raise ValueError("task.reward must return one finite float per completion")
        return texts, rewards

    def shape_rewards(self, rewards, logp, ref_logp, groups):
        """Step 2 with this trainer's checked config: :func:`~marabook.rl.shape_rewards` without
        re-checking the tensors (the trainer's own forward passes guarantee them)."""
        c = self.config
        return shape_rewards(rewards, logp, ref_logp, beta=c.beta, kl=c.kl, kl_estimator=c.kl_estimator,
                             mara_tau=c.mara_tau, tau_scope=c.tau_scope, groups=groups, mara_form=c.mara_form,
                             entropy_coef=c.entropy_coef, validate=False)

    def sft_weights(self, batch: Rollout):
        """Algorithm 2's weight ``q(y')/pi_ref(y')`` of each reference sample's SFT term (eq. 4.3,
        ``marabook.rl.config.alg2_sft_weights``, anchors and thresholds from the policy's groups), or None when
        the run is not Algorithm 2 with the forward KL (every weight is then 1)."""
        c = self.config
        if c.mara_form != "alg2" or c.kl_placement != "sft":
            return None
        if batch.ref_sample_rewards is None or batch.ref_sample_logprobs is None:
            raise ValueError("batch must carry ref_sample_rewards and ref_sample_logprobs under mara_form='alg2' "
                             "(a Rollout from this trainer's rollout())")
        return alg2_sft_weights(batch.rewards, batch.ref_logprobs, batch.ref_sample_rewards, batch.ref_sample_logprobs,
                                c.threshold, batch.prompt_index)

    def _policy_terms(self, batch: Rollout, s: slice):
        """The policy's token log-probs (with gradient) of the completions ``s`` and, for the forward KL, of the
        reference samples ``s`` (scored in the same pass: both continue the same prompts)."""
        import torch

        comp, cmask, index = batch.completion_ids[s], batch.completion_mask[s], batch.prompt_index[s]
        if batch.ref_sample_ids is None:
            return self.logprobs(self.policy, batch.prompt_ids, batch.prompt_mask, index, comp, cmask), None
        r_ids, r_mask = batch.ref_sample_ids[s], batch.ref_sample_mask[s]
        width, m = max(comp.shape[1], r_ids.shape[1]), comp.shape[0]
        both = self.logprobs(self.policy, batch.prompt_ids, batch.prompt_mask, torch.cat([index, index]),
                             torch.cat([pad_right(comp, width, self.pad), pad_right(r_ids, width, self.pad)]),
                             torch.cat([pad_right(cmask, width, 0), pad_right(r_mask, width, 0)]))
        return both[:m, :comp.shape[1]], both[m:]

    # ---- the plumbing of a step ---------------------------------------------------------------
    def _backward(self, loss) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _optimizer_step(self) -> float:
        import torch

        grad_norm = float("nan")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(
                [p for p in self.policy.parameters() if p.requires_grad], self.config.max_grad_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return grad_norm

    def _identity(self) -> dict:
        """What a checkpoint of this run belongs to besides its config and start weights: the task (its class,
        prompts and reward function) and the reference model's weights; a resume under another task or
        reference is refused (``TrainLoop._identity``)."""
        from marabook.checkpoints import module_fingerprint, settings_fingerprint

        if getattr(self, "_identity_cache", None) is None:
            task = {"name": type(self.task).__name__,
                    "fingerprint": settings_fingerprint({"prompts": list(self.task.prompts), "reward": self.task.reward})}
            ref = module_fingerprint(self.ref) if self.ref is not None else "the policy with its adapters off"
            self._identity_cache = {"task": task, "reference": ref}
        return self._identity_cache

    def _config_json(self) -> dict:
        """The config as checkpoints record and compare it: fields added later, at their defaults, left out
        (:func:`marabook.checkpoints.config_record`), so checkpoints written before they existed still resume."""
        return config_record(self.config)

    def _extra_state(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def _load_extra_state(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

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


def _chunks(n: int, size: int):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
