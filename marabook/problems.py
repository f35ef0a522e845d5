"""The book's canonical small problems: a reference distribution and rewards over a finite space.

Each builder returns a :class:`Problem` so every chapter (and every test) works on the very same
numbers. Nothing here optimises anything; the closed forms live in :mod:`marabook.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from marabook._validate import check_finite, check_int

__all__ = [
    "explorer_problem",
    "Problem",
    "three_action_equal_support",
    "three_action_equal_reward",
    "bimodal_tokens",
    "two_block_tokens",
]


@dataclass(frozen=True)
class Problem:
    """A bandit over ``V`` samples: reference ``ref_probs`` (V,), ``rewards`` (V,), named modes.

    ``modes`` maps a mode name to a boolean mask of length V selecting the samples that belong to
    it; ``peaks`` maps the same names to the index of the mode's highest-reward sample.
    """

    name: str
    ref_probs: np.ndarray
    rewards: np.ndarray
    modes: dict = field(default_factory=dict)
    peaks: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.ref_probs.shape[-1])


def three_action_equal_support() -> Problem:
    """Chapter 3's equal-support example: rewards ``[0, 0.9, 1.0]``, uniform reference."""
    return Problem(
        name="equal support",
        ref_probs=np.full(3, 1 / 3),
        rewards=np.array([0.0, 0.9, 1.0]),
        peaks={"a": 0, "b": 1, "c": 2},
    )


def three_action_equal_reward() -> Problem:
    """Chapter 3's equal-reward example: rewards ``[0, 1, 1]``, reference ``[0.68, 0.30, 0.02]``.

    The two correct answers (indices 1 and 2) have a 15x reference bias (0.30 / 0.02).
    """
    return Problem(
        name="equal reward",
        ref_probs=np.array([0.68, 0.30, 0.02]),
        rewards=np.array([0.0, 1.0, 1.0]),
        peaks={"wrong": 0, "common": 1, "rare": 2},
    )


def bimodal_tokens(n_tokens: int = 100, centers=(20, 70), heights=(0.75, 1.0), width: float = 3.0,
                   ref_slope: float = 0.038, mode_halfwidth: float | None = None) -> Problem:
    """A token space with two reward bumps and an exponentially decaying reference.

    ``log pi_ref(y) = -ref_slope * y - log Z`` for ``y = 0..n_tokens-1``: earlier tokens are
    likelier, so the first bump (lower reward ``heights[0]``) has more reference support than the
    second (higher reward ``heights[1]``). Rewards are Gaussian bumps
    ``R(y) = sum_k heights[k] exp(-(y - centers[k])^2 / (2 width^2))``.

    With the defaults the peaks have ``log pi_ref`` about -4.03 and -5.93 and rewards 0.75 and 1.0,
    so by eq. 3.2 the preferred mode flips near ``beta* = 0.25 / 1.9 = 0.13`` (chapter 3).
    A mode is the set of tokens within ``mode_halfwidth`` (default ``3 * width``) of its centre.
    """
    check_int(n_tokens, "n_tokens", minimum=2)
    c = check_finite(centers, "centers")
    h = check_finite(heights, "heights")
    if c.ndim != 1 or c.shape != h.shape or c.size == 0:
        raise ValueError("centers and heights must be 1-D sequences of the same, non-zero length")
    if np.any((c < 0) | (c > n_tokens - 1)):
        raise ValueError(f"centers must lie in [0, {n_tokens - 1}]")
    if not np.isfinite(width) or width <= 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    if not np.isfinite(ref_slope):
        raise ValueError(f"ref_slope must be finite, got {ref_slope!r}")
    half = 3.0 * width if mode_halfwidth is None else float(mode_halfwidth)
    if not np.isfinite(half) or half <= 0:
        raise ValueError(f"mode_halfwidth must be > 0, got {mode_halfwidth!r}")
    y = np.arange(n_tokens, dtype=np.float64)
    log_ref = -ref_slope * y
    log_ref -= np.logaddexp.reduce(log_ref)
    rewards = (h[:, None] * np.exp(-0.5 * ((y[None, :] - c[:, None]) / width) ** 2)).sum(axis=0)
    names = [f"mode {k + 1}" for k in range(c.size)]
    modes = {n: np.abs(y - ck) <= half for n, ck in zip(names, c)}
    peaks = {n: int(np.argmax(np.where(m, rewards, -np.inf))) for n, m in zip(names, modes.values())}
    return Problem(name="bimodal tokens", ref_probs=np.exp(log_ref), rewards=rewards, modes=modes, peaks=peaks)


def two_block_tokens(n_tokens: int = 100, blocks=((10, 20), (60, 70)), decay: float = 0.05) -> Problem:
    """Chapter 4's token problem: reward 1 on blocks of tokens, 0 elsewhere; decaying reference.

    ``pi_ref(y) proportional to exp(-decay * y)``, so later blocks have less reference support (with
    the defaults the second block holds about 12 times less reference mass than the first).
    ``blocks`` are half-open ``(start, stop)`` token ranges; the modes are named "block 1", ...
    """
    check_int(n_tokens, "n_tokens", minimum=2)
    if not np.isfinite(decay):
        raise ValueError(f"decay must be finite, got {decay!r}")
    y = np.arange(n_tokens)
    rewards = np.zeros(n_tokens)
    modes, peaks = {}, {}
    for k, blk in enumerate(blocks):
        try:
            start, stop = (int(v) for v in blk)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"blocks must be (start, stop) pairs, got {blk!r}") from exc
        if not 0 <= start < stop <= n_tokens:
            raise ValueError(f"blocks must satisfy 0 <= start < stop <= n_tokens, got {blk!r}")
        mask = (y >= start) & (y < stop)
        if np.any(rewards[mask] > 0):
            raise ValueError("blocks must not overlap")
        rewards[mask] = 1.0
        modes[f"block {k + 1}"] = mask
        peaks[f"block {k + 1}"] = start
    if not modes:
        raise ValueError("blocks must contain at least one block")
    log_ref = -decay * y.astype(float)
    log_ref -= np.logaddexp.reduce(log_ref)
    return Problem(name="two blocks", ref_probs=np.exp(log_ref), rewards=rewards, modes=modes, peaks=peaks)


_CENTERS = (20, 70)


def explorer_problem(reward_gap: float, ref_gap: float) -> Problem:
    """The chapter-3 two-bump problem with a chosen reward gap and reference log-gap.

    Mode 2 has reward 1 and mode 1 has ``1 - reward_gap``; the reference decays linearly in log
    space so that ``log pi_ref(peak 1) - log pi_ref(peak 2) = ref_gap`` (mode 1 is better supported
    when ``ref_gap > 0``). Chapter 3's explorer (:mod:`marabook.widgets`) draws it.
    """
    if not np.isfinite(reward_gap) or not 0 <= reward_gap <= 1:
        raise ValueError(f"reward_gap must lie in [0, 1], got {reward_gap!r}")
    if not np.isfinite(ref_gap):
        raise ValueError(f"ref_gap must be finite, got {ref_gap!r}")
    return bimodal_tokens(centers=_CENTERS, heights=(1.0 - reward_gap, 1.0),
                          ref_slope=ref_gap / (_CENTERS[1] - _CENTERS[0]))
