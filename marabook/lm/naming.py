""""Name a ..." questions for a real instruct model (chapter 6 on SmolLM2-135M-Instruct): the categories, the
reward, the exact probability of every acceptable answer, and the coverage estimator.

* :data:`NAME_LISTS`: candidate categories, each with a *family* (for holding one family out of training)
  and at least 10 acceptable answers (a tuple of spellings per answer, the first canonical: ``("gray",
  "grey")``);
* :func:`name_reward`: the transparent reward, ``1 - 0.2 * rank / (n - 1)`` over the category's answers in
  alphabetical order (best 1.0, worst 0.8, evenly spaced: small gaps, as :class:`marabook.lm.NameTask`);
* :class:`ChatNameTask`: the task on a chat model: a prompt per category from a *format* (system message,
  user question, assistant prefix), the accepted strings per answer (each spelling, lower-case or
  capitalised, with or without a full stop, then end of turn; checked on token ids, like
  :class:`marabook.lm.ChatOneTwoTask`), and :meth:`ChatNameTask.exact_probs`, the teacher-forced probability of
  every accepted string (eq. 5.1), so the valid mass is exactly the probability of a reward > 0;
* :func:`read_answer`: the answer a reader sees in any completion (case, punctuation, an article and a plural
  "s" removed), accepted by the reward or not, to count the strings carrying each answer;
* :func:`coverage_probability` / :func:`expected_distinct`: unbiased estimates, from ``n`` samples, of the
  probability that ``k`` samples contain at least ``m`` distinct valid answers and of the expected number of
  distinct valid answers among ``k`` (the pass@k construction: the average over all ``k``-subsets).
"""

from __future__ import annotations

import math
import string
from typing import Sequence

import numpy as np

from marabook._validate import check_int

__all__ = ["NAME_LISTS", "name_reward", "answer_stats", "exact_state", "format_prompt", "answer_forms", "read_answer",
           "ChatNameTask", "coverage_probability", "coverage_counts", "expected_distinct"]


def _a(*words):
    return tuple((w,) if isinstance(w, str) else tuple(w) for w in words)


#: Candidate categories as ``{category: {"family", "answers"}}``; each answer a tuple of spellings (first canonical).
NAME_LISTS = {
    "color": {"family": "colours", "answers": _a(
        "red", "blue", "green", "yellow", "black", "white", "purple", "orange", "pink", "brown", ("gray", "grey"),
        "violet", "indigo", "gold", "silver", "turquoise", "teal", "magenta", "cyan", "beige", "maroon", "navy")},
    "fruit": {"family": "food", "answers": _a(
        "apple", "banana", "orange", "grape", "mango", "pear", "cherry", "lemon", "peach", "plum", "strawberry",
        "pineapple", "watermelon", "kiwi", "blueberry", "raspberry", "apricot", "lime", "coconut", "papaya", "fig",
        "pomegranate", "avocado")},
    "vegetable": {"family": "food", "answers": _a(
        "carrot", "potato", "tomato", "onion", "broccoli", "spinach", "cabbage", "lettuce", "pea", "corn",
        "cucumber", "pepper", "garlic", "celery", "kale", "beet", "pumpkin", "zucchini", "eggplant", "asparagus",
        "cauliflower", "radish")},
    "animal": {"family": "animals", "answers": _a(
        "dog", "cat", "horse", "lion", "tiger", "elephant", "bear", "wolf", "fox", "rabbit", "cow", "sheep",
        "monkey", "giraffe", "zebra", "deer", "dolphin", "whale", "shark", "eagle", "owl", "snake", "penguin",
        "mouse")},
    "bird": {"family": "animals", "answers": _a(
        "eagle", "sparrow", "robin", "owl", "parrot", "pigeon", "crow", "penguin", "hawk", "swan", "duck",
        "flamingo", "peacock", "hummingbird", "ostrich", "falcon", "pelican", "seagull", "cardinal", "woodpecker")},
    "flower": {"family": "plants", "answers": _a(
        "rose", "tulip", "daisy", "lily", "sunflower", "orchid", "daffodil", "lavender", "violet", "poppy",
        "jasmine", "iris", "carnation", "marigold", "lotus", "peony", "dandelion", "hibiscus")},
    "country": {"family": "places", "answers": _a(
        "France", "Germany", "Italy", "Spain", "Japan", "China", "India", "Brazil", "Canada", "Mexico", "Russia",
        "Australia", "Egypt", "Kenya", "Nigeria", "Argentina", "Peru", "Chile", "Sweden", "Norway", "Greece",
        "Turkey", "Iran", "Iceland", "Ethiopia", ("United States", "USA", "America"), ("United Kingdom", "UK",
                                                                                       "England"))},
    "city": {"family": "places", "answers": _a(
        "Paris", "London", "Tokyo", "New York", "Rome", "Berlin", "Madrid", "Moscow", "Beijing", "Sydney",
        "Chicago", "Cairo", "Dubai", "Toronto", "Mumbai", "Istanbul", "Amsterdam", "Vienna", "Los Angeles",
        "Seoul")},
    "sport": {"family": "activities", "answers": _a(
        ("soccer", "football"), "basketball", "tennis", "baseball", "golf", "hockey", "cricket", "rugby",
        "volleyball", "swimming", "boxing", "cycling", "running", "skiing", "wrestling", "badminton", "surfing")},
    "instrument": {"family": "activities", "answers": _a(
        "piano", "guitar", "violin", ("drum", "drums"), "flute", "trumpet", "cello", "saxophone", "clarinet", "harp",
        "ukulele", "trombone", "banjo", "harmonica", "organ")},
}


def _category(category: str) -> dict:
    if category not in NAME_LISTS:
        raise ValueError(f"category must be one of {sorted(NAME_LISTS)}, got {category!r}")
    return NAME_LISTS[category]


def _answers(category: str) -> list[str]:
    """The category's canonical answers in alphabetical order (the reward's rank order)."""
    return sorted((a[0] for a in _category(category)["answers"]), key=str.lower)


def name_reward(category: str, answer: str) -> float:
    """The reward of a valid ``answer`` (canonical spelling) to "Name a ``category``": ``1 - 0.2 * rank / (n - 1)``
    where ``rank`` is its position among the category's ``n`` answers in alphabetical order (1.0 for the first,
    0.8 for the last, evenly spaced; every invalid answer scores 0). Like :class:`marabook.lm.NameTask`'s rule, it
    is unrelated to what the reference prefers, so small reward gaps meet a reference bias (chapter 3)."""
    answers = _answers(category)
    if answer not in answers:
        raise ValueError(f"answer {answer!r} is not a canonical answer of {category!r}")
    return 1.0 - 0.2 * answers.index(answer) / (len(answers) - 1)


def format_prompt(tokenizer, category: str, fmt: dict) -> str:
    """The chat prompt for ``category`` under a format dict ``{"system", "user", "prefix"}`` (and ``"articles"``,
    read by :class:`ChatNameTask`: accept an article before the answer) whose ``user`` and ``prefix`` may contain
    ``{a}`` (the article, "a"/"an") and ``{cat}`` (the category); :func:`marabook.lm.chat_prompt`."""
    from marabook.lm.tasks import chat_prompt

    _category(category)
    if not isinstance(fmt, dict) or not isinstance(fmt.get("user"), str):
        raise ValueError(f"fmt must be a dict with a 'user' template, got {fmt!r}")
    unknown = set(fmt) - {"system", "user", "prefix", "name", "articles"}
    if unknown:
        raise ValueError(f"fmt has unknown keys {sorted(unknown)}")
    words = {"a": "an" if category[0] in "aeiou" else "a", "cat": category}
    return chat_prompt(tokenizer, fmt["user"].format(**words), fmt.get("system"),
                       fmt.get("prefix", "").format(**words))


def answer_forms(category: str, leading_space: bool = False, articles: bool = False) -> dict:
    """``{canonical answer: (accepted strings)}``: every spelling lower-case and capitalised, each with and without
    a full stop, with a leading space when the assistant's turn was started by a prefix ending in a word; with
    ``articles``, also the lower-case spelling after its indefinite article ("a"/"an") and after "the", with and
    without a full stop (" a pear.", " the lion"), except for proper nouns (spelled with a capital)."""
    out = {}
    lead = " " if leading_space else ""
    for spellings in _category(category)["answers"]:
        forms = []
        for s in spellings:
            words = [s.lower(), s[0].upper() + s[1:]]
            if articles and not s[0].isupper():
                words += [("an " if s[0] in "aeiou" else "a ") + s, "the " + s]
            for w in words:
                for f in (lead + w, lead + w + "."):
                    if f not in forms:
                        forms.append(f)
        out[spellings[0]] = tuple(forms)
    return out


_ARTICLES = ("a ", "an ", "the ")


def read_answer(category: str, completion: str) -> str | None:
    """The canonical answer a reader sees in ``completion`` (lower-cased, surrounding whitespace and punctuation
    removed, one leading article and a plural "s"/"es" dropped), accepted by the reward or not; None if none."""
    if not isinstance(completion, str):
        raise ValueError(f"completion must be a string, got {type(completion).__name__}")
    lookup = {s.lower(): a[0] for a in _category(category)["answers"] for s in a}
    t = " ".join(completion.lower().strip().strip(string.punctuation + " ").split())
    for art in _ARTICLES:
        if t.startswith(art):
            t = t[len(art):]
            break
    for cand in (t, t[:-1] if t.endswith("s") else None, t[:-2] if t.endswith("es") else None):
        if cand and cand in lookup:
            return lookup[cand]
    return None


class ChatNameTask:
    """"Name a ...": one prompt per category (:func:`format_prompt`), rewarded by :func:`name_reward`.

    A completion earns ``name_reward(category, answer)`` when it is exactly one of the answer's accepted strings
    (:func:`answer_forms`) *ended by EOS*, checked on the token ids the trainer passes (``completion_ids``: the
    ids before the final EOS must be the tokenizer's ids of an accepted string; a completion cut at
    ``max_new_tokens`` is longer than every accepted string as long as the run's ``max_new_tokens >=
    self.max_new_tokens``); without ids the text decides. Anything else earns 0. So the exact probabilities of
    :meth:`exact_probs` give exactly the valid mass and the expected reward. ``metrics``: ``valid``,
    ``distinct_valid`` (distinct valid answers per prompt, averaged) and ``top_share`` (the likeliest valid
    answer's share of the valid ones, per prompt, averaged over prompts with a valid answer)."""

    def __init__(self, tokenizer, categories: Sequence[str], fmt: dict):
        if isinstance(categories, str) or len(categories) == 0 or len(set(categories)) != len(categories):
            raise ValueError(f"categories must be a non-empty list of distinct categories, got {categories!r}")
        if tokenizer is None or getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("tokenizer must be given and define eos_token_id")
        self.tokenizer, self.categories, self.format = tokenizer, list(categories), dict(fmt)
        self.prompts = [format_prompt(tokenizer, c, fmt) for c in self.categories]
        lead = bool(fmt.get("prefix")) and not fmt["prefix"].endswith(" ")
        self.accepted = {c: answer_forms(c, lead, bool(fmt.get("articles"))) for c in self.categories}
        self._category_of = dict(zip(self.prompts, self.categories))
        self._text = {c: {s: a for a, forms in self.accepted[c].items() for s in forms} for c in self.categories}
        self._ids = {c: {tuple(tokenizer(s, add_special_tokens=False)["input_ids"]): a
                         for s, a in self._text[c].items()}
                     for c in self.categories}
        #: the fewest new tokens a run needs (the longest accepted string's tokens plus EOS)
        self.max_new_tokens = max(len(i) for c in self.categories for i in self._ids[c]) + 1

    def category(self, prompt: str) -> str:
        if prompt not in self._category_of:
            raise ValueError(f"prompt {prompt!r} is not one of this task's prompts")
        return self._category_of[prompt]

    def answers(self, prompts: Sequence[str], completions: Sequence[str], completion_ids=None) -> list:
        """The canonical answer each completion is accepted as (None: not accepted)."""
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        cats = [self.category(p) for p in prompts]
        if completion_ids is None:
            return [self._text[c].get(t) for c, t in zip(cats, completions)]
        if len(completion_ids) != len(completions):
            raise ValueError(f"completion_ids must hold one id list per completion, got {len(completion_ids)} "
                             f"for {len(completions)}")
        return [self._ids[c].get(tuple(int(t) for t in ids)) for c, ids in zip(cats, completion_ids)]

    def reward(self, prompts: Sequence[str], completions: Sequence[str], completion_ids=None) -> list[float]:
        return [0.0 if a is None else name_reward(self.category(p), a)
                for p, a in zip(prompts, self.answers(prompts, completions, completion_ids))]

    def metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict:
        answers = self.answers(prompts, completions)
        by: dict = {}
        for p, a in zip(prompts, answers):
            by.setdefault(p, []).append(a)
        distinct, top = [], []
        for got in by.values():
            valid = [a for a in got if a is not None]
            distinct.append(len(set(valid)))
            if valid:
                top.append(max(valid.count(a) for a in set(valid)) / len(valid))
        return {"valid": float(np.mean([a is not None for a in answers])) if answers else 0.0,
                "distinct_valid": float(np.mean(distinct)) if distinct else 0.0,
                "top_share": float(np.mean(top)) if top else float("nan")}

    def exact_probs(self, model, category: str | None = None) -> dict:
        """``{category: {"answers": {answer: probability}, "strings": {string: probability}, "p_valid",
        "rewards": {answer: reward}, "answer_of": {string: answer}}}``: the teacher-forced probability (eq. 5.1)
        of every accepted string followed by EOS, summed per answer; ``p_valid`` is their total, the exact probability of a reward > 0."""
        import torch

        from marabook.plumbing import pad_sequences
        from marabook.rl import encode_prompts, shared_prompt_logprobs

        cats = self.categories if category is None else [category]
        out = {}
        device = next(model.parameters()).device
        eos = int(self.tokenizer.eos_token_id)
        for c in cats:
            if c not in self.accepted:
                raise ValueError(f"category {c!r} is not one of this task's categories {self.categories}")
            strings = list(self._text[c])
            p_ids, p_mask = encode_prompts(self.tokenizer, [self.prompts[self.categories.index(c)]], device)
            enc = [self.tokenizer(s, add_special_tokens=False)["input_ids"] + [eos] for s in strings]
            c_ids, c_mask = pad_sequences(enc, eos, device=device)
            with torch.no_grad():  # the prompt once, every accepted string from its cache (eq. 5.1)
                lp = shared_prompt_logprobs(model, p_ids, p_mask, torch.zeros(len(enc), dtype=torch.long,
                                                                               device=device), c_ids, c_mask)
            probs = lp.sum(-1).double().exp().cpu().numpy()
            per = dict(zip(strings, (float(p) for p in probs)))
            ans = {a: float(sum(per[s] for s in forms)) for a, forms in self.accepted[c].items()}
            out[c] = {"answers": ans, "strings": per, "p_valid": float(sum(ans.values())),
                      "rewards": {a: name_reward(c, a) for a in ans}, "answer_of": dict(self._text[c])}
        return out


def answer_stats(probs) -> dict:
    """Bias of an answer distribution (probabilities of the acceptable answers, summing to the valid mass):
    ``top_share`` (the likeliest answer's share of the valid mass), ``entropy_bits`` of the normalised
    distribution and ``effective`` = 2^entropy, the effective number of answers (:func:`marabook.metrics.entropy`)."""
    from marabook.metrics import entropy

    p = np.asarray(probs, dtype=float)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be a non-empty 1-D array of non-negative probabilities")
    if p.sum() <= 0:
        return {"top_share": float("nan"), "entropy_bits": 0.0, "effective": 0.0}
    q = p / p.sum()
    h = float(entropy(q, base=2))
    return {"top_share": float(q.max()), "entropy_bits": h, "effective": float(2.0 ** h)}


def exact_state(model, task: ChatNameTask) -> dict:
    """Per category of a :class:`ChatNameTask`: the exact valid mass and :func:`answer_stats` of the answer
    distribution, the expected reward, and every answer's probability (teacher-forced, no sampling)."""
    out = {}
    for c, e in task.exact_probs(model).items():
        p = e["answers"]
        out[c] = {"p_valid": e["p_valid"], "reward": float(sum(p[a] * e["rewards"][a] for a in p)),
                  **answer_stats(list(p.values())), "answers": p}
    return out


# ------------------------------------------------------------------------------ coverage
def coverage_counts(counts, n: int, k: int) -> list[int]:
    """``[N_0, ..., N_A]``: of the C(n, k) subsets of ``k`` among ``n`` samples, how many contain exactly ``j``
    distinct valid answers, where ``counts`` are the sample counts of each valid answer (the other ``n -
    sum(counts)`` samples are invalid). Exact integers, from the generating function
    ``(1 + x)^(n_invalid) * prod_a (1 + y ((1 + x)^(c_a) - 1))`` (coefficient of ``x^k y^j``)."""
    c = [int(x) for x in counts]
    if any(x < 0 or x != v for x, v in zip(c, counts)):
        raise ValueError(f"counts must be non-negative integers, got {counts!r}")
    check_int(n, "n", minimum=1)
    check_int(k, "k", minimum=1)
    if sum(c) > n:
        raise ValueError(f"counts sum to {sum(c)}, more than the n = {n} samples")
    if k > n:
        raise ValueError(f"k must be at most n = {n}, got {k}")
    c = [x for x in c if x > 0]
    poly = [[math.comb(n - sum(c), t) for t in range(k + 1)]]  # poly[j][t]: j distinct answers, t samples chosen
    for ca in c:
        new = [[0] * (k + 1) for _ in range(len(poly) + 1)]
        for j, row in enumerate(poly):
            for t, v in enumerate(row):
                if v == 0:
                    continue
                new[j][t] += v                                  # none of this answer's samples chosen
                for s in range(1, min(ca, k - t) + 1):          # s >= 1 of them: one more distinct answer
                    new[j + 1][t + s] += v * math.comb(ca, s)
        poly = new
    return [row[k] for row in poly]


def coverage_probability(counts, n: int, k: int, m: int) -> float:
    """Unbiased estimate, from ``n`` i.i.d. samples with valid-answer ``counts``, of the probability that ``k``
    samples contain at least ``m`` distinct valid answers: the fraction of the C(n, k) ``k``-subsets of the samples
    that do (:func:`coverage_counts`), as pass@k averages over subsets (Chen et al. 2021). Every ``k``-subset of
    i.i.d. samples is itself ``k`` i.i.d. samples, so the average is unbiased; with ``m = 1`` it is the
    probability of at least one valid answer, ``1 - C(n - V, k) / C(n, k)``."""
    check_int(m, "m", minimum=1)
    per = coverage_counts(counts, n, k)
    return float(sum(per[m:]) / math.comb(n, k)) if m < len(per) else 0.0


def expected_distinct(counts, n: int, k: int) -> float:
    """Unbiased estimate of the expected number of distinct valid answers among ``k`` samples:
    ``sum_a (1 - C(n - c_a, k) / C(n, k))`` over the valid answers' sample counts ``c_a``."""
    coverage_counts(counts, n, 1)  # checks counts and n
    check_int(k, "k", minimum=1)
    if k > n:
        raise ValueError(f"k must be at most n = {n}, got {k}")
    return float(sum(1 - math.comb(n - int(c), k) / math.comb(n, k) for c in counts if c > 0))
