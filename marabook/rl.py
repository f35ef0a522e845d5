"""Sequence-level policy-gradient RL for autoregressive models (book chapter 5).

Everything here works for any Hugging Face-style causal LM (a module called as
``model(input_ids=..., attention_mask=..., position_ids=...)`` that returns ``.logits``) and its
tokenizer; the book uses a tiny GPT-2 trained by the project, Colab readers a Qwen instruct model.

Conventions (chapter 5 derives each one):

* A completion is the generated tokens up to and including the first end-of-sequence token; tokens
  after it (padding) are masked out. The **sequence log-probability** ``log pi(y|x)`` is the *sum* of
  the completion's token log-probabilities (no length normalisation); the prompt is never scored.
* The trainer maximises ``E[R(x, y)] - beta * D`` with one on-policy gradient step per batch and no
  ratio clipping. ``D`` is chosen by :attr:`RLConfig.kl`:

  - ``"reverse"``: KL(pi || pi_ref), estimated per sequence by k1 = ``log pi(y) - log pi_ref(y)``
    and *subtracted from the reward* before advantages (k1 of eq. 5.3). Its optimum is the Gibbs
    target ``pi_ref exp(R / beta)`` (eq. 1.3).
  - ``"reverse_k3"``: the per-token k3 estimator *added to the loss* (the form TRL's GRPO uses).
    Differentiating k3 through ``log pi`` only (the sample is held fixed) gives, per token, the
    gradient of the *forward* KL KL(pi_ref || pi) at that position, not of the reverse one (eq. 5.4).
  - ``"forward"``: KL(pi_ref || pi), whose gradient ``-E_{y ~ pi_ref}[grad log pi(y)]`` is estimated
    by an SFT term on fresh reference samples (eq. 5.5): unbiased, no importance weights.
  - ``"none"``: no regulariser.

* Advantages come from the (possibly MARA-augmented, possibly KL-penalised) rewards of the
  ``group_size`` completions of each prompt, laid out group after group: :func:`rloo_advantages`
  (leave-one-out baseline), or :func:`grpo_advantages` with or without division by the group
  standard deviation. Dividing by the std rescales rewards but not ``beta``; with MARA, whose bonus
  is of order ``beta``, that breaks the balance that makes the target flat (chapter 5, "a pitfall").
* MARA (``RLConfig.mara_tau``) replaces the task rewards by :func:`marabook.mara.mara_rewards`,
  computed per prompt group from the sequence reference log-probabilities, before the KL penalty
  and the advantages.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from marabook.mara import mara_rewards, parse_tau

__all__ = [
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "rloo_advantages",
    "grpo_advantages",
    "compute_advantages",
    "token_logprobs",
    "sequence_logprobs",
    "completion_mask",
    "sample_completions",
    "encode_prompts",
    "decode_completions",
    "sample_texts",
    "completion_logprobs",
    "expected_kl_gradients",
    "shape_rewards",
    "TokenBanditLM",
    "SymbolTokenizer",
    "Task",
    "RLConfig",
    "Trainer",
    "ADVANTAGES",
    "KL_MODES",
]

KL_MODES = ("reverse", "reverse_k3", "forward", "none")
ADVANTAGES = ("rloo", "mean", "std", "none")


# --------------------------------------------------------------------------------------------
# KL estimators (eq. 5.3): samples y ~ pi, x = log pi_ref(y) - log pi(y)
# --------------------------------------------------------------------------------------------

def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _log_ratio(logp, ref_logp):
    """``x = ref_logp - logp`` after checking both inputs (NumPy or torch, same shape, finite)."""
    if _is_torch(logp) != _is_torch(ref_logp):
        raise ValueError("logp and ref_logp must both be torch tensors or both array-like")
    if _is_torch(logp):
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
    x = _log_ratio(logp, ref_logp)
    if _is_torch(x):
        import torch

        return torch.expm1(x) - x
    return np.expm1(x) - x


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------

def _grouped(rewards, group_size):
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 2:
        raise ValueError(f"group_size must be an integer >= 2, got {group_size!r}")
    if _is_torch(rewards):
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
    g = _grouped(rewards, group_size)
    k = group_size
    total = g.sum(1, keepdims=True) if not _is_torch(g) else g.sum(1, keepdim=True)
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
    g = _grouped(rewards, group_size)
    if _is_torch(g):
        centred = g - g.mean(1, keepdim=True)
        if scale_by_std:
            centred = centred / (g.std(1, keepdim=True, unbiased=True) + eps)
    else:
        centred = g - g.mean(1, keepdims=True)
        if scale_by_std:
            centred = centred / (g.std(1, ddof=1, keepdims=True) + eps)
    return centred.reshape(-1)


def compute_advantages(rewards, group_size, method: str = "rloo"):
    """Advantages by name: ``"rloo"``, ``"mean"`` (group mean subtracted), ``"std"`` (GRPO: mean
    subtracted, divided by the group std), ``"none"`` (the rewards themselves: plain REINFORCE)."""
    if method not in ADVANTAGES:
        raise ValueError(f"method must be one of {ADVANTAGES}, got {method!r}")
    if method == "rloo":
        return rloo_advantages(rewards, group_size)
    if method == "mean":
        return grpo_advantages(rewards, group_size, scale_by_std=False)
    if method == "std":
        return grpo_advantages(rewards, group_size, scale_by_std=True)
    g = _grouped(rewards, group_size)
    return g.reshape(-1) * 1.0


# --------------------------------------------------------------------------------------------
# Sequences: sampling and log-probabilities
# --------------------------------------------------------------------------------------------

def _check_ids(input_ids, attention_mask, name="input_ids"):
    import torch

    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D LongTensor (batch, length)")
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must be a tensor with the shape of {name} {tuple(input_ids.shape)}")


def _position_ids(attention_mask):
    """Positions that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _pad_right(x, width: int, value: int):
    import torch

    if x.shape[1] == width:
        return x
    return torch.cat([x, torch.full((x.shape[0], width - x.shape[1]), value, dtype=x.dtype, device=x.device)], 1)


def completion_mask(completion_ids, eos_token_id):
    """1 for completion tokens up to and including the first ``eos_token_id``, 0 after it.

    A completion that never emits EOS (truncated at ``max_new_tokens``) keeps all its tokens.
    """
    import torch

    if not isinstance(completion_ids, torch.Tensor) or completion_ids.ndim != 2:
        raise ValueError("completion_ids must be a 2-D tensor (batch, new_tokens)")
    if not isinstance(eos_token_id, (int, np.integer)):
        raise ValueError(f"eos_token_id must be an int, got {eos_token_id!r}")
    is_eos = (completion_ids == eos_token_id).long()
    # tokens strictly after the first EOS have a positive count of earlier EOS tokens
    eos_before = is_eos.cumsum(-1) - is_eos
    return (eos_before == 0).long()


def token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask_, autocast=None,
                   dedupe: bool = True):
    """Log-probabilities of each completion token under ``model``, shape (batch, new_tokens).

    ``prompt_ids``/``prompt_mask`` are left-padded prompts; ``completion_ids`` the sampled tokens
    and ``completion_mask_`` from :func:`completion_mask`. Position ids skip the left padding, so
    a padded batch gives the same numbers as each sequence alone. Masked positions are set to 0.
    Gradients flow when called outside ``torch.no_grad()``. Log-softmax is taken in float32.

    ``dedupe``: run the model once per *distinct* row and copy the results back (same values, same
    gradients; RL batches repeat each prompt ``group_size`` times and often repeat answers too).
    """
    import torch

    _check_ids(prompt_ids, prompt_mask, "prompt_ids")
    if completion_ids.ndim != 2 or completion_ids.shape[0] != prompt_ids.shape[0]:
        raise ValueError("completion_ids must be 2-D with the batch size of prompt_ids")
    if completion_mask_.shape != completion_ids.shape:
        raise ValueError("completion_mask_ must have the shape of completion_ids")
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask.long(), completion_mask_.long()], 1)
    inverse = None
    if dedupe and ids.shape[0] > 1:
        rows = torch.cat([ids * mask, mask], 1)  # masked tokens do not matter
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
        if uniq.shape[0] == ids.shape[0]:
            inverse = None
        else:
            first = torch.full((uniq.shape[0],), ids.shape[0], dtype=torch.long, device=ids.device)
            first = first.scatter_reduce(0, inverse, torch.arange(ids.shape[0], device=ids.device), "amin")
            ids, mask = ids[first], mask[first]
            completion_ids, completion_mask_ = completion_ids[first], completion_mask_[first]
    p = prompt_ids.shape[1]
    with autocast() if autocast is not None else _nullcontext():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=_position_ids(mask)).logits
    logits = logits[:, p - 1:-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    lp = lp * completion_mask_.to(lp.dtype)
    return lp if inverse is None else lp[inverse]


def sequence_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask_, autocast=None,
                      dedupe: bool = True):
    """``log pi(y | x)``: the sum of the completion's token log-probabilities (eq. 5.1), shape (batch,)."""
    return token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask_, autocast,
                          dedupe).sum(-1)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def sample_completions(model, prompt_ids, prompt_mask, *, max_new_tokens, eos_token_id, pad_token_id,
                       generator, temperature=1.0, autocast=None, num_samples: int = 1):
    """Sample completions token by token (ancestral sampling, a KV cache, no top-k/top-p).

    Returns ``(completion_ids, mask)``, both (batch * num_samples, T) with ``T <= max_new_tokens``;
    after a row's EOS its tokens are ``pad_token_id`` and its mask is 0. With ``num_samples > 1``
    each prompt is encoded once and its cache repeated (rows come prompt after prompt, like
    ``prompt_ids.repeat_interleave(num_samples, 0)``). All randomness comes from ``generator`` (a
    ``torch.Generator`` on the model's device): the same generator state gives the same samples.
    """
    import torch

    _check_ids(prompt_ids, prompt_mask, "prompt_ids")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    mask = prompt_mask.long()
    pos = _position_ids(mask)
    out = []
    ctx = autocast if autocast is not None else _nullcontext
    with torch.no_grad(), ctx():
        res = model(input_ids=prompt_ids, attention_mask=mask, position_ids=pos, use_cache=True)
        past, logits = res.past_key_values, res.logits[:, -1]
        if num_samples > 1:
            logits = logits.repeat_interleave(num_samples, 0)
            mask = mask.repeat_interleave(num_samples, 0)
            pos = pos.repeat_interleave(num_samples, 0)
            if past is not None:
                past.batch_repeat_interleave(num_samples)
        b = logits.shape[0]
        finished = torch.zeros(b, dtype=torch.bool, device=prompt_ids.device)
        next_pos = pos[:, -1:] + 1
        for _ in range(max_new_tokens):
            probs = torch.softmax(logits.float() / temperature, -1)
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            tok = torch.where(finished, torch.full_like(tok, pad_token_id), tok)
            out.append(tok)
            finished = finished | (tok == eos_token_id)
            if bool(finished.all()) or len(out) == max_new_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            res = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos,
                        past_key_values=past, use_cache=True)
            past, logits = res.past_key_values, res.logits[:, -1]
            next_pos = next_pos + 1
    ids = torch.stack(out, 1)
    return ids, completion_mask(ids, int(eos_token_id))


# --------------------------------------------------------------------------------------------
# Tasks and the trainer
# --------------------------------------------------------------------------------------------

def _pad_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define eos_token_id")
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def encode_prompts(tokenizer, prompts: Sequence[str], device="cpu"):
    """Left-padded prompt ids and attention mask, ``(ids, mask)``, both (len(prompts), width)."""
    import torch

    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError("prompts must be a non-empty list of strings")
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(e) for e in enc)
    ids = torch.full((len(enc), width), _pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        if len(e) == 0:
            raise ValueError(f"prompt {prompts[i]!r} encodes to no tokens")
        ids[i, width - len(e):] = torch.tensor(e)
        mask[i, width - len(e):] = 1
    return ids.to(device), mask.to(device)


def decode_completions(tokenizer, completion_ids, mask) -> list[str]:
    """Completion texts without EOS and padding (the inverse of the sampler's output)."""
    eos = tokenizer.eos_token_id
    rows = []
    for ids, m in zip(completion_ids.tolist(), mask.tolist()):
        toks = [t for t, keep in zip(ids, m) if keep and t != eos]
        rows.append(tokenizer.decode(toks, skip_special_tokens=True))
    return rows


def sample_texts(model, tokenizer, prompts: Sequence[str], *, n_per_prompt: int = 1, max_new_tokens: int = 8,
                 seed: int = 0, temperature: float = 1.0, autocast=None) -> list[str]:
    """``n_per_prompt`` sampled completions (text) for each prompt, prompt after prompt, from a fresh
    generator seeded with ``seed`` (so the same call always returns the same texts)."""
    import torch

    if isinstance(n_per_prompt, bool) or not isinstance(n_per_prompt, int) or n_per_prompt < 1:
        raise ValueError(f"n_per_prompt must be a positive int, got {n_per_prompt!r}")
    device = next(model.parameters()).device
    ids, mask = encode_prompts(tokenizer, prompts, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    comp, cmask = sample_completions(model, ids, mask, max_new_tokens=max_new_tokens,
                                     eos_token_id=int(tokenizer.eos_token_id), pad_token_id=_pad_id(tokenizer),
                                     generator=gen, temperature=temperature, autocast=autocast,
                                     num_samples=n_per_prompt)
    return decode_completions(tokenizer, comp, cmask)


def completion_logprobs(model, tokenizer, prompts: Sequence[str], completions: Sequence[str]):
    """``log pi(completion + EOS | prompt)`` (eq. 5.1) for text pairs, a float tensor (N,), no gradient."""
    import torch

    if isinstance(completions, str) or len(completions) != len(prompts):
        raise ValueError("completions must be a list with one string per prompt")
    device = next(model.parameters()).device
    p_ids, p_mask = encode_prompts(tokenizer, prompts, device)
    eos = int(tokenizer.eos_token_id)
    enc = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in completions]
    width = max(len(e) for e in enc)
    c_ids = torch.full((len(enc), width), eos, dtype=torch.long)
    c_mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        c_ids[i, :len(e)] = torch.tensor(e)
        c_mask[i, :len(e)] = 1
    with torch.no_grad():
        return sequence_logprobs(model, p_ids, p_mask, c_ids.to(device), c_mask.to(device))


def shape_rewards(rewards, logp, ref_logp, *, beta, kl="reverse", mara_tau=None, groups=None,
                  entropy_coef: float = 0.0, tau_scope: str = "group"):
    """The rewards the advantages are computed from (torch tensors, no gradient).

    1. MARA (eq. 4.1) when ``mara_tau`` is set: per group of ``groups``, good samples
       (``R >= tau``) get ``R(z) + beta * (log pi_ref(z) - log pi_ref(y))`` with ``z`` the group's
       good sample of highest reference log-probability (:func:`marabook.mara.mara_rewards`);
    2. the reverse-KL penalty when ``kl == "reverse"``: ``- beta * k1 = - beta (log pi(y) -
       log pi_ref(y))`` per sequence (eq. 5.3). Other ``kl`` modes act in the loss, not here.
       A percentile ``mara_tau`` (``"p90"``) is taken within each group when ``tau_scope="group"``
       and over the whole batch when ``tau_scope="batch"`` (anchors stay per group). Note: with
       groups of 8, a per-group 90th percentile admits only the group's best sample, which is its
       own anchor, so MARA changes nothing; per-batch percentiles are what the paper used.
    3. an entropy bonus when ``entropy_coef = eta > 0``: ``- eta * log pi(y)``, an unbiased
       per-sample estimate of ``eta * H(pi)``; with the reverse KL the optimum is then
       ``pi_ref^(beta/(beta+eta)) exp(R/(beta+eta))`` (eq. 2.6, :func:`marabook.targets.entropy_regularized_target`).
    """
    if kl not in KL_MODES:
        raise ValueError(f"kl must be one of {KL_MODES}, got {kl!r}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if not (isinstance(entropy_coef, (int, float)) and math.isfinite(entropy_coef) and entropy_coef >= 0):
        raise ValueError(f"entropy_coef must be a finite number >= 0, got {entropy_coef!r}")
    if tau_scope not in ("group", "batch"):
        raise ValueError(f"tau_scope must be 'group' or 'batch', got {tau_scope!r}")
    r = rewards
    if mara_tau is not None:
        tau = mara_tau
        kind, q = parse_tau(mara_tau)
        if kind == "percentile" and tau_scope == "batch":
            import torch

            tau = float(torch.quantile(rewards.detach().double(), q / 100.0))
        r = mara_rewards(r, ref_logp, beta, tau, groups=groups)
    if kl == "reverse" and beta > 0:
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
    """Every knob of a run (saved in checkpoints and results).

    ``beta``: KL coefficient; ``kl``: one of :data:`KL_MODES`; ``advantage``: one of
    :data:`ADVANTAGES`; ``mara_tau``: ``None`` (vanilla) or MARA's threshold (number or ``"pNN"``);
    ``group_size`` completions per prompt, ``prompts_per_step`` prompts per batch (drawn with
    replacement from ``task.prompts``); ``steps`` optimiser steps of Adam with learning rate ``lr``
    and gradient-norm clipping ``max_grad_norm`` (``None``: off); ``max_new_tokens`` per completion;
    ``temperature`` for sampling; ``seed`` for every random draw of the run; ``entropy_coef``
    (eta) adds an entropy bonus ``eta * H(pi)`` to the objective; ``tau_scope`` ("group" or
    "batch") says where a percentile ``mara_tau`` is taken (see :func:`shape_rewards`).
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

    def __post_init__(self):
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
        if self.kl not in KL_MODES:
            raise ValueError(f"kl must be one of {KL_MODES}, got {self.kl!r}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
        if self.mara_tau is not None:
            parse_tau(self.mara_tau)
            if self.beta <= 0:
                raise ValueError("beta must be > 0 when mara_tau is set (MARA's bonus is beta-scaled)")
        for name in ("group_size", "prompts_per_step", "steps", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "group_size" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'group_size' else 1}, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {self.max_grad_norm!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if self.tau_scope not in ("group", "batch"):
            raise ValueError(f"tau_scope must be 'group' or 'batch', got {self.tau_scope!r}")
        if not (isinstance(self.entropy_coef, (int, float)) and math.isfinite(self.entropy_coef)
                and self.entropy_coef >= 0):
            raise ValueError(f"entropy_coef must be a finite number >= 0, got {self.entropy_coef!r}")

    @property
    def label(self) -> str:
        """Short name for plots: e.g. ``"MARA reverse beta=0.01"``."""
        method = "vanilla" if self.mara_tau is None else "MARA"
        ent = f" eta={self.entropy_coef:g}" if self.entropy_coef else ""
        return f"{method} {self.kl} beta={self.beta:g}{ent}"


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Trainer:
    """The one policy-gradient loop every LM experiment of the book uses (chapter 5).

    ``Trainer(policy, tokenizer, task, config, ref_model=None, device=None, checkpoint_dir=None,
    checkpoint_every=0)``. ``policy`` is trained in place; ``ref_model`` defaults to a frozen copy of
    the policy as passed in. Each step of :meth:`train`:

    1. draw ``prompts_per_step`` prompts, repeat each ``group_size`` times;
    2. sample completions from the policy; decode; score with ``task.reward``;
    3. (MARA) augment the rewards per prompt group with the reference sequence log-probs;
    4. (reverse KL) subtract ``beta * k1`` per sequence from the rewards;
    5. advantages per group; loss ``-mean(A * log pi(y))`` (+ ``beta`` times the k3 or SFT term);
    6. one Adam step; log reward, KL, task metrics.

    With ``checkpoint_dir`` set, the state (weights, optimiser, random generator, history) is saved
    every ``checkpoint_every`` steps and at the end, and a new Trainer pointed at the same directory
    resumes from it; a resumed run ends with the same numbers as an uninterrupted one.
    On CUDA the forward passes run under bf16 autocast.
    """

    def __init__(self, policy, tokenizer, task, config: RLConfig, *, ref_model=None, device=None,
                 checkpoint_dir=None, checkpoint_every: int = 0, progress: bool = True):
        import torch

        if not isinstance(config, RLConfig):
            raise ValueError("config must be an RLConfig")
        if not getattr(task, "prompts", None):
            raise ValueError("task must have a non-empty list of prompts")
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer must define eos_token_id")
        if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
        self.config, self.task, self.tokenizer = config, task, tokenizer
        self.device = torch.device(device or default_device())
        self.policy = policy.to(self.device)
        if ref_model is policy:
            raise ValueError("ref_model must be a separate copy of the model, not the policy itself")
        self.ref = (ref_model if ref_model is not None else copy.deepcopy(policy)).to(self.device)
        self.ref.eval()  # only ever called under torch.no_grad()
        self.policy.eval()  # no dropout: sampling and scoring see the same function
        self.eos = int(tokenizer.eos_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)
        self.optimizer = torch.optim.Adam([p for p in self.policy.parameters() if p.requires_grad],
                                          lr=config.lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.step = 0
        self.history: list[dict] = []
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self._autocast = None
        if self.device.type == "cuda":
            self._autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "state.json").exists():
            self.load_checkpoint(self.checkpoint_dir)

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

    def shaped_rewards(self, rewards, logp, ref_logp, groups):
        """:func:`shape_rewards` with this trainer's config."""
        c = self.config
        return shape_rewards(rewards, logp, ref_logp, beta=c.beta, kl=c.kl, mara_tau=c.mara_tau, groups=groups,
                             entropy_coef=c.entropy_coef, tau_scope=c.tau_scope)

    def train_step(self) -> dict:
        """One sample-score-update step; returns (and records) its log entry."""
        import torch

        c, t0 = self.config, time.perf_counter()
        idx = torch.randint(len(self.task.prompts), (c.prompts_per_step,), generator=self.generator,
                            device=self.device).tolist()
        prompts = [self.task.prompts[i] for i in idx for _ in range(c.group_size)]
        groups = torch.arange(c.prompts_per_step, device=self.device).repeat_interleave(c.group_size)
        u_ids, u_mask = self.encode_prompts([self.task.prompts[i] for i in idx])
        p_ids, p_mask = u_ids.repeat_interleave(c.group_size, 0), u_mask.repeat_interleave(c.group_size, 0)
        comp, cmask = self.sample(self.policy, u_ids, u_mask, num_samples=c.group_size)
        texts = self.decode(comp, cmask)
        rewards = torch.as_tensor(np.asarray(self.task.reward(prompts, texts), dtype=np.float64),
                                  dtype=torch.float32, device=self.device)
        if rewards.shape != (len(prompts),) or not bool(torch.isfinite(rewards).all()):
            raise ValueError("task.reward must return one finite float per completion")

        forward = c.kl == "forward" and c.beta > 0
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
        logp, ref_logp = tok_lp.sum(-1), ref_tok_lp.sum(-1)
        shaped = self.shaped_rewards(rewards, logp.detach(), ref_logp, groups)
        adv = compute_advantages(shaped, c.group_size, c.advantage)
        loss = -(adv.detach() * logp).mean()
        kl_seq = kl_k1(logp.detach(), ref_logp)
        extra = 0.0
        if c.kl == "reverse_k3" and c.beta > 0:
            k3 = kl_k3(tok_lp, ref_tok_lp) * cmask  # zero at masked positions (both lp are 0 there)
            extra = k3.sum(-1).mean()
            loss = loss + c.beta * extra
        elif forward:
            sft = -ref_sample_lp.mean()  # eq. 5.5: an unbiased estimate of KL(pi_ref || pi) + const
            extra = sft
            loss = loss + c.beta * sft
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

    def train(self, until: int | None = None) -> list[dict]:
        """Run steps until ``config.steps`` (or ``until``, to stop early as if killed) and return
        the history. Checkpoints as configured."""
        from tqdm.auto import tqdm

        end = self.config.steps if until is None else min(int(until), self.config.steps)
        bar = tqdm(total=end, initial=self.step, desc=self.config.label, disable=not self.progress,
                   leave=False)
        while self.step < end:
            entry = self.train_step()
            bar.update(1)
            bar.set_postfix(reward=f"{entry['reward']:.2f}", kl=f"{entry['kl']:.3f}")
            if self.checkpoint_dir is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.save_checkpoint(self.checkpoint_dir)
        bar.close()
        if self.checkpoint_dir is not None:
            self.save_checkpoint(self.checkpoint_dir)
        return self.history

    @property
    def history_arrays(self) -> dict:
        """The history as ``{key: np.ndarray over steps}``."""
        keys = self.history[0].keys() if self.history else []
        return {k: np.array([h[k] for h in self.history]) for k in keys}

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

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, directory) -> Path:
        """Write weights (safetensors), optimiser state, generator state and history to ``directory``."""
        import torch
        from safetensors.torch import save_file, save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_model(self.policy, str(d / "policy.safetensors"))
        torch.save(self.optimizer.state_dict(), d / "optimizer.pt")
        save_file({"generator": self.generator.get_state().cpu()}, str(d / "rng.safetensors"))
        state = {"step": self.step, "config": asdict(self.config), "history": self.history}
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(d / "state.json")  # the state file appears last, so a half-written checkpoint is ignored
        return d

    def load_checkpoint(self, directory) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (configs must match)."""
        import torch
        from safetensors.torch import load_file, load_model

        d = Path(directory)
        state = json.loads((d / "state.json").read_text())
        if state["config"] != json.loads(json.dumps(asdict(self.config))):
            raise ValueError(f"checkpoint in {d} was written with a different config: {state['config']}")
        load_model(self.policy, str(d / "policy.safetensors"), device=str(self.device))
        self.optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True,
                                                  map_location=self.device))
        self.generator.set_state(load_file(str(d / "rng.safetensors"))["generator"])
        self.step = int(state["step"])
        self.history = list(state["history"])


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
# A one-token "language model": the bandit of chapters 1-4 behind the LM interface
# --------------------------------------------------------------------------------------------

def _torch_module_base():
    import torch

    return torch.nn.Module


class _Output:
    def __init__(self, logits, past_key_values):
        self.logits = logits
        self.past_key_values = past_key_values


class TokenBanditLM(_torch_module_base()):
    """A context-free "language model": the same next-token logits at every position.

    With ``max_new_tokens=1`` its completions are single tokens and ``pi(y) = softmax(logits)[y]``,
    so :class:`Trainer` runs on it reduce to the token bandits of chapters 1-4 and their results
    can be checked against the closed-form targets (chapter 5 does, and so do the tests). It has
    the Hugging Face call signature the trainer uses (``input_ids``, ``attention_mask``,
    ``position_ids``, ``past_key_values``, ``use_cache``; returns ``.logits``).
    """

    def __init__(self, logits):
        import torch

        super().__init__()
        t = torch.as_tensor(np.asarray(logits, dtype=np.float64), dtype=torch.float32)
        if t.ndim != 1 or t.numel() < 2 or not bool(torch.isfinite(t).all()):
            raise ValueError("logits must be a finite 1-D array with at least 2 entries")
        self.logits = torch.nn.Parameter(t.clone())

    @classmethod
    def from_probs(cls, probs) -> "TokenBanditLM":
        """The model whose next-token distribution is ``probs`` (strictly positive, sums to 1)."""
        p = np.asarray(probs, dtype=float)
        if p.ndim != 1 or np.any(p <= 0) or abs(p.sum() - 1) > 1e-6:
            raise ValueError("probs must be a strictly positive 1-D distribution summing to 1")
        return cls(np.log(p / p.sum()))

    def probs(self) -> np.ndarray:
        """The current next-token distribution as a NumPy array."""
        import torch

        with torch.no_grad():
            return torch.softmax(self.logits.double(), 0).cpu().numpy()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, **kwargs):
        b, t = input_ids.shape
        return _Output(self.logits.expand(b, t, -1), past_key_values)


class SymbolTokenizer:
    """A tokenizer whose tokens are the characters of ``symbols`` plus an EOS token (the last id).

    Implements the slice of the Hugging Face tokenizer interface :class:`Trainer` uses:
    ``tokenizer(text, add_special_tokens=False)["input_ids"]``, ``decode(ids,
    skip_special_tokens=True)``, ``eos_token_id`` and ``pad_token_id``.
    """

    def __init__(self, symbols: str):
        if not isinstance(symbols, str) or len(symbols) == 0 or len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be a non-empty string of distinct characters")
        self.symbols = symbols
        self.eos_token_id = len(symbols)
        self.pad_token_id = len(symbols)
        self._index = {c: i for i, c in enumerate(symbols)}

    def __len__(self) -> int:
        return len(self.symbols) + 1

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        try:
            return {"input_ids": [self._index[c] for c in text]}
        except KeyError as exc:
            raise ValueError(f"text contains a character outside symbols: {exc}") from None

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.eos_token_id or not skip_special_tokens)
