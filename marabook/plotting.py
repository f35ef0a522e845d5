"""Shared figure style for the book: one palette, one way to draw a target and a beta sweep."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from marabook._validate import check_beta, check_distribution, check_finite
from marabook.problems import Problem
from marabook.targets import forward_kl_target, reverse_kl_target

__all__ = ["COLORS", "use_book_style", "plot_problem", "plot_targets", "plot_beta_sweep"]

#: One colour per role, used by every chapter.
COLORS = {
    "ref": "#7f7f7f",
    "reward": "#2ca02c",
    "reverse": "#1f77b4",
    "forward": "#d62728",
    "mara": "#9467bd",
    "entropy": "#ff7f0e",
}


def use_book_style() -> None:
    """Apply the book's matplotlib style (sizes tuned for the rendered HTML)."""
    mpl.rcParams.update({
        "figure.figsize": (8.0, 3.2),
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.25,
        "font.size": 10,
        "axes.titlesize": 10,
        "legend.fontsize": 8,
        "legend.frameon": False,
    })


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


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """``plt.subplots`` with the book style applied and ``constrained_layout`` on."""
    use_book_style()
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, **kwargs)
