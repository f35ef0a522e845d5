"""Sequence-level policy-gradient RL for autoregressive models (book chapter 5; needs torch).

The package, by seam (each name below is importable from ``marabook.rl`` as well):

* :mod:`marabook.estimators` (re-exported): KL estimators k1/k2/k3, RLOO/GRPO/Dr. GRPO advantages,
  and their exact expected gradients (eqs. 5.2-5.4) -- NumPy or torch;
* :mod:`marabook.rl.sequences`: sampling completions and scoring them (eq. 5.1; each prompt computed once
  for all its completions), text helpers;
* :mod:`marabook.rl.config`: :class:`RLConfig` (KL direction and estimator placement, advantages, MARA
  threshold; checked once), the :class:`Task` protocol and :func:`shape_rewards`;
* :mod:`marabook.rl.trainer`: the :class:`Trainer` loop (read :meth:`Trainer.train_step` top to bottom; its
  parts :meth:`Trainer.rollout` and :meth:`Trainer.loss`, the loss itself :func:`marabook.estimators.policy_loss`);
* :mod:`marabook.rl.toy`: a one-token "language model" and a character tokenizer, so the trainer's
  results on bandits can be checked against the closed forms of chapters 1-4.
"""

from marabook._compat import require

require("marabook.rl", "torch", extra="lm")


from marabook.estimators import (ADVANTAGE_ALGORITHMS, ADVANTAGES, KL_PLACEMENTS, compute_advantages,
                                 expected_kl_gradients, grpo_advantages, kl_k1, kl_k2, kl_k3, policy_loss,
                                 rloo_advantages)
from marabook.rl.sequences import (completion_logprobs, completion_mask, decode_completions, encode_prompts,
                                   sample_completions, sample_texts, sequence_logprobs, shared_prompt_logprobs,
                                   token_logprobs)
from marabook.rl.toy import SymbolTokenizer, TokenBanditLM
from marabook.rl.config import KL_DIRECTIONS, KL_ESTIMATORS, RLConfig, Task, default_device, shape_rewards
from marabook.rl.trainer import Rollout, Trainer

__all__ = [
    "kl_k1", "kl_k2", "kl_k3", "rloo_advantages", "grpo_advantages", "compute_advantages",
    "expected_kl_gradients", "policy_loss", "token_logprobs", "shared_prompt_logprobs", "sequence_logprobs",
    "completion_mask", "sample_completions",
    "encode_prompts", "decode_completions", "sample_texts", "completion_logprobs", "shape_rewards",
    "TokenBanditLM", "SymbolTokenizer", "Task", "RLConfig", "Rollout", "Trainer", "default_device",
    "ADVANTAGES", "ADVANTAGE_ALGORITHMS", "KL_DIRECTIONS", "KL_ESTIMATORS", "KL_PLACEMENTS",
]
