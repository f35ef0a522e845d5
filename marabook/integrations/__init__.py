"""Adapters for other libraries' trainers (a layer beside :mod:`marabook.experiments`, built on
:mod:`marabook.mara` and :mod:`marabook.rl`): :mod:`marabook.integrations.trl` brings MARA to TRL's
GRPOTrainer and RLOOTrainer (``pip install "marabook[trl]"``)."""
