"""Language models for the book (chapters 5-6; needs torch and transformers: ``pip install "marabook[lm]"``).

* :mod:`marabook.lm.models`: :func:`load_causal_lm` (any Hugging Face causal LM, by hub id on Colab or
  from a directory), :func:`load_reference_lm` (the project's tiny GPT-2, shipped, offline),
  :func:`load_smollm2` (SmolLM2-135M-Instruct, a real instruct model, offline from a PyPI wheel), the
  sentence encoder for semantic diversity and :class:`RewardModelScorer`;
* :mod:`marabook.lm.tasks`: :class:`OneTwoTask` (chapter 5), :class:`NameTask` (chapter 6),
  :class:`ScoredTask` (any reward model), exact answer probabilities; :class:`ChatOneTwoTask` (the 1-2 task
  on a chat model, ``SMOLLM2_ONETWO``) and the per-answer string counts;
* :mod:`marabook.lm.naming`: "Name a ..." on a chat model (chapter 6 on SmolLM2): the categories, the reward,
  :class:`~marabook.lm.naming.ChatNameTask` with exact answer probabilities, and the unbiased coverage estimator;
* :mod:`marabook.lm.pretrain`: the synthetic corpus and the reference LM's pretraining.

The experiments built on these (:mod:`marabook.experiments.onetwo`, :mod:`marabook.experiments.open_ended`) live
a layer up, in ``marabook.experiments``.
"""

from marabook._compat import require

require("marabook.lm", "torch", "transformers", extra="lm")


from marabook.lm.models import (EOS, REFERENCE_LM_DIR, SMOLLM2_GGUF, SMOLLM2_HUB_ID, SMOLLM2_INSTALL,
                                RewardModelScorer, SentenceEmbedder, load_causal_lm, load_reference_lm,
                                load_sentence_embedder, load_smollm2, smollm2_cache_dir)
from marabook.lm.pretrain import build_tokenizer, pretrain_reference_lm, reference_corpus
from marabook.lm import naming, sizing
from marabook.lm.tasks import (NAME_CATEGORIES, ONE_TWO_CORPUS_ANSWERS, ONE_TWO_QUESTIONS, SMOLLM2_ONETWO,
                               ChatOneTwoTask, NameTask, OneTwoTask, ScoredTask, answer_logprobs, answer_strings,
                               chat_prompt, distinct_strings_per_answer, lenient_answer, onetwo_answer_probs)

__all__ = ["EOS", "REFERENCE_LM_DIR", "load_causal_lm", "load_reference_lm", "SentenceEmbedder",
           "load_sentence_embedder", "RewardModelScorer", "reference_corpus", "build_tokenizer",
           "pretrain_reference_lm", "ONE_TWO_QUESTIONS", "ONE_TWO_CORPUS_ANSWERS", "NAME_CATEGORIES", "OneTwoTask",
           "NameTask", "ScoredTask", "answer_logprobs", "onetwo_answer_probs", "sizing",
           "load_smollm2", "smollm2_cache_dir", "SMOLLM2_HUB_ID", "SMOLLM2_GGUF", "SMOLLM2_INSTALL",
           "ChatOneTwoTask", "SMOLLM2_ONETWO", "chat_prompt", "lenient_answer", "answer_strings",
           "distinct_strings_per_answer", "naming"]
