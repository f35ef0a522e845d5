"""Metrics: how spread out a policy is, how far it is from a target, and how diverse its texts are.

Distribution metrics take probability vectors along the LAST axis (leading axes are batch axes)
and return the leading shape. Logarithms are natural unless ``base`` is given (``base=2`` for bits).

Text-diversity metrics (chapter 6) take lists of generated strings: :func:`distinct_n`,
:func:`ead` (expectation-adjusted distinct n-grams), :func:`distinct_answers` and
:func:`mean_pairwise_cosine_distance` (semantic diversity, given sentence embeddings).
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr

from marabook._validate import broadcast_last, check_distribution, check_int

__all__ = ["entropy", "entropy_on", "effective_num_modes", "modes", "count_modes", "kl_divergence", "total_variation", "mass_on",
           "ngrams", "distinct_n", "ead", "distinct_answers", "normalize_answer", "mean_pairwise_cosine_distance",
           "bootstrap_se"]


def _log_base(base) -> float:
    if base is None:
        return 1.0
    try:
        value = float(base)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"base must be a positive number other than 1, got {base!r}") from exc
    if not np.isfinite(value) or value <= 0 or value == 1:
        raise ValueError(f"base must be a positive number other than 1, got {base!r}")
    return float(np.log(value))


def entropy(p, base=None) -> np.ndarray:
    """Shannon entropy ``H(p) = -sum_y p(y) log p(y)`` with ``0 log 0 = 0``."""
    p = check_distribution(p, "p")
    return entr(p).sum(axis=-1) / _log_base(base)


def effective_num_modes(p) -> np.ndarray:
    """Perplexity ``exp(H(p))``: 1 for a point mass, ``k`` for a uniform over ``k`` outcomes."""
    return np.exp(entropy(p))


def kl_divergence(p, q, base=None) -> np.ndarray:
    """``KL(p || q) = sum_y p(y) log(p(y)/q(y))``; ``inf`` if ``p`` has mass where ``q`` has none."""
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    broadcast_last("p", p, "q", q)
    return rel_entr(p, q).sum(axis=-1) / _log_base(base)


def total_variation(p, q) -> np.ndarray:
    """Total variation distance ``TV(p, q) = 0.5 * sum_y |p(y) - q(y)|``, in [0, 1]."""
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    broadcast_last("p", p, "q", q)
    return 0.5 * np.abs(p - q).sum(axis=-1)


def mass_on(p, mask) -> np.ndarray:
    """Probability mass ``p`` puts on the samples selected by the boolean ``mask``."""
    p = check_distribution(p, "p")
    m = np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"mask must be a boolean array, got dtype {m.dtype}")
    broadcast_last("p", p, "mask", m)
    return np.where(m, p, 0.0).sum(axis=-1)


def modes(p) -> list[dict]:
    """The modes of a distribution over outcomes in a line (tokens 0..V-1, neighbours i-1 and i+1), chapter 3.

    A *mode* is a local maximum: an outcome, or a run of adjacent outcomes of equal probability (a plateau),
    whose neighbours outside it are all strictly less likely. Every other outcome belongs to the mode it
    reaches by repeatedly stepping to its likelier neighbour (steepest ascent; a plateau moves as one, to its
    likeliest strictly higher neighbour, the left one on a tie), its *basin*. Returns one dict per mode,
    left to right: ``{"peak": first index of the top, "top": indices of the top, "mass": total probability
    of its basin}``; the masses sum to 1. Outcomes of probability 0 belong to no mode.
    """
    q = check_distribution(p, "p")
    if q.ndim != 1:
        raise ValueError(f"p must be one distribution (1-D), got shape {q.shape}")
    n = q.size
    runs = []  # maximal runs of equal probability: (start, stop)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and q[j + 1] == q[i]:
            j += 1
        runs.append((i, j + 1))
        i = j + 1
    run_of = np.empty(n, dtype=int)
    for k, (a, b) in enumerate(runs):
        run_of[a:b] = k
    up = np.full(len(runs), -1)  # the run each run steps to, -1 for a top
    for k, (a, b) in enumerate(runs):
        left = q[a - 1] if a > 0 else -np.inf
        right = q[b] if b < n else -np.inf
        best = max(left, right)
        if best > q[a]:
            up[k] = run_of[a - 1] if left >= right else run_of[b]
    top_of = np.arange(len(runs))
    for k in range(len(runs)):
        t = k
        while up[t] >= 0:
            t = up[t]
        top_of[k] = t
    out = []
    for t in sorted(set(top_of.tolist())):
        a, b = runs[t]
        if q[a] == 0:
            continue
        mass = sum(q[x:y].sum() for k, (x, y) in enumerate(runs) if top_of[k] == t)
        out.append({"peak": a, "top": list(range(a, b)), "mass": float(mass)})
    return out


def count_modes(p, min_mass: float = 0.05) -> int:
    """How many modes of ``p`` (:func:`modes`) hold at least ``min_mass`` of probability in their basins.

    The book calls a distribution *multimodal at level* ``min_mass`` when this is at least 2 (chapter 3):
    a second local maximum that holds almost nothing is not a second mode a sampler will ever see.
    """
    m = float(min_mass)
    if not 0 < m <= 0.5:
        raise ValueError(f"min_mass must be in (0, 0.5], got {min_mass!r}")
    return sum(mode["mass"] >= m for mode in modes(p))


def entropy_on(p, mask, base=None) -> np.ndarray:
    """Entropy of ``p`` restricted to ``mask`` and renormalised there (e.g. over the good samples).

    ``log(k)`` (``log_base(k)``) means ``p`` is uniform over the k selected samples; NaN where
    ``p`` puts no mass on the mask.
    """
    p = check_distribution(p, "p")
    mass = mass_on(p, mask)
    m = np.asarray(mask)
    q = np.where(m, p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = q / mass[..., None]
    h = entr(np.nan_to_num(q)).sum(axis=-1) / _log_base(base)
    return np.where(mass > 0, h, np.nan)


# ------------------------------------------------------------------------------------------
# Text diversity (chapter 6)
# ------------------------------------------------------------------------------------------

def _check_texts(texts) -> list:
    if isinstance(texts, str) or not hasattr(texts, "__len__") or len(texts) == 0:
        raise ValueError("texts must be a non-empty list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must contain only strings")
    return list(texts)


def _check_n(n) -> int:
    check_int(n, "n", minimum=1)
    return int(n)


def _default_tokens(text: str) -> list:
    return text.lower().split()


def ngrams(texts, n: int, tokenize=None) -> list:
    """All n-grams (tuples of tokens) of all ``texts``, in order; tokens from ``tokenize`` (default:
    lower-cased whitespace split). N-grams never cross text boundaries."""
    texts = _check_texts(texts)
    n = _check_n(n)
    tok = tokenize or _default_tokens
    out = []
    for t in texts:
        w = tok(t)
        out.extend(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    return out


def distinct_n(texts, n: int, tokenize=None) -> float:
    """Distinct-n: the number of distinct n-grams divided by the total number of n-grams (0 if none)."""
    g = ngrams(texts, n, tokenize)
    return len(set(g)) / len(g) if g else 0.0


def ead(texts, n: int, vocab_size: int, tokenize=None) -> float:
    """Expectation-adjusted distinct n-grams (EAD) of Liu et al. (2022).

    Distinct-n penalises long outputs: even uniformly random text repeats itself once it is long.
    EAD divides the number of distinct n-grams by the number *expected* when the ``C`` n-grams are
    drawn uniformly from ``vocab_size`` possibilities,

        EAD = #distinct / ( V * (1 - ((V - 1) / V) ** C) ),

    so that it does not shrink with length. As in the paper's implementation, ``V`` is the
    vocabulary size for every n. Returns 0 for texts with no n-grams.
    """
    check_int(vocab_size, "vocab_size", minimum=2)
    g = ngrams(texts, n, tokenize)
    if not g:
        return 0.0
    v, c = float(vocab_size), len(g)
    expected = v * -np.expm1(c * np.log1p(-1.0 / v))  # V (1 - (1 - 1/V)^C), stable for large V
    return float(len(set(g)) / expected)


def normalize_answer(text: str) -> str:
    """The equivalence rule for :func:`distinct_answers`: lower-case, strip surrounding whitespace and
    punctuation, collapse internal whitespace. "Red.", " red" and "RED" are one answer."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {text!r}")
    import string

    return " ".join(text.lower().strip().strip(string.punctuation + " ").split())


def distinct_answers(texts, normalize=None) -> int:
    """Number of distinct answers among ``texts`` after ``normalize`` (default :func:`normalize_answer`).
    Empty answers (after normalisation) are not counted."""
    texts = _check_texts(texts)
    f = normalize or normalize_answer
    return len({a for a in (f(t) for t in texts) if a})


def mean_pairwise_cosine_distance(embeddings) -> float:
    """Semantic diversity: mean of ``1 - cos(e_i, e_j)`` over all pairs ``i < j`` of the rows of
    ``embeddings`` (N, D), N >= 2. Rows need not be normalised; zero rows are rejected."""
    e = np.asarray(embeddings, dtype=float)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError(f"embeddings must have shape (N >= 2, D), got {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("embeddings must be finite")
    norms = np.linalg.norm(e, axis=1)
    if np.any(norms == 0):
        raise ValueError("embeddings must not contain zero rows")
    u = e / norms[:, None]
    sim = u @ u.T
    iu = np.triu_indices(len(u), 1)
    return float(np.mean(1.0 - sim[iu]))


def bootstrap_se(values, n_boot: int = 2000, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of ``values`` (1-D, at least 2 finite numbers): the std of
    the means of ``n_boot`` resamples with replacement, drawn with ``np.random.default_rng(seed)``."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a 1-D array of at least 2 finite numbers, got shape {v.shape}")
    check_int(n_boot, "n_boot", minimum=10)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(int(n_boot), v.size))
    return float(v[idx].mean(axis=1).std(ddof=1))
