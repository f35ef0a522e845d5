"""Self-checks for the book's numeric exercises: ``exercises.check("3.1", your_answer)``.

Every expected answer is *computed* by the package functions the chapter teaches (never typed in),
so the checks stay correct if a definition changes. ``check(id)`` without an answer says what is
expected without giving it away; a wrong answer gets a hint about what is off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from marabook import mara, metrics, targets
from marabook.problems import explorer_problem

__all__ = ["check", "EXERCISES"]


@dataclass(frozen=True)
class _Exercise:
    asks: str
    expected: Callable[[], np.ndarray]
    rtol: float
    atol: float
    hint: str


def _forward_off_support_beta() -> np.ndarray:
    # smallest beta at which the forward target puts no mass on the off-support sample (ch. 2)
    ref, r = np.array([0.5, 0.5, 0.0]), np.array([0.0, 1.0, 2.0])
    lo, hi = 0.01, 10.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if targets.forward_kl_target(ref, r, mid)[2] > 0:
            lo = mid
        else:
            hi = mid
    return np.array(hi)


def _explorer_band_decades() -> np.ndarray:
    # chapter 3, exercise 3.3: width (decades) of the beta band where both modes hold >= 20%
    prob = explorer_problem(0.25, 1.9)
    betas = np.logspace(-3, 1, 4000)
    g = targets.reverse_kl_target(prob.ref_probs, prob.rewards, betas[:, None])
    ok = np.ones_like(betas, dtype=bool)
    for mask in prob.modes.values():
        ok &= metrics.mass_on(g, mask) >= 0.2
    return np.array(np.log10(betas[ok].max() / betas[ok].min()))


def _grpo_52() -> np.ndarray:
    r = np.array([1.0, 1.0, 1.0, 1.0014])
    centred = r - r.mean()
    return centred / (r.std(ddof=1) + 1e-4)


EXERCISES: dict[str, _Exercise] = {
    "2.3": _Exercise("the beta at which the forward target stops putting mass on sample 2 (a float)",
                     _forward_off_support_beta, 1e-3, 1e-3,
                     "the off-support mass is 1 minus the on-support mass; find where it reaches 0"),
    "3.1": _Exercise("the crossover beta* for rewards 1.0 / 1.05 and reference probabilities 0.2 / 0.01 (a float)",
                     lambda: np.array(targets.crossover_beta(1.0, 1.05, 0.2, 0.01)), 1e-3, 0.0,
                     "eq. (3.2): the reward gap divided by the log of the reference ratio"),
    "3.3": _Exercise("the width, in decades, of the beta band where both modes keep >= 20% of the mass (a float)",
                     _explorer_band_decades, 0.0, 0.06,
                     "sweep beta on a log grid and use metrics.mass_on for each mode; width = log10(max/min)"),
    "4.2": _Exercise("the three MARA rewards (a list of 3 floats)",
                     lambda: np.asarray(mara.mara_rewards(np.array([1.0, 1.0, 0.0]), np.log([0.5, 0.05, 0.45]),
                                                          0.1, 0.5)), 1e-3, 1e-4,
                     "the anchor is the good sample with the highest reference probability; "
                     "bonus = beta * log(pi_ref(anchor) / pi_ref(y))"),
    "5.2": _Exercise("the GRPO advantages with std scaling for rewards [1, 1, 1, 1.0014] (a list of 4 floats)",
                     _grpo_52, 1e-2, 1e-3,
                     "subtract the group mean, divide by the unbiased group std plus eps = 1e-4"),
    "6.1": _Exercise("EAD-1 of ['red', 'red', 'blue'] with vocabulary size 10 (a float)",
                     lambda: np.array(metrics.ead(["red", "red", "blue"], 1, vocab_size=10)), 1e-3, 0.0,
                     "distinct unigrams divided by V (1 - ((V-1)/V)^C), C = number of unigrams"),
    "6.2": _Exercise("the four MARA rewards for tau = 0.9 (a list of 4 floats)",
                     lambda: np.asarray(mara.mara_rewards(np.array([1.0, 0.98, 0.96, 0.86]),
                                                          np.log([0.05, 0.18, 0.03, 0.34]), 0.02, 0.9)),
                     1e-3, 1e-4,
                     "good = reward >= 0.9; the anchor is the good sample with the highest reference probability"),
    "7.1": _Exercise("pi_agent(y1) / pi_agent(y2) at REINVENT's fixed point, equal prior, scores 0.85 and 0.80, "
                     "sigma = 128 (a float)", lambda: _dap_ratio_71(), 1e-3, 0.0,
                     "eq. (7.2): the prior ratio times exp(sigma * (S(y1) - S(y2)))"),
    "8.1": _Exercise("the three MARA scores for S = [0.9, 0.86, 0.5], log pi_prior = [-20, -18, -25], sigma = 128, "
                     "tau = 0.85 (a list of 3 floats)", lambda: _mara_81(), 1e-4, 1e-5,
                     "beta = 1 / sigma; the anchor is the good molecule with the highest prior log-likelihood"),
    "9.1": _Exercise("PMO's AUC top-10 of a run whose 10,000 distinct molecules all score 0.6 (budget 10,000, the "
                     "top-10 curve read every 100 molecules; a float)", lambda: _auc_91(), 1e-6, 0.0,
                     "eq. (9.1): the curve is 0 before the first molecule and 0.6 from the first reading on"),
}


def _auc_91() -> np.ndarray:
    from marabook.chem.benchmarks import auc_top10  # lazy: chapters 1-6 need neither torch nor RDKit

    return np.array(auc_top10([0.6] * 10_000))


def _dap_ratio_71() -> np.ndarray:
    from marabook.chem.reinvent import dap_fixed_point  # lazy: chapters 1-6 need neither torch nor RDKit

    g = dap_fixed_point(np.array([0.5, 0.5]), np.array([0.85, 0.80]), 128.0)
    return np.array(g[0] / g[1])


def _mara_81() -> np.ndarray:
    return np.asarray(mara.mara_rewards(np.array([0.9, 0.86, 0.5]), np.array([-20.0, -18.0, -25.0]), 1 / 128, 0.85))


def check(exercise: str, answer=None):
    """Print "correct" or what is off, and return whether ``answer`` matches (True / False).

    ``answer=None`` prints what the exercise expects (without the value) and returns None.
    """
    if exercise not in EXERCISES:
        raise ValueError(f"exercise must be one of {sorted(EXERCISES)}, got {exercise!r}")
    ex = EXERCISES[exercise]
    if answer is None:
        print(f"Exercise {exercise} expects {ex.asks}. Call exercises.check({exercise!r}, your_answer).")
        return None
    try:
        given = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"answer must be a number or a list of numbers, got {answer!r}") from None
    want = np.asarray(ex.expected(), dtype=float)
    if given.shape != want.shape:
        print(f"Exercise {exercise}: expected {ex.asks}; your answer has shape {given.shape}, "
              f"not {want.shape}.")
        return False
    if np.allclose(given, want, rtol=ex.rtol, atol=ex.atol):
        print(f"Exercise {exercise}: correct.")
        return True
    rel = np.max(np.abs(given - want) / np.maximum(np.abs(want), 1e-12))
    direction = ""
    if want.ndim == 0:
        direction = " too large" if given > want else " too small"
    print(f"Exercise {exercise}: not quite - your answer is{direction} (off by {rel:.1%} relative). "
          f"Hint: {ex.hint}.")
    return False
