"""The stored PMO study (issue 29, chapter 9): REINVENT, its diversity filter and MARA on the public benchmark.

Chapter 8's evidence for MARA comes from three tasks the book designed; this study runs the same REINVENT loop
(:class:`~marabook.chem.ReinventTrainer`, eq. 7.1, with MARA's score transform, eq. 8.1) on PMO's goal-directed
oracles (Gao et al. 2022, from GuacaMol, Brown et al. 2019), implemented in :mod:`marabook.chem.benchmarks`.

**The tasks, chosen before any run** (:data:`STUDY_TASKS`). MARA makes REINVENT's target flat over the molecules at
or above its threshold (eq. 8.1), so it can matter only where many different molecules score alike at the top:
the multi-optimum tasks (:data:`MULTI_OPTIMUM`) are both isomer tasks (every exact isomer scores exactly 1);
median1 and median2 (many molecules between two references, no single best one); three MPOs, osimertinib,
fexofenadine and ranolazine, whose structural term is a similarity *clipped* (at 0.8, 0.8, 0.7) and whose property
terms are one-sided Gaussians, so that every analogue past the clip with the right properties scores the maximum
(the MPOs left out are nearer to one optimum: perindopril and amlodipine multiply an unclipped similarity to one
drug by a ring count, sitagliptin and zaleplon tie the structure to one formula, valsartan SMARTS scores 0 without
one substructure); deco_hop and scaffold_hop (clipped pharmacophore similarity plus substructure terms: any
molecule with the right substructures past the clip scores the same). Two single-optimum tasks are "no harm"
checks (:data:`NO_HARM`): celecoxib rediscovery and albuterol similarity (one target each; the latter clipped at
0.75, so the few molecules that close score 1). There MARA has little to flatten and should cost nothing.

**The methods** (:data:`METHODS`), from the shipped prior with the book's defaults, sigma =
``marabook.chem.reinvent.REINVENT_SIGMA`` (beta = 1/128), Adam at ``marabook.chem.reinvent.REINVENT_LR``,
batch 64, 10,000 oracle calls (every sampled string counts):

* ``"REINVENT"``: the DAP loss alone (eq. 7.1);
* ``"REINVENT+DF"``: with REINVENT's identical-Murcko-scaffold filter (:class:`~marabook.chem.DiversityFilter`,
  the REINVENT 4 scaffold-bucket filter) at REINVENT's and the package's settings, :data:`DIVERSITY_FILTER`:
  once 25 molecules scoring at least 0.4 share a scaffold, later ones with it score 0 for training (the oracle's
  scores and every metric are untouched). On the medians, whose hits score 0.36-0.40, it acts on the best only;
* ``"MARA"``: tau fixed in advance, not tuned on these tasks: the task's own hit threshold
  (``threshold`` of :class:`~marabook.chem.benchmarks.BenchmarkTask`, stated with each task in
  :mod:`marabook.chem.benchmarks` before this study was designed: 0.99 for isomers, exact isomers only; 0.40 and
  0.36 for the medians, what each reference scores itself; 0.8 for MPOs, hops and the rediscovery; 1.0 for the
  saturated similarity). MARA then flattens the target over exactly the molecules the book counts as hits (Yield,
  OB100), as chapter 8's tau = 0.80 did on its 0.80 screening level; one tau for all would not do, the tasks'
  best scores range from about 0.4 (medians) to 1;
* ``"MARA+DF"``: both (the filter first, then MARA on the filtered scores, as in the trainer). ``"MARA <tau>"``
  and ``"MARA <tau>+DF"`` (a number or a batch percentile ``"pNN"``) serve a reader's own variants.

**Verbs.** :func:`grid`, :func:`method_config`, :func:`run` (one run's record), :func:`discovery`, :func:`study`
(resumable, one store per run), :func:`collect`, :func:`compare` / :func:`format_comparison` (the per-task table,
Holm-corrected through :func:`marabook.stats.compare_family`), :func:`mean_curves` and :func:`main`
(``scripts/run_pmo_study.py``).
"""

from __future__ import annotations

import heapq
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from marabook import stats
from marabook._validate import check_int, check_number
from marabook.chem import benchmarks
from marabook.chem.oracles import murcko_scaffold
from marabook.chem.metrics import check_records
from marabook.chem.prior import SmilesGRU, load_prior
from marabook.chem.reinvent import REINVENT_LR, REINVENT_SIGMA, ReinventConfig, ReinventTrainer
from marabook.experiments.sweep import JobFailure, SweepResults, read_store, run_sweep, split_failures
from marabook.tables import Table

__all__ = ["STUDY_TASKS", "MULTI_OPTIMUM", "NO_HARM", "METHODS", "SEEDS", "BUDGET", "BATCH_SIZE", "DIVERSITY_FILTER",
           "CURVE_EVERY", "TOP_K", "method_config", "tau_for", "grid", "discovery", "run", "job_dir", "study",
           "collect", "compare", "format_comparison", "mean_curves", "design", "main"]

#: The multi-optimum tasks of the study (the module docstring says why these).
MULTI_OPTIMUM = ("isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl", "median1", "median2", "osimertinib_mpo",
                 "fexofenadine_mpo", "ranolazine_mpo", "deco_hop", "scaffold_hop")
#: The single-optimum "no harm" checks, a rediscovery and a similarity task.
NO_HARM = ("celecoxib_rediscovery", "albuterol_similarity")
#: Every task of the stored study, in table order (picked before running, see the module docstring).
STUDY_TASKS = MULTI_OPTIMUM + NO_HARM
#: The four methods of the study, in table order (tau of ``"MARA"`` is the task's hit threshold).
METHODS = ("REINVENT", "REINVENT+DF", "MARA", "MARA+DF")
#: The seeds of the stored study.
SEEDS = (0, 1, 2, 3, 4)
#: PMO's oracle budget, in calls per run.
BUDGET = 10_000
#: Molecules sampled per REINVENT step (chapter 8's batch).
BATCH_SIZE = 64
#: The diversity filter's settings, REINVENT's and the package's defaults (read from ReinventConfig).
DIVERSITY_FILTER = {"bucket_size": ReinventConfig.df_bucket_size, "min_score": ReinventConfig.df_min_score}
#: The discovery curve's spacing in oracle calls (PMO logs its top-10 curve every 100 molecules).
CURVE_EVERY = 100
#: How many of a run's best distinct molecules it keeps (the first 10 are its top 10).
TOP_K = 100

_SETTINGS = ("budget", "batch_size", "sigma", "lr")


# ------------------------------------------------------------------------------------------ the methods
def _split_method(method) -> tuple[str, bool]:
    if not isinstance(method, str):
        raise ValueError(f"method must be a string such as 'MARA' or 'REINVENT+DF', got {method!r}")
    df = method.endswith("+DF")
    base = method[:-3] if df else method
    if base not in ("REINVENT", "MARA") and not base.startswith("MARA "):
        raise ValueError(f"method must be 'REINVENT', 'MARA', 'MARA <tau>', each optionally with '+DF', got {method!r}")
    return base, df


def _check_task(task) -> benchmarks.BenchmarkTask:
    if not isinstance(task, str) or task not in benchmarks.TASKS:
        raise ValueError(f"task must be a PMO task name of chem.benchmarks.TASKS {sorted(benchmarks.TASKS)}, got {task!r}")
    return benchmarks.TASKS[task]


def tau_for(method: str, task: str):
    """MARA's threshold for ``method`` on ``task``: None for REINVENT (with or without the filter), the task's
    hit threshold (``threshold`` of :class:`~marabook.chem.benchmarks.BenchmarkTask`) for ``"MARA"``, the given value or
    batch percentile for ``"MARA <tau>"``."""
    info = _check_task(task)
    base, _ = _split_method(method)
    if base == "REINVENT":
        return None
    if base == "MARA":
        return float(info.threshold)
    tau = base[5:].strip()
    try:
        return tau if tau.startswith("p") else float(tau)
    except ValueError:
        raise ValueError(f"method: cannot read a threshold from {method!r} (try 'MARA 0.9' or 'MARA p90')") from None


def method_config(method: str, task: str, **overrides) -> ReinventConfig:
    """The :class:`~marabook.chem.ReinventConfig` of ``method`` on ``task`` (module docstring: the four methods),
    with shared ``overrides`` (seed, budget, batch_size, sigma, lr). MARA's tau comes from :func:`tau_for`; the
    diversity filter uses :data:`DIVERSITY_FILTER`."""
    extra = {"mara_tau": tau_for(method, task), "diversity_filter": _split_method(method)[1], "label": method,
             "df_bucket_size": DIVERSITY_FILTER["bucket_size"], "df_min_score": DIVERSITY_FILTER["min_score"]}
    return ReinventConfig(**{**overrides, **extra})


# --------------------------------------------------------------------------------------------- the grid
def _names(values, name: str, check) -> list:
    given = values
    values = [] if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") else list(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence, got {given!r}")
    for v in values:
        try:
            check(v)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat an entry, got {values!r}")
    return values


def _settings(budget, batch_size, sigma, lr) -> dict:
    return {"budget": check_int(budget, "budget"), "batch_size": check_int(batch_size, "batch_size"),
            "sigma": check_number(sigma, "sigma", positive=True), "lr": check_number(lr, "lr", positive=True)}


def grid(tasks=STUDY_TASKS, methods=METHODS, seeds=SEEDS, *, budget: int = BUDGET, batch_size: int = BATCH_SIZE,
         sigma: float = REINVENT_SIGMA, lr: float = REINVENT_LR) -> list[tuple]:
    """The study's jobs ``(task, method, seed, settings)``, seed-major: every task and method at seed 0, then at
    seed 1, ... (a study stopped part-way holds paired comparisons at the same seeds on every task); within a
    seed, tasks in the order given, methods in the order given. ``settings`` is ``{"budget", "batch_size",
    "sigma", "lr"}``, shared by every job."""
    tasks = _names(tasks, "tasks", _check_task)
    methods = _names(methods, "methods", lambda m: tau_for(m, tasks[0]))
    seeds = _names(seeds, "seeds", lambda s: check_int(s, "seed", minimum=0))
    settings = _settings(budget, batch_size, sigma, lr)
    return [(t, m, int(s), dict(settings)) for s in seeds for t in tasks for m in methods]


# ------------------------------------------------------------------------------------------- one run
def discovery(records, every: int = CURVE_EVERY, threshold: float = 0.8) -> dict:
    """The discovery curve of a run from its oracle records, after every ``every`` calls and at the last call:
    ``calls``, ``best`` (the best score so far), ``top10`` (the mean of the 10 best distinct valid molecules so
    far, fewer while fewer were found, 0 before the first), ``distinct`` (distinct valid molecules) and ``hits``
    (distinct molecules scoring at least ``threshold``). The x axis counts calls, as the book's oracle budget
    does; PMO's AUC top-10 (:func:`~marabook.chem.benchmarks.auc_top10`) counts distinct molecules instead."""
    records = check_records(records)
    every = check_int(every, "every")
    threshold = check_number(threshold, "threshold")
    marks = list(range(every, len(records), every)) + ([len(records)] if records else [])
    out = {"calls": marks, "best": [], "top10": [], "distinct": [], "hits": []}
    seen, top, hits, j = set(), [], 0, 0
    for mark in marks:
        for r in records[j:mark]:
            if r.canonical is not None and r.canonical not in seen:
                seen.add(r.canonical)
                hits += r.score >= threshold
                (heapq.heappush if len(top) < 10 else heapq.heappushpop)(top, float(r.score))
        j = mark
        for key, value in zip(("best", "top10", "distinct", "hits"),
                              (max(top, default=0.0), float(np.mean(top)) if top else 0.0, len(seen), int(hits))):
            out[key].append(value)
    return out


def _scaffolds(smiles) -> int:
    return len({s for s in map(murcko_scaffold, smiles) if s is not None})


@lru_cache(maxsize=None)
def _revision() -> str:
    """The code's git revision, asked once per process (``git status`` takes seconds on a busy checkout)."""
    from marabook.provenance import provenance

    return provenance()["git_revision"]


@lru_cache(maxsize=None)
def _prior(device) -> SmilesGRU:
    """The shipped prior, loaded once per process and device (the trainer copies it, so sharing is safe)."""
    return load_prior(device=device)


def run(task: str, method: str, seed: int, *, budget: int = BUDGET, batch_size: int = BATCH_SIZE,
        sigma: float = REINVENT_SIGMA, lr: float = REINVENT_LR, prior: SmilesGRU | None = None, device=None,
        every: int = CURVE_EVERY, top_k: int = TOP_K, progress: bool = False) -> dict:
    """One run of the study: ``method`` (:func:`method_config`) on PMO task ``task`` from the shipped prior (or ``prior``)
    for ``budget`` oracle calls, then its record, plain JSON data:

    ``task``, ``method``, ``seed``, ``tau`` (None without MARA), ``diversity_filter`` (its settings or None), ``settings``
    (budget, batch_size, sigma, lr); ``summary``: :func:`~marabook.chem.benchmarks.summarize` at the task's threshold
    (``auc_top10``, validity, uniqueness, yield, OB100, intdiv1, circles) plus ``best``, ``top10_mean`` and
    ``top100_mean`` (distinct molecules), ``scaffolds_top10``, ``scaffolds_top100`` and ``scaffolds_hits`` (distinct
    Murcko scaffolds) and ``failed_scores``; ``top``: the ``top_k`` best distinct molecules as ``[score, smiles]``;
    ``curve``: :func:`discovery` every ``every`` calls; ``history``: per step the calls, mean and max score, validity
    and uniqueness (MARA: good molecules and the anchor's score); ``mara_active``: the share of steps with a molecule
    at or above tau (MARA only); ``df_full_buckets``: scaffolds whose bucket filled (filter only); ``seconds`` (wall),
    ``train_seconds``, ``cpu_seconds`` (this process), ``torch_threads``, ``device`` and ``revision`` (git)."""
    import torch

    info = _check_task(task)
    seed = check_int(seed, "seed", minimum=0)
    settings = _settings(budget, batch_size, sigma, lr)
    every, top_k = check_int(every, "every"), check_int(top_k, "top_k", minimum=10)
    if prior is not None and not isinstance(prior, SmilesGRU):
        raise ValueError(f"prior must be a chem.SmilesGRU or None, got {type(prior).__name__}")
    cfg = method_config(method, task, seed=seed, **settings)
    t0, c0 = time.perf_counter(), time.process_time()
    oracle = benchmarks.oracle(task, budget=settings["budget"])
    trainer = ReinventTrainer(prior if prior is not None else _prior(device), oracle, cfg, device=device,
                              progress=progress)
    trainer.train()
    train_seconds = time.perf_counter() - t0
    records = oracle.records
    summary = benchmarks.summarize(task, records, budget=settings["budget"])
    best = {r.canonical: float(r.score) for r in records if r.canonical is not None}  # a molecule's score is fixed
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    top = ranked[:top_k]
    scores = [v for _, v in top]
    hits = [s for s, v in ranked if v >= info.threshold]
    summary.update(best=scores[0] if scores else 0.0, top10_mean=float(np.mean(scores[:10])) if scores else 0.0,
                   top100_mean=float(np.mean(scores[:100])) if scores else 0.0,
                   scaffolds_top10=_scaffolds([s for s, _ in top[:10]]),
                   scaffolds_top100=_scaffolds([s for s, _ in top[:100]]),
                   scaffolds_hits=_scaffolds(hits), failed_scores=oracle.n_failed)
    steps = trainer.history
    keys = [k for k in ("calls", "score", "max_score", "valid", "unique", "n_good", "anchor_score") if k in steps[0]]
    return {"task": task, "method": method, "seed": seed, "tau": cfg.mara_tau,
            "diversity_filter": dict(DIVERSITY_FILTER) if cfg.diversity_filter else None, "settings": settings,
            "summary": summary, "top": [[float(v), s] for s, v in top],
            "curve": discovery(records, every, info.threshold),
            "history": {k: [h[k] for h in steps] for k in keys},
            "mara_active": (float(np.mean([h["n_good"] > 0 for h in steps])) if cfg.mara_tau is not None else None),
            "df_full_buckets": (sum(n >= cfg.df_bucket_size for n in trainer.filter.buckets.values())
                                if trainer.filter is not None else None),
            "seconds": round(time.perf_counter() - t0, 2), "train_seconds": round(train_seconds, 2),
            "cpu_seconds": round(time.process_time() - c0, 2), "torch_threads": torch.get_num_threads(),
            "device": str(trainer.device), "revision": _revision()}


# -------------------------------------------------------------------------------------- the stored study
def job_dir(store, job) -> Path:
    """Where a job of :func:`grid` keeps its result in ``store``: ``<store>/<task>/<method>/seed-<k>`` (spaces in
    a method's name become underscores). One directory per run, so any subset of tasks, methods and seeds can be
    run, stopped and extended in the same store."""
    if not isinstance(store, (str, Path)) or str(store) == "":
        raise ValueError(f"store must be a directory path, got {store!r}")
    if not (isinstance(job, (tuple, list)) and len(job) == 4 and isinstance(job[0], str) and isinstance(job[1], str)):
        raise ValueError(f"job must be a (task, method, seed, settings) tuple of pmo.grid, got {job!r}")
    return Path(store) / job[0] / job[1].replace(" ", "_") / f"seed-{int(job[2])}"


def _stored_job(args) -> dict:
    """One job through its own one-job store (:func:`~marabook.experiments.sweep.run_sweep` with ``store=``): run
    and saved, or read back when already stored; a store holding another study's job is refused by name."""
    job, directory, device = args
    result = run_sweep(lambda j: run(*j[:3], device=device, **j[3]), [job], store=directory, progress=False)[0]
    if isinstance(result, JobFailure):
        raise RuntimeError(f"{result.error}: {result.message}\n{result.traceback}")
    return result


def study(store, tasks=STUDY_TASKS, methods=METHODS, seeds=SEEDS, *, budget: int = BUDGET,
          batch_size: int = BATCH_SIZE, sigma: float = REINVENT_SIGMA, lr: float = REINVENT_LR, workers: int = 1,
          executor=None, device=None, progress: bool = True) -> SweepResults:
    """Run (or resume) the study's :func:`grid` into ``store``: every finished run is saved as it arrives (:func:`job_dir`,
    one JSON file written atomically) and a later call skips the stored runs, so the grid can be run in parts. Jobs run
    in this process (``workers=1``), in ``workers`` spawned processes (one torch thread each) or on ``executor``.
    Returns the runs in grid order, a run that raised as a :class:`~marabook.experiments.sweep.JobFailure` (with the
    grid's job). A store holding a run of the same task, method and seed with other settings is refused at once."""
    jobs = grid(tasks, methods, seeds, budget=budget, batch_size=batch_size, sigma=sigma, lr=lr)
    check_int(workers, "workers")
    job_dir(store, jobs[0])  # a bad store is named before anything runs
    out, todo = SweepResults([None] * len(jobs)), []
    for i, job in enumerate(jobs):
        where = job_dir(store, job)
        if (where / "job-00000.json").exists():
            try:
                out[i] = _stored_job((job, str(where), device))  # read back, never rerun
            except ValueError as err:
                raise ValueError(f"store: {err}") from None
        else:
            todo.append(i)
    if todo:
        done = run_sweep(_stored_job, [(jobs[i], str(job_dir(store, jobs[i])), device) for i in todo],
                         workers=workers, executor=executor, desc="PMO runs", progress=progress)
        for i, r in zip(todo, done):
            out[i] = JobFailure(i, jobs[i], r.error, r.message, r.traceback) if isinstance(r, JobFailure) else r
    return out


def _rank(method: str) -> tuple:
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)


def _order(run: dict) -> tuple:
    t = run["task"]
    return (run["seed"], STUDY_TASKS.index(t) if t in STUDY_TASKS else len(STUDY_TASKS), t) + _rank(run["method"])


def collect(store) -> list[dict]:
    """The finished runs a :func:`study` ``store`` holds so far, in grid order (seed, then task and method in
    table order): what a study stopped part-way has to show. A damaged file, one of another schema, or runs with
    different settings (budget, batch, sigma, lr) in one store are refused by name."""
    runs = read_store(store, "*/*/seed-*/job-00000.json")
    for r in runs:
        if not {"task", "method", "seed", "settings", "summary"} <= set(r):
            raise ValueError(f"store {store} holds a result that is not a finished PMO run: keys {sorted(r)}")
    kinds = {tuple(r["settings"][k] for k in _SETTINGS) for r in runs}
    if len(kinds) > 1:
        raise ValueError(f"store {store} mixes runs with different settings {_SETTINGS}: {sorted(kinds)}")
    return sorted(runs, key=_order)


# ------------------------------------------------------------------------------------------ the table
def _metric_values(rows, method, metric) -> np.ndarray:
    """One metric over a method's seeds; an OB metric never reached (None) counts as the run's budget."""
    return np.array([float(r["settings"]["budget"] if r["summary"][metric] is None else r["summary"][metric])
                     for r in rows if r["method"] == method])


def compare(runs, metric: str = "auc_top10", *, baselines=("REINVENT", "REINVENT+DF"), treatments=None,
            alternative: str = "two-sided", n_resamples: int = 9999, seed: int = 0) -> list[dict]:
    """The study's per-task table as rows, one per task and method: ``mean``, ``sd`` (ddof 1) and ``n`` of
    ``metric`` (a key of each run's ``summary``, default PMO's ``auc_top10``) over seeds, and ``errors`` (runs of
    that task and method that raised: counted, never averaged). Each MARA variant's row has ``tests``:
    ``{baseline: {"effect", "ci_low", "ci_high", "p", "p_holm"}}`` against each of ``baselines``, Welch's t-test
    (``alternative``, default two-sided: a benchmark table must show harm as well as help) on the difference of
    means with a 95% percentile-bootstrap interval, Holm-adjusted over every test of the table as one family
    (:func:`marabook.stats.compare_family`; ``family_size`` on each row). A test needs two runs on each side.
    ``treatments``: the methods tested against ``baselines`` (default every MARA variant; chapter 9 also tests
    ``("REINVENT+DF",)`` against ``("REINVENT",)``, a family of its own)."""
    if isinstance(baselines, str) or not baselines:
        raise ValueError(f"baselines must be a non-empty sequence of method names, got {baselines!r}")
    if treatments is not None and (isinstance(treatments, str) or not treatments
                                   or set(treatments) & set(baselines)):
        raise ValueError(f"treatments must be a non-empty sequence of method names, none of them a baseline, "
                         f"got {treatments!r}")
    treated = (lambda m: m.startswith("MARA")) if treatments is None else (lambda m: m in treatments)
    done, errors = split_failures(runs, key=lambda j: (j[0], j[1]), fields=("task", "method", "seed", "summary", "settings"))
    if not done:
        raise ValueError("runs must hold at least one finished run")
    if not isinstance(metric, str) or any(metric not in r["summary"] for r in done):
        raise ValueError(f"metric must be a key of every run's summary ({sorted(done[0]['summary'])}), got {metric!r}")
    rows, cells = [], []
    for task in dict.fromkeys(r["task"] for r in sorted(done, key=_order)):
        mine = [r for r in done if r["task"] == task]
        present = {r["method"] for r in mine} | {m for (t, m) in errors if t == task}
        for method in sorted(present, key=_rank):
            vals = _metric_values(mine, method, metric)
            row = {"task": task, "method": method, "n": int(vals.size), "errors": int(errors.get((task, method), 0)),
                   "mean": float(vals.mean()) if vals.size else float("nan"),
                   "sd": float(vals.std(ddof=1)) if vals.size > 1 else float("nan")}
            rows.append(row)
            if treated(method):
                row["tests"] = {}
                cells += [{"treatment": vals, "control": c, "row": len(rows) - 1, "baseline": b} for b in baselines
                          if vals.size > 1 and (c := _metric_values(mine, b, metric)).size > 1]
    if cells:
        for c in stats.compare_family(cells, alternative=alternative, effect="difference", n_resamples=n_resamples,
                                      seed=seed):
            rows[c["row"]]["tests"][c["baseline"]] = {k: c[k] for k in ("effect", "ci_low", "ci_high", "p", "p_holm")}
    for row in rows:
        row.update(family_size=len(cells), alternative=alternative)
    return rows


def format_comparison(rows, metric: str = "auc_top10") -> Table:
    """:func:`compare` rows as a table (:class:`~marabook.tables.Table`): one row per task, per method the
    ``mean ± sd`` over seeds and, for the tested methods (the MARA variants by default), the difference to each
    baseline with its Holm-adjusted p-value."""
    if isinstance(rows, (str, dict)) or not rows:
        raise ValueError("rows must be a non-empty list of pmo.compare rows")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    short = {"REINVENT": "R", "REINVENT+DF": "R+DF"}
    cells = []
    for task in dict.fromkeys(r["task"] for r in rows):
        line = [task]
        for m in methods:
            r = next((x for x in rows if (x["task"], x["method"]) == (task, m)), None)
            if r is None or r["n"] == 0:
                line.append("" if r is None else f"({r['errors']} raised)")
                continue
            cell = f"{r['mean']:.3f} ± {r['sd']:.3f}" if r["n"] > 1 else f"{r['mean']:.3f}"
            tests = [f"vs {short.get(b, b)} {t['effect']:+.3f}, Holm p {t['p_holm']:.2f}"
                     for b, t in r.get("tests", {}).items() if np.isfinite(t["p_holm"])]
            cell += f" ({'; '.join(tests)})" if tests else ""
            cell += f" [{r['errors']} raised]" if r["errors"] else ""
            line.append(cell)
        cells.append(line)
    tested = [m for m in methods if any("tests" in r for r in rows if r["method"] == m)]
    against = dict.fromkeys(b for r in rows for b in r.get("tests", {}))
    return Table(["task"] + methods, cells,
                 caption=f"{metric}: mean ± sd over seeds; {', '.join(tested) or 'no method'}: difference of means to "
                         f"{' and '.join(f'{b} ({short.get(b, b)})' for b in against) or 'no baseline'}, Welch's test "
                         f"({rows[0]['alternative']}) Holm-adjusted over the table's {rows[0]['family_size']} tests")


def mean_curves(runs, task: str, key: str = "top10") -> dict:
    """The discovery curves of ``task`` averaged over seeds, per method: ``{method: {"calls", "mean", "sd",
    "n"}}`` for ``key`` one of ``"best"``, ``"top10"``, ``"distinct"``, ``"hits"`` (:func:`discovery`); runs
    of one method cut to the shortest curve."""
    if key not in ("best", "top10", "distinct", "hits"):
        raise ValueError(f"key must be 'best', 'top10', 'distinct' or 'hits', got {key!r}")
    done = [r for r in split_failures(runs, fields=("task", "method", "curve"))[0] if r["task"] == task]
    if not done:
        raise ValueError(f"runs must hold finished runs of task {task!r}")
    out = {}
    for m in sorted({r["method"] for r in done}, key=_rank):
        curves = [r["curve"] for r in done if r["method"] == m]
        n = min(len(c["calls"]) for c in curves)
        ys = np.array([c[key][:n] for c in curves], dtype=float)
        out[m] = {"calls": list(curves[0]["calls"][:n]), "mean": ys.mean(axis=0).tolist(),
                  "sd": (ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(n)).tolist(), "n": len(curves)}
    return out


# ------------------------------------------------------------------------------------------ the command
def design(tasks=STUDY_TASKS, methods=METHODS, seeds=SEEDS, *, budget: int = BUDGET, batch_size: int = BATCH_SIZE,
           sigma: float = REINVENT_SIGMA, lr: float = REINVENT_LR) -> dict:
    """The study's design as stored with its results: the tasks (with PMO name, optimum kind, hit threshold and
    its reason, MARA's tau per method), methods, seeds, settings, the filter's settings and the curve spacing."""
    jobs = grid(tasks, methods, seeds, budget=budget, batch_size=batch_size, sigma=sigma, lr=lr)
    tasks, methods = list(tasks), list(methods)
    return {"tasks": {t: {"optimum": benchmarks.TASKS[t].optimum, "threshold": benchmarks.TASKS[t].threshold,
                          "threshold_reason": benchmarks.TASKS[t].threshold_reason,
                          "tau": {m: tau_for(m, t) for m in methods}} for t in tasks},
            "methods": methods, "seeds": [int(x) for x in seeds], "settings": jobs[0][3], "diversity_filter": dict(DIVERSITY_FILTER),
            "tau_rule": "MARA's tau is the task's hit threshold (chem.benchmarks.TASKS[task].threshold), fixed "
                        "before the study", "curve_every": CURVE_EVERY, "top_k": TOP_K, "planned": len(jobs)}


def main(argv=None):
    """``python scripts/run_pmo_study.py``: run or resume the study into ``--store`` (``--workers`` processes)
    and write what the store holds to ``--out`` with provenance; ``--collect`` only writes."""
    import argparse
    import sys

    import torch

    from marabook.provenance import default_out, portable_path, provenance, save_json

    ap = argparse.ArgumentParser(description="The PMO study of issue 29: REINVENT, its diversity filter and MARA on "
                                             "PMO's goal-directed tasks, resumable, stored with provenance.")
    ap.add_argument("--store", required=True, help="directory keeping each finished run (resumable)")
    ap.add_argument("--collect", action="store_true", help="write what --store holds so far, run nothing")
    ap.add_argument("--out", default=default_out("pmo_study.json"), help="where to write (shipped: marabook/data/results)")
    ap.add_argument("--tasks", nargs="+", default=list(STUDY_TASKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="e.g. REINVENT 'MARA 0.9+DF'")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    for flag, kind, default in (("--budget", int, BUDGET), ("--batch-size", int, BATCH_SIZE), ("--workers", int, 1),
                                ("--sigma", float, REINVENT_SIGMA), ("--lr", float, REINVENT_LR)):
        ap.add_argument(flag, type=kind, default=default)
    ap.add_argument("--threads", type=int, default=1, help="torch threads when --workers 1 (workers use one each)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    command = "python scripts/run_pmo_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.collect and args.threads >= 1:  # before the provenance, which records the thread count
        torch.set_num_threads(args.threads)
    prov = provenance(command)
    settings = {"budget": args.budget, "batch_size": args.batch_size, "sigma": args.sigma, "lr": args.lr}
    try:
        plan = design(args.tasks, args.methods, args.seeds, **settings)
        check_int(args.threads, "threads")
    except ValueError as err:
        ap.error(str(err))
    failures = []
    t0 = time.time()
    if not args.collect:
        results = study(args.store, args.tasks, args.methods, args.seeds, workers=args.workers, device=args.device,
                        **settings)
        failures = [str(f) for f in results.failures]
    runs = collect(args.store)
    planned = {tuple(j[:3]) for j in grid(args.tasks, args.methods, args.seeds, **settings)}
    finished = sum((r["task"], r["method"], r["seed"]) in planned for r in runs)
    out = save_json(args.out, {"design": plan, "store": portable_path(args.store), "planned": len(planned),
                               "finished": finished, "partial": finished < len(planned),
                               "revisions": sorted({r.get("revision", "unknown") for r in runs}),
                               "wall_seconds": round(time.time() - t0, 1),
                               "cpu_seconds_runs": round(sum(r.get("cpu_seconds", 0.0) for r in runs), 1),
                               "failures": failures, "runs": runs}, prov=prov)
    print(f"{finished} of {len(planned)} planned runs in the store ({len(runs)} in all, {len(failures)} failed "
          f"this time) -> {out}")


if __name__ == "__main__":
    main()
