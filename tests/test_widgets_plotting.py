"""Figures and the explorer build without error and reflect their inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from marabook import plotting, problems, targets, widgets


def test_explorer_problem_has_requested_gaps():
    p = widgets.explorer_problem(reward_gap=0.3, ref_gap=2.0)
    a, b = p.peaks["mode 1"], p.peaks["mode 2"]
    np.testing.assert_allclose(p.rewards[[a, b]], [0.7, 1.0], atol=1e-9)
    np.testing.assert_allclose(np.log(p.ref_probs[a]) - np.log(p.ref_probs[b]), 2.0, atol=1e-9)
    with pytest.raises(ValueError, match="reward_gap"):
        widgets.explorer_problem(1.5, 1.0)
    with pytest.raises(ValueError, match="ref_gap"):
        widgets.explorer_problem(0.1, np.nan)


def test_target_explorer_builds_and_survives_slider_changes():
    # (outside a kernel the Output widget captures nothing, so check the controls and the panel)
    box = widgets.target_explorer(beta=0.1)
    sliders = box.children[0].children
    assert [s.description for s in sliders] == ["beta", "reward gap", "ref log-gap"]
    assert sliders[0].value == pytest.approx(0.1)
    for s, v in zip(sliders, (0.5, 0.4, 1.0)):
        s.value = v  # triggers a redraw; must not raise


def test_explorer_panel_reports_mode_masses():
    fig, ax = plotting.new_figure()
    widgets.draw_explorer(ax, 0.13, 0.25, 1.9)
    p = widgets.explorer_problem(0.25, 1.9)
    g = targets.reverse_kl_target(p.ref_probs, p.rewards, 0.13)
    m1, m2 = (float(np.sum(g[m])) for m in p.modes.values())
    assert f"rev {m1:.2f}|{m2:.2f}" in ax.get_title()
    plt.close(fig)


def test_explorer_grid_shape():
    fig = widgets.explorer_grid(betas=(0.1, 1.0), reward_gaps=(0.1,))
    assert len(fig.axes) >= 2
    plt.close(fig)
    with pytest.raises(ValueError, match="betas"):
        widgets.explorer_grid(betas=())


def test_beta_sweep_heatmap_validates_shapes():
    p = problems.bimodal_tokens()
    betas = np.logspace(-2, 0, 5)
    fig, ax = plotting.new_figure()
    mesh = plotting.plot_beta_sweep(ax, betas, targets.reverse_kl_target(p.ref_probs, p.rewards, betas[:, None]))
    assert mesh.get_array().size == 5 * 100
    with pytest.raises(ValueError, match="probs"):
        plotting.plot_beta_sweep(ax, betas[:3], targets.reverse_kl_target(p.ref_probs, p.rewards, betas[:, None]))
    with pytest.raises(ValueError, match="directions"):
        plotting.plot_targets(ax, p, 0.1, directions=("sideways",))
    plt.close(fig)


def test_plot_problem_rejects_non_problem():
    fig, ax = plotting.new_figure()
    with pytest.raises(ValueError, match="problem"):
        plotting.plot_problem(ax, {"ref_probs": [1.0]})
    plt.close(fig)
