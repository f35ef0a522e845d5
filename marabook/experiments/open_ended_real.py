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
  family for out-of-distribution evaluation); :func:`candidate_table` shows every candidate;
* the study: :data:`DESIGN`, :data:`METHODS`, :func:`configs`, :func:`run` (exact answer distributions during
  training; the Table-1 columns of :func:`evaluate` at the end), :func:`base` and :func:`study` (resumable with
  ``store=``, on the CPU or a GPU); reading the runs is :mod:`marabook.experiments.open_ended_real_report`.

Design (measured on 100 candidates, 64 samples each): the rule as stated fails; with its one declared deviation
(``min_valid_out``) it picks format f9 ("Here is a color:"), training on "color" (exact valid mass 0.329, top "red"
0.37 of it, 7.4 effective answers) and "country" (0.201, "Egypt" 0.26, 16.6), holding out "animal" (0.077, "cat" 0.36).

Sizing, measured with ``rl.Trainer`` on one torch thread (2 prompts x 8 completions, ``max_new_tokens`` 5, 3.2-4.1
tokens per completion; CPU seconds per step from ``time.process_time``, on a machine at load 7-9 on 2 cores, where
wall time was 2.5-5 times longer): RLOO 5.9-6.2, GRPO 5.2-6.2, entropy bonus 5.2-6.4, MARA forward 8.2-8.6 (it also
samples the reference); MARA reverse and GRPO without std do RLOO's and GRPO's work. Per run besides the steps: about
60 CPU-s (5 exact checkpoints of 6.7 s, the held-out state twice, 64-sample evaluations). Grid: 6 trainers x 5 seeds
x 200 steps = 6,000 steps, about 7,800 CPU-s per seed and 10.8 CPU-hours in all (the base rows: seconds). That is
about 5.4 hours on 2 free cores, so it is a resumable sweep (:func:`study` with ``store=``): seed-major, each 2-hour
sitting on 2 workers finishes about 2 seeds of every trainer; three sittings complete it. As run (three sittings,
2026-12-04/05, two workers on 2 cores): 2.5-4.9 wall seconds per step (MARA forward 4.2-6.0), about 9.5 minutes a run
on a free core and 11 with two workers, about 5 CPU-hours in all: the estimate above, made under a heavier load, was
twice too high. Algorithm 2's forward form
runs in :class:`marabook.rl.Trainer` now but is not in this grid (:data:`PENDING_METHODS`); it adds about 1,700
CPU-s per seed.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Sequence

import numpy as np

from marabook._validate import check_int, check_number
from marabook.experiments.sweep import local_pool, run_sweep
from marabook.lm.naming import NAME_LISTS, ChatNameTask, answer_stats, exact_state, read_answer
from marabook.plumbing import device_name
from marabook.rl import RLConfig, Trainer
from marabook.tables import Table

__all__ = ["FORMATS", "CATEGORIES", "HOLDOUT_ORDER", "MIN_VALID", "MIN_ANSWER_PROB", "MIN_REACHABLE",
           "MIN_TOP_SHARE", "MAX_TRAIN", "MAX_OUT", "MIN_VALID_OUT", "measure_candidates", "select_design",
           "candidate_table", "DESIGN", "METHODS", "PENDING_METHODS", "COVERAGE_K", "COVERAGE_M", "configs", "tasks",
           "evaluate", "run", "base", "study"]

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
    # round 2, added after round 1 (f0-f6) let only "color" qualify (under f3-f4 the model often names an animal or a
    # fruit with an article, " a pear."): the same prefixed formats, the reward also accepting an article
    {"name": "f7", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": "One {cat} is",
     "articles": True},
    {"name": "f8", "system": "Answer briefly.", "user": "Name {a} {cat}.", "prefix": "One {cat} is", "articles": True},
    {"name": "f9", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": "Here is {a} {cat}:",
     "articles": True},
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
#: The valid mass a *held-out* category needs in the design used (:data:`DESIGN`): set after both rounds failed the
#: rule as stated (``min_valid_out=None``: the same 0.1 as training), see :func:`select_design`.
MIN_VALID_OUT = 0.05
_ROW_KEYS = ("format", "category", "p_valid", "reachable", "top_share", "max_new_tokens")


def select_design(rows: Sequence[dict], *, min_valid: float = MIN_VALID, min_answer_prob: float = MIN_ANSWER_PROB,
                  min_reachable: int = MIN_REACHABLE, min_top_share: float = MIN_TOP_SHARE,
                  max_train: int = MAX_TRAIN, max_out: int = MAX_OUT, holdout_order=HOLDOUT_ORDER,
                  min_valid_out: float | None = None) -> dict:
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

    Measured (:data:`FORMATS` x 10 categories, 64 samples each): the rule as stated fails in both rounds: the best
    formats ("Here is a color:", f6/f9) qualify only "color" (valid 0.329) and "country" (0.201); no held-out family
    is left. ``min_valid_out`` (default None: the rule as stated) is the one deviation, chosen after seeing that
    failure and used for :data:`DESIGN` (``MIN_VALID_OUT`` = 0.05): a held-out category is never trained on, so
    it needs no training signal, only enough valid answers to score (64 samples x 0.05 = 3 expected); (b) and (c)
    still apply to it. With it, step (2) takes, in the same order, the first format for which steps (3)-(4) find a
    design (f9: train "color" and "country", hold out "animal", valid 0.077, 13 answers reachable, top "cat" 0.36).

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

    if min_valid_out is not None and not 0 < check_number(min_valid_out, "min_valid_out", positive=True) <= min_valid:
        raise ValueError(f"min_valid_out must be in (0, min_valid], got {min_valid_out!r}")
    good = {f: [r for r in rows if r["format"] == f and qualifies(r)] for f in order}
    if not any(good.values()):
        raise ValueError("no (format, category) pair qualifies; design new candidates")
    ranked = sorted(order, key=lambda f: (-len(good[f]), -np.mean([r["p_valid"] for r in good[f]]) if good[f] else 0.0,
                                          max((r["max_new_tokens"] for r in good[f]), default=0), order[f]))
    cat_order = {c: i for i, c in enumerate(NAME_LISTS)}
    for fmt in ranked if min_valid_out is not None else ranked[:1]:
        by_mass = sorted(good[fmt], key=lambda r: (-r["p_valid"], cat_order[r["category"]]))
        outs = by_mass if min_valid_out is None else sorted(
            [r for r in rows if r["format"] == fmt and (qualifies(r) or (
                r["p_valid"] >= min_valid_out and qualifies({**r, "p_valid": min_valid})))],
            key=lambda r: (-r["p_valid"], cat_order[r["category"]]))
        for family in holdout_order:
            out = [r["category"] for r in outs if NAME_LISTS[r["category"]]["family"] == family]
            train = [r["category"] for r in by_mass if NAME_LISTS[r["category"]]["family"] != family]
            if out and len(train) >= 2:
                return {"format": fmt, "train": train[:max_train], "out": out[:max_out], "held_out_family": family,
                        "qualifying": [r["category"] for r in by_mass]}
    kept = good[ranked[0]]
    raise ValueError(f"format {ranked[0]!r} has {len(kept)} qualifying categories ({[r['category'] for r in kept]}): "
                     f"no family in holdout_order can be held out leaving two to train on; design new candidates")


def measure_candidates(model, tokenizer, formats: Sequence[dict] = FORMATS, categories: Sequence[str] = CATEGORIES,
                       *, n_samples: int = 64, sample_tokens: int = 8, seed: int = 0) -> list[dict]:
    """Every (format, category) pair measured on ``model`` before any training: one row each with ``format``,
    ``category``, ``family``, ``prompt``, ``max_new_tokens`` (the task's), the exact ``answers`` (probability of
    each acceptable answer, summed over its accepted strings), ``p_valid``, ``reachable`` (answers with probability
    >= :data:`MIN_ANSWER_PROB`), ``top``/``top_share``, ``entropy_bits``, ``effective``
    (:func:`~marabook.lm.naming.answer_stats`), and from ``n_samples`` completions of up to ``sample_tokens`` tokens
    (seeded with ``seed`` per pair): ``valid_rate`` (accepted by the reward), ``lenient_rate`` (any completion a
    reader would read as an acceptable answer, :func:`~marabook.lm.naming.read_answer`), ``distinct_sampled``
    (distinct accepted answers), ``strings`` ({answer: distinct strings carrying it}, lenient), and ``samples``."""
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
            mark = (" <- train" if r["category"] in design["train"]
                    else " <- out" if r["category"] in design["out"] else "")
        cells.append([r["format"], r["category"] + mark, f"{r['p_valid']:.3f}", str(r["reachable"]),
                      f"{r['top']} {r['top_share']:.2f}", f"{r['effective']:.1f}",
                      f"{r['valid_rate']:.2f} / {r['lenient_rate']:.2f}"])
    return Table(["format", "category", "valid (exact)", f"answers >= {MIN_ANSWER_PROB:g}", "top answer (share)",
                  "effective answers", "sampled valid / lenient"], cells,
                 caption='"Name a ..." on SmolLM2-135M-Instruct: candidate formats and categories, measured before '
                         'training')


# ------------------------------------------------------------------------------ the study
#: The chosen design (:func:`select_design` with ``min_valid_out=MIN_VALID_OUT`` on :func:`measure_candidates`' rows:
#: format f9, "Here is a color:", train on "color" and "country", hold out "animal") and training settings (reasons
#: in :func:`configs`).
DESIGN = {"format": FORMATS[9], "train": ("color", "country"), "out": ("animal",), "held_out_family": "animals",
          "max_new_tokens": 5, "group_size": 8, "prompts_per_step": 2, "lr": 3e-6, "beta": 0.05, "tau": 0.9,
          "max_grad_norm": 1.0, "steps": 200, "eval_every": 50, "n_eval": 64}
#: The trainers compared (RLConfig overrides by name), as chapter 6's
#: :data:`marabook.experiments.open_ended.OPEN_ENDED_METHODS` plus the ablation of GRPO's std scaling ("GRPO no std":
#: the same k3-in-loss KL, the group mean subtracted, no division by the std). ``"tau"``/``"eta"`` are filled from
#: :data:`DESIGN`.
METHODS = {
    "RLOO": dict(kl="reverse", advantage="rloo"),
    "GRPO": dict(kl="reverse", kl_estimator="k3_loss", advantage="grpo"),
    "GRPO no std": dict(kl="reverse", kl_estimator="k3_loss", advantage="dr_grpo"),
    "entropy": dict(kl="reverse", advantage="rloo", entropy_coef="eta"),
    "MARA-rev": dict(kl="reverse", advantage="rloo", mara_tau="tau"),
    "MARA-fwd": dict(kl="forward", advantage="rloo", mara_tau="tau"),
}
#: Methods the issue asks for that this study's grid does not hold, and why.
PENDING_METHODS = {"MARA-fwd alg2": "Algorithm 2's forward form (eq. 4.3) now runs in marabook.rl.Trainer "
                                    "(RLConfig(kl='forward', mara_form='alg2')), but this study's grid and store were "
                                    "fixed before it did: its 5 runs need a store of their own"}
#: The coverage column is the probability that COVERAGE_K samples hold at least COVERAGE_M distinct valid answers.
COVERAGE_K = 16
#: See :data:`COVERAGE_K`.
COVERAGE_M = 5


def configs(seeds=range(5), methods=None, *, steps: int | None = None, **overrides) -> list[tuple]:
    """The study's grid, ``[(method, RLConfig), ...]``, seed-major (every method of seed 0, then seed 1, ...: a
    study stopped part-way and resumed later, :func:`study` with ``store=``, always holds paired comparisons).

    Settings (:data:`DESIGN`, overridable): 2 prompts (categories drawn with replacement) x 8 completions per step
    with the KL coefficient beta and Adam at lr 3e-6 with gradient-norm clipping 1 (the 1-2 study's step size on the
    same model), ``max_new_tokens`` the format's need, 200 steps; MARA's threshold tau = 0.9 (the top half of the
    reward range 0.8-1.0, as chapter 6's toy); the entropy bonus's eta = beta."""
    seeds = list(seeds)
    methods = list(METHODS) if methods is None else list(methods)
    if not seeds:
        raise ValueError("seeds must be non-empty")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods must be drawn from {list(METHODS)}, got {m!r}"
                             + (f" ({PENDING_METHODS[m]})" if m in PENDING_METHODS else ""))
    common = dict(beta=DESIGN["beta"], lr=DESIGN["lr"], max_grad_norm=DESIGN["max_grad_norm"],
                  max_new_tokens=DESIGN["max_new_tokens"], group_size=DESIGN["group_size"],
                  prompts_per_step=DESIGN["prompts_per_step"], steps=DESIGN["steps"] if steps is None else steps)
    common.update(overrides)
    fill = {"tau": DESIGN["tau"], "eta": common["beta"]}
    return [(m, RLConfig(**common, seed=int(s), **{k: fill.get(v, v) if isinstance(v, str) and v in fill else v
                                                   for k, v in METHODS[m].items()}))
            for s in seeds for m in methods]


def tasks(tokenizer, design: dict | None = None) -> tuple:
    """``(train_task, {"in": task, "out": task})`` of a design (default :data:`DESIGN`):
    :class:`~marabook.lm.naming.ChatNameTask` over its training and held-out categories."""
    d = DESIGN if design is None else design
    train = ChatNameTask(tokenizer, list(d["train"]), d["format"])
    return train, {"in": train, "out": ChatNameTask(tokenizer, list(d["out"]), d["format"])}


def evaluate(model, tokenizer, task, *, n: int | None = None, seed: int = 10_000, embedder=None,
             max_new_tokens: int | None = None) -> dict:
    """Sample ``n`` completions per prompt and score them as the paper's Table 1 (plus coverage), per category and
    averaged over categories: mean ``reward``, ``valid`` rate, ``distinct`` valid answers among the ``n``, EAD-1 of
    the completions (:func:`marabook.metrics.ead`, the model's tokens, V = its vocabulary), ``semantic`` diversity
    (:func:`marabook.metrics.mean_pairwise_cosine_distance` of ``embedder``'s embeddings, when given),
    ``coverage`` (:func:`~marabook.lm.naming.coverage_probability` of :data:`COVERAGE_M` distinct valid answers in
    :data:`COVERAGE_K` samples) and ``expected_distinct`` (in :data:`COVERAGE_K`); the completions as ``samples``
    and per category as ``samples_by_category`` (a run keeps the latter, so that ``semantic`` can be added later
    where the encoder is: :func:`marabook.experiments.open_ended_real_report.add_semantic`). Acceptance is checked
    on the token ids, as in training."""
    import torch

    from marabook import metrics as M
    from marabook.lm.naming import coverage_probability, expected_distinct
    from marabook.rl.sequences import completion_token_ids, decode_completions, encode_prompts, sample_completions

    n = DESIGN["n_eval"] if n is None else n
    check_int(n, "n", minimum=COVERAGE_K)
    mnt = task.max_new_tokens if max_new_tokens is None else check_int(max_new_tokens, "max_new_tokens")
    device = next(model.parameters()).device
    ids, mask = encode_prompts(tokenizer, task.prompts, device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    comp, cmask = sample_completions(model, ids, mask, max_new_tokens=mnt, eos_token_id=int(tokenizer.eos_token_id),
                                     pad_token_id=int(pad), generator=gen, num_samples=n)
    texts = decode_completions(tokenizer, comp, cmask)
    cids = completion_token_ids(comp, cmask, tokenizer.eos_token_id)
    tok = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    per = {}
    for i, (p, c) in enumerate(zip(task.prompts, task.categories)):
        sl = slice(i * n, (i + 1) * n)
        got = task.answers([p] * n, texts[sl], cids[sl])
        valid = [a for a in got if a is not None]
        counts = [valid.count(a) for a in set(valid)]
        row = {"reward": float(np.mean(task.reward([p] * n, texts[sl], cids[sl]))), "valid": len(valid) / n,
               "distinct": float(len(counts)), "ead1": M.ead(texts[sl], 1, vocab_size=len(tokenizer), tokenize=tok),
               "coverage": coverage_probability(counts, n, COVERAGE_K, COVERAGE_M),
               "expected_distinct": expected_distinct(counts, n, COVERAGE_K)}
        if embedder is not None:
            row["semantic"] = M.mean_pairwise_cosine_distance(embedder([t.strip() or "(empty)" for t in texts[sl]]))
        per[c] = row
    out = {k: float(np.mean([r[k] for r in per.values()])) for k in next(iter(per.values()))}
    by_cat = {c: texts[i * n:(i + 1) * n] for i, c in enumerate(task.categories)}
    return {**out, "categories": per, "samples": texts, "samples_by_category": by_cat}


_HISTORY_KEYS = ("step", "reward", "shaped_reward", "kl", "valid", "distinct_valid", "top_share", "grad_norm",
                 "seconds")


def run(method: str, config: RLConfig, model=None, tokenizer=None, *, design: dict | None = None,
        eval_every: int | None = None, n_eval: int | None = None, embedder=None, device="cpu",
        progress: bool = False) -> dict:
    """Train one ``config`` (method name ``method``) from a copy of the reference (``model``, default
    :func:`marabook.lm.load_smollm2` on the CPU; not modified) on the design's training categories, with the exact
    answer distribution of every training category (:func:`~marabook.lm.naming.exact_state`) at step 0 and every
    ``eval_every`` steps, and the held-out ones at the start and the end; then :func:`evaluate` in and out of
    distribution (``n_eval`` samples per prompt, seed 10,000 + the run's seed). Returns ``{"method", "config",
    "trajectory", "exact_out", "history", "eval", "seconds_per_step", "device"}``."""
    from marabook.lm import load_smollm2

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not isinstance(config, RLConfig):
        raise ValueError(f"config must be an RLConfig, got {type(config).__name__}")
    eval_every = DESIGN["eval_every"] if eval_every is None else check_int(eval_every, "eval_every")
    if model is None or tokenizer is None:
        model, tokenizer = load_smollm2(device=device)
    train, evals = tasks(tokenizer, design)
    trainer = Trainer.from_reference(model, tokenizer, train, config, device=device, progress=progress,
                                     min_new_tokens=max(train.max_new_tokens, evals["out"].max_new_tokens))
    trajectory = [{"step": 0, "state": exact_state(trainer.policy, train)}]
    exact_out = {"start": exact_state(trainer.policy, evals["out"])}
    for stop in [*range(eval_every, config.steps, eval_every), config.steps]:
        trainer.train(until=stop)
        trajectory.append({"step": trainer.step, "state": exact_state(trainer.policy, train)})
    exact_out["end"] = exact_state(trainer.policy, evals["out"])
    ev = {k: {m: v for m, v in evaluate(trainer.policy, tokenizer, t, n=n_eval, seed=10_000 + config.seed,
                                         embedder=embedder, max_new_tokens=config.max_new_tokens).items()
              if m != "samples"} for k, t in evals.items()}
    device = next(trainer.policy.parameters()).device
    return {"method": method, "config": asdict(config), "trajectory": trajectory, "exact_out": exact_out,
            "history": [{k: h[k] for k in _HISTORY_KEYS if k in h} for h in trainer.history], "eval": ev,
            "seconds_per_step": float(np.mean([h["seconds"] for h in trainer.history])),
            "device": device_name(device)}


def base(model, tokenizer, seeds=range(5), *, design: dict | None = None, n_eval: int | None = None,
         embedder=None) -> list[dict]:
    """The untrained reference evaluated like a trained run (:func:`evaluate`, in and out, with the eval seed of
    each run seed), one row per seed: the base model's row carries the same sampling noise as the others."""
    _, evals = tasks(tokenizer, design)
    mnt = (DESIGN if design is None else design).get("max_new_tokens")
    return [{"method": "base", "config": {"seed": int(s)},
             "eval": {k: {m: v for m, v in evaluate(model, tokenizer, t, n=n_eval, seed=10_000 + int(s),
                                                     embedder=embedder, max_new_tokens=mnt).items() if m != "samples"}
                      for k, t in evals.items()}} for s in seeds]


_LOADED: dict = {}


def _job(args, device: str = "cpu"):
    """One study run in a worker process: SmolLM2 and the sentence encoder loaded once per process, SmolLM2 on
    ``device`` (not part of the job: a store filled on a CPU resumes on a GPU; each run records where it ran)."""
    method, config = args
    if "smollm2" not in _LOADED:
        from marabook.lm import load_sentence_embedder, load_smollm2

        _LOADED["smollm2"] = load_smollm2(device=device)
        try:
            _LOADED["embedder"] = load_sentence_embedder()
        except ValueError:  # the offline MiniLM package is missing: no semantic column
            _LOADED["embedder"] = None
    model, tok = _LOADED["smollm2"]
    return run(method, config, model, tok, embedder=_LOADED["embedder"], device=device)


def study(store=None, workers: int = 1, grid: Sequence[tuple] | None = None, *, model=None, tokenizer=None,
          design: dict | None = None, eval_every: int | None = None, n_eval: int | None = None, embedder=None,
          progress: bool = True, device: str = "cpu"):
    """:func:`run` for every ``(method, config)`` of ``grid`` (default :func:`configs`) through
    :func:`~marabook.experiments.sweep.run_sweep`: ``workers`` spawned processes with one torch thread each, each
    loading SmolLM2 and MiniLM once; ``store=<dir>`` saves every finished run as it arrives and a restart skips it
    (resumable in parts). A run that raises leaves a :class:`~marabook.experiments.sweep.JobFailure` (counted by
    :func:`~marabook.experiments.open_ended_real_report.summarize`). ``model``/``tokenizer`` (and ``design``,
    ``eval_every``, ``n_eval``, ``embedder``): run in this process on that model instead (e.g. the tiny reference LM in the tests; ``workers`` must be 1). ``device``:
    where the workers train ("cuda": all share the one GPU; without the offline MiniLM there, ``semantic`` is added
    afterwards from the stored samples, :func:`~marabook.experiments.open_ended_real_report.add_semantic`)."""
    grid = configs() if grid is None else list(grid)
    if not grid or not all(isinstance(g, tuple) and len(g) == 2 and isinstance(g[1], RLConfig) for g in grid):
        raise ValueError("grid must be a non-empty list of (method, RLConfig) pairs")
    check_int(workers, "workers", minimum=1)
    if model is not None:
        if workers != 1:
            raise ValueError("workers must be 1 when a model is passed (it runs in this process)")
        return run_sweep(lambda job: run(job[0], job[1], model, tokenizer, design=design, eval_every=eval_every,
                                         n_eval=n_eval, embedder=embedder), grid, store=store,
                         desc="naming runs", progress=progress)
    pool = local_pool(workers)
    try:
        return run_sweep(partial(_job, device=device), grid, executor=pool, store=store,
                         desc="naming runs (SmolLM2)", progress=progress)
    finally:
        pool.shutdown()
