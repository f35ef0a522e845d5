"""Chapter 6 on a real instruct model: "Name a ..." on SmolLM2-135M-Instruct, designed before any training.

As for the 1-2 task (:mod:`marabook.experiments.onetwo_real`), the task's *format* is designed for the model first,
from the reference's exact probabilities and samples, by a rule fixed before measuring:

* :data:`FORMATS` (system message, user question, assistant prefix) x the categories of
  :data:`marabook.lm.naming.NAME_LISTS`, listed before measuring; :func:`measure_candidates` measures every pair:
  the exact probability (teacher-forced, eq. 5.1) of each acceptable answer's accepted strings followed by end
  of turn (:class:`marabook.lm.naming.ChatNameTask`), the valid mass, the answers reachable with probability
  >= :data:`MIN_ANSWER_PROB`, the top answer's share, the entropy and effective number of answers; and from
  seeded samples the valid rate, the distinct answers and the distinct *strings* carrying each answer
  (:func:`marabook.lm.naming.read_answer`, accepted or not);
* :func:`select_design` applies the rule stated in its docstring (format, training categories, the held-out
  family for out-of-distribution evaluation); :func:`candidate_table` shows every candidate.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from marabook._validate import check_int, check_number
from marabook.lm.naming import NAME_LISTS, ChatNameTask, read_answer
from marabook.tables import Table

__all__ = ["FORMATS", "CATEGORIES", "HOLDOUT_ORDER", "MIN_VALID", "MIN_ANSWER_PROB", "MIN_REACHABLE",
           "MIN_TOP_SHARE", "MAX_TRAIN", "MAX_OUT", "answer_stats", "measure_candidates", "select_design",
           "candidate_table"]

# ------------------------------------------------------------------------------ candidates (fixed before measuring)
#: The prompt formats tried. ``{a}``/``{cat}``: the article and the category. A prefix ending in a word makes the
#: answer start with a space (" blue."); no prefix: the answer opens the assistant's turn ("Blue.").
FORMATS = (
    {"name": "f0", "system": None, "user": "Name {a} {cat}.", "prefix": ""},
    {"name": "f1", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": ""},
    {"name": "f2", "system": None, "user": "Name {a} {cat}. Answer with one word.", "prefix": ""},
    {"name": "f3", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": "One {cat} is"},
    {"name": "f4", "system": "Answer briefly.", "user": "Name {a} {cat}.", "prefix": "One {cat} is"},
    {"name": "f5", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": "My answer is"},
    {"name": "f6", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": "Here is {a} {cat}:"},
)
#: Every candidate category (:data:`marabook.lm.naming.NAME_LISTS`), in listing order.
CATEGORIES = tuple(NAME_LISTS)
#: The order in which families are tried as the held-out one (animals first, as chapter 6's toy holds them out).
HOLDOUT_ORDER = ("animals", "plants", "places", "activities", "food", "colours")
#: The rule's thresholds (:func:`select_design`).
MIN_VALID = 0.1
MIN_ANSWER_PROB = 1e-3
MIN_REACHABLE = 10
MIN_TOP_SHARE = 0.2
MAX_TRAIN = 3
MAX_OUT = 2
_ROW_KEYS = ("format", "category", "p_valid", "reachable", "top_share", "max_new_tokens")


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


def select_design(rows: Sequence[dict], *, min_valid: float = MIN_VALID, min_answer_prob: float = MIN_ANSWER_PROB,
                  min_reachable: int = MIN_REACHABLE, min_top_share: float = MIN_TOP_SHARE,
                  max_train: int = MAX_TRAIN, max_out: int = MAX_OUT, holdout_order=HOLDOUT_ORDER) -> dict:
    """The study's design, by a rule stated before any candidate was measured.

    (1) A (format, category) pair *qualifies* when under the reference (a) the valid mass (exact probability of
    an accepted answer followed by end of turn: the probability of a reward > 0) is at least ``min_valid`` = 0.1,
    so a group of 8 completions holds a valid answer with probability >= 1 - 0.9^8 = 0.57; (b) at least
    ``min_reachable`` = 10 acceptable answers have exact probability >= ``min_answer_prob`` = 0.001 each (an
    answer the run can still sample: about once in a thousand draws, and a 200-step run draws a category
    hundreds of times; MARA anchors, and the sampled KL acts, only on what is sampled); (c) the top answer holds at
    least ``min_top_share`` = 0.2 of the valid mass, twice the share of a flat distribution over 10 answers (a
    bias, so collapse has room and MARA's flattening can show). (2) The format: the one with the most qualifying
    categories; ties broken by the larger mean valid mass over them, then fewer ``max_new_tokens``, then the first
    listed. (3) The held-out family: the first of ``holdout_order`` with a qualifying category under that format
    that leaves at least two qualifying categories in other families. (4) Training categories: the qualifying
    categories outside the held-out family, the ``max_train`` = 3 with the largest valid mass (ties: listing
    order); out-of-distribution categories: the held-out family's qualifying ones, the ``max_out`` = 2 with the
    largest valid mass. Nothing satisfies the rule: ValueError (design again; never relax silently).

    ``rows``: dicts with ``format`` (name), ``category``, ``p_valid``, ``reachable`` (answers at or above
    ``min_answer_prob``: a count, or the dict ``answers`` of exact answer probabilities instead), ``top_share``
    and ``max_new_tokens`` (:func:`measure_candidates`). Returns ``{"format", "train", "out", "held_out_family",
    "qualifying"}`` (format: its name)."""
    if isinstance(rows, (str, dict)) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise ValueError("rows must be a non-empty list of measured candidates (dicts)")
    if not 0 < check_number(min_valid, "min_valid", positive=True) <= 1:
        raise ValueError(f"min_valid must be in (0, 1], got {min_valid!r}")
    if not 0 < check_number(min_answer_prob, "min_answer_prob", positive=True) < 1:
        raise ValueError(f"min_answer_prob must be in (0, 1), got {min_answer_prob!r}")
    check_int(min_reachable, "min_reachable", minimum=1)
    if not 0 <= check_number(min_top_share, "min_top_share", minimum=0.0) <= 1:
        raise ValueError(f"min_top_share must be in [0, 1], got {min_top_share!r}")
    check_int(max_train, "max_train", minimum=2)
    check_int(max_out, "max_out", minimum=1)
    if isinstance(holdout_order, str) or not holdout_order:
        raise ValueError(f"holdout_order must be a non-empty list of families, got {holdout_order!r}")
    order = {}
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"rows[{i}] must be a dict, got {type(r).__name__}")
        for k in _ROW_KEYS:
            if k not in r and not (k == "reachable" and "answers" in r):
                raise ValueError(f"rows[{i}] has no {k!r}")
        if r["category"] not in NAME_LISTS:
            raise ValueError(f"rows[{i}] has an unknown category {r['category']!r}")
        for k in ("p_valid", "max_new_tokens"):
            check_number(r[k], f"rows[{i}][{k!r}]", minimum=0.0)
        order.setdefault(r["format"], len(order))

    def reachable(r):
        if "answers" in r:
            return sum(p >= min_answer_prob for p in r["answers"].values())
        return r["reachable"]

    def qualifies(r):
        return (r["p_valid"] >= min_valid and reachable(r) >= min_reachable
                and np.isfinite(r["top_share"]) and r["top_share"] >= min_top_share)

    good = {f: [r for r in rows if r["format"] == f and qualifies(r)] for f in order}
    if not any(good.values()):
        raise ValueError("no (format, category) pair qualifies; design new candidates")
    fmt = min(order, key=lambda f: (-len(good[f]), -np.mean([r["p_valid"] for r in good[f]]) if good[f] else 0.0,
                                    max((r["max_new_tokens"] for r in good[f]), default=0), order[f]))
    kept = good[fmt]
    cat_order = {c: i for i, c in enumerate(NAME_LISTS)}
    by_mass = sorted(kept, key=lambda r: (-r["p_valid"], cat_order[r["category"]]))
    for family in holdout_order:
        out = [r["category"] for r in by_mass if NAME_LISTS[r["category"]]["family"] == family]
        train = [r["category"] for r in by_mass if NAME_LISTS[r["category"]]["family"] != family]
        if out and len(train) >= 2:
            return {"format": fmt, "train": train[:max_train], "out": out[:max_out], "held_out_family": family,
                    "qualifying": [r["category"] for r in by_mass]}
    raise ValueError(f"format {fmt!r} has {len(kept)} qualifying categories ({[r['category'] for r in kept]}): no "
                     f"family in holdout_order can be held out leaving two to train on; design new candidates")


def measure_candidates(model, tokenizer, formats: Sequence[dict] = FORMATS, categories: Sequence[str] = CATEGORIES,
                       *, n_samples: int = 64, sample_tokens: int = 8, seed: int = 0) -> list[dict]:
    """Every (format, category) pair measured on ``model`` before any training: one row each with ``format``,
    ``category``, ``family``, ``prompt``, ``max_new_tokens`` (the task's), the exact ``answers`` (probability of
    each acceptable answer, summed over its accepted strings), ``p_valid``, ``reachable`` (answers with probability
    >= :data:`MIN_ANSWER_PROB`), ``top``/``top_share``, ``entropy_bits``, ``effective`` (:func:`answer_stats`), and
    from ``n_samples`` completions of up to ``sample_tokens`` tokens (seeded with ``seed`` per pair): ``valid_rate``
    (accepted by the reward), ``lenient_rate`` (any completion a reader would read as an acceptable answer,
    :func:`~marabook.lm.naming.read_answer`), ``distinct_sampled`` (distinct accepted answers), ``strings`` ({answer:
    distinct strings carrying it}, lenient), and ``samples``."""
    import torch

    from marabook.rl.sequences import completion_token_ids, decode_completions, encode_prompts, sample_completions

    check_int(n_samples, "n_samples", minimum=1)
    check_int(sample_tokens, "sample_tokens", minimum=1)
    check_int(seed, "seed", minimum=0)
    if isinstance(formats, dict) or len(formats) == 0 or isinstance(categories, str) or len(categories) == 0:
        raise ValueError("formats and categories must be non-empty lists")
    rows = []
    for fmt in formats:
        for cat in categories:
            task = ChatNameTask(tokenizer, [cat], fmt)
            exact = task.exact_probs(model)[cat]
            ids, mask = encode_prompts(tokenizer, task.prompts, "cpu")
            gen = torch.Generator().manual_seed(seed)
            comp, cmask = sample_completions(model, ids, mask, max_new_tokens=max(sample_tokens, task.max_new_tokens),
                                             eos_token_id=int(tokenizer.eos_token_id),
                                             pad_token_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id
                                                              is not None else tokenizer.eos_token_id),
                                             generator=gen, num_samples=n_samples)
            texts = decode_completions(tokenizer, comp, cmask)
            accepted = task.answers(task.prompts * n_samples, texts,
                                    completion_token_ids(comp, cmask, tokenizer.eos_token_id))
            lenient = [read_answer(cat, t) for t in texts]
            strings: dict = {}
            for t, a in zip(texts, lenient):
                if a is not None:
                    strings.setdefault(a, set()).add(t)
            answers = exact["answers"]
            top = max(answers, key=answers.get)
            rows.append({"format": fmt.get("name", str(fmt)), "category": cat, "family": NAME_LISTS[cat]["family"],
                         "prompt": task.prompts[0], "max_new_tokens": task.max_new_tokens, "answers": answers,
                         "p_valid": exact["p_valid"],
                         "reachable": int(sum(p >= MIN_ANSWER_PROB for p in answers.values())), "top": top,
                         **answer_stats(list(answers.values())),
                         "valid_rate": float(np.mean([a is not None for a in accepted])),
                         "lenient_rate": float(np.mean([a is not None for a in lenient])),
                         "distinct_sampled": len({a for a in accepted if a is not None}),
                         "strings": {a: len(s) for a, s in strings.items()}, "samples": texts})
    return rows


def candidate_table(rows: Sequence[dict], design: dict | None = None) -> Table:
    """Every measured candidate (:func:`measure_candidates`): format, category, exact valid mass, answers reachable,
    top answer and its share, effective number of answers, sampled valid rate (accepted / read leniently); the
    chosen format's training categories marked ``<- train`` and the held-out ones ``<- out`` (``design`` from
    :func:`select_design`)."""
    if isinstance(rows, (str, dict)) or len(rows) == 0:
        raise ValueError("rows must be a non-empty list of measured candidates")
    cells = []
    for r in rows:
        mark = ""
        if design is not None and r["format"] == design["format"]:
            mark = " <- train" if r["category"] in design["train"] else " <- out" if r["category"] in design["out"] else ""
        cells.append([r["format"], r["category"] + mark, f"{r['p_valid']:.3f}", str(r["reachable"]),
                      f"{r['top']} {r['top_share']:.2f}", f"{r['effective']:.1f}",
                      f"{r['valid_rate']:.2f} / {r['lenient_rate']:.2f}"])
    return Table(["format", "category", "valid (exact)", f"answers >= {MIN_ANSWER_PROB:g}", "top answer (share)",
                  "effective answers", "sampled valid / lenient"], cells,
                 caption='"Name a ..." on SmolLM2-135M-Instruct: candidate formats and categories, measured before '
                         'training')
