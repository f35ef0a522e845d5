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


def test_every_figure_is_one_column_wide_with_readable_type():
    """new_figure makes column-wide figures whatever width is asked for; the smallest type the style sets,
    at the resolution the PNG is written and shown, is at least 12 CSS px (the browser test measures it)."""
    fig, _ = plotting.new_figure(1, 3, figsize=(13, 4))
    w, h = fig.get_size_inches()
    assert w * plotting.DPI == pytest.approx(plotting.COLUMN_PX) and h == pytest.approx(4)
    sizes = [matplotlib.rcParams[k] for k in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize")]
    assert min(matplotlib.font_manager.FontProperties(size=s).get_size_in_points() for s in sizes) >= plotting.MIN_FONT_PT
    assert plotting.MIN_FONT_PT * plotting.DPI / 72 >= 12
    plt.close(fig)
    with pytest.raises(ValueError, match="height"):
        plotting.new_figure(height=-1)
    with pytest.raises(ValueError, match="ncols"):
        plotting.new_figure(1, 0)


def test_collapse_demo_numbers_are_the_closed_forms():
    """The first figure's left panel: exact training keeps the reference ratio 0.30/0.02 = 15 between the two
    correct answers (the Gibbs target's ratio for equal rewards, eq. 3.1), MARA brings it to 1."""
    from marabook import bandit

    eq = problems.three_action_equal_reward()
    v = bandit.train_exact(eq.ref_probs, eq.rewards, 0.05, steps=300)
    m = bandit.train_exact(eq.ref_probs, eq.rewards, 0.05, mara_tau=1.0, steps=3000)
    runs = [{"config": {"kl": "reverse", "mara_tau": tau, "beta": 0.01}, "final": {"share_1": s, "p_valid": pv}}
            for tau, s, pv in ((None, 0.9, 1.0), (None, 1.0, 1.0), (None, 0.3, 0.1), (1.0, 0.5, 1.0))]
    fig, n = plotting.collapse_demo(v, m, {"results": {"runs": runs}})
    assert n["ratio_vanilla"] == pytest.approx(15.0, rel=1e-6)  # equal rewards: the ratio never moves
    assert n["ratio_mara"] == pytest.approx(1.0, abs=1e-3)
    assert n["share_vanilla"] == pytest.approx(0.95) and n["failed_vanilla"] == 1  # the failed run is not a share
    assert n["runs_vanilla"] == 3 and n["share_mara"] == pytest.approx(0.5)
    plt.close(fig)
    with pytest.raises(ValueError, match="stored_sweep"):
        plotting.collapse_demo(v, m, {})
    with pytest.raises(ValueError, match="vanilla"):
        plotting.collapse_demo("x", m, {"results": {"runs": runs}})


def test_forest_draws_one_row_per_label_and_refuses_ragged_panels():
    fig = plotting.forest(["a", "b", "c"], [{"title": "x", "mean": [1, np.nan, 3], "err": [0.1, 0.1, 0.2],
                                             "target": [1, 2, 3]}])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len([c for c in ax.containers]) == 2  # the NaN row draws no dot
    plt.close(fig)
    with pytest.raises(ValueError, match=r"panels\[0\]\['err'\]"):
        plotting.forest(["a", "b"], [{"mean": [1, 2], "err": [1]}])
    with pytest.raises(ValueError, match="labels"):
        plotting.forest([], [{"mean": [], "err": []}])


def test_chapter_8_figures_average_over_seeds_and_refuse_empty_runs():
    hist = lambda s: [{"calls": c, "score": s * c} for c in (64, 128)]  # noqa: E731
    runs = [{"task": "product", "method": m, "seed": k, "history": hist(1.0 + k),
             "curve": {"calls": [64, 128], "hits@0.80": [k, 2 * k], "distinct": [60, 120]}}
            for m in ("REINVENT", "MARA 0.80") for k in range(2)]
    fig = plotting.score_curves(runs, "t", ["product"])
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_ydata()) == pytest.approx([1.5 * 64, 1.5 * 128])  # mean of scales 1 and 2
    plt.close(fig)
    fig = plotting.discovery_curves(runs)
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx([0.5, 1.0])
    plt.close(fig)
    rows = [{"task": "product", "sigma": s, "method": "MARA 0.80", "ratio": 1.2, "ratio_sd": 0.1} for s in (64, 128)]
    fig = plotting.yield_ratios(rows)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == ["64", "128"]
    plt.close(fig)
    for f in (plotting.score_curves, plotting.discovery_curves, plotting.yield_ratios):
        with pytest.raises(ValueError, match="must not be empty"):
            f([])


def test_chapter_5_figures_draw_every_run_and_the_targets():
    runs = [{"config": {"kl": kl, "beta": 0.01, "mara_tau": tau},
             "final": {"entropy_bits": 0.5, "p_valid": 0.9}, "history": [{"share_1": 0.5}] * 12}
            for kl in ("reverse", "forward") for tau in (None, 1.0)]
    fig = plotting.onetwo_scatter(runs, reference=(0.8, 0.99))
    assert len(fig.axes[0].collections) == 2 + 1 + 2  # two runs, the star, two legend handles
    plt.close(fig)
    rows = [{"kl": kl, "method": m, "beta": 0.01, "collapsed": 1, "runs": 4} for kl in ("reverse", "forward")
            for m in ("vanilla", "MARA")]
    fig = plotting.collapse_bars(rows, [0.01])
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.25, 0.25])
    plt.close(fig)
    pred = {f"{m}-{kl}": 0.5 for m in ("vanilla", "mara") for kl in ("reverse", "forward")}
    fig = plotting.share_trajectories(runs, 0.01, pred, window=9)
    assert len(fig.axes[0].get_lines()[0].get_ydata()) == 12 - 9 + 1  # a moving average over 9 steps
    plt.close(fig)
    for f, args in ((plotting.onetwo_scatter, ()), (plotting.collapse_bars, ([0.01],)),
                    (plotting.share_trajectories, (0.01, pred))):
        with pytest.raises(ValueError, match="must not be empty"):
            f([], *args)


def test_the_chapter_forests_refuse_empty_rows_and_unknown_columns():
    for f in (plotting.tokens_forest, plotting.onetwo_forest, plotting.open_ended_forest):
        with pytest.raises(ValueError, match="rows"):
            f([])
    with pytest.raises(ValueError, match="columns"):
        plotting.open_ended_forest([{"method": "RLOO", "distinct": (4.0, 0.2)}], columns=("EAD-1",))
    fig = plotting.open_ended_forest([{"method": "RLOO", "distinct": (4.0, 0.2)}], columns=("distinct",))
    assert fig.axes[0].lines[0].get_xdata()[0] == pytest.approx(4.0)  # the dot sits at the mean
    plt.close(fig)
