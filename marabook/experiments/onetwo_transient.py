"""The 1-2 runs read over their whole trajectory, not at one step (chapters 1 and 5).

A run's share of "1" at the end of a step budget can be a transient: in the stored target-versus-dynamics
grid, vanilla at beta = 0.01 sits near 0.88 at step 100 and is back at the reference's share (about 0.81)
by step 300. So every stored 1-2 run is summarised by four numbers, each compared with the reference's
share and with the method's target (:func:`marabook.mara.method_targets`), never with a fair coin:

* ``final_share``: the exact share of "1" among valid answers at the end of the run;
* ``mean_share``: the time-averaged share: the mean over the run's evaluations *after* step 0 (equally
  spaced, so this is the average over the step budget; step 0 is the reference itself);
* ``collapsed_fraction``: the fraction of those evaluations at which the entropy of the valid answers is
  below ``collapse_bits`` (0.2 bits by default, the book's own threshold, not the paper's: a share of "1"
  above 0.969 or below 0.031);
* ``peak_share``: the largest share after step 0.

Two kinds of trajectory are stored. ``"trajectory"`` (``onetwo_dynamics``) holds exact evaluations;
``"share_1_every_5"`` (``onetwo_sweep``) holds the *sampled* share of "1" among the valid completions of
the step's batch (32 completions) at every fifth step, so its entropy is below 0.2 bits only when every valid
completion of the batch gave the same answer. :func:`run_measures` says which (``source``).

:func:`transient_summary` compares them with :func:`marabook.stats.compare_family`: one Welch test per
(measure, reference value) and cell against a *constant* control (the reference's share or the target,
repeated once per run: the control's variance is 0, so Welch's t and its n - 1 degrees of freedom are those
of the one-sample t-test), Holm-corrected over the whole table, with percentile-bootstrap intervals. Where
the target is the reference's share (vanilla's, in both KL directions: both answers earn the same reward),
the two comparisons are one test, counted once in the family.
:func:`method_comparison` asks whether MARA and vanilla differ, per beta (Holm over the betas) and
stratified by beta (van Elteren), never pooled across betas.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from marabook import stats
from marabook._validate import check_number
from marabook.experiments.onetwo import method_label
from marabook.experiments.sweep import split_failures
from marabook.provenance import need
from marabook.style import METHOD_COLORS
from marabook.tables import Table

__all__ = ["MEASURES", "binary_entropy_bits", "trajectory_of", "run_measures", "reference_share",
           "transient_summary", "transient_table", "method_comparison", "plot_share_over_training"]

#: The per-run measures of :func:`run_measures` that the summaries compare.
MEASURES = ("final_share", "mean_share", "collapsed_fraction", "peak_share", "final_entropy")


def binary_entropy_bits(share) -> np.ndarray:
    """The entropy (bits) of a two-answer distribution with probability ``share`` on "1"; 0 at 0 and 1."""
    p = np.asarray(share, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("share must lie in [0, 1]")
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p == 0) | (p == 1), 0.0, h)


def trajectory_of(run: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """``(steps, shares, source)`` of a stored run, step 0 included when stored: exact evaluations
    (``"trajectory"``, source ``"exact"``), the sampled batch share every fifth step (``"share_1_every_5"``,
    steps 5, 10, ...) or at every step (a live run's ``"history"``), source ``"sampled"``. Raises ValueError
    naming ``run`` when it holds none of them."""
    if not isinstance(run, dict):
        raise ValueError(f"run must be a stored run dict, got {type(run).__name__}")
    if run.get("trajectory"):
        tr = run["trajectory"]
        return (np.array([t["step"] for t in tr], dtype=int), np.array([t["share_1"] for t in tr], dtype=float),
                "exact")
    if run.get("share_1_every_5"):
        s = np.array(run["share_1_every_5"], dtype=float)
        return 5 * np.arange(1, s.size + 1), s, "sampled"
    if run.get("history"):  # a live run of onetwo.run: the sampled batch share at every step
        h = run["history"]
        return np.array([x["step"] for x in h], dtype=int), np.array([x["share_1"] for x in h], dtype=float), "sampled"
    raise ValueError("run holds no trajectory: neither 'trajectory', 'share_1_every_5' nor 'history'")


def run_measures(run: dict, collapse_bits: float = 0.2) -> dict:
    """The measures of one run (see the module's docstring): ``final_share`` and ``final_entropy`` (exact, from
    ``run["final"]``), ``mean_share``, ``collapsed_fraction`` and ``peak_share`` over the evaluations after
    step 0 (evaluations whose share is undefined, no valid sample, are left out), ``p_valid`` (final),
    ``points`` (evaluations used) and ``source``."""
    collapse_bits = check_number(collapse_bits, "collapse_bits", positive=True)
    if not collapse_bits < 1:
        raise ValueError(f"collapse_bits must be in (0, 1), got {collapse_bits!r}")
    steps, share, source = trajectory_of(run)
    if "final" not in run:
        raise ValueError("run holds no 'final' evaluation")
    keep = (steps > 0) & np.isfinite(share)
    if not keep.any():
        raise ValueError("run's trajectory has no evaluation after step 0")
    s = share[keep]
    return {"final_share": float(run["final"]["share_1"]), "final_entropy": float(run["final"]["entropy_bits"]),
            "mean_share": float(s.mean()), "collapsed_fraction": float(np.mean(binary_entropy_bits(s) < collapse_bits)),
            "peak_share": float(s.max()), "p_valid": float(run["final"]["p_valid"]), "points": int(s.size),
            "source": source}


def reference_share(runs: Sequence[dict]) -> float:
    """The reference model's share of "1": the exact step-0 evaluation every run with an exact trajectory
    shares (the untrained model). Raises ValueError when none has one or they disagree."""
    vals = [r["trajectory"][0]["share_1"] for r in _finished(runs, "config")
            if r.get("trajectory") and r["trajectory"][0]["step"] == 0]
    if not vals:
        raise ValueError("runs hold no exact trajectory that starts at step 0")
    if np.ptp(vals) > 1e-6:
        raise ValueError(f"runs disagree about the reference's share at step 0: {min(vals)} to {max(vals)}")
    return float(np.mean(vals))


def _finished(runs, *fields) -> list[dict]:
    """The finished runs (jobs that raised are left out), each checked for ``fields``."""
    done = split_failures(runs)[0]
    for i, r in enumerate(done):
        need(r, *fields, where=f"run {i}")
    return done


def _groups(runs, by):
    done = _finished(runs, "config", "final")
    out: dict = {}
    for r in done:
        c = r["config"]
        out.setdefault(tuple(method_label(c) if k == "method" else c[k] for k in by), []).append(r)
    return out


_RANK = {"reverse": 0, "forward": 1, "vanilla": 0, "MARA": 1}


def _order(key):
    """Reverse KL before forward, vanilla before MARA, numbers ascending."""
    return tuple((_RANK.get(x, 2), x) if isinstance(x, str) else (3, "", float(x)) for x in key)


def transient_summary(runs: Sequence[dict], reference: float, targets, *, by=("kl", "method", "beta"),
                      fail_below: float = 0.5, collapse_bits: float = 0.2, n_resamples: int = 9999,
                      seed: int = 0) -> list[dict]:
    """One row per group of runs (``by``: config keys, ``"method"`` for vanilla/MARA; it must include
    ``"method"``, ``"kl"`` and ``"beta"`` unless every run shares them): ``runs``, ``failed`` (final valid mass
    below ``fail_below``: left out of every measure), ``target``, and per measure of :data:`MEASURES` its mean
    over the valid runs with a bootstrap interval (``<measure>_mean``, ``<measure>_ci``); ``runs_collapsed_ever``
    (valid runs with at least one collapsed evaluation); and the comparisons ``final_vs_reference``,
    ``mean_vs_reference``, ``final_vs_target``, ``mean_vs_target``: dicts with ``diff`` (mean minus the value),
    ``p`` (two-sided one-sample Welch test) and ``p_holm`` (Holm over every comparison of the table).

    ``targets``: ``{(method, kl, beta): share}`` (e.g. from :func:`~marabook.experiments.onetwo.predicted_shares`:
    vanilla's ``"vanilla-<kl>"`` and MARA's ``"mara-<kl>"`` share at each beta) or a callable
    ``targets(method, kl, beta)``. ``reference``: the reference's share of "1" (:func:`reference_share`)."""
    reference = float(check_number(reference, "reference"))
    if not 0 <= reference <= 1:
        raise ValueError(f"reference must be a share in [0, 1], got {reference!r}")
    if not 0 <= fail_below < 1:
        raise ValueError(f"fail_below must be in [0, 1), got {fail_below!r}")
    by = tuple(by)
    groups = _groups(runs, by)
    if not groups:
        raise ValueError("runs hold no finished run")
    target_of = targets if callable(targets) else (lambda m, k, b: targets[(m, k, b)])
    rows, cells = [], []
    for key in sorted(groups, key=_order):
        rs = groups[key]
        c0 = rs[0]["config"]
        row = dict(zip(by, key))
        method, kl, beta = row.get("method", method_label(c0)), row.get("kl", c0["kl"]), row.get("beta", c0["beta"])
        ok = [run_measures(r, collapse_bits) for r in rs if r["final"]["p_valid"] >= fail_below]
        row.update(runs=len(rs), failed=len(rs) - len(ok), target=float(target_of(method, kl, beta)),
                   reference=reference, source=ok[0]["source"] if ok else None)
        for m in MEASURES:
            v = np.array([x[m] for x in ok])
            row[f"{m}_mean"] = float(v.mean()) if ok else float("nan")
            row[f"{m}_ci"] = (stats.bootstrap_ci(v, n_resamples=n_resamples, seed=seed) if len(ok) > 1
                              else (float("nan"),) * 2)
        row["runs_collapsed_ever"] = sum(x["collapsed_fraction"] > 0 for x in ok)
        for m, short in (("final_share", "final"), ("mean_share", "mean")):
            for against in ("reference", "target"):
                name = f"{short}_vs_{against}"
                row[name] = {"diff": float("nan"), "p": float("nan"), "p_holm": float("nan")}
                if against == "target" and abs(row["target"] - reference) <= 1e-9:
                    continue  # the target is the reference (vanilla's): one test, not two, in the family
                if len(ok) > 1:
                    v = np.array([x[m] for x in ok])
                    cells.append({"treatment": v, "control": np.full(v.size, row[against]), "_row": len(rows),
                                  "_name": name, "alternative": "two-sided"})
        rows.append(row)
    if cells:
        out = stats.compare_family(cells, test="welch", effect="difference", n_resamples=n_resamples, seed=seed)
        for cell in out:
            rows[cell["_row"]][cell["_name"]] = {"diff": cell["effect"], "p": cell["p"], "p_holm": cell["p_holm"],
                                                 "family_size": cell["family_size"]}
    for row in rows:
        if abs(row["target"] - reference) <= 1e-9:
            row["final_vs_target"], row["mean_vs_target"] = row["final_vs_reference"], row["mean_vs_reference"]
    return rows


def _ci(row, m, fmt="{:.2f}"):
    lo, hi = row[f"{m}_ci"]
    mean = row[f"{m}_mean"]
    if not np.isfinite(mean):
        return "undefined"
    return fmt.format(mean) + ("" if not np.isfinite(lo) else f" [{fmt.format(lo)}, {fmt.format(hi)}]")


def _cmp(d):
    return "--" if not np.isfinite(d["diff"]) else f"{d['diff']:+.2f} ({d['p_holm']:.2g})"


def transient_table(rows: Sequence[dict]) -> Table:
    """:func:`transient_summary` as a table (:class:`~marabook.tables.Table`, 8 columns): the setting, runs
    (failed), final and time-averaged share of "1" with 95% bootstrap intervals, the share of evaluations
    collapsed, and each share minus the reference's share and minus the target with its Holm-adjusted p."""
    cols = ["setting", "runs (failed)", "final share [95% CI]", "time-avg share [95% CI]",
            "evaluations collapsed", "target", "final / avg − reference (Holm p)", "final / avg − target (Holm p)"]
    skip = {"runs", "failed", "target", "reference", "source", "runs_collapsed_ever"}
    cells = []
    for r in rows:
        label = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for k, v in r.items()
                         if k not in skip and not k.endswith(("_mean", "_ci")) and "_vs_" not in k)
        valid = r["runs"] - r["failed"]
        coll = ("undefined" if not np.isfinite(r["collapsed_fraction_mean"])
                else f"{r['collapsed_fraction_mean']:.0%} ({r['runs_collapsed_ever']}/{valid} runs)")
        cells.append([label, f"{r['runs']} ({r['failed']})", _ci(r, "final_share"), _ci(r, "mean_share"), coll,
                      f"{r['target']:.2f}", f"{_cmp(r['final_vs_reference'])} / {_cmp(r['mean_vs_reference'])}",
                      f"{_cmp(r['final_vs_target'])} / {_cmp(r['mean_vs_target'])}"])
    return Table(cols, cells)


def method_comparison(runs: Sequence[dict], measure: str, *, alternative: str = "greater", by: str = "beta",
                      test: str = "mannwhitney", fail_below: float = 0.5, collapse_bits: float = 0.2,
                      **where) -> dict:
    """MARA (treatment) against vanilla (control) on one of :data:`MEASURES`, among the runs matching
    ``where`` (e.g. ``kl="reverse"``): per value of ``by`` a :func:`marabook.stats.two_sample` test (``test``,
    ``alternative``) with Holm over those values (``"strata"``: rows with ``by``, ``n``, means, ``p``, ``p_holm``),
    and one :func:`marabook.stats.stratified` van Elteren test over them (``"stratified"``: a
    :class:`~marabook.stats.TestResult`): one question about the method, asked within each beta, so that
    betas with different outcomes are not pooled into one sample. Failed runs (final valid mass below
    ``fail_below``) are left out; a value of ``by`` with fewer than two valid runs of either method is skipped,
    and with none left the result is ``{"strata": [], "stratified": None}``."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {list(MEASURES)}, got {measure!r}")
    groups = _groups(runs, ("method", by, *where))
    strata, rows = [], []
    for v in sorted({k[1] for k in groups if tuple(k[2:]) == tuple(where.values())}):
        pair = []
        for method in ("MARA", "vanilla"):
            rs = groups.get((method, v, *where.values()), [])
            pair.append(np.array([run_measures(r, collapse_bits)[measure] for r in rs
                                  if r["final"]["p_valid"] >= fail_below]))
        if min(x.size for x in pair) < 2:
            continue
        r = stats.two_sample(*pair, alternative=alternative, test=test)
        strata.append(tuple(pair))
        rows.append({by: v, "n": (pair[0].size, pair[1].size), "mean_mara": float(pair[0].mean()),
                     "mean_vanilla": float(pair[1].mean()), "p": r.pvalue})
    if not rows:  # e.g. a smoke run with one seed: nothing to test
        return {"strata": [], "stratified": None}
    for row, p in zip(rows, stats.holm([row["p"] for row in rows])):
        row["p_holm"] = float(p)
    return {"strata": rows, "stratified": stats.stratified(strata, alternative=alternative)}


def plot_share_over_training(runs: Sequence[dict], ax, *, reference: float, targets: dict | None = None,
                             colors: dict | None = None, mark_step: int | None = None) -> None:
    """Every run's share of "1" along training on ``ax``, vanilla and MARA in their colours, the reference's
    share as a solid grey line and each method's target (``targets``: ``{"vanilla": share, "MARA": share}``)
    dashed; ``mark_step`` draws a dotted vertical line (e.g. where a shorter budget stops)."""
    colors = colors or dict(METHOD_COLORS)
    done = _finished(runs, "config")
    if not done:
        raise ValueError("runs hold no finished run to draw")
    for r in done:
        steps, share, _ = trajectory_of(r)
        m = method_label(r["config"])
        ax.plot(steps, share, color=colors[m], alpha=0.55, lw=1)
    ax.axhline(reference, color="0.4", lw=1.5, label=f"reference ({reference:.2f})")
    for m, t in (targets or {}).items():
        ax.axhline(t, color=colors[m], ls="--", lw=1.2, label=f"{m} target ({t:.2f})")
    for m in ("vanilla", "MARA"):
        ax.plot([], [], color=colors[m], label=f"{m} runs")
    if mark_step is not None:
        ax.axvline(mark_step, color="k", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel('share of "1" (valid answers)')
