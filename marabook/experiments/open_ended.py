"""Chapter 6's experiment on the book's 125k-parameter toy model: open-ended naming, six trainers, reward and
diversity (the paper's Table 1).

Chapter 6 itself now runs on SmolLM2-135M-Instruct (:mod:`marabook.experiments.open_ended_real`); this toy version
runs in seconds without the real model and is kept for quick experiments and for the package's tests, with its
stored comparison (``open_ended.json``). Its :func:`comparison_table` formats the real study's tests too.

Verbs: :data:`OPEN_ENDED_METHODS` and :func:`configs` (the six trainers), :func:`evaluate` (reward,
distinct answers, EAD-1 and semantic diversity of sampled answers), :func:`run` (train one
configuration, evaluate in and out of distribution), :func:`sweep` (seeds x methods through
:func:`marabook.experiments.sweep.run_sweep`), :func:`summarize` and :func:`table`.
``python -m marabook.experiments.open_ended`` stores the full-scale comparison.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np

from marabook.experiments.sweep import failure_counts, run_sweep, split_failures
from marabook.lm import NameTask, load_reference_lm
from marabook.rl import RLConfig, Trainer, sample_texts
from marabook._validate import check_int
from marabook.tables import Table

__all__ = ["OPEN_ENDED_METHODS", "configs", "evaluate", "run", "sweep", "summarize", "table", "COLUMNS",
           "TARGET_OF", "predictions", "prediction_table", "flat", "compare", "comparison_table"]


def evaluate(model, tokenizer, task, *, n_per_prompt: int = 16, seed: int = 12345,
                        embedder=None, max_new_tokens: int = 6) -> dict:
    """Sample ``n_per_prompt`` answers per prompt and score them the way the paper's Table 1 does.

    Per prompt: mean reward, number of distinct answers (:func:`marabook.metrics.distinct_answers`),
    EAD-1 over the answers (tokens = the model's tokenizer ids, ``V = len(tokenizer)``), and, when an
    ``embedder`` is given, the mean pairwise cosine distance of the answers' embeddings. Returns the
    means over prompts, plus the samples.
    """
    from marabook import metrics as M

    check_int(n_per_prompt, "n_per_prompt", minimum=2)
    samples = sample_texts(model, tokenizer, task.prompts, n_per_prompt=n_per_prompt,
                           max_new_tokens=max_new_tokens, seed=seed)
    tok = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = []
    for i, p in enumerate(task.prompts):
        answers = samples[i * n_per_prompt:(i + 1) * n_per_prompt]
        row = {"reward": float(np.mean(task.reward([p] * len(answers), answers))),
               "distinct": M.distinct_answers(answers) if any(a.strip() for a in answers) else 0,
               "ead1": M.ead(answers, 1, vocab_size=len(tokenizer), tokenize=tok)}
        if embedder is not None:
            texts = [a.strip() or "(empty)" for a in answers]
            row["semantic"] = M.mean_pairwise_cosine_distance(embedder(texts))
        rows.append(row)
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["samples"] = samples
    return out


def run(config: RLConfig, *, model=None, tokenizer=None, train_task=None, eval_tasks=None,
                   embedder=None, n_eval: int = 16, device=None) -> dict:
    """Train one configuration on ``train_task`` (default: colour and fruit questions) from a copy of the
    reference LM, then evaluate on each of ``eval_tasks`` (default: ``{"in": colour+fruit, "out":
    animal}``) with :func:`evaluate`. Returns ``{"config", "history", "eval"}``."""
    if model is None or tokenizer is None:
        model, tokenizer = load_reference_lm(device=device)
    train_task = train_task or NameTask(("color", "fruit"))
    eval_tasks = eval_tasks or {"in": NameTask(("color", "fruit")), "out": NameTask(("animal",))}
    policy = copy.deepcopy(model)
    for p in policy.parameters():
        p.requires_grad_(True)
    trainer = Trainer(policy, tokenizer, train_task, config, ref_model=None if config.lora else model, device=device,
                      progress=False)
    history = trainer.train()
    evals = {}
    for name, t in eval_tasks.items():
        e = evaluate(trainer.policy, tokenizer, t, n_per_prompt=n_eval, seed=10_000 + config.seed,
                                embedder=embedder, max_new_tokens=config.max_new_tokens)
        evals[name] = e
    return {"config": asdict(config), "history": history, "eval": evals}


#: The six trainers of chapter 6 (and scripts/run_open_ended.py): RLConfig overrides by name.
OPEN_ENDED_METHODS = {
    "GRPO": dict(kl="reverse", kl_estimator="k3_loss", advantage="grpo"),
    "RLOO": dict(kl="reverse", advantage="rloo"),
    "entropy": dict(kl="reverse", advantage="rloo", entropy_coef=0.02),
    "MARA-rev": dict(kl="reverse", advantage="rloo", mara_tau=0.9),
    "MARA-fwd": dict(kl="forward", advantage="rloo", mara_tau=0.9),
    "MARA-rev p90": dict(kl="reverse", advantage="rloo", mara_tau="p90", tau_scope="batch"),
}


def configs(seed: int, steps: int = 100, tau=0.9, max_new_tokens: int = 6) -> dict:
    """``{method name: RLConfig}`` for chapter 6: beta 0.02, Adam lr 3e-4, 2 prompts x 16 completions.

    ``tau`` replaces the fixed MARA threshold 0.9 of "MARA-rev" / "MARA-fwd" (use a percentile such as
    ``"p90"`` with ``tau_scope="batch"`` semantics for reward models whose scale is unknown).
    """
    common = dict(beta=0.02, steps=steps, lr=3e-4, max_new_tokens=max_new_tokens, group_size=16,
                  prompts_per_step=2, seed=seed)
    out = {}
    for name, kw in OPEN_ENDED_METHODS.items():
        kw = dict(kw)
        if kw.get("mara_tau") == 0.9:
            kw["mara_tau"] = tau
            if isinstance(tau, str):
                kw["tau_scope"] = "batch"
        out[name] = RLConfig(**common, **kw)
    return out


#: The columns of the chapter's table, as (header, evaluation set, metric).
COLUMNS = [("reward (in)", "in", "reward"), ("reward (out)", "out", "reward"), ("EAD-1", "in", "ead1"),
           ("semantic", "in", "semantic"), ("distinct", "in", "distinct")]


def _job(args):
    seed, name, steps, kw = args
    from marabook.lm import load_sentence_embedder

    cfg = configs(seed, steps=steps)[name]
    return {"method": name, "seed": seed, **run(cfg, embedder=load_sentence_embedder(), **kw)}


def sweep(seeds=range(3), steps: int = 100, methods=None, *, workers: int = 1, executor=None, progress: bool = True,
          **kw) -> list[dict]:
    """Every (seed, method) run, each ``{"method", "seed", "config", "history", "eval"}``, in seed-major order.
    Each job loads the reference LM and the sentence embedder itself (so it can run in another process)."""
    methods = list(OPEN_ENDED_METHODS) if methods is None else list(methods)
    for m in methods:
        if m not in OPEN_ENDED_METHODS:
            raise ValueError(f"methods must be drawn from {list(OPEN_ENDED_METHODS)}, got {m!r}")
    jobs = [(int(s), m, steps, kw) for s in seeds for m in methods]
    return run_sweep(_job, jobs, workers=workers, executor=executor, desc="open-ended runs", progress=progress)


def summarize(results, base: dict | None = None) -> list[dict]:
    """One row per method (and ``"base"`` first when the reference model's evaluation ``base`` is given):
    the mean and bootstrap standard error over seeds of every column of :data:`COLUMNS`. ``n`` counts the runs
    that finished; ``errors`` the jobs that raised (:class:`~marabook.experiments.sweep.JobFailure` records in
    ``results``: counted, never averaged)."""
    from marabook.metrics import bootstrap_se
    from marabook.provenance import need

    done, fails = split_failures(results)
    errors = failure_counts(fails, lambda job: job[1])  # a job is (seed, method, steps, kw)
    by_method: dict = {m: [] for m in errors}
    for i, r in enumerate(done):
        need(r, "method", "eval", where=f"run {i}")
        by_method.setdefault(r["method"], []).append(r["eval"])
    rows = []
    if base is not None:
        rows.append({"method": "base", "n": 1, "errors": 0,
                     **{h: (float(base[s][m]), float("nan")) for h, s, m in COLUMNS if m in base[s]}})
    for method, evals in by_method.items():
        row = {"method": method, "n": len(evals), "errors": errors.get(method, 0)}
        for head, split, metric in COLUMNS:
            vals = np.array([e[split][metric] for e in evals if metric in e[split]], dtype=float)
            if vals.size:
                row[head] = (float(vals.mean()), bootstrap_se(vals) if vals.size > 1 else float("nan"))
        rows.append(row)
    return rows


def table(rows) -> Table:
    """The summary rows as a table (:class:`~marabook.tables.Table`), ``mean ± se`` per column; a method some of
    whose jobs raised says how many (``"GRPO (1 raised)"``)."""
    cells = []
    for r in rows:
        row = [r["method"] + (f" ({r['errors']} raised)" if r.get("errors") else "")]
        for h, _, _ in COLUMNS:
            if h in r:
                m, se = r[h]
                row.append(f"{m:.3f} ± {se:.3f}" if np.isfinite(se) else f"{m:.3f}")
            else:
                row.append("")
        cells.append(row)
    return Table(["method"] + [h for h, _, _ in COLUMNS], cells)

def flat(rows) -> list[dict]:
    """The summary rows with one number per column (the mean; the standard error as ``<column>_se``), under
    identifier-friendly names: ``reward_in``, ``reward_out``, ``ead_1``, ``semantic``, ``distinct`` (and
    ``errors``, the jobs that raised, when the row counts them)."""
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or "method" not in r or "n" not in r:
            raise ValueError(f"rows[{i}] is not a summary row of summarize() (no 'method' and 'n')")
        row = {"method": r["method"], "n": r["n"], **({"errors": r["errors"]} if "errors" in r else {})}
        for head, _, _ in COLUMNS:
            if head in r:
                key = head.replace(" (", "_").replace(")", "").replace("-", "_").lower()
                row[key], row[key + "_se"] = r[head]
        out.append(row)
    return out


def compare(results, treatments=("MARA-rev", "MARA-fwd", "MARA-rev p90"), controls=("RLOO", "entropy"),
            columns=("distinct", "semantic", "reward (out)"), *, n_resamples: int = 9999) -> list[dict]:
    """Every treatment against every control on every column, per seed, as one Holm-corrected family
    (:func:`marabook.stats.compare_family`: two-sided Welch tests, percentile-bootstrap 95% intervals of the
    difference of means). ``columns``: headers of :data:`COLUMNS`. One dict per comparison with ``treatment``,
    ``control``, ``column`` and the statistics; failed jobs are left out (``summarize`` counts them)."""
    from marabook import stats

    heads = {h: (split, metric) for h, split, metric in COLUMNS}
    for c in columns:
        if c not in heads:
            raise ValueError(f"columns: {c!r} is not a column of COLUMNS ({sorted(heads)})")
    done, _ = split_failures(results)
    per = {}
    for r in done:
        per.setdefault(r["method"], []).append(r["eval"])
    for name in (*treatments, *controls):
        if name not in per:
            raise ValueError(f"no finished runs of method {name!r} (have {sorted(per)})")
    cells = []
    for col in columns:
        split, metric = heads[col]
        for t in treatments:
            for c in controls:
                cells.append({"treatment": [e[split][metric] for e in per[t]],
                              "control": [e[split][metric] for e in per[c]],
                              "column": col, "method": t, "against": c})
    return stats.compare_family(cells, alternative="two-sided", effect="difference", n_resamples=n_resamples)


def comparison_table(rows) -> Table:
    """:func:`compare`'s rows: the difference of means with its 95% interval, the p-value and its Holm
    correction over the whole family."""
    cells = [[r["column"], f"{r['method']} - {r['against']}", f"{r['effect']:+.3f}",
              f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['p']:.3f}", f"{r['p_holm']:.3f}"] for r in rows]
    return Table(["column", "difference", "mean", "95% interval", "p", "p (Holm)"], cells,
                 caption=f"two-sided Welch tests, Holm-corrected over all {len(rows)} comparisons")


#: The closed-form target (a key of :func:`marabook.mara.method_targets`) each trainer's objective has:
#: GRPO puts k3 in the loss, whose gradient is the forward KL's (eq. 5.4), and its std scaling moves the
#: stationary point somewhat (chapter 5); the per-batch percentile moves with the policy, so it has none.
TARGET_OF = {"GRPO": "vanilla-forward", "RLOO": "vanilla-reverse", "entropy": "entropy",
             "MARA-rev": "mara-reverse", "MARA-fwd": "mara-forward", "MARA-rev p90": None}


def predictions(ref_probs, rewards, *, beta: float = 0.02, tau: float = 0.9, eta: float = 0.02,
                n: int = 32) -> dict:
    """What each trainer of chapter 6 is asked to converge to, computed exactly (chapters 1-4).

    ``ref_probs`` are the reference's probabilities of the acceptable answers (they may sum to less than 1: the
    rest of the reference's mass is one more outcome with reward 0) and ``rewards`` their rewards. For each
    method of :data:`TARGET_OF`, ``{"target": probabilities of the acceptable answers under its target,
    "reward": expected reward, "distinct": expected number of distinct acceptable answers among ``n`` draws, "n",
    "top_share": the likeliest answer's probability, "other": the mass left off the acceptable answers}``,
    or ``None`` for a method without a fixed target. Off the acceptable answers every target keeps the
    reference's proportions except the entropy target (which flattens them); with rewards >= 0.8 and beta =
    0.02 that mass is below e^-40 under every target, so lumping it changes nothing visible.
    """
    from marabook.mara import method_targets

    p = np.asarray(ref_probs, dtype=float)
    r = np.asarray(rewards, dtype=float)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() > 1 + 1e-9:
        raise ValueError("ref_probs must be a non-empty 1-D array of probabilities summing to at most 1")
    if r.shape != p.shape or not np.all(np.isfinite(r)):
        raise ValueError(f"rewards must be finite and of ref_probs' shape {p.shape}, got shape {r.shape}")
    check_int(n, "n", minimum=1)
    rest = max(0.0, 1.0 - float(p.sum()))
    ref = np.append(p, rest) / (p.sum() + rest)
    targets = method_targets(ref, np.append(r, 0.0), beta, tau, eta=eta)
    out = {}
    for method, key in TARGET_OF.items():
        if key is None:
            out[method] = None
            continue
        t = targets[key]
        good = t[:-1]
        out[method] = {"target": good, "reward": float(good @ r), "distinct": float(np.sum(1 - (1 - good) ** n)),
                       "n": n, "top_share": float(good.max()), "other": float(t[-1])}
    return out


def prediction_table(preds, names=None) -> Table:
    """The predictions as a table (:class:`~marabook.tables.Table`; ``names``: the answers, to show the
    likeliest one)."""
    if not isinstance(preds, dict) or not any(v is not None for v in preds.values()):
        raise ValueError("preds must be the dict predictions() returns, with at least one target")
    n = next(v["n"] for v in preds.values() if v is not None)
    if names is not None and len(names) != len(next(v for v in preds.values() if v is not None)["target"]):
        raise ValueError("names must name every acceptable answer, in the order of ref_probs")
    cells = []
    for method, pr in preds.items():
        if pr is None:
            cells.append([method, "none (moves)", "", "", ""])
            continue
        top = f"{pr['top_share']:.2f}" + (f" {names[int(np.argmax(pr['target']))]}" if names is not None else "")
        cells.append([method, TARGET_OF[method], f"{pr['reward']:.3f}", f"{pr['distinct']:.1f}", top])
    return Table(["method", "target", "reward", f"distinct of {n}", "top answer (share)"], cells)

def main(argv=None):
    """Store the full-scale comparison (5 seeds x 6 trainers by default) with provenance."""
    import argparse
    import sys
    import time

    import torch

    from marabook import lm
    from marabook.provenance import default_out, save_json

    ap = argparse.ArgumentParser(description="Chapter 6's comparison with more seeds, stored with provenance.")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default=default_out("open_ended.json"),
                    help="where to write (default results/open_ended.json; the shipped file is in marabook/data/results)")
    ap.add_argument("--workers", type=int, default=1, help="processes for the sweep (each loads its own models)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, tok = lm.load_reference_lm()
    embedder = lm.load_sentence_embedder()
    evals = {"in": lm.NameTask(("color",)), "out": lm.NameTask(("animal",))}
    t0 = time.time()
    reference = {k: {m: v for m, v in evaluate(model, tok, t, n_per_prompt=32, seed=10_000,
                                                  embedder=embedder).items() if m != "samples"}
                 for k, t in evals.items()}
    results = sweep(range(args.seeds), steps=args.steps, workers=args.workers, train_task=lm.NameTask(("color",)),
                    eval_tasks=evals, n_eval=32)
    done, fails = split_failures(results)
    runs = [{"method": r["method"], "seed": r["seed"], "config": r["config"], "eval": dict(r["eval"])}
            for r in done]
    print(table(summarize(list(runs) + fails, base=reference)))
    out = save_json(args.out, {"seeds": args.seeds, "steps": args.steps, "minutes": (time.time() - t0) / 60,
                               "reference": reference, "runs": runs, "failures": [str(f) for f in fails]},
                    command="python scripts/run_open_ended.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
