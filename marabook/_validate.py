"""Input checks shared by every marabook layer (imports nothing from marabook).

Every public function in marabook rejects bad input with a ``ValueError`` whose message starts
with the offending argument's name, e.g. ``"beta must be > 0, got -1.0"``.
"""

from __future__ import annotations

import numpy as np

#: Tolerance on ``|sum(ref_probs) - 1|`` accepted by every function that takes a distribution.
PROB_SUM_ATOL = 1e-6


def is_torch(x) -> bool:
    """True for a torch tensor (checked by module name, so torch is never imported here)."""
    return type(x).__module__.split(".")[0] == "torch"


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools rejected), returned as a Python int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(value, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """A finite real number (bools rejected); ``positive`` requires > 0, ``minimum`` requires >= it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return float(value)


def as_float_array(x, name: str) -> np.ndarray:
    """Convert ``x`` to a float64 array, raising a ValueError naming ``name`` if that fails."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric array-like, got {type(x).__name__}") from exc
    return arr


def check_finite(x, name: str) -> np.ndarray:
    """Return ``x`` as a float array; raise if it holds NaN or +-inf."""
    arr = as_float_array(x, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def check_distribution(p, name: str = "ref_probs", *, atol: float = PROB_SUM_ATOL) -> np.ndarray:
    """Validate a (batch of) probability vectors along the last axis and renormalise exactly.

    Entries must be finite and >= 0 and each vector must sum to 1 within ``atol``; the returned
    array is divided by its sum so downstream code sees an exactly normalised distribution.
    """
    arr = check_finite(p, name)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one entry along its last axis")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative")
    total = arr.sum(axis=-1, keepdims=True)
    if np.any(np.abs(total - 1.0) > atol):
        worst = float(np.max(np.abs(total - 1.0)))
        raise ValueError(f"{name} must sum to 1 along the last axis (off by {worst:.3g} > {atol:g})")
    return arr / total


def check_beta(beta, name: str = "beta", *, allow_zero: bool = False) -> np.ndarray:
    """Validate a KL coefficient: a scalar, or an array whose last axis has length 1.

    The length-1 trailing axis is what lets a column of betas, shape ``(B, 1)``, broadcast against
    vectors of shape ``(V,)`` to give ``(B, V)``; a bare ``(B,)`` vector is rejected because it would
    silently broadcast along the token axis instead.
    """
    if isinstance(beta, (bool, np.bool_)) or getattr(np.asarray(beta), "dtype", None) == np.bool_:
        raise ValueError(f"{name} must be a number, got {beta!r} (a bool)")
    arr = check_finite(beta, name)
    if arr.ndim >= 1 and arr.shape[-1] != 1:
        raise ValueError(
            f"{name} must be a scalar or have a trailing axis of length 1 (e.g. shape (B, 1)), "
            f"got shape {arr.shape}; use np.asarray(betas)[:, None] for a sweep"
        )
    if allow_zero:
        if np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0")
    elif np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0, got min {float(np.min(arr))!r}")
    return arr


def broadcast_last(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[int, ...]:
    """Shape of ``a`` and ``b`` broadcast together, with both required to share the last axis."""
    if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_b} must have the same last-axis length as {name_a}: "
            f"got shapes {b.shape} and {a.shape}"
        )
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError as exc:
        raise ValueError(
            f"{name_b} with shape {b.shape} does not broadcast with {name_a} of shape {a.shape}"
        ) from exc
