"""Keeping the first edition's import paths working after names moved up a layer (imports nothing from marabook)."""

from __future__ import annotations

import importlib


def moved_getattr(module: str, moved: dict):
    """A module ``__getattr__`` (PEP 562) that resolves ``name`` in ``marabook.experiments.<moved[name]>``
    on first use. Importing the module never imports the higher layer; only asking for a moved name does."""

    def __getattr__(name):
        if name in moved:
            return getattr(importlib.import_module(f"marabook.experiments.{moved[name]}"), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def require(module: str, *packages: str, extra: str) -> None:
    """Import ``packages`` or raise an ImportError that says which extra brings them."""
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ImportError(f"{module} needs {', '.join(missing)}: pip install \"marabook[{extra}]\" "
                          f"(on Colab torch and transformers are already installed)")
