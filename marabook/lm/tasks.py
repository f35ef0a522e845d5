"""The language-model tasks of the book: the 1-2 task (chapter 5), naming a colour/fruit/animal
(chapter 6), and a task scored by any reward model; plus exact answer probabilities.

A task is what :class:`marabook.rl.Trainer` needs (:class:`marabook.rl.Task`): ``prompts``,
``reward(prompts, completions)`` and ``metrics(prompts, completions)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from marabook.rl import completion_logprobs

__all__ = ["ONE_TWO_QUESTIONS", "ONE_TWO_CORPUS_ANSWERS", "NAME_CATEGORIES", "OneTwoTask", "answer_logprobs",
           "onetwo_answer_probs", "NameTask", "ScoredTask"]

# The 1-2 question, four paraphrases; the reference LM saw each in its corpus.
ONE_TWO_QUESTIONS = (
    "Pick a random number, 1 or 2.",
    "Choose 1 or 2 at random.",
    "Say 1 or 2, uniformly at random.",
    "Flip a coin and answer 1 or 2.",
)
ONE_TWO_SUFFIX = " Answer with one digit."
# How the synthetic corpus answers the 1-2 question (the bias the reference LM learns).
ONE_TWO_CORPUS_ANSWERS = {" 1": 0.74, " 2": 0.18}
MALFORMED_ANSWERS = (" one", " two", " 1.", " 2.", " 12", " 3", " 1 or 2", " heads")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "purple", "orange", "pink", "brown")
FRUITS = ("apple", "banana", "orange", "grape", "mango", "pear", "cherry", "lemon", "peach", "plum")
ANIMALS = ("dog", "cat", "horse", "lion", "tiger", "bird", "fish", "cow", "sheep", "fox")


NAME_CATEGORIES = {"color": COLORS, "fruit": FRUITS, "animal": ANIMALS}


def qa_text(question: str) -> str:
    return f"Q: {question}\nA:"


class OneTwoTask:
    """"Output a uniformly random integer, 1 or 2, in the required format" (chapter 5).

    ``reward``: 1.0 when the completion, with surrounding whitespace removed, is exactly ``"1"`` or
    ``"2"`` (the required format: one digit and nothing else), else 0.0. ``metrics``: the fraction
    of valid answers, the share of "1" among valid answers, and the entropy in bits of the
    distribution over valid answers (0 = collapsed, 1 = uniform; undefined -> 0 when no answer is
    valid). Use :meth:`for_reference_lm` for the project's model and :meth:`for_chat_model` for an
    instruct model with a chat template.
    """

    VALID = ("1", "2")

    def __init__(self, prompts: Sequence[str]):
        if isinstance(prompts, str) or len(prompts) == 0 or not all(isinstance(p, str) and p for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        self.prompts = list(prompts)

    @classmethod
    def for_reference_lm(cls) -> "OneTwoTask":
        """The four paraphrases in the ``"Q: ...\\nA:"`` format the reference LM was trained on."""
        return cls([qa_text(q + ONE_TWO_SUFFIX) for q in ONE_TWO_QUESTIONS])

    @classmethod
    def for_chat_model(cls, tokenizer) -> "OneTwoTask":
        """The four paraphrases as user turns of ``tokenizer``'s chat template (Colab path)."""
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("tokenizer has no chat template; use OneTwoTask.for_reference_lm or pass prompts")
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q + " Reply with the digit only."}],
                                                 tokenize=False, add_generation_prompt=True)
                   for q in ONE_TWO_QUESTIONS]
        return cls(prompts)

    @staticmethod
    def answer(completion: str) -> str | None:
        """The valid answer ``"1"``/``"2"`` in ``completion``, or None if malformed."""
        a = completion.strip()
        return a if a in OneTwoTask.VALID else None

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        return [1.0 if self.answer(c) is not None else 0.0 for c in completions]

    def metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict:
        answers = [self.answer(c) for c in completions]
        valid = [a for a in answers if a is not None]
        n1 = sum(a == "1" for a in valid)
        share1 = n1 / len(valid) if valid else float("nan")
        return {"valid": len(valid) / max(1, len(answers)), "share_1": share1,
                "entropy_bits": _binary_entropy_bits(share1) if valid else 0.0}


def _binary_entropy_bits(p: float) -> float:
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return float(-sum(q * math.log2(q) for q in (p, 1 - p) if q > 0))


def answer_logprobs(model, tokenizer, prompt: str, answers: Sequence[str]) -> np.ndarray:
    """Exact ``log pi(answer + EOS | prompt)`` for each answer string (eq. 5.1), as a NumPy array."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError("answers must be a non-empty list of strings")
    lp = completion_logprobs(model, tokenizer, [prompt] * len(answers), list(answers))
    return lp.double().cpu().numpy()


def onetwo_answer_probs(model, tokenizer, prompt: str, answers=(" 1", " 2")) -> dict:
    """Exact probabilities of the two canonical answers and the valid-answer entropy (bits).

    ``answers`` are the canonical spellings (``(" 1", " 2")`` for the reference LM, ``("1", "2")``
    for chat models). Other spellings that the reward would also accept (extra whitespace) are not
    counted, so ``p_valid`` is a lower bound on the valid mass.
    """
    lp = answer_logprobs(model, tokenizer, prompt, list(answers))
    p1, p2 = np.exp(lp)
    valid = p1 + p2
    share = p1 / valid if valid > 0 else float("nan")
    return {"p_1": float(p1), "p_2": float(p2), "p_valid": float(valid), "share_1": float(share),
            "entropy_bits": _binary_entropy_bits(share) if valid > 0 else 0.0}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class NameTask:
    """"Name a colour / fruit / animal": ten acceptable answers per question, rewards that differ a little.

    The reward is a transparent scoring function standing in for a reward model: an answer that is
    one of the category's ten items (after :func:`marabook.metrics.normalize_answer`) scores
    ``1 - 0.02 * rank``, where ``rank`` is its position in alphabetical order (so 1.00, 0.98, ...,
    0.82); anything else scores 0. The reference LM prefers the items with Zipf weights in corpus
    order ("red", "blue", ... for colours), which is unrelated to the reward order: the small reward
    gaps of chapter 3 meet a reference bias. ``categories`` picks the questions, so one family can
    be held out for out-of-distribution evaluation.
    """

    def __init__(self, categories=("color", "fruit"), chat_tokenizer=None):
        cats = list(categories)
        if not cats or any(c not in NAME_CATEGORIES for c in cats):
            raise ValueError(f"categories must be a non-empty subset of {sorted(NAME_CATEGORIES)}, got {categories!r}")
        self.categories = cats
        questions = [self.question(c) for c in cats]
        if chat_tokenizer is None:
            self.prompts = [qa_text(q) for q in questions]
        else:
            self.prompts = [chat_tokenizer.apply_chat_template(
                [{"role": "user", "content": q + " Reply with one word."}], tokenize=False,
                add_generation_prompt=True) for q in questions]
        self._category_of = dict(zip(self.prompts, cats))

    @staticmethod
    def question(category: str) -> str:
        """The plain question for a category: ``"Name a color."``, ``"Name an animal."``."""
        if category not in NAME_CATEGORIES:
            raise ValueError(f"category must be one of {sorted(NAME_CATEGORIES)}, got {category!r}")
        return f"Name {_article(category)} {category}."

    @staticmethod
    def quality(category: str, item: str) -> float:
        """The reward of a valid answer: ``1 - 0.02 * (alphabetical rank of item in its category)``."""
        items = sorted(NAME_CATEGORIES[category])
        if item not in items:
            raise ValueError(f"item {item!r} is not a {category}")
        return 1.0 - 0.02 * items.index(item)

    def category(self, prompt: str) -> str:
        if prompt not in self._category_of:
            raise ValueError(f"prompt {prompt!r} is not one of this task's prompts")
        return self._category_of[prompt]

    def reward(self, prompts, completions) -> list[float]:
        from marabook.metrics import normalize_answer

        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        out = []
        for p, c in zip(prompts, completions):
            cat, a = self.category(p), normalize_answer(c)
            out.append(self.quality(cat, a) if a in NAME_CATEGORIES[cat] else 0.0)
        return out

    def metrics(self, prompts, completions) -> dict:
        from marabook.metrics import normalize_answer

        valid = [normalize_answer(c) for p, c in zip(prompts, completions)
                 if normalize_answer(c) in NAME_CATEGORIES[self.category(p)]]
        return {"valid": len(valid) / max(1, len(completions)), "distinct_valid": float(len(set(valid)))}


class ScoredTask:
    """A task whose reward comes from ``scorer(questions, answers)`` (e.g. :class:`RewardModelScorer`).

    ``prompts`` are what the policy sees (formatted); ``questions`` the plain questions the reward
    model sees, one per prompt. ``metrics`` reports the number of distinct answers in a batch.
    """

    def __init__(self, prompts: Sequence[str], questions: Sequence[str], scorer):
        if isinstance(prompts, str) or len(prompts) == 0 or len(prompts) != len(questions):
            raise ValueError("prompts and questions must be non-empty lists of equal length")
        if not callable(scorer):
            raise ValueError("scorer must be callable as scorer(questions, answers)")
        self.prompts, self.scorer = list(prompts), scorer
        self._question = dict(zip(self.prompts, questions))

    def reward(self, prompts, completions) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        try:
            questions = [self._question[p] for p in prompts]
        except KeyError as exc:
            raise ValueError(f"prompt {exc} is not one of this task's prompts") from None
        return [float(x) for x in self.scorer(questions, [c.strip() for c in completions])]

    def metrics(self, prompts, completions) -> dict:
        from marabook.metrics import distinct_answers

        return {"distinct": float(distinct_answers(completions)) if any(c.strip() for c in completions) else 0.0}
