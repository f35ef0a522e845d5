"""Shared figure style for the book: one palette, one figure size, one way to draw a target and a beta sweep.

Figures are drawn for the book's content column: :data:`COLUMN_PX` CSS pixels wide (the column of
sphinx-book-theme at a 1280 px window), at :data:`DPI` pixels per inch, and saved at twice that resolution
("retina" PNGs, shown at column width), so text set at :data:`MIN_FONT_PT` points or more renders at
``MIN_FONT_PT * DPI / 72`` >= 12 CSS pixels. :func:`new_figure` always makes figures one column wide; the
browser test (tests/test_browser.py) measures every rendered figure against these numbers.
"""

from __future__ import annotations

import os

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from marabook._validate import check_beta, check_distribution, check_finite
from marabook import style as _style
from marabook.problems import Problem
from marabook.targets import forward_kl_target, reverse_kl_target

__all__ = ["COLORS", "COLUMN_PX", "DPI", "MIN_FONT_PT", "use_book_style", "new_figure", "collapse_demo", "forest", "tokens_forest", "onetwo_forest",
           "open_ended_forest", "score_curves", "discovery_curves", "yield_ratios", "onetwo_scatter",
           "collapse_bars", "share_trajectories", "plot_problem",
           "plot_targets", "plot_beta_sweep"]

#: Width of the book's content column in CSS pixels (sphinx-book-theme 1.x, 1280 px window).
COLUMN_PX = 688
#: CSS pixels per inch of figure; PNGs are written at ``2 * DPI`` and shown at ``DPI``.
DPI = 100
#: Width of every figure in inches: one column.
COLUMN_IN = COLUMN_PX / DPI
#: The smallest type size any figure uses (points); at :data:`DPI` that is 12.5 CSS pixels.
MIN_FONT_PT = 9

#: One colour per role, used by every chapter (defined in :mod:`marabook.style`).
COLORS = _style.COLORS


def use_book_style() -> None:
    """Apply the book's matplotlib style: one-column figures, type no smaller than :data:`MIN_FONT_PT`, and
    (inside a Jupyter kernel) retina PNGs, so figures stay sharp at the column's width. With the environment
    variable ``MARABOOK_CHECK_FIGURES=1`` every figure drawn afterwards is checked for overlapping text
    (:func:`marabook.figure_checks.record`)."""
    mpl.rcParams.update({
        "figure.figsize": (COLUMN_IN, 3.0),
        "figure.dpi": DPI,
        "savefig.dpi": 2 * DPI,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.25,
        "font.size": 10,
        "axes.titlesize": 10,
        "axes.labelsize": 10,
        "xtick.labelsize": MIN_FONT_PT,
        "ytick.labelsize": MIN_FONT_PT,
        "legend.fontsize": MIN_FONT_PT,
        "legend.title_fontsize": MIN_FONT_PT,
        "figure.titlesize": 10,
        "legend.frameon": False,
    })
    _retina_in_jupyter()
    if os.environ.get("MARABOOK_CHECK_FIGURES") == "1":  # the test suite: every drawn figure is checked
        from marabook import figure_checks

        figure_checks.record(True)


def _retina_in_jupyter() -> None:
    """Inline figures as PNGs at twice the resolution, displayed at their nominal size (Jupyter only)."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: nothing to configure
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        set_matplotlib_formats("retina")


def plot_problem(ax, problem: Problem):
    """Reference distribution (bars) and reward (line, right axis) of a token problem."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a marabook.problems.Problem, got {type(problem).__name__}")
    y = np.arange(problem.size)
    ax.bar(y, problem.ref_probs, color=COLORS["ref"], width=1.0, alpha=0.6, label=r"$\pi_{\mathrm{ref}}$")
    ax.set_xlabel("token $y$")
    ax.set_ylabel("probability")
    ax2 = ax.twinx()
    ax2.plot(y, problem.rewards, color=COLORS["reward"], lw=1.5, label="$R(y)$")
    ax2.set_ylabel("reward", color=COLORS["reward"])
    ax2.grid(False)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right")
    return ax2


def plot_targets(ax, problem: Problem, beta: float, directions=("reverse", "forward"), title: str | None = None):
    """Draw the closed-form target(s) of ``problem`` at one ``beta`` over the reference."""
    check_beta(beta)
    y = np.arange(problem.size)
    ax.fill_between(y, problem.ref_probs, step="mid", color=COLORS["ref"], alpha=0.3, label=r"$\pi_{\mathrm{ref}}$")
    for d in directions:
        if d == "reverse":
            p = reverse_kl_target(problem.ref_probs, problem.rewards, beta)
            label = r"$G_\beta$ (reverse KL)"
        elif d == "forward":
            p = forward_kl_target(problem.ref_probs, problem.rewards, beta)
            label = r"$G_{\mathrm{fwd}}$ (forward KL)"
        else:
            raise ValueError(f"directions must contain 'reverse' and/or 'forward', got {d!r}")
        ax.step(y, p, where="mid", color=COLORS[d], lw=1.4, label=label)
    ax.set_title(title if title is not None else rf"$\beta = {beta:g}$")
    ax.set_xlabel("token $y$")
    return ax


def plot_beta_sweep(ax, betas, probs, title: str = "", cmap: str = "magma", vmin: float = -8.0):
    """Heatmap of ``log10`` target probability over tokens (x) and beta (y, log scale)."""
    b = check_finite(betas, "betas")
    p = check_distribution(probs, "probs")
    if b.ndim != 1 or p.ndim != 2 or p.shape[0] != b.size:
        raise ValueError(f"probs must have shape (len(betas), V), got {p.shape} for {b.size} betas")
    if np.any(b <= 0):
        raise ValueError("betas must be > 0")
    with np.errstate(divide="ignore"):
        logp = np.log10(p)
    mesh = ax.pcolormesh(np.arange(p.shape[1] + 1) - 0.5, _edges(b), np.maximum(logp, vmin),
                         cmap=cmap, vmin=vmin, vmax=0, shading="flat")
    ax.set_yscale("log")
    ax.set_xlabel("token $y$")
    ax.set_ylabel(r"$\beta$")
    ax.set_title(title)
    return mesh


def _edges(b: np.ndarray) -> np.ndarray:
    """Cell edges in log space for a sorted, positive vector of centres."""
    lb = np.log(b)
    if b.size == 1:
        return np.exp(np.array([lb[0] - 0.5, lb[0] + 0.5]))
    mid = 0.5 * (lb[1:] + lb[:-1])
    return np.exp(np.concatenate([[lb[0] - (mid[0] - lb[0])], mid, [lb[-1] + (lb[-1] - mid[-1])]]))


def new_figure(nrows: int = 1, ncols: int = 1, height: float | None = None, **kwargs):
    """``plt.subplots`` with the book style applied, ``constrained_layout`` on and the figure one column wide.

    ``height`` is in inches (default 3.0 per row of panels, 2.6 from the second row on). A ``figsize=(w, h)``
    is accepted for compatibility: its height is kept and its width is set to the column (wider figures
    would be shrunk by the browser, and their type with them).
    """
    if isinstance(nrows, bool) or not isinstance(nrows, int) or nrows < 1:
        raise ValueError(f"nrows must be a positive integer, got {nrows!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    figsize = kwargs.pop("figsize", None)
    if figsize is not None:
        if height is not None:
            raise ValueError("give height or figsize, not both")
        height = float(figsize[1])
    if height is None:
        height = 3.0 + 2.6 * (nrows - 1)
    if not np.isfinite(height) or height <= 0:
        raise ValueError(f"height must be a positive number of inches, got {height!r}")
    use_book_style()
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(COLUMN_IN, height), **kwargs)


def collapse_demo(vanilla, mara_run, stored_sweep, *, beta: float = 0.01, kl: str = "reverse", fail_below: float = 0.5):
    """The book's first figure (chapter 1, "The problem in 30 seconds"): collapse on two scales.

    Left: exact KL-regularised training on the three-action problem (:func:`~marabook.problems.three_action_equal_reward`, two equally correct answers): the ratio of the two correct answers' probabilities
    along ``vanilla`` and ``mara_run`` (two :class:`marabook.bandit.Trajectory` from ``train_exact``). Right:
    the final share of answer "1" in every stored RL run of the shipped language model on the 1-2 task
    (``stored_sweep``: ``load_stored("onetwo_sweep")``) at ``beta`` and ``kl``, one dot per seed; runs whose valid
    mass fell below ``fail_below`` are drawn as crosses at the bottom and counted, never as a share.
    Returns ``(fig, numbers)``: ``ratio_vanilla``/``ratio_mara`` at the end of training, and per method
    ``share_*`` (mean over valid runs), ``failed_*`` and ``runs_*``.
    """
    from marabook.experiments.onetwo import select

    for name, t in (("vanilla", vanilla), ("mara_run", mara_run)):
        if not hasattr(t, "policies") or np.asarray(t.policies).ndim != 2 or np.asarray(t.policies).shape[1] != 3:
            raise ValueError(f"{name} must be an exact three-action Trajectory (bandit.train_exact), got {type(t).__name__}")
    if not isinstance(stored_sweep, dict) or "runs" not in stored_sweep.get("results", {}):
        raise ValueError("stored_sweep must be load_stored('onetwo_sweep')")
    fig, (ax0, ax1) = new_figure(1, 2, height=3.0)
    numbers = {}
    for name, t, color in (("vanilla", vanilla, COLORS["reverse"]), ("MARA", mara_run, COLORS["mara"])):
        p = np.asarray(t.policies)
        ratio = p[:, 1] / p[:, 2]
        ax0.plot(t.steps, ratio, color=color, lw=2, label=name)
        numbers[f"ratio_{name.lower()}"] = float(ratio[-1])
    ax0.set_yscale("log")
    ax0.set_xlabel("exact gradient step")
    ax0.set_ylabel("P(correct A) / P(correct B)")
    ax0.set_title("three actions, two equally correct")
    ax0.legend()
    for i, (name, color) in enumerate((("vanilla", COLORS["reverse"]), ("MARA", COLORS["mara"]))):
        runs = select(stored_sweep["results"]["runs"], kl=kl, method=name, beta=beta)
        if not runs:
            raise ValueError(f"stored_sweep has no {name} runs at kl={kl!r}, beta={beta!r}")
        ok = [r["final"]["share_1"] for r in runs if r["final"]["p_valid"] >= fail_below]
        failed = len(runs) - len(ok)
        jitter = np.linspace(-0.12, 0.12, max(len(ok), 1))[: len(ok)]
        ax1.scatter(i + jitter, ok, color=color, s=28, zorder=3)
        if failed:
            ax1.scatter([i] * failed, [-0.05] * failed, marker="x", color="k", zorder=3)
        numbers[f"share_{name.lower()}"] = float(np.mean(ok)) if ok else float("nan")
        numbers[f"failed_{name.lower()}"] = failed
        numbers[f"runs_{name.lower()}"] = len(runs)
    ax1.axhline(0.5, color="k", ls=":", lw=1)
    ax1.set_xticks([0, 1], ["vanilla", "MARA"])
    ax1.set_xlim(-0.5, 1.5)
    ax1.set_ylim(-0.1, 1.05)
    ax1.set_ylabel('share of "1" after training')
    ax1.set_title(rf"language model, 1-2 task, $\beta$ = {beta:g}")
    return fig, numbers


def forest(labels, panels, *, height: float | None = None, group_gap: int | None = None):
    """A comparison drawn as a "forest": one row per configuration (``labels``, top to bottom), one panel per
    quantity. Each panel is a dict: ``title``; ``mean`` and ``err`` (one value per row: the dot and its
    error bar, say ``mean ± sd`` over seeds); optionally ``target`` (the closed form, drawn as a black bar,
    so the prediction sits next to the measurement), ``colors`` (one per row) and ``xlim``. NaN means
    are left out (a row with no valid run shows no dot). ``group_gap``: a thin line after every that many
    rows. Returns the figure."""
    labels = [str(x) for x in labels]
    if not labels:
        raise ValueError("labels must name at least one row")
    if not panels:
        raise ValueError("panels must hold at least one panel")
    n = len(labels)
    for k, pnl in enumerate(panels):
        for key in ("mean", "err") + (("target",) if "target" in pnl else ()):
            if len(pnl.get(key, ())) != n:
                raise ValueError(f"panels[{k}][{key!r}] must have one value per label ({n})")
    fig, axes = new_figure(1, len(panels), height=height or max(2.0, 0.6 + 0.26 * n), sharey=True, squeeze=False)
    y = np.arange(n)[::-1]
    handle = None
    for ax, pnl in zip(axes[0], panels):
        mean = np.asarray(pnl["mean"], dtype=float)
        err = np.asarray(pnl["err"], dtype=float)
        colors = pnl.get("colors") or ["#333333"] * n
        for i in range(n):
            if np.isfinite(mean[i]):
                ax.errorbar(mean[i], y[i], xerr=err[i] if np.isfinite(err[i]) else None, fmt="o", ms=4,
                            color=colors[i], capsize=2, lw=1)
        if "target" in pnl:
            tgt = np.asarray(pnl["target"], dtype=float)
            handle = ax.scatter(tgt, y, marker="|", s=140, color="k", zorder=4, label="closed-form target")
        if group_gap:
            for g in range(group_gap, n, group_gap):
                ax.axhline(n - g - 0.5, color="grey", lw=0.6, alpha=0.6)
        ax.set_title(pnl.get("title", ""))
        ax.set_xlabel(pnl.get("xlabel", pnl.get("title", "")))
        if "xlim" in pnl:
            ax.set_xlim(*pnl["xlim"])
        ax.grid(axis="y", visible=False)
    axes[0][0].set_yticks(y, labels)
    axes[0][0].set_ylim(-0.7, n - 0.3)
    if handle is not None:
        fig.legend(handles=[handle], loc="outside lower right")
    return fig


def _method_color(name: str) -> str:
    """One colour per method across the book's comparisons: MARA purple, the vanilla baseline blue."""
    return COLORS["mara"] if "MARA" in name else COLORS["reverse"] if name in ("vanilla", "REINVENT") else "#555555"


def tokens_forest(rows):
    """Chapter 4's summary (``experiments.tokens.summarize`` rows) as a :func:`forest`: block-2 mass and the
    entropy over the good tokens, sampled mean ± sd over seeds, with each configuration's closed-form
    target. Rows of configurations whose job raised (``"error"``) have nothing to draw and are left out."""
    rows = [r for r in rows if "error" not in r]
    if not rows:
        raise ValueError("rows must not be empty (and not all errors)")
    labels = [f"{r['method']}, {r['kl']}, β={r['beta']:g}" for r in rows]
    colors = [_method_color(r["method"]) for r in rows]
    b2 = [np.asarray(r["block2"], dtype=float) for r in rows]
    h = [np.asarray(r["good_entropy_bits"], dtype=float) for r in rows]
    return forest(labels, [
        {"title": "block-2 mass", "mean": [x.mean() for x in b2], "err": [x.std() for x in b2],
         "target": [r["target_block2"] for r in rows], "colors": colors, "xlim": (-0.03, 1.0)},
        {"title": "good-token entropy (bits)", "mean": [x.mean() for x in h], "err": [x.std() for x in h],
         "target": [r["target_good_entropy_bits"] for r in rows], "colors": colors}],
        group_gap=max(1, len(rows) // len({r["beta"] for r in rows})))


def onetwo_forest(rows):
    """Chapter 5's sweep (``experiments.onetwo.summarize`` rows) as a :func:`forest`: the share of "1" among
    valid answers (mean ± sd over the runs that still answer; a fair coin is 0.5) and the valid-answer
    entropy (mean ± sd, bits), vanilla and MARA per KL direction and beta. Failed runs are not drawn: the
    table beside the figure counts them."""
    if not rows:
        raise ValueError("rows must not be empty")
    labels = [f"{r['method']}, {r['kl']}, β={r['beta']:g}" for r in rows]
    colors = [_method_color(r["method"]) for r in rows]
    fig = forest(labels, [
        {"title": 'share of "1"', "mean": [r["share_1_mean"] for r in rows],
         "err": [r.get("share_1_std", np.nan) for r in rows], "colors": colors, "xlim": (0.0, 1.05)},
        {"title": "valid-answer entropy (bits)", "mean": [r["entropy_mean"] for r in rows],
         "err": [r["entropy_std"] for r in rows], "colors": colors, "xlim": (-0.05, 1.1)}],
        group_gap=len({r["beta"] for r in rows}))
    fig.axes[0].axvline(0.5, color="k", ls=":", lw=1)
    return fig


def open_ended_forest(rows, columns=("reward (out)", "EAD-1", "distinct")):
    """Chapter 6's table (``experiments.open_ended.summarize`` rows, ``(mean, se)`` per column) as a
    :func:`forest`: one panel per column, mean ± one bootstrap standard error over seeds."""
    if not rows:
        raise ValueError("rows must not be empty")
    for c in columns:
        if not any(c in r for r in rows):
            raise ValueError(f"columns: no row has {c!r}")
    nan = (float("nan"), float("nan"))
    colors = [_method_color(r["method"]) if r["method"] != "base" else COLORS["ref"] for r in rows]
    return forest([r["method"] for r in rows],
                  [{"title": c, "mean": [r.get(c, nan)[0] for r in rows], "err": [r.get(c, nan)[1] for r in rows],
                    "colors": colors} for c in columns])


def _method_order(runs, methods):
    if methods is not None:
        return list(methods)
    return list(dict.fromkeys(r["method"] for r in runs))


def _history(h, key):
    """A run's history as stored live (a list of step dicts) or in a study file (a dict of lists)."""
    return [e[key] for e in h] if isinstance(h, list) else h[key]


def score_curves(runs, title: str = "", tasks=None, methods=None):
    """Chapter 8: the mean batch score against oracle calls, one panel per task and one line per method
    (mean over the seeds in ``runs``, REINVENT/MARA run dicts with a ``history``). Returns the figure."""
    if not runs:
        raise ValueError("runs must not be empty")
    tasks = list(tasks) if tasks is not None else list(dict.fromkeys(r["task"] for r in runs))
    methods = _method_order(runs, methods)
    fig, axes = new_figure(1, len(tasks), height=3.0, sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in methods:
            hs = [r["history"] for r in runs if r["task"] == task and r["method"] == method]
            if not hs:
                continue
            ax.plot(_history(hs[0], "calls"), np.mean([_history(h, "score") for h in hs], axis=0), label=method)
        ax.set_title(f"task {task}")
        ax.set_xlabel("oracle calls")
    axes[0][0].set_ylabel("mean batch score")
    axes[0][-1].legend()
    if title:
        fig.suptitle(title)
    return fig


def discovery_curves(runs, title: str = "", methods=None):
    """Chapter 8: what the oracle saw along the live runs, as a 2 x 2 grid: distinct hits at or above 0.80 on
    tasks (a), (b) and (c), and distinct molecules sampled on (b) (dotted: one new molecule per call)."""
    if not runs:
        raise ValueError("runs must not be empty")
    methods = _method_order(runs, methods)
    panels = [("product", "hits@0.80", "(a) distinct hits ≥ 0.80"), ("multi_mode", "hits@0.80", "(b) distinct hits ≥ 0.80"),
              ("unequal_modes", "hits@0.80", "(c) distinct hits ≥ 0.80"), ("multi_mode", "distinct", "(b) distinct molecules")]
    fig, axes = new_figure(2, 2, height=5.0)
    for ax, (task, key, name) in zip(axes.flat, panels):
        cs = []
        for method in methods:
            cs = [r["curve"] for r in runs if r["task"] == task and r["method"] == method]
            if cs:
                ax.plot(cs[0]["calls"], np.mean([c[key] for c in cs], axis=0), label=method)
        if key == "distinct" and cs:
            ax.plot(cs[0]["calls"], cs[0]["calls"], color="0.6", ls=":", lw=1)
        ax.set_title(name)
        ax.set_ylabel("count")
    for ax in axes[1]:
        ax.set_xlabel("oracle calls")
    axes[0, 0].legend()
    if title:
        fig.suptitle(title)
    return fig


def yield_ratios(rows, tasks=None, methods=None, sigmas=None):
    """Chapter 8's sigma study (``experiments.molecules.study_rows`` rows): each method's yield as a ratio to
    REINVENT's against sigma, one panel per task, error bars one sd over seeds on that scale."""
    if not rows:
        raise ValueError("rows must not be empty")
    tasks = list(tasks) if tasks is not None else list(dict.fromkeys(r["task"] for r in rows))
    methods = list(methods) if methods is not None else [m for m in dict.fromkeys(r["method"] for r in rows)
                                                          if m != "REINVENT"]
    sigmas = sorted(sigmas) if sigmas is not None else sorted({r["sigma"] for r in rows})
    fig, axes = new_figure(1, len(tasks), height=3.0, sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in methods:
            sub = [r for r in rows if r["task"] == task and r["method"] == method]
            ax.errorbar([r["sigma"] for r in sub], [r["ratio"] for r in sub], yerr=[r["ratio_sd"] for r in sub],
                        marker="o", capsize=3, label=method)
        ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlim(min(sigmas) / 1.3, max(sigmas) * 1.3)
        ax.set_xticks(sigmas, [f"{s:g}" for s in sigmas])
        ax.set_xlabel(r"$\sigma$")
        ax.set_title(f"task {task}")
    axes[0][0].set_ylabel("yield at 0.80 / REINVENT's\n(error bar: one sd over seeds)")
    axes[0][-1].legend()
    return fig


def onetwo_scatter(results, reference=None):
    """Chapter 5: reward (exact P(valid)) against valid-answer entropy after RL, one dot per run
    (``experiments.onetwo.sweep`` results), a panel per KL direction, marker size growing with beta, the
    reference model as a star at ``reference = (entropy_bits, p_valid)`` and the collapse threshold dotted."""
    from marabook.experiments.onetwo import method_label

    if not results:
        raise ValueError("results must not be empty")
    fig, axes = new_figure(1, 2, height=3.6, sharey=True)
    for ax, kl in zip(axes, ("reverse", "forward")):
        for r in results:
            c = r["config"]
            if c["kl"] == kl:
                ax.scatter(r["final"]["entropy_bits"], r["final"]["p_valid"], s=20 + 1500 * c["beta"],
                           color=_method_color(method_label(c)), alpha=0.6, edgecolor="k", linewidth=0.3)
        if reference is not None:
            ax.scatter([reference[0]], [reference[1]], marker="*", s=200, color="k", label="reference model")
        ax.axvline(0.2, color="grey", ls=":", lw=1)
        ax.set_title(f"{kl} KL")
        ax.set_xlabel("valid-answer entropy (bits)")
        ax.set_xlim(-0.05, 1.05)
    for m in ("vanilla", "MARA"):
        axes[0].scatter([], [], color=_method_color(m), label=m)
    axes[0].set_ylabel("reward (exact P(valid))")
    axes[0].legend(loc="lower center")
    fig.suptitle(r"Reward vs diversity after RL (marker size grows with $\beta$; dotted: collapse threshold)")
    return fig


def collapse_bars(rows, betas):
    """Chapter 5: the fraction of runs that collapsed (``experiments.onetwo.summarize`` rows) at each beta,
    vanilla beside MARA, a panel per KL direction."""
    if not rows:
        raise ValueError("rows must not be empty")
    betas = list(betas)
    fig, axes = new_figure(1, 2, height=3.0, sharey=True)
    for ax, kl in zip(axes, ("reverse", "forward")):
        sub = [r for r in rows if r["kl"] == kl]
        for j, method in enumerate(("vanilla", "MARA")):
            frac = [next((r["collapsed"] / r["runs"] for r in sub if r["method"] == method and r["beta"] == b),
                         np.nan) for b in betas]
            ax.bar(np.arange(len(betas)) + (j - 0.5) * 0.38, frac, 0.38, color=_method_color(method), label=method)
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_xlabel(r"$\beta$")
        ax.set_title(f"{kl} KL")
    axes[0].set_ylabel("fraction of runs collapsed\n(entropy < 0.2 bits)")
    axes[0].legend()
    return fig


def share_trajectories(results, beta: float, predicted: dict, window: int = 9):
    """Chapter 5: the share of "1" among valid samples along every run at ``beta`` (moving average over
    ``window`` steps), a panel per KL direction, with each method's exact target dashed (``predicted``:
    ``experiments.onetwo.predicted_shares``, keys like ``"vanilla-reverse"``): dynamics drawn against targets."""
    from marabook.experiments.onetwo import method_label

    if not results:
        raise ValueError("results must not be empty")

    def smooth(x):
        x = np.asarray(x, dtype=float)
        return x if len(x) < window else np.convolve(x, np.ones(window) / window, mode="valid")

    fig, axes = new_figure(1, 2, height=3.2, sharey=True)
    for ax, kl in zip(axes, ("reverse", "forward")):
        for r in results:
            c = r["config"]
            if c["kl"] == kl and c["beta"] == beta:
                ax.plot(smooth([h["share_1"] for h in r["history"]]), color=_method_color(method_label(c)), alpha=0.7)
        for method in ("vanilla", "MARA"):
            ax.axhline(predicted[f"{method.lower()}-{kl}"], color=_method_color(method), ls="--", lw=1.2)
        ax.set_title(rf"{kl} KL, $\beta$ = {beta:g} (dashed: target)")
        ax.set_xlabel("step")
    for m in ("vanilla", "MARA"):
        axes[0].plot([], [], color=_method_color(m), label=m)
    axes[0].set_ylabel('share of "1" among valid samples\n(moving average)')
    axes[0].legend()
    return fig
