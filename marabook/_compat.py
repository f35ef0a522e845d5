"""Optional dependencies: a missing extra is reported by name (imports nothing from marabook)."""

from __future__ import annotations



def require(module: str, *packages: str, extra: str) -> None:
    """Import ``packages`` or raise an ImportError that says which extra brings them."""
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ImportError(f"{module} needs {', '.join(missing)}: pip install \"marabook[{extra}]\" "
                          f"(on Colab torch and transformers are already installed)")
