"""Distribution-level metrics: how spread out a policy is, and how far it is from a target.

All functions take probability vectors along the LAST axis (leading axes are batch axes) and
return the leading shape. Logarithms are natural unless ``base`` is given (``base=2`` for bits).
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr

from marabook._validate import broadcast_last, check_distribution

__all__ = ["entropy", "entropy_on", "effective_num_modes", "kl_divergence", "total_variation", "mass_on"]


def _log_base(base) -> float:
    if base is None:
        return 1.0
    try:
        value = float(base)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"base must be a positive number other than 1, got {base!r}") from exc
    if not np.isfinite(value) or value <= 0 or value == 1:
        raise ValueError(f"base must be a positive number other than 1, got {base!r}")
    return float(np.log(value))


def entropy(p, base=None) -> np.ndarray:
    """Shannon entropy ``H(p) = -sum_y p(y) log p(y)`` with ``0 log 0 = 0``."""
    p = check_distribution(p, "p")
    return entr(p).sum(axis=-1) / _log_base(base)


def effective_num_modes(p) -> np.ndarray:
    """Perplexity ``exp(H(p))``: 1 for a point mass, ``k`` for a uniform over ``k`` outcomes."""
    return np.exp(entropy(p))


def kl_divergence(p, q, base=None) -> np.ndarray:
    """``KL(p || q) = sum_y p(y) log(p(y)/q(y))``; ``inf`` if ``p`` has mass where ``q`` has none."""
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    broadcast_last("p", p, "q", q)
    return rel_entr(p, q).sum(axis=-1) / _log_base(base)


def total_variation(p, q) -> np.ndarray:
    """Total variation distance ``TV(p, q) = 0.5 * sum_y |p(y) - q(y)|``, in [0, 1]."""
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    broadcast_last("p", p, "q", q)
    return 0.5 * np.abs(p - q).sum(axis=-1)


def mass_on(p, mask) -> np.ndarray:
    """Probability mass ``p`` puts on the samples selected by the boolean ``mask``."""
    p = check_distribution(p, "p")
    m = np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"mask must be a boolean array, got dtype {m.dtype}")
    broadcast_last("p", p, "mask", m)
    return np.where(m, p, 0.0).sum(axis=-1)


def entropy_on(p, mask, base=None) -> np.ndarray:
    """Entropy of ``p`` restricted to ``mask`` and renormalised there (e.g. over the good samples).

    ``log(k)`` (``log_base(k)``) means ``p`` is uniform over the k selected samples; NaN where
    ``p`` puts no mass on the mask.
    """
    p = check_distribution(p, "p")
    mass = mass_on(p, mask)
    m = np.asarray(mask)
    q = np.where(m, p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = q / mass[..., None]
    h = entr(np.nan_to_num(q)).sum(axis=-1) / _log_base(base)
    return np.where(mass > 0, h, np.nan)
