"""RDKit oracles and reward builders for the chemistry chapters (book chapters 7-8).

Every scoring function here takes SMILES strings, parses them with RDKit, and gives an *invalid*
string (unparsable, empty, not a string) the score 0 - never an exception. :class:`Oracle` wraps a
batch scoring function, counts every call (the oracle budget) and every invalid string, and keeps the
full record a run needs for its metrics.

Offline substitutes for the paper's oracles: docking (a protein structure and a docking program) and
retrosynthesis (a planning model) are out of reach on a CPU without internet. :func:`product_task`
replaces docking by a size term (docking scores grow with molecular size) and retrosynthesis by
RDKit's SA score; :func:`multi_mode_task` gives several clearly separated high-reward regions. Any
callable ``f(list[str]) -> scores in [0, 1]`` - a docking program, for example - plugs into
:class:`Oracle` and :func:`make_reward` the same way.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import numpy as np

from marabook._validate import check_int

__all__ = ["mol_from_smiles", "is_valid", "canonical_smiles", "qed_score", "sa_score", "hbd_count",
           "heavy_atoms", "morgan_fingerprint", "tanimoto", "bulk_tanimoto", "ramp", "Oracle", "OracleRecord", "make_reward",
           "qed_term", "hbd_term", "sa_term", "size_term", "similarity_term", "product_task",
           "multi_mode_task", "REFERENCE_DRUGS", "assign_modes", "murcko_scaffold", "MOSES_MODE_REFERENCES",
           "unequal_modes_task"]

# Four marketed drugs from four unrelated chemical series, all inside the MOSES property window
# (molecular weight 250-350, only C N O S F Cl Br) so the prior can reach them. Their prior support
# differs (measured in chapter 7); task (b) rewards closeness to any one of them.
REFERENCE_DRUGS = {
    "diazepam": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "tolbutamide": "CCCCNC(=O)NS(=O)(=O)c1ccc(C)cc1",
    "metoprolol": "COCCc1ccc(OCC(O)CNC(C)C)cc1",
    "zolpidem": "Cc1ccc(-c2nc3ccc(C)cn3c2CC(=O)N(C)C)cc1",
}


# Three MOSES training molecules from unrelated series, chosen (chapter 8) so that the prior supports their
# neighbourhoods very unequally yet really: among 11,374 valid prior samples, 1.05%, 0.20% and 0.035% are
# within Tanimoto 0.34 of them (a score of 0.80 or more on task (c)). Within a 10,000-call budget the prior
# alone would meet the rare one about three times.
MOSES_MODE_REFERENCES = {
    "anilide": "CC(=O)Nc1cccc(NC(=O)Cc2cccc(F)c2)c1",
    "benzimidazole": "O=C(COc1ccccc1)N1CCCC1c1nc2ccccc2[nH]1",
    "triazolothiadiazole": "Brc1cncc(-c2nn3c(C4CC4)nnc3s2)c1",
}


def check_smiles_list(smiles, name: str) -> list:
    """A list of SMILES from a list, tuple or NumPy array; a bare string or None is refused (named)."""
    if smiles is None or isinstance(smiles, (str, bytes)):
        raise ValueError(f"{name} must be a list of SMILES strings, got {type(smiles).__name__}")
    if isinstance(smiles, np.ndarray):
        return smiles.tolist()
    try:
        return list(smiles)
    except TypeError:
        raise ValueError(f"{name} must be a list of SMILES strings, got {type(smiles).__name__}") from None


def rdkit_chem():
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem


#: Longer strings are invalid without reaching RDKit: a SMILES of some 20,000 atoms crashes RDKit's
#: ``MolToSmiles`` (the whole process, not an exception), and no generator of the book comes near this.
MAX_SMILES_LENGTH = 10_000


def mol_from_smiles(smiles):
    """RDKit molecule of ``smiles``, or ``None`` for anything RDKit cannot parse (non-strings too, and strings
    longer than :data:`MAX_SMILES_LENGTH`)."""
    if not isinstance(smiles, str) or not smiles.strip() or len(smiles) > MAX_SMILES_LENGTH:
        return None
    Chem = rdkit_chem()
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:  # RDKit raises on some pathological inputs instead of returning None
        return None


def is_valid(smiles) -> bool:
    """True when RDKit parses ``smiles`` into a molecule with at least one atom."""
    mol = mol_from_smiles(smiles)
    return mol is not None and mol.GetNumAtoms() > 0


def canonical_smiles(smiles):
    """RDKit canonical SMILES, or ``None`` for an invalid string (uniqueness and novelty compare these)."""
    mol = mol_from_smiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return rdkit_chem().MolToSmiles(mol)


def qed_score(smiles) -> float:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012) in [0, 1]; 0.0 if invalid."""
    mol = mol_from_smiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return 0.0
    from rdkit.Chem import QED

    try:
        return float(QED.qed(mol))
    except Exception:
        return 0.0


_SASCORER = None


def _sascorer():
    """RDKit's Contrib ``sascorer`` loaded from RDKit's own file by its path: never a ``sascorer.py`` that
    happens to lie in the working directory or elsewhere on ``sys.path``, and ``sys.path`` is left alone."""
    global _SASCORER
    if _SASCORER is None:
        import importlib.util

        from rdkit.Chem import RDConfig

        path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
        spec = importlib.util.spec_from_file_location("marabook_rdkit_sascorer", path)
        if spec is None or spec.loader is None or not os.path.exists(path):
            raise ImportError(f"RDKit's SA_Score contribution is missing ({path})")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SASCORER = module
    return _SASCORER


def sa_score(smiles) -> float:
    """Synthetic accessibility score (Ertl & Schuffenhauer 2009; RDKit Contrib ``sascorer``): 1 (easy)
    to 10 (hard). An invalid string scores 10.0, the worst value."""
    mol = mol_from_smiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return 10.0
    try:
        return float(_sascorer().calculateScore(mol))
    except Exception:
        return 10.0


def hbd_count(smiles) -> int:
    """Number of hydrogen-bond donors (Lipinski definition); -1 for an invalid string."""
    mol = mol_from_smiles(smiles)
    if mol is None:
        return -1
    from rdkit.Chem import Lipinski

    return int(Lipinski.NumHDonors(mol))


def heavy_atoms(smiles) -> int:
    """Number of heavy (non-hydrogen) atoms; 0 for an invalid string."""
    mol = mol_from_smiles(smiles)
    return 0 if mol is None else int(mol.GetNumHeavyAtoms())


def morgan_fingerprint(smiles, radius: int = 2, n_bits: int = 2048):
    """Morgan (ECFP-like) bit vector of ``smiles``, or ``None`` if invalid."""
    check_int(radius, "radius", minimum=0)
    check_int(n_bits, "n_bits", minimum=1)
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits).GetFingerprint(mol)


def tanimoto(a, b, radius: int = 2, n_bits: int = 2048) -> float:
    """Tanimoto similarity of the Morgan fingerprints of two SMILES; 0.0 if either is invalid."""
    fa, fb = morgan_fingerprint(a, radius, n_bits), morgan_fingerprint(b, radius, n_bits)
    if fa is None or fb is None:
        return 0.0
    from rdkit import DataStructs

    return float(DataStructs.TanimotoSimilarity(fa, fb))


def bulk_tanimoto(smiles: Sequence[str], references: Sequence[str], radius: int = 2,
                  n_bits: int = 2048) -> np.ndarray:
    """Similarity matrix (len(smiles), len(references)); rows of invalid SMILES are 0."""
    from rdkit import DataStructs

    smiles = check_smiles_list(smiles, "smiles")
    references = check_smiles_list(references, "references")
    ref_fps = [morgan_fingerprint(r, radius, n_bits) for r in references]
    if not ref_fps or any(f is None for f in ref_fps):
        raise ValueError("references must be a non-empty list of valid SMILES")
    out = np.zeros((len(smiles), len(ref_fps)))
    for i, s in enumerate(smiles):
        fp = morgan_fingerprint(s, radius, n_bits)
        if fp is not None:
            out[i] = DataStructs.BulkTanimotoSimilarity(fp, ref_fps)
    return out


def murcko_scaffold(smiles):
    """Bemis-Murcko scaffold (canonical SMILES) of a molecule; ``None`` if invalid. Acyclic molecules
    have the empty scaffold ``""``."""
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        return rdkit_chem().MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol))
    except Exception:
        return None


def ramp(x, low: float, high: float) -> np.ndarray:
    """Piecewise-linear desirability: 0 at ``x <= low``, 1 at ``x >= high`` (``low > high`` reverses it)."""
    if low == high:
        raise ValueError("low and high must differ")
    x = np.asarray(x, dtype=float)
    return np.clip((x - low) / (high - low), 0.0, 1.0)


# ---------------------------------------------------------------------------------------- reward terms
# A term maps a list of parsed RDKit molecules (the Oracle parses each string once) to scores in [0, 1].

def _qed_mol(mol) -> float:
    from rdkit.Chem import QED

    try:
        return float(QED.qed(mol))
    except Exception:
        return 0.0


def _sa_mol(mol) -> float:
    try:
        return float(_sascorer().calculateScore(mol))
    except Exception:
        return 10.0


def qed_term(mols) -> np.ndarray:
    """QED of each molecule."""
    return np.array([_qed_mol(m) for m in mols], dtype=float)


def hbd_term(mols, max_donors: int = 3) -> np.ndarray:
    """1 when the molecule has at most ``max_donors`` H-bond donors (the paper: fewer than 4), else 0."""
    from rdkit.Chem import Lipinski

    return np.array([1.0 if Lipinski.NumHDonors(m) <= max_donors else 0.0 for m in mols])


def sa_term(mols, easy: float = 3.0, hard: float = 5.0) -> np.ndarray:
    """Synthesizability proxy: 1 for SA score <= ``easy``, falling linearly to 0 at ``hard``."""
    return ramp([_sa_mol(m) for m in mols], hard, easy) if len(mols) else np.zeros(0)


def size_term(mols, low: int = 20, high: int = 26) -> np.ndarray:
    """Stand-in for a docking score's size preference: 0 at <= ``low`` heavy atoms, 1 at >= ``high``."""
    return ramp([m.GetNumHeavyAtoms() for m in mols], low, high) if len(mols) else np.zeros(0)


def mol_fingerprint(mol, radius=2, n_bits=2048):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits).GetFingerprint(mol)


def similarity_term(mols, references: Sequence[str], saturate: float = 0.5, floor: float = 0.1) -> np.ndarray:
    """``max_k ramp(sim(y, ref_k), floor, saturate)``: closeness to the nearest reference molecule."""
    from rdkit import DataStructs

    if not len(mols):
        return np.zeros(0)
    ref_fps = [morgan_fingerprint(r) for r in references]
    if any(f is None for f in ref_fps):
        raise ValueError("references must all be valid SMILES")
    best = np.array([max(DataStructs.BulkTanimotoSimilarity(mol_fingerprint(m), ref_fps)) for m in mols])
    return ramp(best, floor, saturate)


def make_reward(*terms: Callable, aggregate: str = "product"):
    """Composite reward from terms ``f(list[Mol]) -> [0, 1]`` ("product" or "mean" of the terms).

    The terms can be anything with that signature: the RDKit terms above, or a docking oracle
    (normalised to [0, 1]; ``Chem.MolToSmiles(mol)`` gives it a SMILES) the reader plugs in."""
    if not terms:
        raise ValueError("terms must contain at least one callable")
    if not all(callable(t) for t in terms):
        raise ValueError("terms must all be callables list[Mol] -> array")
    if aggregate not in ("product", "mean"):
        raise ValueError(f"aggregate must be 'product' or 'mean', got {aggregate!r}")

    def reward(mols) -> np.ndarray:
        parts = np.stack([np.asarray(t(mols), dtype=float) for t in terms])
        return parts.prod(axis=0) if aggregate == "product" else parts.mean(axis=0)

    return reward


class OracleRecord(NamedTuple):
    """One oracle call: its index, the string proposed, its canonical SMILES (None if invalid), the score."""

    call: int
    smiles: str
    canonical: str | None
    score: float


@dataclass
class Oracle:
    """A counted, recorded oracle around a batch scoring function with values in [0, 1].

    ``score_fn`` receives the parsed RDKit molecules (``takes="mols"``, the default, so each string is
    parsed once) or the canonical SMILES strings (``takes="smiles"``, e.g. for an external docking
    program) of the valid inputs.

    Every string passed in is one oracle call (invalid and repeated strings included: the budget counts
    what the generator proposed), and a call that would exceed ``budget`` is refused. Invalid strings score 0
    without reaching ``score_fn`` and are counted in ``n_invalid``. A score ``score_fn`` fails to give (NaN)
    counts as 0 and in ``n_failed``; a finite or infinite value outside [0, 1] raises, unless the task
    declares ``clip=True`` (then it is clipped). ``records`` keeps an :class:`OracleRecord` ``(call, smiles, canonical, score)`` for every call, which
    is what Yield, OB100 and the diversity metrics are computed from.
    """

    score_fn: Callable
    name: str = "oracle"
    takes: str = "mols"
    budget: int | None = None
    clip: bool = False
    calls: int = 0
    n_invalid: int = 0
    n_failed: int = 0
    records: list = field(default_factory=list)
    #: the task's parameters (references, ramps), recorded in checkpoints by :meth:`identity`
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        if not callable(self.score_fn):
            raise ValueError("score_fn must be callable")
        if self.takes not in ("mols", "smiles"):
            raise ValueError(f"takes must be 'mols' or 'smiles', got {self.takes!r}")
        if not isinstance(self.settings, dict):
            raise ValueError(f"settings must be a dict of the task's parameters, got {type(self.settings).__name__}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, (int, np.integer))
                                        or self.budget < 1):
            raise ValueError(f"budget must be a positive integer or None, got {self.budget!r}")

    @property
    def remaining(self) -> float:
        return math.inf if self.budget is None else self.budget - self.calls

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        smiles = check_smiles_list(smiles, "smiles")
        if self.budget is not None and self.calls + len(smiles) > self.budget:
            raise ValueError(f"smiles: {len(smiles)} calls would exceed the oracle's budget of {self.budget} "
                             f"({self.budget - self.calls} left)")
        Chem = rdkit_chem()
        mols = [mol_from_smiles(s) for s in smiles]
        mols = [m if m is not None and m.GetNumAtoms() > 0 else None for m in mols]
        canon = [Chem.MolToSmiles(m) if m is not None else None for m in mols]
        valid_idx = [i for i, c in enumerate(canon) if c is not None]
        scores = np.zeros(len(smiles))
        if valid_idx:
            args = [mols[i] for i in valid_idx] if self.takes == "mols" else [canon[i] for i in valid_idx]
            raw = self.score_fn(args)
            try:
                vals = np.asarray(raw, dtype=float)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"score_fn must return numbers, one per molecule; got {type(raw).__name__} "
                                 f"that does not convert to floats ({exc})") from exc
            if vals.shape != (len(valid_idx),):
                raise ValueError(f"score_fn returned shape {vals.shape}, expected ({len(valid_idx)},)")
            failed = np.isnan(vals)
            outside = ~failed & ((vals < 0.0) | (vals > 1.0))
            if outside.any() and not self.clip:
                raise ValueError(f"score_fn returned {int(outside.sum())} value(s) outside [0, 1] (e.g. "
                                 f"{vals[outside][0]!r}); rescale them, or declare clip=True for a task that clips")
            self.n_failed += int(failed.sum())
            scores[valid_idx] = np.where(failed, 0.0, np.clip(vals, 0.0, 1.0))
        for s, c, v in zip(smiles, canon, scores):
            self.records.append(OracleRecord(self.calls, s, c, float(v)))
            self.calls += 1
        self.n_invalid += len(smiles) - len(valid_idx)
        return scores

    def identity(self) -> dict:
        """``{"name", "fingerprint"}``: what a checkpoint records of the oracle a run used, so that a resume
        with another oracle is refused (``TrainLoop._identity``). The fingerprint
        covers the name, what ``score_fn`` takes, ``clip``, ``settings`` and the scoring function's
        qualified name (not its closure: give a task's parameters in ``settings``)."""
        from marabook.checkpoints import settings_fingerprint

        return {"name": self.name,
                "fingerprint": settings_fingerprint({"name": self.name, "takes": self.takes, "clip": self.clip,
                                                     "settings": self.settings, "score_fn": self.score_fn})}

    def check_fresh(self) -> None:
        """Raise a ValueError naming the oracle when it has already been called (a spent or reused oracle
        would make a new run start part-way, or not at all)."""
        if self.calls:
            raise ValueError(f"oracle {self.name!r} has already made {self.calls} calls (of budget "
                             f"{self.budget}); a new run needs a fresh oracle (e.g. product_task(budget=...))")

    def state_dict(self) -> dict:
        return {"name": self.name, "budget": self.budget, "calls": self.calls, "n_invalid": self.n_invalid,
                "n_failed": self.n_failed, "records": [list(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.calls, self.n_invalid = int(state["calls"]), int(state["n_invalid"])
        self.n_failed = int(state.get("n_failed", 0))
        self.records = [OracleRecord(*r) for r in state["records"]]


def product_task(budget: int | None = None) -> Oracle:
    """Task (a), a paper-like product reward: ``QED x [HBD < 4] x SA-term x size-term``.

    The paper multiplies a docking score, QED, an H-bond-donor constraint and a retrosynthesis term.
    Offline we keep QED and the donor constraint, replace retrosynthesis by the SA-score term
    (``sa_term``) and the docking score by its best-known bias, a preference for larger molecules
    (``size_term``, 20 -> 26 heavy atoms; most MOSES molecules have 18-25)."""
    return Oracle(make_reward(qed_term, hbd_term, sa_term, size_term), name="product", budget=budget,
                  settings={"terms": ["qed_term", "hbd_term", "sa_term", "size_term"], "aggregate": "product"})


def multi_mode_task(references: dict | None = None, budget: int | None = None, saturate: float = 0.4,
                    floor: float = 0.1) -> Oracle:
    """Task (b), several separated modes: ``[HBD < 4] x max_k ramp(Tanimoto(y, drug_k), floor, saturate)``
    over the reference drugs (default ``REFERENCE_DRUGS``, four unrelated series)."""
    refs = list(_references(references).values())

    def score(mols):
        return hbd_term(mols) * similarity_term(mols, refs, saturate=saturate, floor=floor)

    return Oracle(score, name="multi_mode", budget=budget,
                  settings={"references": refs, "saturate": saturate, "floor": floor})


def unequal_modes_task(budget: int | None = None) -> Oracle:
    """Task (c), modes of unequal but real prior support: task (b)'s score around the three MOSES molecules of
    ``MOSES_MODE_REFERENCES`` (prior support 1.05%, 0.20% and 0.035% at a score of 0.80, chapter 8)."""
    oracle = multi_mode_task(MOSES_MODE_REFERENCES, budget=budget)
    oracle.name = "unequal_modes"
    return oracle


def _references(references) -> dict:
    if references is None:
        return REFERENCE_DRUGS
    if not isinstance(references, dict) or not references:
        raise ValueError("references must be a non-empty dict {name: SMILES} (None means REFERENCE_DRUGS)")
    return references


def assign_modes(smiles: Sequence[str], references: dict | None = None) -> list:
    """Name of the most similar reference drug for each molecule (``None`` if invalid)."""
    refs = _references(references)
    smiles = check_smiles_list(smiles, "smiles")
    names = list(refs)
    sims = bulk_tanimoto(smiles, list(refs.values()))
    return [names[int(np.argmax(r))] if is_valid(s) else None for s, r in zip(smiles, sims)]
