"""The book's experiments, one module per chapter experiment, all with the same verbs (a layer above
:mod:`marabook.lm` and :mod:`marabook.chem`; chapters and scripts call these).

* :mod:`~marabook.experiments.tokens` (chapter 4): vanilla vs MARA on the two-block token problem;
* :mod:`~marabook.experiments.onetwo` (chapter 5): the 1-2 task with the shipped LM or a Hugging Face model;
* :mod:`~marabook.experiments.onetwo_real` (chapter 5): the 1-2 task on the real SmolLM2-135M-Instruct (its
  design measured before training, the resumable study);
* :mod:`~marabook.experiments.onetwo_trl` (chapter 5): the same task through TRL's trainers;
* :mod:`~marabook.experiments.open_ended` (chapter 6): open-ended naming, six trainers;
* :mod:`~marabook.experiments.molecules` (chapter 8): REINVENT, MARA and the diversity filter;
* :mod:`~marabook.experiments.pmo` (issue 29): the same methods on PMO's public benchmark tasks, a resumable
  stored study;
* :mod:`~marabook.experiments.sweep`: the one sweep runner, over any ``concurrent.futures.Executor``.

Verbs: ``configs`` (the grid), ``run`` (one configuration), ``sweep`` (many, through
:func:`~marabook.experiments.sweep.run_sweep`), ``summarize`` and ``table``. Stored full-scale results
are read with :func:`marabook.provenance.load_stored` and described with :func:`marabook.provenance.describe`.
Submodules are imported on first use, so ``from marabook import experiments`` costs nothing.
"""

__all__ = ["tokens", "onetwo", "onetwo_real", "onetwo_trl", "open_ended", "molecules", "pmo", "sweep"]


def __getattr__(name):
    if name in __all__:
        import importlib

        return importlib.import_module(f"marabook.experiments.{name}")
    raise AttributeError(f"module 'marabook.experiments' has no attribute {name!r}")
