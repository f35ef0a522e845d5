"""One statistics helper for every comparison the book draws from stored runs (built on ``scipy.stats``).

A chapter compares a treatment (MARA) with a control (vanilla) in many *cells* (a task, a beta or sigma,
a threshold). Three questions, one function each:

* :func:`two_sample`: is the treatment better in this cell? A one- or two-sided Welch t-test
  (``scipy.stats.ttest_ind``) or Mann-Whitney U test (``scipy.stats.mannwhitneyu``).
* :func:`holm`: which cells survive when the chapter makes many such comparisons at once? Holm's
  step-down adjustment, which controls the family-wise error rate under any dependence between the tests.
* :func:`stratified`: does the treatment move the metric the same way across independent strata (the
  sigmas of a study, the betas of a sweep)? One test over all strata: the van Elteren test (a stratified
  Wilcoxon rank-sum test) or Stouffer's weighted combination of per-stratum Welch p-values
  (``scipy.stats.combine_pvalues``). Strata must be independent runs (not two treatments against one
  shared control).
* :func:`bootstrap_ci`: how large is the effect? A bootstrap confidence interval (``scipy.stats.bootstrap``)
  for a mean, a difference of means or a ratio of means.

:func:`compare_family` puts them together for a table: every cell's means, effect, bootstrap interval,
per-comparison p-value and Holm-adjusted p-value over the family, in one list of dicts. Chapters state the
family (which comparisons are corrected together) next to the table.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from marabook._validate import as_float_array, check_int, check_number

__all__ = ["TestResult", "two_sample", "holm", "stratified", "bootstrap_ci", "compare_family",
           "ALTERNATIVES", "TESTS"]

#: The alternatives every test accepts (the treatment is larger, "greater"; smaller, "less"; or either).
ALTERNATIVES = ("greater", "less", "two-sided")
#: The per-comparison tests of :func:`two_sample`.
TESTS = ("welch", "mannwhitney")
_STRATIFIED = ("van_elteren", "stouffer")
_EFFECTS = ("ratio", "difference")


@dataclass(frozen=True)
class TestResult:
    """A test's outcome: ``statistic`` (t, U or the stratified z), ``pvalue``, the ``test`` and
    ``alternative`` used, and ``n``: the sample sizes (treatment, control), summed over strata."""
    statistic: float
    pvalue: float
    test: str
    alternative: str
    n: tuple

    __test__ = False  # not a pytest test class


def _sample(x, name: str, minimum: int = 2) -> np.ndarray:
    arr = as_float_array(x, name).ravel()
    if arr.size < minimum:
        raise ValueError(f"{name} must hold at least {minimum} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _choice(value, name: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def two_sample(treatment, control, *, alternative: str = "greater", test: str = "welch") -> TestResult:
    """One comparison of two independent samples (e.g. the seeds of two methods in one cell).

    ``test="welch"``: Welch's unequal-variance t-test; ``"mannwhitney"``: the Mann-Whitney U test (exact
    for small samples without ties, scipy's default method choice). ``alternative="greater"`` asks whether
    the treatment is larger. When every value of both samples is the same there is no evidence either
    way and the p-value is 1; a Welch test on two constant but different samples is undefined (NaN)."""
    from scipy import stats as st

    t = _sample(treatment, "treatment")
    c = _sample(control, "control")
    _choice(alternative, "alternative", ALTERNATIVES)
    _choice(test, "test", TESTS)
    both = np.concatenate([t, c])
    tol = 1e-12 * max(1.0, float(np.abs(both).max()))
    if np.ptp(both) <= tol:
        return TestResult(0.0, 1.0, test, alternative, (t.size, c.size))
    if test == "welch" and np.ptp(t) <= tol and np.ptp(c) <= tol:
        # zero variance on both sides: Welch's statistic divides by zero (scipy >= 1.16 returns t = +-inf, p = 0,
        # which would read as certain); no within-group spread means no estimate of the noise, so undefined
        return TestResult(float("nan"), float("nan"), test, alternative, (t.size, c.size))
    with warnings.catch_warnings():  # near-constant samples: scipy warns, the p-value is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "welch":
            r = st.ttest_ind(t, c, equal_var=False, alternative=alternative)
        else:
            r = st.mannwhitneyu(t, c, alternative=alternative)
    return TestResult(float(r.statistic), float(r.pvalue), test, alternative, (t.size, c.size))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    Sort the m p-values, multiply the i-th smallest (i = 0, 1, ...) by m - i, make the sequence
    non-decreasing and cap it at 1. A comparison is rejected at level alpha exactly when its adjusted
    p-value is <= alpha; the chance of any false rejection in the family is then at most alpha."""
    p = as_float_array(pvalues, "pvalues")
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"pvalues must be a non-empty 1-d sequence, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("pvalues must be finite numbers in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


def _van_elteren(strata, alternative):
    """The van Elteren statistic: per stratum the treatment's rank sum (mid-ranks for ties), centred and
    weighted by 1 / (N_i + 1); z = sum of weighted deviations / its standard deviation under H0."""
    from scipy import stats as st

    dev = var = 0.0
    for t, c in strata:
        both = np.concatenate([t, c])
        n_t, n_c, n = t.size, c.size, both.size
        ranks = st.rankdata(both)
        _, counts = np.unique(both, return_counts=True)
        tie = float(np.sum(counts ** 3 - counts)) / (n * (n - 1))
        w = 1.0 / (n + 1)
        dev += w * (ranks[:n_t].sum() - n_t * (n + 1) / 2)
        var += w * w * n_t * n_c / 12.0 * ((n + 1) - tie)
    if var <= 0:
        return 0.0, 1.0
    z = dev / np.sqrt(var)
    p = {"greater": st.norm.sf(z), "less": st.norm.cdf(z), "two-sided": 2 * st.norm.sf(abs(z))}[alternative]
    return float(z), float(min(1.0, p))


def stratified(strata, *, alternative: str = "greater", method: str = "van_elteren") -> TestResult:
    """One test of a consistent shift across independent strata: ``strata`` is a sequence of
    ``(treatment, control)`` sample pairs, e.g. one per sigma of a study.

    ``method="van_elteren"`` (the default): the stratified Wilcoxon rank-sum test, normal approximation;
    with a single stratum it is the Mann-Whitney U test without continuity correction. ``"stouffer"``:
    per-stratum Welch p-values for ``alternative`` combined by Stouffer's method with weights
    sqrt(n_t n_c / (n_t + n_c)) (``scipy.stats.combine_pvalues``); one-sided alternatives only.
    The strata must be independent: two treatments compared with one shared control are not."""
    from scipy import stats as st

    _choice(alternative, "alternative", ALTERNATIVES)
    _choice(method, "method", _STRATIFIED)
    try:
        pairs = [(_sample(t, f"strata[{i}] treatment"), _sample(c, f"strata[{i}] control"))
                 for i, (t, c) in enumerate(strata)]
    except (TypeError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith("strata"):
            raise
        raise ValueError(f"strata must be a sequence of (treatment, control) pairs: {err}") from None
    if not pairs:
        raise ValueError("strata must hold at least one (treatment, control) pair")
    n = (sum(t.size for t, _ in pairs), sum(c.size for _, c in pairs))
    if method == "van_elteren":
        z, p = _van_elteren(pairs, alternative)
        return TestResult(z, p, "van Elteren", alternative, n)
    if alternative == "two-sided":
        raise ValueError("alternative must be 'greater' or 'less' for method='stouffer' (it combines one-sided p-values)")
    ps = np.array([two_sample(t, c, alternative=alternative).pvalue for t, c in pairs])
    if not np.all(np.isfinite(ps)):
        raise ValueError("strata: a stratum's Welch test is undefined (two constant, different samples); "
                         "use method='van_elteren'")
    weights = np.array([np.sqrt(t.size * c.size / (t.size + c.size)) for t, c in pairs])
    ps = np.clip(ps, 1e-300, 1 - 1e-16)  # Stouffer's z is infinite at p = 0 or 1
    r = st.combine_pvalues(ps, method="stouffer", weights=weights)
    return TestResult(float(r.statistic), float(r.pvalue), "Stouffer (Welch)", alternative, n)


def _mean_stat(x, axis=-1):
    return np.mean(x, axis=axis)


def _ratio_stat(x, y, axis=-1):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)


def _diff_stat(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def bootstrap_ci(treatment, control=None, *, effect: str = "ratio", confidence: float = 0.95,
                 n_resamples: int = 9999, seed: int = 0, method: str = "percentile") -> tuple[float, float]:
    """A bootstrap confidence interval (``scipy.stats.bootstrap``): of the mean of ``treatment`` alone, or,
    with a ``control``, of ``effect`` = ``"ratio"`` (mean treatment / mean control) or ``"difference"``
    (mean treatment - mean control), each sample resampled independently. ``method``: scipy's
    ``"percentile"`` (default: defined for the 3-5 seeds of a book table), ``"basic"`` or ``"BCa"``.
    ``seed`` makes the interval reproducible. Returns ``(low, high)``; NaN where resamples make the
    statistic undefined (a ratio whose control mean can be 0)."""
    from scipy import stats as st

    t = _sample(treatment, "treatment")
    samples = (t,) if control is None else (t, _sample(control, "control"))
    if control is not None:
        _choice(effect, "effect", _EFFECTS)
    confidence = check_number(confidence, "confidence", positive=True)
    if not confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    check_int(n_resamples, "n_resamples", minimum=100)
    check_int(seed, "seed", minimum=0)
    _choice(method, "method", ("percentile", "basic", "BCa"))
    if all(np.ptp(s) == 0 for s in samples):  # nothing to resample: the interval is the point
        value = float(_mean_stat(t) if control is None else (_ratio_stat if effect == "ratio" else _diff_stat)(*samples))
        return value, value
    statistic = _mean_stat if control is None else (_ratio_stat if effect == "ratio" else _diff_stat)
    with warnings.catch_warnings():  # a degenerate bootstrap distribution warns; the bounds still say it
        warnings.simplefilter("ignore")
        res = st.bootstrap(samples, statistic, confidence_level=confidence, n_resamples=n_resamples,
                           method=method, vectorized=True, rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return float(low), float(high)


def compare_family(cells, *, alternative: str = "greater", test: str = "welch", effect: str = "ratio",
                   confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> list[dict]:
    """Every comparison of a table at once, Holm-corrected as one family.

    ``cells``: a list of dicts, each with ``"treatment"`` and ``"control"`` samples, optionally its own
    ``"alternative"``; every other key is a label and is copied to the result. Returns one dict per cell
    with the labels and ``n_treatment``, ``n_control``, ``mean_treatment``, ``mean_control``, ``effect``
    (the ratio or difference of means), ``ci_low``/``ci_high`` (:func:`bootstrap_ci`), ``p``
    (:func:`two_sample`), ``p_holm`` (:func:`holm` over the cells whose p is defined), ``family_size``,
    ``test`` and ``alternative``. A cell whose test is undefined gets NaN for ``p`` and ``p_holm``."""
    cells = list(cells)
    if not cells:
        raise ValueError("cells must hold at least one comparison")
    _choice(test, "test", TESTS)
    _choice(effect, "effect", _EFFECTS)
    out = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or "treatment" not in cell or "control" not in cell:
            raise ValueError(f"cells[{i}] must be a dict with 'treatment' and 'control' samples")
        t = _sample(cell["treatment"], f"cells[{i}] treatment")
        c = _sample(cell["control"], f"cells[{i}] control")
        alt = _choice(cell.get("alternative", alternative), f"cells[{i}] alternative", ALTERNATIVES)
        r = two_sample(t, c, alternative=alt, test=test)
        low, high = bootstrap_ci(t, c, effect=effect, confidence=confidence, n_resamples=n_resamples,
                                 seed=seed + i)
        with np.errstate(divide="ignore", invalid="ignore"):
            eff = t.mean() / c.mean() if effect == "ratio" else t.mean() - c.mean()
        labels = {k: v for k, v in cell.items() if k not in ("treatment", "control", "alternative")}
        out.append({**labels, "n_treatment": t.size, "n_control": c.size, "mean_treatment": float(t.mean()),
                    "mean_control": float(c.mean()), "effect": float(eff), "ci_low": low, "ci_high": high,
                    "p": r.pvalue, "test": r.test, "alternative": alt})
    defined = [i for i, r in enumerate(out) if np.isfinite(r["p"])]
    adjusted = holm([out[i]["p"] for i in defined]) if defined else []
    for r in out:
        r["p_holm"], r["family_size"] = float("nan"), len(defined)
    for i, a in zip(defined, adjusted):
        out[i]["p_holm"] = float(a)
    return out
