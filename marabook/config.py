"""Run scale: one switch that shrinks or grows every experiment in the book.

Three scales share one code path (DESIGN.md, "One code path, three scales"):

* ``"smoke"``: seconds per chapter on 2 CPU cores; the test suite sets ``MARABOOK_SMOKE=1``.
* ``"book"`` (default): what the rendered book shows; the whole book builds on a 2-core CPU.
* ``"gpu"``: bigger models and more seeds: ``MARABOOK_SCALE=gpu``, and the default on Google Colab when a GPU
  is attached (there the reader pressed "Open in Colab" and chose a GPU runtime to use it).

``MARABOOK_SMOKE=1`` wins over ``MARABOOK_SCALE``. Chapters read the scale through :func:`scale`
or pick sizes with :func:`pick`, never from the environment directly.
"""

from __future__ import annotations

import os
import sys

__all__ = ["SCALES", "scale", "is_smoke", "pick", "how_to_change", "show_progress"]

SCALES = ("smoke", "book", "gpu")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def scale() -> str:
    """The current run scale, read from the environment on every call.

    ``MARABOOK_SMOKE`` truthy ("1", "true", "yes", "on") -> ``"smoke"``; otherwise
    ``MARABOOK_SCALE`` if set (one of ``SCALES``), else ``"gpu"`` on Google Colab with a GPU and
    ``"book"`` everywhere else. Anything else raises ``ValueError`` naming the variable, so a typo never
    silently runs the wrong scale.
    """
    smoke = os.environ.get("MARABOOK_SMOKE", "").strip().lower()
    if smoke in _TRUE:
        return "smoke"
    if smoke not in _FALSE:
        raise ValueError(f"MARABOOK_SMOKE must be 1/0 (or true/false), got {smoke!r}")
    default = "gpu" if _colab_gpu() else "book"
    value = os.environ.get("MARABOOK_SCALE", default).strip().lower() or default
    if value not in SCALES:
        raise ValueError(f"MARABOOK_SCALE must be one of {SCALES}, got {value!r}")
    return value


def _colab_gpu() -> bool:
    if "google.colab" not in sys.modules:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def how_to_change() -> str:
    """One line for the chapters: how a reader picks another scale."""
    return ("to change it: os.environ['MARABOOK_SCALE'] = 'smoke' | 'book' | 'gpu' in a cell above this one "
            "(default on Colab with a GPU: 'gpu')")


def is_smoke() -> bool:
    """True when running at smoke scale (the test suite)."""
    return scale() == "smoke"


def pick(*, smoke, book, gpu=None):
    """Return the value for the current scale: ``pick(smoke=50, book=2000, gpu=20000)``.

    ``gpu`` defaults to the ``book`` value.
    """
    current = scale()
    if current == "smoke":
        return smoke
    if current == "gpu" and gpu is not None:
        return gpu
    return book


def show_progress(requested: bool = True) -> bool:
    """Whether a progress bar should be drawn: as ``requested``, unless ``TQDM_DISABLE`` is set (the book
    build sets it, with ``HF_HUB_DISABLE_PROGRESS_BARS`` for transformers, so pages show results, not bars)."""
    return bool(requested) and os.environ.get("TQDM_DISABLE", "").strip().lower() not in _TRUE
