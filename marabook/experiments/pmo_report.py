"""Reading the PMO study (chapter 9): where MARA could act at all, paired differences to REINVENT, and PMO's own
REINVENT numbers beside the book's.

MARA changes REINVENT's training signal only on a batch holding at least *two* distinct sequences (SMILES)
scoring at or above its threshold tau (eq. 8.1: below tau the scores pass through unchanged, and a lone good
molecule is its own anchor, so its score stays ``S(z) + beta * 0``). A MARA run and a REINVENT run with the same seed therefore make exactly
the same draws, the same molecules and the same updates until the first such batch, and a run that never has one
*is* the REINVENT run. :func:`activity` counts this per task before any table of means is
read: a benchmark where the threshold is never reached says nothing about MARA, and the chapter says which tasks
those are. :func:`paired` then compares the two methods seed by seed (the same seed is the same start, so the
per-seed difference removes the prior's and the sampler's shared luck).

:data:`PMO_REINVENT_AUC` holds REINVENT's AUC top-10 as PMO's authors list it, for the reference column of
:func:`reference_table`; their prior was trained on ZINC 250k and their oracle counts each distinct valid
molecule once, the book's prior on a MOSES subset and its oracle every sampled string, so the two columns compare
settings, not only methods (chapter 9 says so where it shows them).
"""

from __future__ import annotations

import numpy as np

from marabook.experiments.pmo import METHODS
from marabook.experiments.sweep import split_failures
from marabook.tables import Table

__all__ = ["PMO_REINVENT_AUC", "PMO_REINVENT_SOURCE", "activity", "format_activity", "paired", "reference_table"]

#: REINVENT's AUC top-10 (mean of 5 runs, 10,000 distinct molecules) on the study's tasks, as PMO lists it.
PMO_REINVENT_AUC = {
    "isomers_c7h8n2o2": 0.852, "isomers_c9h10n2o2pf2cl": 0.642, "median1": 0.356, "median2": 0.276,
    "osimertinib_mpo": 0.837, "fexofenadine_mpo": 0.784, "ranolazine_mpo": 0.760, "deco_hop": 0.666,
    "scaffold_hop": 0.560, "celecoxib_rediscovery": 0.713, "albuterol_similarity": 0.882,
}
#: Where :data:`PMO_REINVENT_AUC` comes from.
PMO_REINVENT_SOURCE = (
    "the PMO authors' leaderboard (pmo-benchmark.github.io, one page per task, 'AUC top-10' column, row "
    "'reinvent'), built from the data of Gao, Fu, Sun & Coley, NeurIPS 2022 Datasets and Benchmarks; the same "
    "values are reprinted as PMO's REINVENT column by Lee et al., NeurIPS 2024 (f-RAG, Table 1), except "
    "celecoxib_rediscovery, which that reprint gives as 0.710")


def _rank(method: str) -> tuple:
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)


def _done(runs) -> list[dict]:
    done, _ = split_failures(runs, fields=("task", "method", "seed", "summary"))
    if not done:
        raise ValueError("runs must hold at least one finished run of the PMO study")
    return done


def activity(runs, method: str = "MARA", baseline: str = "REINVENT") -> list[dict]:
    """Per task, how much ``method`` (a MARA variant) could act, next to ``baseline`` at the same seeds:

    ``tau``; ``seeds`` (seeds with both runs finished); ``best_baseline`` (the baseline's best score, mean over those
    seeds: how close REINVENT itself gets to tau); ``runs_active`` (runs of ``method`` with at least one batch holding
    a molecule at or above tau) and ``mean_active`` (the share of its steps with one, mean over seeds);
    ``runs_changed`` and ``mean_changed``: the same for batches with at least two (``history["n_good"] >= 2``), the
    only batches where MARA changes a score;
    ``identical`` (seeds at which the two runs end with exactly the same AUC top-10 and yield: where
    ``runs_active`` is 0 MARA never changed a score and the run *was* REINVENT's; a run whose first hit came in its
    last steps can also end with the same numbers)."""
    def changed(run) -> list:
        return [n >= 2 for n in (run.get("history") or {}).get("n_good", [])]

    if not isinstance(method, str) or not method.startswith("MARA"):
        raise ValueError(f"method must name a MARA variant of the study (e.g. 'MARA', 'MARA+DF'), got {method!r}")
    if not isinstance(baseline, str) or baseline.startswith("MARA"):
        raise ValueError(f"baseline must name a REINVENT variant (e.g. 'REINVENT'), got {baseline!r}")
    done = _done(runs)
    rows = []
    for task in dict.fromkeys(r["task"] for r in done):
        mine = {(r["method"], r["seed"]): r for r in done if r["task"] == task}
        seeds = sorted(s for (m, s) in mine if m == method and (baseline, s) in mine)
        if not seeds:
            continue
        treated = [mine[method, s] for s in seeds]
        base = [mine[baseline, s] for s in seeds]
        same = sum(t["summary"]["auc_top10"] == b["summary"]["auc_top10"] and
                   t["summary"].get("yield") == b["summary"].get("yield") for t, b in zip(treated, base))
        rows.append({"task": task, "tau": treated[0].get("tau"), "seeds": len(seeds),
                     "best_baseline": float(np.mean([b["summary"]["best"] for b in base])),
                     "runs_active": int(sum((t.get("mara_active") or 0.0) > 0 for t in treated)),
                     "runs_changed": int(sum(any(changed(t)) for t in treated)),
                     "mean_changed": float(np.mean([np.mean(changed(t)) if changed(t) else 0.0 for t in treated])),
                     "mean_active": float(np.mean([t.get("mara_active") or 0.0 for t in treated])),
                     "identical": int(same)})
    if not rows:
        raise ValueError(f"runs hold no seed at which both {method!r} and {baseline!r} finished")
    return rows


def format_activity(rows) -> Table:
    """:func:`activity` rows as a table."""
    if isinstance(rows, (str, dict)) or not rows:
        raise ValueError("rows must be a non-empty list of pmo_report.activity rows")
    return Table(["task", "tau", "REINVENT's best (mean)", "MARA runs with a hit", "runs MARA changed",
                  "steps MARA changed", "same AUC and yield as REINVENT"],
                 [[r["task"], f"{r['tau']:g}", f"{r['best_baseline']:.3f}", f"{r['runs_active']}/{r['seeds']}",
                   f"{r['runs_changed']}/{r['seeds']}", f"{r['mean_changed']:.0%}", f"{r['identical']}/{r['seeds']}"]
                  for r in rows],
                 caption="where MARA can act: it changes a score only in a batch with two or more distinct molecules "
                         "at or above tau (eq. 8.1); a run without one is, draw for draw, the REINVENT run of its seed")


def paired(runs, metric: str = "auc_top10", method: str = "MARA", baseline: str = "REINVENT") -> list[dict]:
    """Per task, the seed-by-seed difference ``method - baseline`` of ``metric`` (a key of each run's summary):
    ``diffs`` (in seed order), ``mean``, ``n``, ``higher`` / ``lower`` / ``equal`` (seeds where ``method`` scored
    above, below or exactly as ``baseline``)."""
    done = _done(runs)
    if not isinstance(metric, str) or any(metric not in r["summary"] for r in done):
        raise ValueError(f"metric must be a key of every run's summary, got {metric!r}")
    for name, value in (("method", method), ("baseline", baseline)):
        if value not in {r["method"] for r in done}:
            raise ValueError(f"{name} must be a method the runs hold ({sorted({r['method'] for r in done}, key=_rank)}), "
                             f"got {value!r}")
    rows = []
    for task in dict.fromkeys(r["task"] for r in done):
        mine = {(r["method"], r["seed"]): r["summary"][metric] for r in done if r["task"] == task}
        seeds = sorted(s for (m, s) in mine if m == method and (baseline, s) in mine)
        d = np.array([float(mine[method, s]) - float(mine[baseline, s]) for s in seeds])
        if d.size:
            rows.append({"task": task, "diffs": d.tolist(), "mean": float(d.mean()), "n": int(d.size),
                         "higher": int((d > 0).sum()), "lower": int((d < 0).sum()), "equal": int((d == 0).sum())})
    return rows


def reference_table(compare_rows, reference: dict | None = None) -> Table:
    """The book's AUC top-10 per task and method (``compare_rows`` of :func:`marabook.experiments.pmo.compare` on
    ``"auc_top10"``) beside PMO's published REINVENT value (``reference``, default :data:`PMO_REINVENT_AUC`)."""
    if isinstance(compare_rows, (str, dict)) or not compare_rows:
        raise ValueError("compare_rows must be a non-empty list of pmo.compare rows")
    reference = PMO_REINVENT_AUC if reference is None else reference
    if not isinstance(reference, dict):
        raise ValueError(f"reference must be a dict task -> AUC, got {type(reference).__name__}")
    methods = sorted({r["method"] for r in compare_rows}, key=_rank)
    lines = []
    for task in dict.fromkeys(r["task"] for r in compare_rows):
        cells = {r["method"]: r for r in compare_rows if r["task"] == task}
        ref = reference.get(task)
        lines.append([task, "" if ref is None else f"{ref:.3f}"] +
                     [f"{cells[m]['mean']:.3f}" if m in cells and cells[m]["n"] else "" for m in methods])
    return Table(["task", "PMO's REINVENT"] + [f"book: {m}" for m in methods], lines,
                 caption="AUC top-10: PMO's published REINVENT (ZINC 250k prior, 10,000 distinct molecules) and the "
                         "book's runs (MOSES prior, 10,000 calls counting repeats), mean over seeds")

