"""Interactive explorers (ipywidgets) with static fallbacks for the rendered HTML (chapter 3)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from marabook.metrics import mass_on
from marabook.plotting import new_figure, plot_targets
from marabook.problems import explorer_problem
from marabook.targets import forward_kl_target, reverse_kl_target

__all__ = ["explorer_problem", "draw_explorer", "target_explorer", "explorer_grid"]

def draw_explorer(ax, beta: float, reward_gap: float, ref_gap: float, full_title: bool = True):
    """One explorer panel: both targets at ``beta`` and the mass each puts on each mode. ``full_title=False``
    leaves the reference gap and the words out of the title (a grid says them once, in its own title)."""
    prob = explorer_problem(reward_gap, ref_gap)
    plot_targets(ax, prob, beta, title="")
    m1, m2 = prob.modes.values()
    rows = []
    for name, fn in (("rev", reverse_kl_target), ("fwd", forward_kl_target)):
        g = fn(prob.ref_probs, prob.rewards, beta)
        rows.append(f"{name} {mass_on(g, m1):.2f}|{mass_on(g, m2):.2f}")
    if full_title:
        ax.set_title(rf"$\beta$={beta:g}, $\Delta R$={reward_gap:g}, $\Delta\log\pi_{{ref}}$={ref_gap:g}"
                     + "\nmass on mode 1|2: " + ", ".join(rows))
    else:
        ax.set_title(rf"$\beta$={beta:g}, $\Delta R$={reward_gap:g}" + "\n" + ", ".join(rows))
    return ax


def target_explorer(beta: float = 0.13, reward_gap: float = 0.25, ref_gap: float = 1.9):
    """Sliders for beta (log scale), reward gap and reference gap; redraws both targets live.

    Returns the ipywidgets container; display it as the last expression of a cell. In the static
    HTML the initial figure is kept (saved widget state); use :func:`explorer_grid` as a fallback.
    """
    import ipywidgets as w

    s_beta = w.FloatLogSlider(value=beta, base=10, min=-3, max=1, step=0.05, description="beta",
                              readout_format=".3g", continuous_update=False)
    s_rgap = w.FloatSlider(value=reward_gap, min=0.0, max=1.0, step=0.01, description="reward gap",
                           continuous_update=False)
    s_lgap = w.FloatSlider(value=ref_gap, min=0.0, max=5.0, step=0.1, description="ref log-gap",
                           continuous_update=False)
    out = w.Output()

    def redraw(*_):
        # The picture goes into the Output widget's state directly (``outputs``), not through ``with out:``:
        # output capture routes the kernel's display messages through the client, and a notebook executed
        # headless (nbclient, the book build) could then wait on them indefinitely (jupyter/nbclient#312).
        fig, ax = new_figure(height=3.2)
        draw_explorer(ax, s_beta.value, s_rgap.value, s_lgap.value)
        ax.legend(loc="upper right")
        out.outputs = ()
        out.append_display_data(fig)
        plt.close(fig)

    for s in (s_beta, s_rgap, s_lgap):
        s.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([s_beta, s_rgap, s_lgap]), out])


def explorer_grid(betas=(0.02, 0.13, 1.0), reward_gaps=(0.05, 0.25), ref_gap: float = 1.9):
    """Static fallback of :func:`target_explorer`: a grid of panels (rows: reward gap, cols: beta)."""
    betas, reward_gaps = list(betas), list(reward_gaps)
    if not betas or not reward_gaps:
        raise ValueError("betas and reward_gaps must be non-empty")
    fig, axes = new_figure(len(reward_gaps), len(betas), height=2.7 * len(reward_gaps),
                           sharex=True, squeeze=False)
    for i, gap in enumerate(reward_gaps):
        for j, beta in enumerate(betas):
            draw_explorer(axes[i, j], beta, gap, ref_gap, full_title=False)
    axes[0, 0].legend(loc="upper right")
    fig.suptitle(rf"reference log-gap $\Delta\log\pi_{{ref}}$={ref_gap:g}; each title: mass on mode 1|2, reverse and forward")
    return fig
