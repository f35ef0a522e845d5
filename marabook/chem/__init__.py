"""Chemical language models (book chapters 7-8): SMILES data and tokenizer, a GRU prior, RDKit oracles,
molecule metrics, and the REINVENT loop with MARA.

Needs ``torch`` and ``rdkit`` (``pip install "marabook[chem]"``).
"""

from marabook._compat import require

require("marabook.chem", "torch", "rdkit", extra="chem")


from marabook.chem.data import load_smiles
from marabook.chem.draw import draw_grid
from marabook.chem.metrics import (discovery_curve, fingerprints, hits_above, intdiv, modes_covered, n_circles, novelty,
                                   oracle_burden, sample_report, similarity_matrix, summarize_run, uniqueness,
                                   validity, yield_count)
from marabook.chem.oracles import (MOSES_MODE_REFERENCES, REFERENCE_DRUGS, Oracle, OracleRecord, assign_modes, bulk_tanimoto, canonical_smiles,
                                   hbd_count, heavy_atoms, is_valid, make_reward, morgan_fingerprint,
                                   multi_mode_task, murcko_scaffold, product_task, qed_score, sa_score,
                                   tanimoto, unequal_modes_task)
from marabook.chem.prior import SmilesGRU, load_prior, pretrain_prior
from marabook.chem.reinvent import (DiversityFilter, MaraTransform, ReinventConfig, ReinventTrainer, ReplayMemory,
                                    ScoreTransform, dap_fixed_point, dap_loss, dedup_fixed_point,
                                    dedup_stationarity, fit_dap_tabular)
from marabook.chem.tokenizer import SmilesTokenizer
from marabook.chem import benchmarks  # noqa: E402 - PMO / GuacaMol oracles (chapter 8, issue 29)

__all__ = ["load_smiles", "SmilesTokenizer", "SmilesGRU", "load_prior", "pretrain_prior", "is_valid",
           "canonical_smiles", "qed_score", "sa_score", "hbd_count", "heavy_atoms", "morgan_fingerprint",
           "tanimoto", "bulk_tanimoto", "murcko_scaffold", "Oracle", "make_reward", "product_task",
           "multi_mode_task", "REFERENCE_DRUGS", "MOSES_MODE_REFERENCES", "unequal_modes_task", "assign_modes", "validity", "uniqueness", "novelty",
           "sample_report", "fingerprints", "similarity_matrix", "intdiv", "n_circles", "yield_count",
           "oracle_burden", "hits_above", "modes_covered", "discovery_curve", "draw_grid", "ReinventConfig",
           "ReinventTrainer", "dap_fixed_point", "dap_loss", "dedup_fixed_point", "dedup_stationarity", "fit_dap_tabular", "summarize_run", "OracleRecord",
           "ScoreTransform", "MaraTransform", "DiversityFilter", "ReplayMemory", "benchmarks"]
