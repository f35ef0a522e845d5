"""The book's colours, one per role and one per method, in the lowest layer so that every module that draws
(``marabook.plotting``, the experiments' own figure helpers) uses the same ones (DESIGN.md: one colour per
method everywhere)."""

from __future__ import annotations

__all__ = ["COLORS", "METHOD_COLORS"]

#: One colour per role, used by every chapter.
COLORS = {
    "ref": "#7f7f7f",
    "reward": "#2ca02c",
    "reverse": "#1f77b4",
    "forward": "#d62728",
    "mara": "#9467bd",
    "entropy": "#ff7f0e",
}

#: Vanilla in the reverse-KL blue and MARA in purple, the two methods of the 1-2 figures (as in every chapter).
METHOD_COLORS = {"vanilla": COLORS["reverse"], "MARA": COLORS["mara"]}
