"""The language-model trainer of the book (chapter 5): one on-policy loop, read top to bottom.

:class:`Trainer` maximises ``E[R(x, y)] - beta * D`` (``D`` the KL set by :class:`~marabook.rl.config.RLConfig`)
with one gradient step per batch and no ratio clipping; :meth:`Trainer.train_step` is the whole algorithm.
Chapter 5 writes the same step from the equations (``naive_step``) and the tests check that the two agree.
Advantages are named after their algorithms (``"rloo"``, ``"grpo"``, ``"dr_grpo"``, ``"reinforce"``);
dividing by the group std (GRPO) rescales rewards but not ``beta``, which breaks MARA's flat target
(chapter 5, "a pitfall"). The loop, checkpoints and device choice come from
:class:`marabook.plumbing.TrainLoop`, shared with chapter 8's REINVENT trainer.
"""

from __future__ import annotations

import copy
import inspect
import time
from contextlib import nullcontext
from typing import Sequence

import numpy as np

from marabook.estimators import _advantages, _k3
from marabook.plumbing import TrainLoop, autocast_dtype, default_device as _default_device
from marabook.rl.config import (KL_ESTIMATORS, KL_MODES, LoraSettings, RLConfig, Task, _shape, default_device,
                                shape_rewards)
from marabook.rl.scaling import AdaptersOff, TrainingMode, add_lora, enable_checkpointing
from marabook.rl.sequences import (completion_token_ids, decode_completions, encode_prompts, sample_completions,
                                   sample_texts, token_logprobs)

__all__ = ["Trainer", "RLConfig", "LoraSettings", "Task", "shape_rewards", "default_device", "KL_MODES",
           "KL_ESTIMATORS"]


class Trainer(TrainLoop):
    """The one policy-gradient loop every LM experiment of the book uses (chapter 5).

    ``Trainer(policy, tokenizer, task, config, ref_model=None, device=None, checkpoint_dir=None,
    checkpoint_every=0)``. ``policy`` is trained in place; ``ref_model`` defaults to a frozen copy of
    the policy as passed in (with ``config.lora``: no copy, the reference is the policy with its adapters
    switched off). Each step of :meth:`train_step`:

    1. draw ``prompts_per_step`` prompts, repeat each ``group_size`` times;
    2. sample completions from the policy; decode (special tokens inside a completion stay visible);
       score with ``task.reward`` (which also receives ``completion_ids`` when it accepts them);
    3. (MARA) augment the rewards per prompt group with the reference sequence log-probs;
    4. (reverse KL, k1 in the reward) subtract ``beta * k1`` per sequence from the rewards;
    5. advantages per group; loss ``-mean(A * log pi(y))`` (+ ``beta`` times the k3 or SFT term);
    6. one Adam step; log reward, KL, task metrics.

    With ``config.micro_batch_size`` the log-probabilities and the backward pass run over micro-batches
    with gradient accumulation: the same update, in bounded memory. :meth:`~marabook.plumbing.TrainLoop.train`, checkpoints and resume
    come from :class:`marabook.plumbing.TrainLoop` (with LoRA only the adapters are saved); a resumed run
    ends with the same numbers as an uninterrupted one. Precision follows the device
    (:func:`marabook.plumbing.autocast_dtype`).
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

    def score(self, prompts, comp, cmask):
        """Decode completions and score them with the task; returns ``(texts, rewards)``."""
        import torch

        texts = self.decode(comp, cmask)
        kw = {"completion_ids": completion_token_ids(comp, cmask, self.eos)} if self._reward_takes_ids else {}
        rewards = torch.as_tensor(np.asarray(self.task.reward(prompts, texts, **kw), dtype=np.float64),
                                  dtype=torch.float32, device=self.device)
        if rewards.shape != (len(prompts),) or not bool(torch.isfinite(rewards).all()):
            raise ValueError("task.reward must return one finite float per completion")
        return texts, rewards

    def shape_rewards(self, rewards, logp, ref_logp, groups):
        """Steps 3-4 (and the entropy bonus) with this trainer's checked config: :func:`shape_rewards`
        without re-checking what the config already guarantees."""
        c = self.config
        return _shape(rewards, logp, ref_logp, c.beta, c.kl_mode, c.threshold, groups, c.entropy_coef, check=False)

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
        # 2. sample from the policy, decode, score (the task is the caller's code: its output is checked)
        comp, cmask = self.sample(self.policy, u_ids, u_mask, num_samples=c.group_size)
        texts, rewards = self.score(prompts, comp, cmask)
        n = comp.shape[0]
        forward = c.kl_mode == "forward" and c.beta > 0
        ref_samples = None
        if forward:  # fresh reference samples for the SFT term (eq. 5.5)
            with self.reference() as ref:
                ref_samples = self.sample(ref, u_ids, u_mask, num_samples=c.group_size)
        with torch.no_grad(), self.reference() as ref:
            ref_tok_lp = self._logprobs(ref, p_ids, p_mask, comp, cmask)
        ref_logp = ref_tok_lp.sum(-1)

        self.optimizer.zero_grad(set_to_none=True)
        with TrainingMode(self.policy, c.gradient_checkpointing):
            if c.micro_batch_size is None or c.micro_batch_size >= n:
                # 3-5 in one pass over the whole batch (chapter 5's naive step, plus the other KL placements)
                if forward:  # the SFT rows share the policy's forward pass
                    r_ids, r_mask = ref_samples
                    width = max(comp.shape[1], r_ids.shape[1])
                    both = torch.cat([_pad_right(comp, width, self.pad), _pad_right(r_ids, width, self.pad)])
                    both_mask = torch.cat([_pad_right(cmask, width, 0), _pad_right(r_mask, width, 0)])
                    tok_both = token_logprobs(self.policy, p_ids.repeat(2, 1), p_mask.repeat(2, 1), both, both_mask,
                                              self._autocast)
                    tok_lp, ref_sample_lp = tok_both[:n, :comp.shape[1]], tok_both[n:].sum(-1)
                else:
                    tok_lp = token_logprobs(self.policy, p_ids, p_mask, comp, cmask, self._autocast)
                logp = tok_lp.sum(-1)                                           # sequence log-probs (eq. 5.1)
                shaped = self.shape_rewards(rewards, logp.detach(), ref_logp, groups)
                adv = _advantages(shaped.reshape(-1, c.group_size), c.algorithm)   # eq. 5.2
                loss = -(adv.detach() * logp).mean()
                extra = 0.0
                if c.kl_mode == "reverse_k3" and c.beta > 0:
                    k3 = _k3(ref_tok_lp - tok_lp) * cmask  # zero at masked positions (both lp are 0 there)
                    extra = k3.sum(-1).mean()
                    loss = loss + c.beta * extra
                elif forward:
                    sft = -ref_sample_lp.mean()  # eq. 5.5: an unbiased estimate of KL(pi_ref || pi) + const
                    extra = sft
                    loss = loss + c.beta * sft
                self._backward(loss)
                logp = logp.detach()
            else:
                # the same update over micro-batches, gradients accumulated (bounded memory)
                logp, shaped, loss, extra = self._accumulate(p_ids, p_mask, comp, cmask, rewards, ref_tok_lp, groups,
                                                             ref_samples)
        # 6. one optimiser step, and the log
        grad_norm = self._optimizer_step()
        self.step += 1
        entry = {
            "step": self.step,
            "reward": float(rewards.mean()),
            "shaped_reward": float(shaped.mean()),
            "kl": float((logp - ref_logp).mean()),                         # k1 per sequence, averaged
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

    # ---- the plumbing of a step ---------------------------------------------------------------
    def _logprobs(self, model, p_ids, p_mask, comp, cmask):
        """Token log-probs, a micro-batch of rows at a time when ``micro_batch_size`` is set."""
        import torch

        mb = self.config.micro_batch_size
        if mb is None or mb >= comp.shape[0]:
            return token_logprobs(model, p_ids, p_mask, comp, cmask, self._autocast)
        return torch.cat([token_logprobs(model, p_ids[s], p_mask[s], comp[s], cmask[s], self._autocast)
                          for s in _chunks(comp.shape[0], mb)])

    def _accumulate(self, p_ids, p_mask, comp, cmask, rewards, ref_tok_lp, groups, ref_samples):
        """Steps 3-5 over micro-batches: the loss of the one-pass branch, as a sum of per-chunk terms
        divided by the batch size, each chunk's backward run before the next forward."""
        import torch

        c, n = self.config, comp.shape[0]
        ref_logp = ref_tok_lp.sum(-1)
        needs_logp = (c.kl_mode == "reverse" and c.beta > 0) or c.entropy_coef > 0
        with torch.no_grad():  # the rewards need log pi(y) of every sample before any advantage
            logp = self._logprobs(self.policy, p_ids, p_mask, comp, cmask).sum(-1) if needs_logp else None
        shaped = self.shape_rewards(rewards, logp if needs_logp else torch.zeros_like(ref_logp), ref_logp, groups)
        adv = _advantages(shaped.reshape(-1, c.group_size), c.algorithm)
        seen, total, extra = [], torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for s in _chunks(n, c.micro_batch_size):
            tok_lp = token_logprobs(self.policy, p_ids[s], p_mask[s], comp[s], cmask[s], self._autocast)
            lp = tok_lp.sum(-1)
            part = -(adv[s].detach() * lp).sum() / n
            if c.kl_mode == "reverse_k3" and c.beta > 0:
                k3 = (_k3(ref_tok_lp[s] - tok_lp) * cmask[s]).sum() / n
                part, extra = part + c.beta * k3, extra + k3.detach()
            self._backward(part)
            total, seen = total + part.detach(), seen + [lp.detach()]
        if ref_samples is not None:  # the SFT term (eq. 5.5) over the reference samples' micro-batches
            r_ids, r_mask = ref_samples
            for s in _chunks(n, c.micro_batch_size):
                sft = -token_logprobs(self.policy, p_ids[s], p_mask[s], r_ids[s], r_mask[s],
                                      self._autocast).sum() / n
                self._backward(c.beta * sft)
                total, extra = total + c.beta * sft.detach(), extra + sft.detach()
        return torch.cat(seen), shaped, total, extra

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


def _pad_right(x, width: int, value: int):
    """Right-pad a (batch, T) tensor of token ids to ``width`` columns with ``value``."""
    import torch

    return x if x.shape[1] == width else torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)
