"""marabook: the tested package behind the book *KL-regularised RL is designed to mode collapse*.

Layers, low to high (a module imports only layers below it; ``tests/test_layers.py`` checks it):

* :mod:`marabook.config`, :mod:`marabook.provenance`, :mod:`marabook.glue`, :mod:`marabook.plumbing`: run
  scale; stored results with their provenance; key numbers handed to the book; device choice, padding and
  the training loop and checkpoints both trainers share
* :mod:`marabook.problems`  the book's canonical small bandit problems
* :mod:`marabook.targets`   closed-form optima of KL-regularised RL (chapters 1-3)
* :mod:`marabook.mara`      MARA reward augmentation and its closed-form target (chapter 4)
* :mod:`marabook.metrics`   entropy, effective modes, KL / TV distances, text diversity
* :mod:`marabook.fitting`   fitting a family to a fixed target (chapter 1); :mod:`marabook.estimators`
  KL estimators and RLOO / GRPO / Dr. GRPO advantages (chapter 5; NumPy or torch)
* :mod:`marabook.bandit`    tabular softmax policies trained exactly or from samples (chapter 4)
* :mod:`marabook.rl`        sequence-level policy gradient for causal LMs: sequences, the trainer (chapter 5;
  needs torch)
* :mod:`marabook.lm`, :mod:`marabook.chem`  language models and tasks (chapters 5-6); SMILES prior, oracles
  and the REINVENT trainer (chapters 7-8)
* :mod:`marabook.experiments`  one module per chapter experiment, one sweep runner over any Executor
* :mod:`marabook.plotting`, :mod:`marabook.widgets`, :mod:`marabook.exercises`  figures, explorers, self-checks

Every submodule is importable as an attribute (``import marabook; marabook.rl.Trainer``); ``rl``, ``lm``,
``chem``, ``experiments`` and the other torch-based ones are imported on first use (PEP 562), so the NumPy
chapters work without torch, and a missing dependency is reported with the extra that brings it
(``pip install "marabook[lm]"`` or ``"marabook[chem]"``).
"""

from marabook import config, mara, metrics, problems, targets
from marabook.targets import (
    crossover_beta,
    entropy_regularized_target,
    forward_kl_target,
    kl_regularized_objective,
    log_prob_ratio,
    reverse_kl_target,
)

__version__ = "0.1.0"

_SUBMODULES = ("bandit", "chem", "estimators", "exercises", "experiments", "fitting", "glue", "lm", "plotting",
               "plumbing", "provenance", "rl", "widgets")


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"marabook.{name}")
    raise AttributeError(f"module 'marabook' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))

__all__ = [
    "config",
    "mara",
    "metrics",
    "problems",
    "targets",
    "reverse_kl_target",
    "forward_kl_target",
    "entropy_regularized_target",
    "kl_regularized_objective",
    "log_prob_ratio",
    "crossover_beta",
    "__version__",
]
