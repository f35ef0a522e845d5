"""Result tables that read as tables: plain text in a terminal, an HTML table in a notebook and in the book.

Every ``table``/``format_*`` function of the experiments layer returns a :class:`Table`. A ``Table`` *is* the
plain-text table (a ``str`` subclass, so ``print``, ``in`` and ``splitlines`` keep working), and it also
carries its header and cells, from which Jupyter and the book render a real HTML table (``_repr_html_``)
that fits the book's column: compact type, header cells that wrap, numbers right-aligned.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

__all__ = ["Table"]


_NUM = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?$")


def _is_number(cell: str) -> bool:
    """Cells that read as numbers (``0.512``, ``-3``, ``1.2 ± 0.3``, ``4/5``, ``x1.34``, ``12%``) are
    right-aligned."""
    s = cell.strip().lstrip("x×")
    parts = [p.strip() for p in re.split(r"±|/", s)]
    return bool(s) and all(_NUM.match(p) for p in parts)


class Table(str):
    """A table of strings: ``columns`` (header) and ``rows`` (lists of cell strings), an optional ``caption``.

    ``str(t)`` is the aligned plain-text table (caption first, then header and rows); ``t._repr_html_()`` is
    an HTML ``<table class="marabook-table">``. Cells are used as given: format numbers before building.
    """

    columns: tuple
    rows: tuple
    caption: str | None

    def __new__(cls, columns: Sequence, rows: Sequence[Sequence], caption: str | None = None):
        if isinstance(columns, str) or not isinstance(columns, Sequence) or len(columns) == 0:
            raise ValueError(f"columns must be a non-empty sequence of column names, got {columns!r}")
        cols = tuple(str(c) for c in columns)
        if isinstance(rows, str) or not isinstance(rows, Sequence):
            raise ValueError(f"rows must be a sequence of rows, got {type(rows).__name__}")
        body = []
        for i, r in enumerate(rows):
            if isinstance(r, str) or not isinstance(r, Sequence) or len(r) != len(cols):
                raise ValueError(f"rows[{i}] must have {len(cols)} cells (one per column), got {r!r}")
            body.append(tuple(str(c) for c in r))
        if caption is not None and not isinstance(caption, str):
            raise ValueError(f"caption must be a string or None, got {type(caption).__name__}")
        widths = [max([len(cols[j])] + [len(r[j]) for r in body]) for j in range(len(cols))]
        numeric = [bool(body) and all(_is_number(r[j]) or r[j].strip() in ("", "-", "undefined") for r in body)
                   for j in range(len(cols))]

        def line(cells):
            return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

        text = "\n".join(([caption] if caption else []) + [line(cols)] + [line(r) for r in body])
        self = super().__new__(cls, text)
        self.columns, self.rows, self.caption, self._numeric = cols, tuple(body), caption, numeric
        return self

    def _repr_html_(self) -> str:
        esc = html.escape
        out = ['<table class="marabook-table">']
        if self.caption:
            out.append(f"<caption>{esc(self.caption)}</caption>")
        # headers such as "yield@0.80" or "OB100@0.85" may break after "@", "_" or "/" (never inside a word)
        def head(c):
            return esc(c).replace("@", "@<wbr>").replace("_", "_<wbr>").replace("/", "/<wbr>")

        # a number never breaks ("4e-06" not after its "-"), nor "± 0.005" after its "±": a cell breaks only
        # between words, before a "±", or between two values ("+0.18 (4e-06)"); "multi-mode" may still break
        def cell(c):
            words = esc(c).replace("± ", "±\u00a0").split(" ")
            return " ".join(f'<span class="nw">{w}</span>' if re.search(r"-\d|\d-", w) else w for w in words)

        out.append("<thead><tr>" + "".join(f"<th>{head(c)}</th>" for c in self.columns) + "</tr></thead><tbody>")
        for r in self.rows:
            out.append("<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{cell(c)}</td>'
                                        for c, n in zip(r, self._numeric)) + "</tr>")
        out.append("</tbody></table>")
        return "".join(out)

    def __reduce__(self):  # copy and pickle rebuild from the cells, not from the text
        return (Table, (self.columns, self.rows, self.caption))

    def with_caption(self, caption: str) -> "Table":
        """The same table under another caption."""
        return Table(self.columns, self.rows, caption)

    def to_markdown(self) -> str:
        """The table as Markdown (for glue into prose or a README)."""
        def esc(s):
            return s.replace("|", "\\|")

        head = "| " + " | ".join(esc(c) for c in self.columns) + " |"
        rule = "|" + "|".join("---:" if n else ":---" for n in self._numeric) + "|"
        return "\n".join([head, rule] + ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows])
