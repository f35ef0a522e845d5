"""marabook: the tested package behind the book *KL-regularised RL is designed to mode collapse*.

Layers, low to high (a module imports only layers below it; ``tests/test_layers.py`` checks it):

* :mod:`marabook.config`   run scale (smoke / book / gpu)
* :mod:`marabook.problems` the book's canonical small bandit problems
* :mod:`marabook.targets`  closed-form optima of KL-regularised RL (chapters 1-3)
* :mod:`marabook.mara`     MARA reward augmentation and its closed-form target (chapter 4)
* :mod:`marabook.metrics`  entropy, effective modes, KL / TV distances
* :mod:`marabook.fitting`  fitting a family to a fixed target by gradient descent (chapter 1)
* :mod:`marabook.bandit`   tabular softmax policies trained exactly or from samples (chapter 4)
* :mod:`marabook.rl`       sequence-level policy gradient for causal LMs: KL estimators, RLOO/GRPO
  advantages, the MARA hook, the trainer (chapter 5; needs torch)
* :mod:`marabook.lm`       model loading, the shipped tiny reference LM, the 1-2 task (chapter 5;
  needs torch and transformers)
* :mod:`marabook.plotting`, :mod:`marabook.widgets`  figure style and interactive explorers
* :mod:`marabook.provenance`  command / revision / device / date stamps for stored results

``rl`` and ``lm`` are imported on demand (``from marabook import rl``) so that the NumPy chapters
work without torch.
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
