"""Checks on drawn figures: no two pieces of text overlap.

A reader cannot read two subplot titles printed over each other, and no pixel test notices them. This
module measures every piece of text a matplotlib figure draws (titles, the figure's title, axis labels,
the tick labels actually drawn, legend entries, annotations) and reports each pair whose boxes overlap.

* :func:`text_overlaps` checks one figure.
* :func:`record` turns on a check of every figure at the moment it is drawn (shown inline in a notebook,
  saved, or rendered by a canvas); :data:`RECORDED` collects what it found. :func:`marabook.plotting.use_book_style`
  turns it on when the environment variable ``MARABOOK_CHECK_FIGURES`` is ``1``, which the test suite sets
  for every chapter it runs (tests/conftest.py), so an overlapping label fails the chapter's test.
"""

from __future__ import annotations

import numpy as np

__all__ = ["text_overlaps", "record", "RECORDED"]

#: ``(figure description, [overlap descriptions])`` for every figure drawn with overlaps while :func:`record` is on.
RECORDED: list = []
_ORIGINAL_DRAW = None


def _drawn_texts(fig) -> list:
    """The Text artists ``fig`` draws: figure texts and titles, then per axes its titles, axis labels, the
    tick labels of the ticks inside the view, offset texts, annotations and legend entries."""
    out = list(fig.texts)
    for name in ("_suptitle", "_supxlabel", "_supylabel"):
        t = getattr(fig, name, None)
        if t is not None:
            out.append(t)
    for leg in fig.legends:
        out += list(leg.get_texts()) + [leg.get_title()]
    for ax in fig.get_axes():
        if not ax.get_visible():
            continue
        out += [ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)]
        for axis in (ax.xaxis, ax.yaxis):
            if not ax.axison or not axis.get_visible():
                continue
            out += [axis.label, axis.get_offset_text()]
            for tick in axis._update_ticks():  # the ticks inside the view, the ones that are drawn
                out += [tick.label1, tick.label2]
        out += list(ax.texts)
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            out += list(leg.get_texts()) + [leg.get_title()]
    return [t for t in out if t is not None and t.get_visible() and t.get_text().strip()]


def text_overlaps(fig, renderer=None, tolerance_px: float = 1.0) -> list[str]:
    """Pairs of text in ``fig`` whose boxes overlap by more than ``tolerance_px`` pixels (at 100 dpi) both
    ways, as readable strings; ``[]`` when every label stands clear. ``renderer``: the one drawing ``fig``
    (default: draw it on its own canvas)."""
    if not hasattr(fig, "get_axes") or not hasattr(fig, "canvas"):
        raise ValueError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not (isinstance(tolerance_px, (int, float)) and np.isfinite(tolerance_px) and tolerance_px >= 0):
        raise ValueError(f"tolerance_px must be a non-negative number, got {tolerance_px!r}")
    if renderer is None:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
    tol = tolerance_px * fig.dpi / 100.0
    texts = _drawn_texts(fig)
    boxes = [t.get_window_extent(renderer) for t in texts]
    found = []
    for i in range(len(texts)):
        a = boxes[i]
        if a.width <= 0 or a.height <= 0:
            continue
        for j in range(i + 1, len(texts)):
            b = boxes[j]
            dx = min(a.x1, b.x1) - max(a.x0, b.x0)
            dy = min(a.y1, b.y1) - max(a.y0, b.y0)
            if dx > tol and dy > tol and texts[i] is not texts[j]:
                found.append(f"{texts[i].get_text()!r} overlaps {texts[j].get_text()!r} "
                             f"({dx / fig.dpi * 100:.0f} x {dy / fig.dpi * 100:.0f} px)")
    return found


def _describe(fig) -> str:
    titles = [ax.get_title() for ax in fig.get_axes() if ax.get_title()]
    sup = getattr(fig, "_suptitle", None)
    head = sup.get_text() if sup is not None else (titles[0] if titles else "untitled")
    return f"figure {head[:60]!r}"


def record(on: bool = True) -> None:
    """Check every figure when it is drawn (``on=True``) and append what overlaps to :data:`RECORDED`;
    ``on=False`` stops checking. Figures drawn more than once are reported once."""
    global _ORIGINAL_DRAW
    from matplotlib.figure import Figure

    if not isinstance(on, bool):
        raise ValueError(f"on must be True or False, got {on!r}")
    if on and _ORIGINAL_DRAW is None:
        _ORIGINAL_DRAW = Figure.draw
        original = _ORIGINAL_DRAW
        seen = set()

        def draw(self, renderer):
            original(self, renderer)
            if id(self) in seen:
                return
            found = text_overlaps(self, renderer)
            if found:
                seen.add(id(self))
                RECORDED.append((_describe(self), found))

        Figure.draw = draw
    elif not on and _ORIGINAL_DRAW is not None:
        Figure.draw = _ORIGINAL_DRAW
        _ORIGINAL_DRAW = None
