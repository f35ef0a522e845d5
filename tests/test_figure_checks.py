"""marabook.figure_checks: overlapping text in a figure is found (issue 30), and the package's own figures have none."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from marabook import figure_checks, plotting, problems, widgets  # noqa: E402


def test_two_long_titles_side_by_side_overlap_and_short_ones_do_not():
    fig, axes = plotting.new_figure(1, 2)
    for ax in axes:
        ax.set_title("a title long enough to run into the neighbouring panel's title")
    found = figure_checks.text_overlaps(fig)
    assert len(found) == 1 and "overlaps" in found[0]
    for ax in axes:
        ax.set_title("short")
    assert figure_checks.text_overlaps(fig) == []
    plt.close(fig)


def test_crowded_tick_labels_overlap():
    fig, ax = plotting.new_figure()
    ax.bar(range(40), np.ones(40))
    ax.set_xticks(range(40), [f"colour {i}" for i in range(40)])
    assert any("colour" in f for f in figure_checks.text_overlaps(fig))
    ax.tick_params(axis="x", labelrotation=90)
    assert figure_checks.text_overlaps(fig) == []
    plt.close(fig)


def test_ticks_outside_the_view_are_not_counted():
    fig, ax = plotting.new_figure()
    ax.plot([0, 1], [0, 1])
    ax.set_xticks([-5, 0, 0.5, 1, 5])
    ax.set_xlim(0, 1)
    drawn = [t.get_text() for t in figure_checks._drawn_texts(fig)]
    assert "5" not in drawn and "−5" not in drawn
    plt.close(fig)


def test_record_checks_every_drawn_figure_and_can_be_turned_off():
    figure_checks.RECORDED.clear()
    figure_checks.record(True)
    try:
        fig, axes = plotting.new_figure(1, 2)
        for ax in axes:
            ax.set_title("a title long enough to run into the neighbouring panel's title")
        fig.canvas.draw()
        assert len(figure_checks.RECORDED) == 1
        fig.canvas.draw()  # drawn again: reported once
        assert len(figure_checks.RECORDED) == 1
    finally:
        figure_checks.record(False)
        figure_checks.RECORDED.clear()
        plt.close("all")
    fig, axes = plotting.new_figure(1, 2)
    for ax in axes:
        ax.set_title("a title long enough to run into the neighbouring panel's title")
    fig.canvas.draw()
    assert figure_checks.RECORDED == []
    plt.close(fig)


def test_bad_input():
    with pytest.raises(ValueError, match="fig"):
        figure_checks.text_overlaps("not a figure")
    fig, _ = plotting.new_figure()
    with pytest.raises(ValueError, match="tolerance_px"):
        figure_checks.text_overlaps(fig, tolerance_px=-1)
    with pytest.raises(ValueError, match="on"):
        figure_checks.record("yes")
    plt.close(fig)


def test_the_package_figures_have_no_overlapping_text():
    prob = problems.bimodal_tokens()
    figs = [widgets.explorer_grid()]
    fig, ax = plotting.new_figure()
    widgets.draw_explorer(ax, 0.13, 0.25, 1.9)
    figs.append(fig)
    fig, axes = plotting.new_figure(1, 2)
    plotting.plot_problem(axes[0], prob)
    plotting.plot_targets(axes[1], prob, 0.1)
    figs.append(fig)
    fig, axes = plotting.new_figure(1, 2, sharey=True)
    betas = np.logspace(-3, 1, 30)
    from marabook.targets import forward_kl_target, reverse_kl_target
    for ax, fn in zip(axes, (reverse_kl_target, forward_kl_target)):
        plotting.plot_beta_sweep(ax, betas, fn(prob.ref_probs, prob.rewards, betas[:, None]), title=fn.__name__)
    figs.append(fig)
    for fig in figs:
        assert figure_checks.text_overlaps(fig) == [], fig
        plt.close(fig)
