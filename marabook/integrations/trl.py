"""MARA for Hugging Face TRL: a reward-function wrapper for ``GRPOTrainer`` / ``RLOOTrainer`` (chapter 5).

    from marabook.integrations.trl import check_trl_config, mara_reward

    args = GRPOConfig(..., beta=0.02, scale_rewards="none")       # MARA needs both (check_trl_config says why)
    reward = mara_reward(my_reward, ref_model, tokenizer, tau=1.0, config=args)
    trainer = GRPOTrainer(model=model, args=args, reward_funcs=[reward], ...)

:func:`mara_reward` returns a function TRL calls like any reward function. It computes the base rewards
with ``reward_fn``, the reference model's sequence log-probabilities of the very completions TRL sampled
(from the ``completion_ids`` TRL passes: nothing is re-tokenised, special tokens are kept), and augments
the rewards per prompt group with :func:`marabook.mara.mara_rewards` (eq. 4.1; the one implementation the
book's own trainer uses). Completions come in groups of ``num_generations`` consecutive samples of one
prompt, as TRL lays them out.

:func:`check_trl_config` enforces the condition under which MARA's flat target holds (chapter 5, "a
pitfall"): the trainer must optimise ``E[R_bar] - beta * KL`` with rewards and KL on one scale. Dividing
rewards by their standard deviation (TRL's default ``scale_rewards="group"``, or RLOO's
``normalize_advantages=True``) rescales the rewards but not ``beta``; when every sample of a group is good,
the std is set by MARA's own bonus and the policy collapses onto the *rare* answer. ``beta = 0`` (TRL's
default for GRPO) removes both the KL and MARA's bonus. Supported TRL versions: :data:`SUPPORTED`.
"""

from __future__ import annotations

import numpy as np

from marabook._validate import check_int, check_number
from marabook.mara import Threshold, mara_rewards
from marabook.plumbing import pad_sequences

__all__ = ["SUPPORTED", "check_trl_version", "check_trl_config", "mara_reward", "reference_logprobs"]

#: The TRL versions this wrapper is tested with (the ``trl`` extra pins the same range).
SUPPORTED = (1, 2)  # 1.0 <= version < 2.0


def check_trl_version(version: str | None = None) -> str:
    """The installed (or given) TRL version; ImportError with what to install when it is outside :data:`SUPPORTED`."""
    if version is None:
        try:
            import trl
        except ImportError as exc:
            raise ImportError('marabook.integrations.trl needs TRL: pip install "marabook[trl]"') from exc
        version = trl.__version__
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise ImportError(f"could not read the TRL version {version!r}") from None
    if not SUPPORTED[0] <= major < SUPPORTED[1]:
        raise ImportError(f"marabook.integrations.trl supports TRL >= {SUPPORTED[0]}.0, < {SUPPORTED[1]}.0 (the "
                          f"reward-function API changes across major versions); found {version}. "
                          f'pip install "marabook[trl]" installs a supported one.')
    return str(version)


def check_trl_config(config):
    """Raise ValueError naming the setting when MARA's flat target cannot hold under this TRL config.

    ``config`` is a ``GRPOConfig`` or ``RLOOConfig``, or a trainer (its ``args`` are checked). Returns the
    checked config.
    """
    args = getattr(config, "args", config)
    if not hasattr(args, "beta"):
        raise ValueError(f"config must be a TRL GRPOConfig or RLOOConfig (or a trainer), got {type(config).__name__}")
    beta = args.beta
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta = {beta!r}: MARA's bonus is beta * (log pi_ref(anchor) - log pi_ref(y)) and the KL "
                         "keeps the policy near the reference; with beta = 0 (TRL's GRPO default) both vanish. "
                         "Set beta > 0, e.g. beta=0.02.")
    scale = getattr(args, "scale_rewards", "none")
    if scale not in ("none", False, None):
        raise ValueError(f"scale_rewards = {scale!r} divides the rewards by their standard deviation but not beta: "
                         "in a group where every sample is good the std is MARA's own bonus, the advantages become "
                         "+-1 and the policy collapses onto the rare answer. Set scale_rewards='none'.")
    if getattr(args, "normalize_advantages", False):
        raise ValueError("normalize_advantages = True rescales the advantages but not beta, which breaks MARA's flat "
                         "target (as std scaling does in GRPO). Set normalize_advantages=False.")
    return args


def _prompt_ids(tokenizer, prompt):
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # conversational: the list of messages TRL renders with the chat template
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def reference_logprobs(ref_model, tokenizer, prompts, completion_ids, batch_size: int = 64) -> np.ndarray:
    """``log pi_ref(completion | prompt)`` of token-id completions (eq. 5.1), float64, in batches, no gradient.

    ``completion_ids`` are the sampled token ids as TRL passes them (with the final EOS when one was
    generated), scored as they are: every token counts, special ones included.
    """
    import torch

    from marabook.rl import sequence_logprobs

    check_int(batch_size, "batch_size", minimum=1)
    if len(prompts) != len(completion_ids) or len(prompts) == 0:
        raise ValueError("prompts and completion_ids must be non-empty lists of equal length")
    device = next(ref_model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            p_ids, p_mask = pad_sequences([_prompt_ids(tokenizer, p) for p in prompts[i:i + batch_size]], pad,
                                          left=True, device=device)
            rows = [list(c) for c in completion_ids[i:i + batch_size]]
            if any(len(r) == 0 for r in rows):  # an empty completion has probability 1 of nothing: log-prob 0
                rows = [r if r else [pad] for r in rows]
            c_ids, c_mask = pad_sequences(rows, pad, device=device)
            lp = sequence_logprobs(ref_model, p_ids, p_mask, c_ids, c_mask)
            empty = torch.tensor([len(c) == 0 for c in completion_ids[i:i + batch_size]], device=device)
            out.append(torch.where(empty, torch.zeros_like(lp), lp).double().cpu().numpy())
    return np.concatenate(out)


def mara_reward(reward_fn, ref_model, tokenizer, *, tau, beta: float | None = None, num_generations: int | None = None,
                config=None, anchor: str = "group", batch_size: int = 64):
    """A TRL reward function: ``reward_fn``'s rewards, augmented by MARA (eq. 4.1).

    ``reward_fn(prompts, completions, **kwargs)`` is any TRL-style reward function. ``ref_model`` and
    ``tokenizer``: the reference (the model before training, as TRL's own reference). ``tau``: MARA's threshold,
    a number or ``"pNN"`` (a percentile of each group's rewards; of the whole batch with ``anchor="batch"``).
    ``config``: the trainer's GRPOConfig/RLOOConfig; it is checked with :func:`check_trl_config`, and gives
    ``beta`` and ``num_generations`` unless they are passed. ``anchor``: ``"group"`` (one anchor per prompt,
    the paper's choice) or ``"batch"`` (one over the whole batch).
    """
    check_trl_version()
    if not callable(reward_fn):
        raise ValueError("reward_fn must be callable as reward_fn(prompts, completions, **kwargs)")
    if anchor not in ("group", "batch"):
        raise ValueError(f"anchor must be 'group' or 'batch', got {anchor!r}")
    if config is not None:
        args = check_trl_config(config)
        beta = args.beta if beta is None else beta
        configured = getattr(args, "num_generations", None)
        if num_generations is not None and configured is not None and num_generations != configured:
            raise ValueError(f"num_generations = {num_generations!r} contradicts the config's num_generations = "
                             f"{configured!r}: groups would mix prompts; pass one of them")
        num_generations = configured if num_generations is None else num_generations
    if beta is None:
        raise ValueError("beta is required (or pass config=, the trainer's GRPOConfig/RLOOConfig)")
    beta = check_number(beta, "beta", positive=True)
    if anchor == "group":
        if num_generations is None:
            raise ValueError("num_generations is required with anchor='group' (or pass config=)")
        num_generations = check_int(num_generations, "num_generations", minimum=1)
    threshold = Threshold.parse(tau, "group" if anchor == "group" else "batch")

    def reward(prompts, completions, completion_ids=None, **kwargs):
        if completion_ids is None:
            raise ValueError("completion_ids is required: the wrapper scores the completions TRL sampled, as sampled")
        raw = reward_fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)
        try:
            r = np.asarray(raw, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"reward_fn must return numbers, one per completion; got {type(raw).__name__} that "
                             f"does not convert to floats ({exc})") from exc
        if r.shape != (len(prompts),) or not np.all(np.isfinite(r)):
            raise ValueError("reward_fn must return one finite reward per completion")
        groups = np.arange(len(r)) // num_generations if anchor == "group" else None
        if groups is not None and len(r) % num_generations:
            raise ValueError(f"{len(r)} completions do not form groups of num_generations = {num_generations}")
        if groups is not None:  # one anchor per prompt: a group must be num_generations samples of one prompt
            for start in range(0, len(r), num_generations):
                group = list(prompts[start:start + num_generations])
                if any(q != group[0] for q in group[1:]):
                    raise ValueError(f"prompts {start}..{start + num_generations - 1} are not one prompt repeated: "
                                     f"the completions do not come in groups of num_generations = "
                                     f"{num_generations} per prompt (does it match the trainer's?)")
        ref_lp = reference_logprobs(ref_model, tokenizer, prompts, completion_ids, batch_size)
        return mara_rewards(r, ref_lp, beta, threshold, groups=groups).tolist()

    reward.__name__ = f"mara_{getattr(reward_fn, '__name__', 'reward')}"
    return reward
