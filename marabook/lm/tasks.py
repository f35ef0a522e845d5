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
           "onetwo_answer_probs", "NameTask", "ScoredTask", "ChatOneTwoTask", "SMOLLM2_ONETWO", "chat_prompt",
           "lenient_answer", "answer_strings", "distinct_strings_per_answer"]

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

    @classmethod
    def for_smollm2(cls, tokenizer, design: dict | None = None) -> "ChatOneTwoTask":
        """The 1-2 task designed for SmolLM2-135M-Instruct (``SMOLLM2_ONETWO``, chosen by the rule of
        :func:`marabook.experiments.onetwo_real.select_design`), or another ``design`` dict: a
        :class:`ChatOneTwoTask`."""
        return ChatOneTwoTask.from_design(tokenizer, SMOLLM2_ONETWO if design is None else design)

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


# ------------------------------------------------------------------------------ the 1-2 task on a chat model
#: The 1-2 task for SmolLM2-135M-Instruct, chosen among measured candidates by a rule stated before measuring
#: (:func:`marabook.experiments.onetwo_real.select_design`; the candidates table is
#: :func:`marabook.experiments.onetwo_real.design_table`). ``system``: the system message (None: the chat
#: template's default one); ``user``: the question; ``prefix``: text the assistant turn starts with;
#: ``accepted``: the strings the reward accepts for each answer, each followed by end of turn.
#: Measured (candidate c28 of 48): P(answer 1) 0.300, P(answer 2) 0.107, valid mass 0.407, share of "1" 0.736;
#: almost all of it on "1." and "2." (the bare digits followed by end of turn: 0.003 and 0.006).
SMOLLM2_ONETWO = {"system": "Answer briefly.", "user": "Pick a number: 1 or 2. Answer with the number only.",
                  "prefix": "My number is ", "accepted": {"1": ("1", "1."), "2": ("2", "2.")}}

_NUMBER_WORDS = {"one": "1", "two": "2"}


def chat_prompt(tokenizer, user: str, system: str | None = None, prefix: str = "") -> str:
    """``user`` (after an optional ``system`` message) through ``tokenizer``'s chat template, with the
    assistant's turn opened and started with ``prefix``. ``system=None`` sends no system message (a template
    may then insert its default one: SmolLM2's does)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template")
    if not isinstance(user, str) or not user:
        raise ValueError("user must be a non-empty string")
    if system is not None and (not isinstance(system, str) or not system):
        raise ValueError("system must be None or a non-empty string")
    if not isinstance(prefix, str):
        raise ValueError("prefix must be a string")
    messages = ([] if system is None else [{"role": "system", "content": system}]) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix


def lenient_answer(completion: str) -> str | None:
    """The answer a reader would see in ``completion`` whatever its format: ``"1"`` or ``"2"`` after removing
    surrounding whitespace, trailing ``.``/``!`` and case, with the words "one"/"two" read as digits; else None.
    Used to count the *strings* that carry each answer (:func:`answer_strings`), accepted by a reward or not."""
    if not isinstance(completion, str):
        raise ValueError(f"completion must be a string, got {type(completion).__name__}")
    a = completion.strip().rstrip(".!").strip().lower()
    a = _NUMBER_WORDS.get(a, a)
    return a if a in ("1", "2") else None


def answer_strings(completions: Sequence[str], answer_of=lenient_answer) -> dict:
    """``{"1": {string: count}, "2": {string: count}}``: the distinct completion strings that carry each answer
    (``answer_of(string)`` -> ``"1"``, ``"2"`` or None; default :func:`lenient_answer`) and how often each
    occurs. A mode is an *answer*; MARA's flat target is over every *string* (sequence) the reward accepts."""
    if isinstance(completions, str) or not all(isinstance(c, str) for c in completions):
        raise ValueError("completions must be a list of strings")
    if not callable(answer_of):
        raise ValueError("answer_of must be callable as answer_of(completion)")
    out: dict = {"1": {}, "2": {}}
    for c in completions:
        a = answer_of(c)
        if a in out:
            out[a][c] = out[a].get(c, 0) + 1
    return out


def distinct_strings_per_answer(completions: Sequence[str], answer_of=lenient_answer) -> dict:
    """``{"1": n1, "2": n2}``: how many distinct strings carry each answer (:func:`answer_strings`)."""
    return {a: len(strings) for a, strings in answer_strings(completions, answer_of).items()}


class ChatOneTwoTask(OneTwoTask):
    """The 1-2 task with an explicit set of accepted strings per answer, each followed by end of turn.

    ``ChatOneTwoTask(prompts, tokenizer, accepted={"1": ("1",), "2": ("2",)})``; :meth:`from_design` builds the
    prompt from a design dict (``SMOLLM2_ONETWO``). The reward is 1.0 for a completion that is exactly one
    accepted string (no surrounding whitespace) *ended by the EOS token* (``<|im_end|>`` for a ChatML model),
    else 0.0. The trainer decodes completions without their final EOS, so the reward checks the end of turn
    through the token ids, which the trainer passes as ``completion_ids``: a completion is accepted when its ids
    before the final EOS are exactly the tokenizer's ids of an accepted string and it was not truncated, which
    holds whenever the run's ``max_new_tokens >= self.max_new_tokens`` (the longest accepted string's token
    count plus one for EOS): a completion cut at ``max_new_tokens`` has more tokens than any accepted string.
    (Without ids, e.g. in :meth:`marabook.rl.Trainer.evaluate`, the text alone decides.) So the accepted
    *sequences* are exactly those scored by :meth:`exact_probs`, and the valid mass it returns is exactly the
    expected reward. ``metrics``: ``valid``, ``share_1``, ``entropy_bits`` (from the texts) and ``strings_1``
    / ``strings_2``, the number of distinct strings carrying each answer in the batch (:func:`lenient_answer`,
    accepted or not).
    """

    def __init__(self, prompts: Sequence[str], tokenizer, accepted: dict | None = None):
        super().__init__(prompts)
        accepted = {"1": ("1",), "2": ("2",)} if accepted is None else accepted
        if not isinstance(accepted, dict) or sorted(accepted) != ["1", "2"]:
            raise ValueError(f"accepted must map '1' and '2' to tuples of strings, got {accepted!r}")
        strings = [s for a in ("1", "2") for s in accepted[a]]
        if any(isinstance(accepted[a], str) or len(accepted[a]) == 0 for a in ("1", "2")) \
                or not all(isinstance(s, str) and s for s in strings) or len(set(strings)) != len(strings):
            raise ValueError(f"accepted must give each answer a non-empty tuple of distinct non-empty strings, "
                             f"got {accepted!r}")
        if tokenizer is None or getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("tokenizer must be given and define eos_token_id")
        self.tokenizer = tokenizer
        self.accepted = {a: tuple(accepted[a]) for a in ("1", "2")}
        self._answer_of = {s: a for a in ("1", "2") for s in self.accepted[a]}
        self._ids = {tuple(tokenizer(s, add_special_tokens=False)["input_ids"]): a
                     for s, a in self._answer_of.items()}
        #: the fewest new tokens a run needs (the longest accepted string's tokens plus EOS)
        self.max_new_tokens = max(len(i) for i in self._ids) + 1

    @classmethod
    def from_design(cls, tokenizer, design: dict) -> "ChatOneTwoTask":
        """The task of a design dict with keys ``user`` and optional ``system``, ``prefix``, ``accepted``."""
        if not isinstance(design, dict) or "user" not in design:
            raise ValueError(f"design must be a dict with at least a 'user' question, got {design!r}")
        unknown = set(design) - {"system", "user", "prefix", "accepted", "name"}
        if unknown:
            raise ValueError(f"design has unknown keys {sorted(unknown)}")
        prompt = chat_prompt(tokenizer, design["user"], design.get("system"), design.get("prefix", ""))
        return cls([prompt], tokenizer, design.get("accepted"))

    def answer(self, completion: str) -> str | None:  # noqa: D102 - the accepted strings, exactly
        return self._answer_of.get(completion)

    def reward(self, prompts: Sequence[str], completions: Sequence[str], completion_ids=None) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        if completion_ids is None:
            return [1.0 if self.answer(c) is not None else 0.0 for c in completions]
        if len(completion_ids) != len(completions):
            raise ValueError(f"completion_ids must hold one id list per completion, got {len(completion_ids)} "
                             f"for {len(completions)}")
        return [1.0 if tuple(int(t) for t in ids) in self._ids else 0.0 for ids in completion_ids]

    def metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict:
        out = super().metrics(prompts, completions)
        counts = distinct_strings_per_answer(completions)
        out.update(strings_1=float(counts["1"]), strings_2=float(counts["2"]))
        return out

    def exact_probs(self, model, prompt: str | None = None) -> dict:
        """The exact probabilities under ``model`` (teacher-forced, eq. 5.1) of every accepted string followed
        by EOS, for ``prompt`` (default: every prompt of the task, averaged): ``p_1``, ``p_2`` (summed over each
        answer's strings), ``p_valid`` (= the expected reward), ``share_1``, ``entropy_bits`` (of the two
        answers), ``strings`` (each accepted string's probability) and ``answers`` (the answer of each string)."""
        prompts = self.prompts if prompt is None else [prompt]
        strings = list(self._answer_of)
        rows = []
        for p in prompts:
            probs = np.exp(answer_logprobs(model, self.tokenizer, p, strings))
            per = dict(zip(strings, (float(x) for x in probs)))
            p1 = sum(per[s] for s in self.accepted["1"])
            p2 = sum(per[s] for s in self.accepted["2"])
            rows.append((p1, p2, per))
        p1 = float(np.mean([r[0] for r in rows]))
        p2 = float(np.mean([r[1] for r in rows]))
        valid = p1 + p2
        share = p1 / valid if valid > 0 else float("nan")
        return {"p_1": p1, "p_2": p2, "p_valid": valid, "share_1": share,
                "entropy_bits": _binary_entropy_bits(share) if valid > 0 else 0.0,
                "strings": {s: float(np.mean([r[2][s] for r in rows])) for s in strings},
                "answers": dict(self._answer_of)}


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
