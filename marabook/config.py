"""Run scale: one switch that shrinks or grows every experiment in the book.

Three scales share one code path (DESIGN.md, "One code path, three scales"):

* ``"smoke"``: seconds per chapter on 2 CPU cores; the test suite sets ``MARABOOK_SMOKE=1``.
* ``"book"`` (default): what the rendered book shows; the whole book builds on a 2-core CPU.
* ``"gpu"``: bigger models and more seeds, selected explicitly (``MARABOOK_SCALE=gpu``).

``MARABOOK_SMOKE=1`` wins over ``MARABOOK_SCALE``. Chapters read the scale through :func:`scale`
or pick sizes with :func:`pick`, never from the environment directly.
"""

from __future__ import annotations

import os

__all__ = ["SCALES", "scale", "is_smoke", "pick"]

SCALES = ("smoke", "book", "gpu")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def scale() -> str:
    """The current run scale, read from the environment on every call.

    ``MARABOOK_SMOKE`` truthy ("1", "true", "yes", "on") -> ``"smoke"``; otherwise
    ``MARABOOK_SCALE`` if set (one of :data:`SCALES`), else ``"book"``. Anything else raises
    ``ValueError`` naming the variable, so a typo never silently runs the wrong scale.
    """
    smoke = os.environ.get("MARABOOK_SMOKE", "").strip().lower()
    if smoke in _TRUE:
        return "smoke"
    if smoke not in _FALSE:
        raise ValueError(f"MARABOOK_SMOKE must be 1/0 (or true/false), got {smoke!r}")
    value = os.environ.get("MARABOOK_SCALE", "book").strip().lower() or "book"
    if value not in SCALES:
        raise ValueError(f"MARABOOK_SCALE must be one of {SCALES}, got {value!r}")
    return value


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
