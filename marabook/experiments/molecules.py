"""Chapter 8's experiment: REINVENT, MARA at two thresholds and the diversity filter, on three tasks.

Verbs: ``METHODS`` and :func:`method_config` (the methods as :class:`~marabook.chem.ReinventConfig`),
:func:`run` (one task x method x seed to the oracle budget, summarised), :func:`sweep` (the grid through
:func:`marabook.experiments.sweep.run_sweep`), :func:`compare_methods` (Table-2-style rows with one-sided
Welch tests), :func:`format_comparison` and :func:`mode_table`; for the stored sigma study :func:`study_rows`
(bootstrap intervals, Holm), :func:`pooled_rows` (one stratified test over the sigmas) and
:func:`mode_shift_rows`, all through :mod:`marabook.stats`.
``python -m marabook.experiments.molecules`` stores the full-budget grid (``scripts/run_reinvent.py``).
"""

from __future__ import annotations

import numpy as np

from marabook.chem.metrics import discovery_curve, summarize_run
from marabook.chem.oracles import (MOSES_MODE_REFERENCES, REFERENCE_DRUGS, Oracle, assign_modes, multi_mode_task,
                                   product_task, unequal_modes_task)
from marabook.chem.prior import SmilesGRU, load_prior
from marabook.chem.reinvent import REINVENT_LR, REINVENT_SIGMA, ReinventConfig, ReinventTrainer
from marabook._validate import check_int
from marabook import stats
from marabook.experiments.sweep import run_sweep, split_failures
from marabook.tables import Table

__all__ = ["METHODS", "TASKS", "TASK_MODES", "SIGMAS", "method_config", "sigma_study", "anchor_report", "study_rows",
           "format_study", "pooled_rows", "format_pooled", "mode_shift_rows", "coverage_rows", "run", "sweep", "compare_methods", "format_comparison", "mode_table",
           "mode_hits_table", "coverage_table", "anchor_table"]

#: The tasks of chapter 8 by name: a fresh counted oracle for a budget.
TASKS = {"product": product_task, "multi_mode": multi_mode_task, "unequal_modes": unequal_modes_task}
#: The reference molecules whose nearest neighbour names each hit's mode, for the tasks that have modes.
TASK_MODES = {"multi_mode": REFERENCE_DRUGS, "unequal_modes": MOSES_MODE_REFERENCES}

METHODS = ("REINVENT", "MARA 0.80", "MARA 0.85", "REINVENT+DF")
#: The sigmas of chapter 8's stored study (beta = 1/sigma = 0.016, 0.008, 0.004).
SIGMAS = (64.0, 128.0, 256.0)


def method_config(method: str, **overrides) -> ReinventConfig:
    """The config of a method by name, with shared ``overrides``: ``"REINVENT"``, ``"REINVENT+DF"`` (the
    diversity filter) or ``"MARA <tau>"`` with any threshold REINVENT accepts (``"MARA 0.9"``, ``"MARA p95"``);
    ``METHODS`` are chapter 8's four."""
    if not isinstance(method, str):
        raise ValueError(f"method must be a string such as 'MARA 0.85', got {method!r}")
    if method == "REINVENT":
        extra = {}
    elif method == "REINVENT+DF":
        extra = {"diversity_filter": True}
    elif method.startswith("MARA "):
        tau = method[5:].strip()
        try:
            extra = {"mara_tau": tau if tau.startswith("p") else float(tau)}
        except ValueError:
            raise ValueError(f"method: cannot read a threshold from {method!r} (try 'MARA 0.85' or 'MARA p90')") from None
    else:
        raise ValueError(f"method must be 'REINVENT', 'REINVENT+DF' or 'MARA <tau>', got {method!r}")
    return ReinventConfig(**{**overrides, **extra, "label": method})


def _task(task, budget: int):
    """A fresh oracle and its mode references from a task name, or from a callable ``budget -> Oracle``."""
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)} or a callable budget -> Oracle, got {task!r}")
        return TASKS[task](budget=budget), TASK_MODES.get(task)
    if callable(task):
        oracle = task(budget)
        if not isinstance(oracle, Oracle):
            raise ValueError(f"task must return a chem.Oracle for a budget, got {type(oracle).__name__}")
        return oracle, None
    raise ValueError(f"task must be a task name or a callable budget -> Oracle, got {task!r}")


def run(task, method: str, seed: int, *, budget: int, batch_size: int = 64, sigma: float = REINVENT_SIGMA,
                 lr: float = REINVENT_LR, prior: SmilesGRU | None = None, device=None, progress: bool = False,
                 thresholds=(0.80, 0.85), modes: dict | None = None) -> dict:
    """One chapter-8 run: a fresh oracle for ``task`` (a name of :data:`TASKS`, or your own callable
    ``budget -> chem.Oracle``), the method's config (:func:`method_config`: any ``"MARA <tau>"``), train to
    the budget, summarise. ``modes`` (``{name: SMILES}``) names each hit's mode; tasks (b) and (c) bring
    their own. Returns ``{"summary", "history", "curve", "top"}``: ``curve`` is the
    :func:`~marabook.chem.discovery_curve` after every step, ``top`` the 12 best distinct
    molecules (score, SMILES)."""
    cfg = method_config(method, seed=seed, budget=budget, batch_size=batch_size, sigma=sigma, lr=lr)
    oracle, task_modes = _task(task, budget)
    references = modes if modes is not None else task_modes
    trainer = ReinventTrainer(prior if prior is not None else load_prior(device=device), oracle, cfg,
                              device=device, progress=progress)
    trainer.train()
    summary = summarize_run(oracle.records, thresholds,
                            modes=(lambda hits: assign_modes(hits, references)) if references is not None else None)
    summary["failed_scores"] = oracle.n_failed
    best = {}
    for r in (r for r in oracle.records if r.canonical is not None):
        best[r.canonical] = max(r.score, best.get(r.canonical, 0.0))
    top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    curve = discovery_curve(oracle.records, thresholds, at=[h["calls"] for h in trainer.history])
    return {"task": task if isinstance(task, str) else getattr(task, "__name__", "custom"), "method": method,
            "seed": seed, "sigma": float(sigma), "summary": summary, "history": trainer.history,
            "curve": curve, "top": [(float(v), s) for s, v in top]}


def _grid_job(args):
    return run(*args[:3], **args[3])  # (task, method, seed, kw)


def sweep(tasks=("product", "multi_mode"), methods=METHODS, seeds=range(5), *, budget: int, workers: int = 1,
          executor=None, device=None, progress: bool = True, **kw) -> list[dict]:
    """Every (task, method, seed) run of chapter 8, in grid order, in this process (``workers=1``), in
    ``workers`` local processes (one torch thread each) or on ``executor``; results do not depend on
    where they ran."""
    for m in methods:
        try:
            method_config(m)
        except ValueError as err:
            raise ValueError(f"methods: {err}") from None
    for t in tasks:
        if not (callable(t) or t in TASKS):
            raise ValueError(f"tasks must be names from {sorted(TASKS)} or callables budget -> Oracle, got {t!r}")
    jobs = [(t, m, int(s), {"budget": budget, "device": device, **kw}) for t in tasks for m in methods for s in seeds]
    return run_sweep(_grid_job, jobs, workers=workers, executor=executor, desc="REINVENT runs", progress=progress)


def _split(runs):
    """The finished runs (checked for the fields read), and how many jobs raised per (task, method, sigma)."""
    return split_failures(runs, lambda j: (j[0] if isinstance(j[0], str) else getattr(j[0], "__name__", "custom"), j[1],
                                           float(j[3].get("sigma", REINVENT_SIGMA))), fields=("task", "method"))


def compare_methods(runs, task: str, metrics=None, baseline: str = "REINVENT", budget: int | None = None) -> list:
    """Table-2-style rows for one task: per method and metric the mean, the standard deviation over
    seeds, and an uncorrected one-sided Welch t-test p-value against ``baseline`` (:func:`marabook.stats.two_sample`;
    alternative: the method is better, i.e. larger, or smaller for OB metrics). A run that never reached
    100 hits counts ``budget`` calls for OB100 (a censored value; the row says how many runs reached it).
    ``n`` counts the finished runs, ``errors`` the jobs that raised (``JobFailure`` records: never averaged)."""
    runs, errors = _split(runs)
    rows = [r for r in runs if r["task"] == task]
    if not rows:
        raise ValueError(f"task {task!r} has no finished runs")
    metrics = metrics or [k for k in rows[0]["summary"] if k.split("@")[0] in ("yield", "OB100", "intdiv1", "circles")]
    methods = list(dict.fromkeys([r["method"] for r in rows] + [m for t, m, _ in errors if t == task]))
    if baseline not in methods:
        raise ValueError(f"baseline {baseline!r} is not among the runs' methods {methods} (a typo?)")
    out = []
    for m in methods:
        row = {"method": m, "n": sum(r["method"] == m for r in rows),
               "errors": sum(n for (t, mm, _), n in errors.items() if (t, mm) == (task, m))}
        for k in (metrics if row["n"] else ()):  # a method whose every job raised has only its errors
            vals, base = _values(rows, m, k, budget), _values(rows, baseline, k, budget)
            row[k] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            if k.startswith("OB"):
                row[k + " reached"] = sum(r["summary"][k] is not None for r in rows if r["method"] == m)
            if m != baseline and len(vals) > 1 and len(base) > 1 and np.isfinite(vals).all() and np.isfinite(base).all():
                p = stats.two_sample(vals, base, alternative="less" if k.startswith("OB") else "greater").pvalue
                if np.isfinite(p):
                    row[k + " p"] = p
        out.append(row)
    return out


def _values(rows, method, key, budget=None, sigma=None) -> np.ndarray:
    """One metric over the seeds of a method (and sigma); None (OB100 never reached) counts as ``budget``."""
    return np.array([float(budget if budget is not None else np.nan) if r["summary"][key] is None
                     else float(r["summary"][key]) for r in rows
                     if r["method"] == method and (sigma is None or r.get("sigma", REINVENT_SIGMA) == sigma)])


def format_comparison(rows, metrics, baseline: str = "REINVENT") -> Table:
    """:func:`compare_methods` rows as a table (:class:`~marabook.tables.Table`): ``mean ± std`` per metric, and
    under each other method a row ``p vs <baseline>``, its one-sided p-values (one number per cell)."""
    if not rows:
        raise ValueError("rows must not be empty")
    cells = []
    for r in rows:
        row, prow = [r["method"] + (f" ({r['errors']} raised)" if r.get("errors") else "")], [f"p vs {baseline}"]
        for m in metrics:
            mean, sd = r.get(m, (np.nan, np.nan))
            fmt = (".3f" if m.startswith(("intdiv", "uniqueness", "validity")) else ".1f" if m.startswith("circles")
                   else ".0f")
            row.append(f"{mean:{fmt}} ± {sd:{fmt}}")
            prow.append(f"{r[m + ' p']:.3f}" if f"{m} p" in r else "")
        cells.append(row)
        if r["method"] != baseline and any(prow[1:]):
            cells.append(prow)
    return Table(["method"] + list(metrics), cells)

def mode_table(runs, threshold: str = "0.80", modes=None, task: str = "multi_mode") -> dict:
    """Per method: mean hits per mode of ``task`` over seeds, and the mean number of modes with at least one
    hit. ``{method: {"hits": {mode: mean}, "covered": mean}}``. ``modes``: the mode names (default: the
    task's references, :data:`TASK_MODES`, or every name the runs recorded)."""
    rows = [r for r in _split(runs)[0] if r["task"] == task]
    if not rows:
        raise ValueError(f"runs must contain runs of task {task!r}")
    key = f"modes@{threshold}"
    if key not in rows[0]["summary"]:
        raise ValueError(f"threshold: the runs recorded no {key!r} (their tasks have no modes, or another threshold)")
    names = list(modes or TASK_MODES.get(task) or sorted({n for r in rows for n in r["summary"][key]}))
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r["summary"][key] for r in rows if r["method"] == m]
        out[m] = {"hits": {n: float(np.mean([d.get(n, 0) for d in mine])) for n in names},
                  "covered": float(np.mean([sum(d.get(n, 0) > 0 for n in names) for d in mine]))}
    return out


def sigma_study(tasks=("product", "multi_mode", "unequal_modes"), methods=METHODS, sigmas=SIGMAS, seeds=range(5), *,
                budget: int = 10_000, workers: int = 1, executor=None, progress: bool = True, **kw) -> list[dict]:
    """Chapter 8's stored study: every task x method x sigma x seed to the full budget, each run kept small
    (its summary, its score and validity per step, and for MARA the anchor's score per step)."""
    for sg in sigmas:
        if not float(sg) > 0:
            raise ValueError(f"sigmas must be > 0, got {sg!r}")
    jobs = [(t, m, int(s), {"budget": budget, "sigma": float(sg), **kw})
            for sg in sigmas for t in tasks for m in methods for s in seeds]
    runs = run_sweep(_grid_job, jobs, workers=workers, executor=executor, desc="sigma study", progress=progress)
    for r in split_failures(runs)[0]:  # JobFailure records (jobs that raised) stay as they are
        keys = [k for k in ("calls", "score", "valid", "unique", "anchor_score", "n_good") if k in r["history"][0]]
        r["history"] = {k: [h[k] for h in r["history"]] for k in keys}
        every = slice(None, None, 5)  # the discovery curve at every 5th step (and the last), to keep the file small
        r["curve"] = {k: v[every] + ([v[-1]] if (len(v) - 1) % 5 else []) for k, v in r["curve"].items()}
    return runs


def _family(method: str) -> str:
    """The Holm family of a comparison: all MARA variants form one (does MARA beat REINVENT?), others their own."""
    return "MARA" if method.startswith("MARA") else method


def study_rows(runs, metric: str = "yield@0.80", baseline: str = "REINVENT", budget: int | None = None,
               n_resamples: int = 9999) -> list[dict]:
    """The sigma study as rows, one per task, sigma and method: ``mean``, ``sd`` and ``n`` of ``metric`` over
    seeds, ``ratio`` to the baseline's mean (``ratio_sd``: the sd on that scale; ``ci_low``/``ci_high``: a 95%
    percentile-bootstrap interval of the ratio), the uncorrected one-sided Welch p-value against the baseline
    (``p``; ``None`` for the baseline itself) and ``p_holm``, Holm-adjusted over the family of the rows'
    comparisons (``family``: all MARA variants together, each other method alone; ``family_size``), all
    from :func:`marabook.stats.compare_family`. OB metrics test for fewer calls. ``errors``: the jobs of that
    task, sigma and method that raised (``JobFailure`` records in ``runs``: counted, never averaged)."""
    runs, errors = _split(runs)
    if not (sub := [r for r in runs if metric in r["summary"]]):
        raise ValueError(f"runs must not be empty and must record {metric!r}")
    keys = [(t, sg) for t in dict.fromkeys(r["task"] for r in sub)
            for sg in sorted({r.get("sigma", REINVENT_SIGMA) for r in sub if r["task"] == t})]
    out, cells = [], {}
    for task, sigma in keys:
        rows = [r for r in sub if r["task"] == task]
        base = _values(rows, baseline, metric, budget, sigma)
        for m in dict.fromkeys(r["method"] for r in rows):
            if not len(vals := _values(rows, m, metric, budget, sigma)):
                continue
            mean, sd, b = float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, np.mean(base)
            out.append({"task": task, "sigma": sigma, "method": m, "n": len(vals), "mean": mean, "sd": sd,
                        "ratio": mean / b if b else float("nan"), "ratio_sd": sd / b if b else float("nan"),
                        "p": None, "p_holm": None, "ci_low": None, "ci_high": None, "family": None,
                        "errors": errors.get((task, m, float(sigma)), 0)})
            if m != baseline and len(vals) > 1 and len(base) > 1 and np.isfinite(vals).all() and np.isfinite(base).all():
                cells.setdefault(_family(m), []).append(
                    {"row": len(out) - 1, "treatment": vals, "control": base,
                     "alternative": "less" if metric.startswith("OB") else "greater"})
    for fam, group in cells.items():
        for c in stats.compare_family(group, n_resamples=n_resamples):
            row = out[c["row"]]
            defined = np.isfinite(c["p"])
            row.update(p=c["p"] if defined else None, p_holm=c["p_holm"] if defined else None, family=fam,
                       family_size=c["family_size"], ci_low=c["ci_low"], ci_high=c["ci_high"])
    return out


def format_study(rows, metric: str = "yield@0.80") -> Table:
    """:func:`study_rows` as a table (:class:`~marabook.tables.Table`): per task and sigma, each method's
    mean ± sd, its ratio to REINVENT with the 95% bootstrap interval, the one-sided p and Holm's p."""
    if not rows:
        raise ValueError("rows must not be empty (study_rows of at least one run)")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for sigma in sorted({r["sigma"] for r in rows if r["task"] == task}):
            row = [task, f"{sigma:g}"]
            for m in methods:
                r = next((x for x in rows if (x["task"], x["sigma"], x["method"]) == (task, sigma, m)), None)
                extra = "" if r is None or r["p"] is None else (
                    f" (x{r['ratio']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]; p {r['p']:.3f}, Holm {r['p_holm']:.2f})")
                row.append("" if r is None else f"{r['mean']:.0f} ± {r['sd']:.0f}{extra}")
            cells.append(row)
    sizes = sorted({(r["family"], r["family_size"]) for r in rows if r["family"] is not None})
    fams = ", ".join(f"{f}: {n}" for f, n in sizes)
    return Table(["task", "sigma"] + methods, cells,
                 caption=f"{metric}: mean ± sd over seeds (ratio to REINVENT [95% bootstrap interval]; one-sided "
                         f"Welch p, and Holm-adjusted over each family of comparisons, {fams})")


def pooled_rows(runs, metric: str = "yield@0.80", baseline: str = "REINVENT", budget: int | None = None,
                alternative: str | None = None) -> list[dict]:
    """One test per task and method of a consistent shift across the sigmas (the strata: independent runs),
    with :func:`marabook.stats.stratified`: the van Elteren test (``z``, ``p``) and, as a check, Stouffer's
    combination of the per-sigma Welch p-values (``p_stouffer``; one-sided alternatives only); ``p_holm``:
    Holm over the family (:func:`study_rows`'s families); ``ahead``: in how many strata the method's mean is
    on the ``alternative`` side of the baseline's (default: greater, less for OB metrics)."""
    alternative = alternative or ("less" if metric.startswith("OB") else "greater")
    if not (sub := [r for r in _split(runs)[0] if metric in r["summary"]]):
        raise ValueError(f"runs must not be empty and must record {metric!r}")
    out = []
    for task in dict.fromkeys(r["task"] for r in sub):
        rows = [r for r in sub if r["task"] == task]
        sigmas = sorted({r.get("sigma", REINVENT_SIGMA) for r in rows})
        for m in dict.fromkeys(r["method"] for r in rows):
            if m == baseline:
                continue
            strata = [(_values(rows, m, metric, budget, sg), _values(rows, baseline, metric, budget, sg)) for sg in sigmas]
            strata = [(t, c) for t, c in strata if len(t) > 1 and len(c) > 1]
            if not strata:
                continue
            sign, ve = -1 if alternative == "less" else 1, stats.stratified(strata, alternative=alternative)
            p_st = None if alternative == "two-sided" else stats.stratified(strata, alternative=alternative, method="stouffer").pvalue
            out.append({"task": task, "method": m, "family": _family(m), "strata": len(strata),
                        "ahead": sum(sign * (np.mean(t) - np.mean(c)) > 0 for t, c in strata),
                        "z": ve.statistic, "p": ve.pvalue, "p_stouffer": p_st, "alternative": alternative})
    for fam in dict.fromkeys(r["family"] for r in out):
        group = [r for r in out if r["family"] == fam]
        for r, a in zip(group, stats.holm([r["p"] for r in group])):
            r["p_holm"], r["family_size"] = float(a), len(group)
    return out


def format_pooled(rows, metric: str = "yield@0.80") -> Table:
    """:func:`pooled_rows` as a table (:class:`~marabook.tables.Table`)."""
    if not rows:
        raise ValueError("rows must not be empty (pooled_rows of at least one method besides the baseline)")
    cells = [[r["task"], r["method"], f"{r['ahead']}/{r['strata']}", f"{r['z']:.2f}", f"{r['p']:.4f}",
              f"{r['p_holm']:.3f} ({r['family_size']})", "" if r["p_stouffer"] is None else f"{r['p_stouffer']:.4f}"]
             for r in rows]
    return Table(["task", "method", "sigmas ahead", "van Elteren z", "p", "Holm p (family size)", "Stouffer p"],
                 cells, caption=f"{metric}: one test per task and method over the sigmas ({rows[0]['alternative']})")


def mode_shift_rows(runs, task: str, threshold: str = "0.80", baseline: str = "REINVENT") -> list[dict]:
    """Per mode of ``task`` and method: mean hits per sigma (``hits``; the baseline's: ``base``) and a two-sided
    van Elteren test over the sigmas (:func:`marabook.stats.stratified`: ``z``, ``p``) of a shift in that mode."""
    key = f"modes@{threshold}"
    sub = [r for r in _split(runs)[0] if r["task"] == task and key in r["summary"]]
    if not sub:
        raise ValueError(f"runs must contain runs of task {task!r} that recorded {key!r}")
    names = list(TASK_MODES.get(task) or sorted({n for r in sub for n in r["summary"][key]}))
    sigmas = sorted({r.get("sigma", REINVENT_SIGMA) for r in sub})

    def hits(m, sg, n):
        return np.array([r["summary"][key].get(n, 0) for r in sub if r["method"] == m and r.get("sigma", REINVENT_SIGMA) == sg], float)
    out = []
    for n in names:
        for m in [x for x in dict.fromkeys(r["method"] for r in sub) if x != baseline]:
            strata = [(hits(m, sg, n), hits(baseline, sg, n)) for sg in sigmas]
            if any(len(t) < 2 or len(c) < 2 for t, c in strata):
                continue
            t = stats.stratified(strata, alternative="two-sided")
            out.append({"mode": n, "method": m, "hits": {sg: float(np.mean(a)) for sg, (a, _) in zip(sigmas, strata)},
                        "base": {sg: float(np.mean(b)) for sg, (_, b) in zip(sigmas, strata)}, "z": t.statistic, "p": t.pvalue})
    return out


def coverage_rows(runs, task: str, threshold: str = "0.80", min_hits: int = 1) -> list[dict]:
    """Mode coverage per sigma and method for a task with modes: mean hits per mode, the mean number of modes
    with at least ``min_hits`` hits, and for each mode the number of runs that reached it."""
    check_int(min_hits, "min_hits")
    sub = [r for r in _split(runs)[0] if r["task"] == task]
    if not sub:
        raise ValueError(f"runs must contain runs of task {task!r}")
    key = f"modes@{threshold}"
    names = list(TASK_MODES.get(task) or sorted({n for r in sub for n in r["summary"].get(key, {})}))
    out = []
    for sigma in sorted({r.get("sigma", REINVENT_SIGMA) for r in sub}):
        for method in dict.fromkeys(r["method"] for r in sub):
            mine = [r["summary"][key] for r in sub if r.get("sigma", REINVENT_SIGMA) == sigma and r["method"] == method]
            if not mine:
                continue
            out.append({"sigma": sigma, "method": method, "n": len(mine),
                        "hits": {n: float(np.mean([d.get(n, 0) for d in mine])) for n in names},
                        "reached": {n: int(sum(d.get(n, 0) >= min_hits for d in mine)) for n in names},
                        "covered": float(np.mean([sum(d.get(n, 0) >= min_hits for n in names) for d in mine]))})
    return out


def mode_hits_table(runs, task: str = "multi_mode", threshold: str = "0.80") -> Table:
    """:func:`mode_table` as a table (:class:`~marabook.tables.Table`): per method, the mean hits at or above
    ``threshold`` on each mode of ``task`` and the mean number of modes with at least one hit."""
    table = mode_table(runs, threshold, task=task)
    names = list(TASK_MODES.get(task) or next(iter(table.values()))["hits"])
    cells = [[m] + [f"{row['hits'][n]:.1f}" for n in names] + [f"{row['covered']:.1f}"] for m, row in table.items()]
    return Table(["method"] + names + ["modes covered"], cells,
                 caption=f"task {task}: mean hits >= {threshold} per mode over seeds, and modes with at least one hit")


def coverage_table(runs, task: str, threshold: str = "0.80") -> Table:
    """:func:`coverage_rows` as a table (:class:`~marabook.tables.Table`): per sigma and method, the modes
    covered (mean over seeds) and how many runs reached each mode."""
    rows = coverage_rows(runs, task, threshold)
    names = list(rows[0]["reached"])
    cells = [[f"{r['sigma']:g}", r["method"], f"{r['covered']:.1f}"] + [f"{r['reached'][n]}/{r['n']}" for n in names]
             for r in rows]
    return Table(["sigma", "method", "covered"] + names, cells,
                 caption=f"task {task}: modes covered (mean over seeds) and runs reaching each mode")


def anchor_table(anchors: dict, yields: dict) -> Table:
    """The anchor test of chapter 8 as a table (:class:`~marabook.tables.Table`): per MARA method, from
    :func:`anchor_report` (``anchors``) and :func:`study_rows` keyed by method (``yields``), the steps with an
    anchor, the share of them whose anchor scored below the top, good molecules per step, and the yield with
    its ratio to REINVENT and p-value."""
    if not anchors:
        raise ValueError("anchors must not be empty (anchor_report of runs with MARA methods)")
    missing = [m for m in anchors if m not in yields]
    if missing:
        raise ValueError(f"yields must have a row for every method in anchors; missing {missing}")
    cells = []
    for method, a in anchors.items():
        y = yields[method]
        cells.append([method, str(a["steps_with_anchor"]), f"{a['anchor_below_top']:.2f}",
                      f"{a['mean_good_per_step']:.1f}", f"{y['mean']:.0f}", f"x{y['ratio']:.2f}",
                      "" if y["p"] is None else f"{y['p']:.3f}"])
    return Table(["method", "steps with an anchor", "anchor scores < 1", "good per step", "yield@0.80",
                  "vs REINVENT", "p"], cells)


def anchor_report(runs, task: str = "multi_mode", top: float = 0.999) -> dict:
    """Per MARA method of ``task``: over every step of every run, the share of steps whose anchor (the good
    molecule the prior likes most) scored below ``top``, and the mean number of good molecules a step."""
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top!r}")
    runs = _split(runs)[0]
    if not any(r["task"] == task and r["method"].startswith("MARA") for r in runs):
        raise ValueError(f"runs must contain MARA runs of task {task!r}")
    out = {}
    for method in sorted({r["method"] for r in runs if r["task"] == task and r["method"].startswith("MARA")}):
        anchors, good = [], []
        for r in runs:
            if r["task"] == task and r["method"] == method:
                h = r["history"]
                a = h["anchor_score"] if isinstance(h, dict) else [e.get("anchor_score") for e in h]
                g = h["n_good"] if isinstance(h, dict) else [e.get("n_good", 0) for e in h]
                anchors += [x for x in a if x is not None]
                good += list(g)
        out[method] = {"steps_with_anchor": len(anchors),
                       "anchor_below_top": float(np.mean(np.array(anchors) < top)) if anchors else float("nan"),
                       "mean_good_per_step": float(np.mean(good)) if good else float("nan")}
    return out


def _grid_parser(description: str, tasks, out_name: str):
    """The command-line options both stored grids share (budget, seeds, batch, lr, tasks, methods, workers, ...)."""
    import argparse
    from marabook.provenance import default_out

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=REINVENT_LR)
    ap.add_argument("--tasks", nargs="+", default=list(tasks))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="e.g. 'MARA 0.90' 'MARA 0.95'")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=default_out(out_name),
                    help=f"where to write (default results/{out_name}; the shipped file is in marabook/data/results)")
    ap.add_argument("--revision", help="the code revision that runs, when this machine's git metadata cannot say")
    return ap


def _store_grid(args, command: str, sigmas) -> None:
    """Run :func:`sigma_study` on the parsed options and store it, with the provenance taken at the start
    (commits made while a long grid runs are not what ran)."""
    import time
    from marabook.provenance import portable_path, provenance, save_json

    prov = provenance(command)
    if args.revision:
        prov["git_revision"] = args.revision
    t0 = time.time()
    runs, fails = split_failures(sigma_study(args.tasks, args.methods, sigmas, range(args.seeds), budget=args.budget,
                                             workers=args.workers, device=args.device, batch_size=args.batch_size, lr=args.lr))
    settings = dict(vars(args), out=portable_path(args.out))  # no machine folders in a stored file
    save_json(args.out, {"settings": settings, "methods": list(args.methods), "wall_seconds": round(time.time() - t0, 1),
                         "runs": runs, "failures": [str(f) for f in fails]}, prov=prov)
    print(f"{len(runs)} runs in {time.time() - t0:.0f} s -> {args.out}")


def main(argv=None):
    """Store the full-budget grid at one sigma (``scripts/run_reinvent.py`` is the same command)."""
    import sys
    from marabook.provenance import load_json, save_json

    command = "python scripts/run_reinvent.py " + " ".join(sys.argv[1:] if argv is None else argv)
    ap = _grid_parser("Chapter 8's REINVENT comparison at one sigma and the full budget, stored.",
                      ("product", "multi_mode"), "reinvent.json")
    ap.add_argument("--sigma", type=float, default=REINVENT_SIGMA)
    ap.add_argument("--merge", nargs="+", help="combine result files (e.g. one per task) into --out")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [load_json(f, required=["runs", "settings", "wall_seconds"]) for f in args.merge]
        res = dict(parts[0]["results"])
        res["runs"] = [r for p in parts for r in p["results"]["runs"]]
        res["parts"] = [{"provenance": p["provenance"], "settings": p["results"]["settings"],
                         "wall_seconds": p["results"]["wall_seconds"]} for p in parts]
        save_json(args.out, res, command=command)
        print(f"merged {len(res['runs'])} runs -> {args.out}")
        return
    _store_grid(args, command, [args.sigma])


def study_main(argv=None):
    """Store chapter 8's sigma x tau study (``scripts/run_reinvent_study.py`` is the same command)."""
    import sys

    command = "python scripts/run_reinvent_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    ap = _grid_parser("Chapter 8's study: 3 tasks x 4 methods x 3 sigmas x seeds, stored.",
                      ("product", "multi_mode", "unequal_modes"), "reinvent_study.json")
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    args = ap.parse_args(argv)
    _store_grid(args, command, args.sigmas)


if __name__ == "__main__":
    main()
