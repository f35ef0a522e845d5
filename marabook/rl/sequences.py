"""Sequences: sampling completions from a causal LM and scoring them (book chapter 5, eq. 5.1).

Works for any Hugging Face-style causal LM (called as ``model(input_ids=..., attention_mask=...,
position_ids=...)``, returning ``.logits``) and its tokenizer. A completion is the generated tokens up
to and including the first end-of-sequence token; its log-probability is the *sum* of its token
log-probabilities; prompts are left-padded and never scored.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import numpy as np

from marabook._validate import check_int
from marabook.plumbing import pad_sequences

__all__ = ["token_logprobs", "shared_prompt_logprobs", "sequence_logprobs", "completion_mask", "sample_completions", "encode_prompts",
           "decode_completions", "completion_token_ids", "sample_texts", "completion_logprobs",
           "LOGSOFTMAX_CHUNK_ELEMENTS"]


def _check_ids(input_ids, attention_mask, name="input_ids"):
    import torch

    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D LongTensor (batch, length)")
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must be a tensor with the shape of {name} {tuple(input_ids.shape)}")


def _position_ids(attention_mask):
    """Positions that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


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


#: Row chunks of the log-softmax hold at most this many float32 logits (64 M = 256 MB), so that a batch
#: of long completions over a 150k-token vocabulary never materialises its full-vocabulary log-softmax.
LOGSOFTMAX_CHUNK_ELEMENTS = 2 ** 26


def token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask_, autocast=None,
                   dedupe: bool = True):
    """Log-probabilities of each completion token under ``model``, shape (batch, new_tokens).

    ``prompt_ids``/``prompt_mask`` are left-padded prompts; ``completion_ids`` the sampled tokens
    and ``completion_mask_`` from :func:`completion_mask`. Position ids skip the left padding, so
    a padded batch gives the same numbers as each sequence alone. Masked positions are set to 0.
    Gradients flow when called outside ``torch.no_grad()``. Log-softmax is taken in float32, a chunk of
    rows at a time (at most ``LOGSOFTMAX_CHUNK_ELEMENTS`` logits; each row's values do not depend on
    the chunking), and only the sampled token's entry is kept.

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
    with autocast() if autocast is not None else nullcontext():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=_position_ids(mask)).logits
    lp = _chosen_logprobs(logits[:, p - 1:-1], completion_ids) * completion_mask_
    return lp if inverse is None else lp[inverse]


def _chosen_logprobs(logits, ids):
    """``log softmax(logits)[ids]`` per position, (B, T, V) and (B, T) -> (B, T) float32: the log-softmax is
    taken in float32, a chunk of rows at a time (at most ``LOGSOFTMAX_CHUNK_ELEMENTS`` logits), and only the
    chosen entry is kept, so no full-vocabulary log-softmax of the batch ever exists at once."""
    import torch

    step = max(1, LOGSOFTMAX_CHUNK_ELEMENTS // max(1, logits.shape[1] * logits.shape[2]))
    return torch.cat([torch.log_softmax(logits[i:i + step].float(), -1)
                      .gather(-1, ids[i:i + step].unsqueeze(-1)).squeeze(-1)
                      for i in range(0, logits.shape[0], step)])


def _keeps_logits(model) -> bool:
    """Whether ``model`` (or the model a peft wrapper holds) takes ``logits_to_keep`` (Hugging Face >= 4.50)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _checkpointing(model) -> bool:
    """Whether a Hugging Face model recomputes activations in its backward pass (which turns its cache off)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through a peft wrapper
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # the newer name first
        if hasattr(type(base), name):
            return bool(getattr(base, name))
    return False


def shared_prompt_logprobs(model, prompt_ids, prompt_mask, prompt_index, completion_ids, completion_mask_,
                           autocast=None, dedupe: bool = True):
    """:func:`token_logprobs` for completions that share their prompts, doing only the necessary work.

    ``prompt_ids``/``prompt_mask`` (P, L) hold each *distinct* prompt once (left-padded); completion ``i``
    continues prompt ``prompt_index[i]``. The values (and gradients) are those of ``token_logprobs(model,
    prompt_ids[prompt_index], prompt_mask[prompt_index], completion_ids, completion_mask_)`` up to float
    rounding, computed as:

    1. each prompt runs through the model once; its key/value cache is kept (with its autograd graph, so
       gradients reach the prompt's activations through every completion that reads them), and the
       language-model head runs only at its last position (``logits_to_keep=1``), which scores the first
       completion token;
    2. each *distinct* completion (``dedupe``) reads its prompt's cache and runs only its own tokens but the
       last (the last token is scored, never read);
    3. the head and the float32 log-softmax run only at completion positions (``_chosen_logprobs``).

    In an RL batch of P prompts x k completions of length T after prompts of length L this costs P x L +
    P x k x T token positions instead of P x k x (L + T), and the 49k- to 152k-way head runs P x k x T
    times instead of P x k x (L + T). Models without a key/value cache (``rl.TokenBanditLM``) and models
    training with gradient checkpointing (which switches the cache off) take :func:`token_logprobs` instead.
    Masked positions are 0.
    """
    import torch

    _check_ids(prompt_ids, prompt_mask, "prompt_ids")
    if not isinstance(prompt_index, torch.Tensor) or prompt_index.ndim != 1 or prompt_index.dtype != torch.long:
        raise ValueError("prompt_index must be a 1-D LongTensor (one prompt row per completion)")
    if completion_ids.ndim != 2 or completion_ids.shape[0] != prompt_index.shape[0]:
        raise ValueError("completion_ids must be 2-D with one row per entry of prompt_index")
    if completion_mask_.shape != completion_ids.shape:
        raise ValueError("completion_mask_ must have the shape of completion_ids")
    if prompt_index.numel() and (int(prompt_index.min()) < 0 or int(prompt_index.max()) >= prompt_ids.shape[0]):
        raise ValueError(f"prompt_index must index the {prompt_ids.shape[0]} rows of prompt_ids")
    if model.training and _checkpointing(model):
        return token_logprobs(model, prompt_ids[prompt_index], prompt_mask[prompt_index], completion_ids,
                              completion_mask_, autocast, dedupe)
    cmask = completion_mask_.long()
    inverse = None
    if dedupe and completion_ids.shape[0] > 1:  # one row per distinct (prompt, completion)
        rows = torch.cat([prompt_index[:, None], completion_ids * cmask, cmask], 1)
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
        if uniq.shape[0] == completion_ids.shape[0]:
            inverse = None
        else:
            first = torch.full((uniq.shape[0],), completion_ids.shape[0], dtype=torch.long,
                               device=completion_ids.device)
            first = first.scatter_reduce(0, inverse, torch.arange(completion_ids.shape[0],
                                                                  device=completion_ids.device), "amin")
            prompt_index, completion_ids, cmask = prompt_index[first], completion_ids[first], cmask[first]
    pmask = prompt_mask.long()
    pos = _position_ids(pmask)
    keep = {"logits_to_keep": 1} if _keeps_logits(model) else {}
    with autocast() if autocast is not None else nullcontext():
        out = model(input_ids=prompt_ids, attention_mask=pmask, position_ids=pos, use_cache=True, **keep)
        past = out.past_key_values
        if past is None and completion_ids.shape[1] > 1:  # no cache to share: score whole sequences
            lp = token_logprobs(model, prompt_ids[prompt_index], prompt_mask[prompt_index], completion_ids, cmask,
                                autocast, dedupe=False)
            return lp if inverse is None else lp[inverse]
        logits = out.logits[:, -1:][prompt_index]                     # scores each completion's first token
        t = completion_ids.shape[1]
        if t > 1:
            past.batch_select_indices(prompt_index)                   # each completion reads its prompt's cache
            steps = torch.arange(1, t, device=pos.device)
            rest = model(input_ids=completion_ids[:, :-1],
                         attention_mask=torch.cat([pmask[prompt_index], cmask[:, :-1]], 1),
                         position_ids=pos[prompt_index, -1:] + steps, past_key_values=past, use_cache=True).logits
            logits = torch.cat([logits, rest], 1)
    lp = _chosen_logprobs(logits, completion_ids) * cmask
    return lp if inverse is None else lp[inverse]


def sequence_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask_, autocast=None,
                      dedupe: bool = True):
    """``log pi(y | x)``: the sum of the completion's token log-probabilities (eq. 5.1), shape (batch,)."""
    return token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask_, autocast,
                          dedupe).sum(-1)


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
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator")
    check_int(num_samples, "num_samples", minimum=1)
    mask = prompt_mask.long()
    pos = _position_ids(mask)
    out = []
    ctx = autocast if autocast is not None else nullcontext
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


def _pad_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define eos_token_id")
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def encode_prompts(tokenizer, prompts: Sequence[str], device="cpu"):
    """Left-padded prompt ids and attention mask, ``(ids, mask)``, both (len(prompts), width)."""
    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError("prompts must be a non-empty list of strings")
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for p, e in zip(prompts, enc):
        if len(e) == 0:
            raise ValueError(f"prompt {p!r} encodes to no tokens")
    return pad_sequences(enc, _pad_id(tokenizer), left=True, device=device)


def completion_token_ids(completion_ids, mask, eos_token_id) -> list[list[int]]:
    """Each completion's token ids without the final EOS and the padding after it (what the task sees)."""
    eos = int(eos_token_id)
    out = []
    for ids, m in zip(completion_ids.tolist(), mask.tolist()):
        row = [t for t, keep in zip(ids, m) if keep]
        out.append(row[:-1] if row and row[-1] == eos else row)
    return out


def decode_completions(tokenizer, completion_ids, mask) -> list[str]:
    """Completion texts without the final EOS and the padding after it (the inverse of the sampler).

    Special tokens *inside* a completion stay visible (decoded with ``skip_special_tokens=False``): a
    chat model that pads an answer with ``<|im_end|>`` or another special token before its EOS produces
    text the task can see and reject, instead of a clean "1" that MARA would pay a bonus for.
    """
    rows = completion_token_ids(completion_ids, mask, tokenizer.eos_token_id)
    return [tokenizer.decode(r, skip_special_tokens=False) for r in rows]


def sample_texts(model, tokenizer, prompts: Sequence[str], *, n_per_prompt: int = 1, max_new_tokens: int = 8,
                 seed: int = 0, temperature: float = 1.0, autocast=None) -> list[str]:
    """``n_per_prompt`` sampled completions (text) for each prompt, prompt after prompt, from a fresh
    generator seeded with ``seed`` (so the same call always returns the same texts)."""
    import torch

    check_int(n_per_prompt, "n_per_prompt", minimum=1)
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
    c_ids, c_mask = pad_sequences(enc, eos, device=device)
    with torch.no_grad():
        return sequence_logprobs(model, p_ids, p_mask, c_ids, c_mask)
