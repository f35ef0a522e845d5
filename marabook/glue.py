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

__all__ = ["glue", "glued_values", "HIDDEN_PREFIX"]

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
