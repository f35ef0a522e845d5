"""Named numbers a chapter hands to its prose and to the test suite (myst-nb "glue").

A chapter calls ``glue("beta_star", b_star)`` after computing a key number. Three things read it:

* the book's prose, through MyST-NB's ``glue:text`` role (with ``beta_star:.4f`` as its argument), so a
  number quoted in a sentence is the number this build computed, never one frozen from an old build;
* the test suite, which reads the glued values out of every executed chapter and checks them against
  the closed forms (``tests/test_notebooks.py``), so a chapter that silently computes a wrong number
  fails CI;
* a reader, who sees nothing: the value is stored hidden in the cell's output.

The output format is the one MyST-NB's own ``myst_nb.glue`` writes (a display_data output whose
metadata carries ``{"scrapbook": {"name": ..., "mime_prefix": ...}}``), produced here without importing
myst_nb so that chapters run unchanged on Colab, where Jupyter Book is not installed.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["glue", "glued_values", "glue_name", "glue_rows", "glue_maybe", "HIDDEN_PREFIX"]

# MyST-NB's prefix for glued outputs that are stored but not displayed
HIDDEN_PREFIX = "application/papermill.record/"


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` in the running notebook's outputs (hidden unless ``display``).

    ``value`` must be a finite real number, a bool or a string; numbers are stored as Python floats
    (their ``repr``, so nothing is lost to rounding) and can be formatted in prose with
    ``{glue:text}`name:.3f```.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    if isinstance(value, bool) or isinstance(value, str):
        pass
    elif isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r} for {name!r}")
    elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # a NumPy / torch scalar
        return glue(name, value.item(), display)
    else:
        raise ValueError(f"value must be a real number, bool or str, got {type(value).__name__} for {name!r}")
    from IPython.display import display as ipy_display  # only where a notebook runs

    prefix = "" if display else HIDDEN_PREFIX
    ipy_display({prefix + "text/plain": repr(value)}, raw=True,
                metadata={"scrapbook": {"name": name, "mime_prefix": prefix}})


def glued_values(notebook) -> dict:
    """The values glued in an executed notebook (an ``nbformat`` node or its dict), by name.

    Numbers come back as floats, strings as strings; a name glued twice raises ValueError (MyST-NB
    would warn and keep one of them).
    """
    import ast

    cells = notebook["cells"] if isinstance(notebook, dict) else notebook.cells
    out: dict = {}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for o in cell.get("outputs", []):
            meta = (o.get("metadata") or {}).get("scrapbook")
            if o.get("output_type") != "display_data" or not meta:
                continue
            name = meta["name"]
            if name in out:
                raise ValueError(f"glue name {name!r} is used twice")
            text = o["data"][meta.get("mime_prefix", "") + "text/plain"]
            out[name] = ast.literal_eval(text if isinstance(text, str) else "".join(text))
    return out


def glue_name(*parts) -> str:
    """A glue name from its parts: ``glue_name("MARA", "reverse", 0.001, "share")`` is
    ``"mara_reverse_0_001_share"`` (lower case, every run of other characters becomes one underscore)."""
    import re

    if not parts:
        raise ValueError("parts must name at least one part")
    text = "_".join(f"{p:g}" if isinstance(p, float) else str(p) for p in parts)
    name = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    if not name:
        raise ValueError(f"parts must contain a letter or digit, got {parts!r}")
    return name if name.isidentifier() else "n_" + name


def glue_rows(rows, keys, fields, prefix: str = "") -> dict:
    """Glue ``fields`` of every row of a results table, each under ``glue_name(prefix, *row[keys], field)``.

    So a sentence can quote any cell of a table the chapter computed: a table row
    ``{"method": "MARA", "kl": "reverse", "beta": 0.001, "collapsed": 4}`` with ``keys=("method", "kl",
    "beta")`` glues ``mara_reverse_0_001_collapsed = 4.0``. A NaN (an undefined share, every run failed)
    is glued as the string ``"undefined"``. Returns ``{name: value}`` as glued.
    """
    keys, fields = list(keys), list(fields)
    if not keys:
        raise ValueError("keys must name at least one column")
    if not fields:
        raise ValueError("fields must name at least one column")
    out: dict = {}
    for i, row in enumerate(rows):
        missing = [k for k in keys + fields if k not in row]
        if missing:
            raise ValueError(f"rows[{i}] lacks the columns {missing}")
        for f in fields:
            name = glue_name(*([prefix] if prefix else []), *(row[k] for k in keys), f)
            if name in out:
                raise ValueError(f"rows: two rows give the glue name {name!r}; add a key column")
            glue_maybe(name, row[f])
            out[name] = _defined(row[f])
    return out


def glue_maybe(name: str, value) -> None:
    """:func:`glue` for a quantity that may legitimately be undefined (a ratio to a baseline of zero, a share
    over no valid run): NaN is glued as the string ``"undefined"``, as :func:`glue_rows` does."""
    glue(name, _defined(value))


def _defined(value):
    """NaN becomes the string "undefined"; everything else is returned as it is."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value):
        return "undefined"
    return value
