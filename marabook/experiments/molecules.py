"""Chapter 8's experiment: REINVENT, MARA at two thresholds and the diversity filter, on two tasks.

Verbs: :data:`METHODS` and :func:`method_config` (the methods as :class:`~marabook.chem.ReinventConfig`),
:func:`run` (one task x method x seed to the oracle budget, summarised), :func:`sweep` (the grid through
:func:`marabook.experiments.sweep.run_sweep`), :func:`compare_methods` (Table-2-style rows with one-sided
Welch tests), :func:`format_comparison` and :func:`mode_table`.
``python -m marabook.experiments.molecules`` stores the full-budget grid (``scripts/run_reinvent.py``).
"""

from __future__ import annotations

import warnings

import numpy as np

from marabook.chem.metrics import discovery_curve, summarize_run
from marabook.chem.oracles import REFERENCE_DRUGS, assign_modes, multi_mode_task, product_task
from marabook.chem.prior import SmilesGRU, load_prior
from marabook.chem.reinvent import ReinventConfig, ReinventTrainer
from marabook.experiments.sweep import run_sweep

__all__ = ["METHODS", "TASKS", "method_config", "run", "sweep", "compare_methods", "format_comparison", "mode_table",
           "run_reinvent", "run_reinvent_grid"]

#: The tasks of chapter 8 by name: a fresh counted oracle for a budget.
TASKS = {"product": product_task, "multi_mode": multi_mode_task}

METHODS = ("REINVENT", "MARA 0.80", "MARA 0.85", "REINVENT+DF")


def method_config(method: str, **overrides) -> ReinventConfig:
    """The config of one of chapter 8's methods (:data:`METHODS`), with shared ``overrides``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    extra = {"REINVENT": {}, "MARA 0.80": {"mara_tau": 0.80}, "MARA 0.85": {"mara_tau": 0.85},
             "REINVENT+DF": {"diversity_filter": True}}[method]
    return ReinventConfig(**{**overrides, **extra, "label": method})


def run(task: str, method: str, seed: int, *, budget: int, batch_size: int = 64, sigma: float = 128.0,
                 lr: float = 1e-4, prior: SmilesGRU | None = None, device=None, progress: bool = False,
                 thresholds=(0.80, 0.85)) -> dict:
    """One chapter-8 run: a fresh oracle for ``task`` ("product" or "multi_mode"), the method's
    config, train to the budget, summarise. Returns ``{"summary", "history", "curve", "top"}``: ``curve`` is
    the :func:`~marabook.chem.metrics.discovery_curve` after every step, ``top`` the 12 best distinct
    molecules (score, SMILES)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    oracle = TASKS[task](budget=budget)
    cfg = method_config(method, seed=seed, budget=budget, batch_size=batch_size, sigma=sigma, lr=lr)
    trainer = ReinventTrainer(prior if prior is not None else load_prior(device=device), oracle, cfg,
                              device=device, progress=progress)
    trainer.train()
    summary = summarize_run(oracle.records, thresholds, modes=assign_modes if task == "multi_mode" else None)
    best = {}
    for r in oracle.records:
        if r.canonical is not None:
            best[r.canonical] = max(r.score, best.get(r.canonical, 0.0))
    top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    curve = discovery_curve(oracle.records, thresholds, at=[h["calls"] for h in trainer.history])
    return {"task": task, "method": method, "seed": seed, "summary": summary, "history": trainer.history,
            "curve": curve, "top": [(float(v), s) for s, v in top]}


def _grid_job(args):
    task, method, seed, kw = args
    return run(task, method, seed, **kw)


def sweep(tasks=("product", "multi_mode"), methods=METHODS, seeds=range(5), *, budget: int, workers: int = 1,
          executor=None, device=None, progress: bool = True, **kw) -> list[dict]:
    """Every (task, method, seed) run of chapter 8, in grid order, in this process (``workers=1``), in
    ``workers`` local processes (one torch thread each) or on ``executor``; results do not depend on
    where they ran."""
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods must be drawn from {METHODS}, got {m!r}")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"tasks must be drawn from {sorted(TASKS)}, got {t!r}")
    jobs = [(t, m, int(s), {"budget": budget, "device": device, **kw}) for t in tasks for m in methods for s in seeds]
    return run_sweep(_grid_job, jobs, workers=workers, executor=executor, desc="REINVENT runs", progress=progress)


def compare_methods(runs, task: str, metrics=None, baseline: str = "REINVENT", budget: int | None = None) -> list:
    """Table-2-style rows for one task: per method and metric the mean, the standard deviation over
    seeds, and a one-sided Welch t-test p-value against ``baseline`` (alternative: the method is better,
    i.e. larger, or smaller for OB metrics). A run that never reached 100 hits counts ``budget`` calls
    for OB100 (a censored value; the row says how many runs reached it)."""
    from scipy import stats

    rows = [r for r in runs if r["task"] == task]
    if not rows:
        raise ValueError(f"task {task!r} has no runs")
    metrics = metrics or [k for k in rows[0]["summary"] if k.split("@")[0] in
                          ("yield", "OB100", "intdiv1", "circles")]
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def values(method, key):  # None (OB never reached) counts as the budget when one is given
        return np.array([float(budget if budget is not None else np.nan) if r["summary"][key] is None
                         else float(r["summary"][key]) for r in rows if r["method"] == method])

    out = []
    for m in methods:
        row = {"method": m, "n": sum(r["method"] == m for r in rows)}
        for k in metrics:
            vals, base = values(m, k), values(baseline, k)
            row[k] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            if k.startswith("OB"):
                row[k + " reached"] = sum(r["summary"][k] is not None for r in rows if r["method"] == m)
            if m != baseline and len(vals) > 1 and len(base) > 1 and np.isfinite(vals).all() and np.isfinite(base).all():
                alt = "less" if k.startswith("OB") else "greater"
                if np.ptp(np.concatenate([vals, base])) <= 1e-9 * max(1.0, float(np.abs(base).max())):
                    p = 1.0  # identical samples: no evidence either way
                else:
                    with warnings.catch_warnings():  # near-identical samples: scipy warns, p is still defined
                        warnings.simplefilter("ignore", RuntimeWarning)
                        p = float(stats.ttest_ind(vals, base, equal_var=False, alternative=alt).pvalue)
                if np.isfinite(p):
                    row[k + " p"] = p
        out.append(row)
    return out


def format_comparison(rows, metrics, baseline: str = "REINVENT") -> str:
    """A plain-text table of :func:`compare_methods` rows: ``mean +- std`` per metric and, for the other
    methods, the one-sided p-value against ``baseline`` in brackets."""
    if not rows:
        raise ValueError("rows must not be empty")
    width = 25
    lines = [f"{'method':<12}" + "".join(f"{m:>{width}}" for m in metrics)]
    for r in rows:
        cells = []
        for m in metrics:
            mean, sd = r[m]
            fmt = (".3f" if m.startswith(("intdiv", "uniqueness", "validity")) else ".1f" if m.startswith("circles")
                   else ".0f")
            cell = f"{mean:{fmt}} +- {sd:{fmt}}"
            if r["method"] != baseline and f"{m} p" in r:
                cell += f" ({r[m + ' p']:.3f})"
            cells.append(f"{cell:>{width}}")
        lines.append(f"{r['method']:<12}" + "".join(cells))
    return "\n".join(lines)


def mode_table(runs, threshold: str = "0.80", modes=None) -> dict:
    """Per method: mean hits per mode of the multi-mode task over seeds, and the mean number of modes
    with at least one hit. ``{method: {"hits": {mode: mean}, "covered": mean}}``."""
    names = list(modes or REFERENCE_DRUGS)
    out = {}
    rows = [r for r in runs if r["task"] == "multi_mode"]
    if not rows:
        raise ValueError("runs must contain multi_mode runs")
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r["summary"][f"modes@{threshold}"] for r in rows if r["method"] == m]
        out[m] = {"hits": {n: float(np.mean([d.get(n, 0) for d in mine])) for n in names},
                  "covered": float(np.mean([sum(d.get(n, 0) > 0 for n in names) for d in mine]))}
    return out


# the first edition's names (also importable from marabook.chem)
run_reinvent, run_reinvent_grid = run, sweep


def main(argv=None):
    """Store the full-budget grid with provenance (``scripts/run_reinvent.py`` is the same command)."""
    import argparse
    import sys
    import time

    from marabook.provenance import RESULTS_DIR, load_json, save_json

    command = "python scripts/run_reinvent.py " + " ".join(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="Chapter 8's REINVENT comparison at the full budget, stored.")
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=128.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tasks", nargs="+", default=["product", "multi_mode"])
    ap.add_argument("--out", default=str(RESULTS_DIR / "reinvent.json"))
    ap.add_argument("--merge", nargs="+", help="combine result files (e.g. one per task) into --out")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [load_json(f) for f in args.merge]
        res = dict(parts[0]["results"])
        res["runs"] = [r for p in parts for r in p["results"]["runs"]]
        res["parts"] = [{"provenance": p["provenance"], "settings": p["results"]["settings"],
                         "wall_seconds": p["results"]["wall_seconds"]} for p in parts]
        save_json(args.out, res, command=command)
        print(f"merged {len(res['runs'])} runs -> {args.out}")
        return
    t0 = time.time()
    runs = sweep(args.tasks, METHODS, range(args.seeds), budget=args.budget, workers=args.workers,
                             device=args.device, batch_size=args.batch_size, sigma=args.sigma, lr=args.lr)
    for r in runs:  # keep the stored file small: the score curve, not every log field
        r["history"] = {k: [h[k] for h in r["history"]] for k in ("calls", "score", "valid", "unique")}
    save_json(args.out, {"settings": vars(args), "methods": list(METHODS), "wall_seconds": round(time.time() - t0, 1),
                         "runs": runs}, command=command)
    print(f"{len(runs)} runs in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
