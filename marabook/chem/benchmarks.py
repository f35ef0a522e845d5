"""The PMO / GuacaMol goal-directed oracles that need nothing but RDKit (book chapter 9, issue 29).

PMO ("Sample efficiency matters", Gao, Fu, Sun & Coley, NeurIPS 2022 Datasets and Benchmarks) scores
molecular optimisers on 23 oracles with a budget of 10,000 oracle calls and the area under the top-10
curve (:func:`auc_top10`). 20 of the 23 are GuacaMol's goal-directed tasks (Brown, Fiscato, Segler &
Vaucher, J. Chem. Inf. Model. 59:1096, 2019) plus QED; they need only RDKit and are implemented here from
their published definitions (the targets, fingerprints, score modifiers and means of GuacaMol's
``goal_directed_suite_v2``, PMO names). DRD2, GSK3B and JNK3 need downloaded classifier checkpoints and
are left out. Chapter 9 uses these tasks as the field's public benchmark for REINVENT and MARA.

:data:`TASKS` is the registry ``{pmo_name: BenchmarkTask}``; :func:`score` scores a list of SMILES (invalid
strings score 0), :func:`oracle` gives the counted :class:`~marabook.chem.oracles.Oracle` a REINVENT run
uses, :func:`auc_top10` is PMO's metric and :func:`summarize` puts it beside the book's metrics.

Fingerprints follow GuacaMol (see :func:`fingerprint`); RDKit's fingerprint generators give exactly the
Tanimoto values of the deprecated ``GetMorganFingerprint`` / ``GetAtomPairFingerprint`` calls it makes.

Where PMO's own implementation (PyTDC's oracles) departs from GuacaMol, this module follows GuacaMol and
says so: PyTDC's isomer score takes its total-atom term from a regular expression run over the *SMILES
string* (not the molecule with its hydrogens), which changes ``isomers_*``, ``sitagliptin_mpo`` and
``zaleplon_mpo``; their values here are GuacaMol's, so AUCs on those four tasks are not strictly
comparable with PMO's tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Callable

import numpy as np

from marabook._validate import check_int, check_number
from marabook.chem.metrics import check_records, summarize_run
from marabook.chem.oracles import Oracle, OracleRecord, check_smiles_list, rdkit_chem

__all__ = ["GUACAMOL", "PMO", "BenchmarkTask", "TASKS", "score", "oracle", "auc_top10", "summarize",
           "gaussian", "min_gaussian", "max_gaussian", "clipped", "thresholded", "fingerprint",
           "isomer_score", "parse_formula"]

GUACAMOL = ("Brown, Fiscato, Segler & Vaucher, GuacaMol: Benchmarking Models for de Novo Molecular Design, "
            "J. Chem. Inf. Model. 59:1096-1108 (2019)")
PMO = ("Gao, Fu, Sun & Coley, Sample Efficiency Matters: A Benchmark for Practical Molecular Optimization, "
       "NeurIPS 2022 Datasets and Benchmarks")
QED_SOURCE = ("Bickerton, Paolini, Besnard, Muresan & Hopkins, Quantifying the chemical beauty of drugs, "
              "Nat. Chem. 4:90 (2012)")


# ------------------------------------------------------------------------------------- score modifiers
# GuacaMol's score modifiers (its ``score_modifier`` module), as functions of a number or an array.

def _x(x) -> np.ndarray:
    if isinstance(x, (bool, str, bytes)) or x is None:
        raise ValueError(f"x must be a number or a numeric array, got {type(x).__name__}")
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"x must be a number or a numeric array, got {type(x).__name__}") from None


def _out(y: np.ndarray, x):
    return float(y) if np.ndim(x) == 0 else y


def gaussian(x, mu: float, sigma: float):
    """GuacaMol's GaussianModifier: ``exp(-(x - mu)^2 / (2 sigma^2))``, 1 at ``x = mu`` (Brown et al. 2019)."""
    mu = check_number(mu, "mu")
    sigma = check_number(sigma, "sigma", positive=True)
    return _out(np.exp(-0.5 * ((_x(x) - mu) / sigma) ** 2), x)


def min_gaussian(x, mu: float, sigma: float):
    """GuacaMol's MinGaussianModifier (a property to *minimise*): 1 for ``x <= mu``, the Gaussian above."""
    mu = check_number(mu, "mu")
    return _out(np.asarray(gaussian(np.maximum(_x(x), mu), mu, sigma)), x)


def max_gaussian(x, mu: float, sigma: float):
    """GuacaMol's MaxGaussianModifier (a property to *maximise*): 1 for ``x >= mu``, the Gaussian below."""
    mu = check_number(mu, "mu")
    return _out(np.asarray(gaussian(np.minimum(_x(x), mu), mu, sigma)), x)


def clipped(x, upper_x: float, lower_x: float = 0.0, high_score: float = 1.0, low_score: float = 0.0):
    """GuacaMol's ClippedScoreModifier: the line through ``(lower_x, low_score)`` and ``(upper_x, high_score)``,
    clipped to ``[low_score, high_score]``. With the defaults a similarity ``s`` scores ``min(s / upper_x, 1)``."""
    upper_x, lower_x = check_number(upper_x, "upper_x"), check_number(lower_x, "lower_x")
    high_score, low_score = check_number(high_score, "high_score"), check_number(low_score, "low_score")
    if upper_x == lower_x:
        raise ValueError(f"upper_x must differ from lower_x, got {upper_x!r} for both")
    if not low_score < high_score:
        raise ValueError(f"low_score must be < high_score, got {low_score!r} >= {high_score!r}")
    slope = (high_score - low_score) / (upper_x - lower_x)
    return _out(np.clip(slope * (_x(x) - upper_x) + high_score, low_score, high_score), x)


def thresholded(x, threshold: float):
    """GuacaMol's ThresholdedLinearModifier: ``min(x, threshold) / threshold``."""
    threshold = check_number(threshold, "threshold", positive=True)
    return _out(np.minimum(_x(x), threshold) / threshold, x)


def _gmean(values) -> float:
    """Geometric mean ``(prod v)^(1/n)`` (GuacaMol's GeometricMeanScoringFunction); 0 if any term is 0."""
    v = np.asarray(values, dtype=float)
    return float(np.prod(v) ** (1.0 / len(v)))


# ---------------------------------------------------------------------------------------- fingerprints

_FP_KINDS = ("ECFP4", "ECFP6", "FCFP4", "AP", "PHCO")
_GENERATORS: dict = {}


def _generator(kind: str):
    if kind not in _GENERATORS:
        from rdkit.Chem import rdFingerprintGenerator as G
        _GENERATORS[kind] = {
            "ECFP4": lambda: G.GetMorganGenerator(radius=2),
            "ECFP6": lambda: G.GetMorganGenerator(radius=3),
            "FCFP4": lambda: G.GetMorganGenerator(radius=2, atomInvariantsGenerator=G.GetMorganFeatureAtomInvGen()),
            "AP": lambda: G.GetAtomPairGenerator(maxDistance=10),
        }[kind]()
    return _GENERATORS[kind]


def fingerprint(mol, kind: str):
    """GuacaMol's fingerprint ``kind`` of an RDKit molecule: "ECFP4", "ECFP6", "FCFP4" (unhashed count Morgan,
    radius 2 / 3, FCFP with feature invariants), "AP" (count atom pairs up to 10 bonds) or "PHCO" (Gobbi
    2-D pharmacophore bits). Compare two with ``rdkit.DataStructs.TanimotoSimilarity``."""
    if kind not in _FP_KINDS:
        raise ValueError(f"kind must be one of {_FP_KINDS}, got {kind!r}")
    if kind == "PHCO":
        from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D
        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)
    return _generator(kind).GetSparseCountFingerprint(mol)


@lru_cache(maxsize=None)
def _target_fp(target: str, kind: str):
    mol = rdkit_chem().MolFromSmiles(target)
    if mol is None:
        raise ValueError(f"target {target!r} is not a valid SMILES")
    return fingerprint(mol, kind)


def _similarity(target: str, kind: str, modifier: Callable | None = None) -> Callable:
    """Tanimoto similarity to ``target`` in fingerprint ``kind``, then ``modifier`` (GuacaMol's
    TanimotoScoringFunction); the target's fingerprint is computed once, on first use."""
    def sim(mol) -> float:
        from rdkit import DataStructs
        s = float(DataStructs.TanimotoSimilarity(fingerprint(mol, kind), _target_fp(target, kind)))
        return float(modifier(s)) if modifier is not None else s
    return sim


@lru_cache(maxsize=None)
def _pattern(smarts: str):
    patt = rdkit_chem().MolFromSmarts(smarts)
    if patt is None:
        raise ValueError(f"smarts {smarts!r} does not parse")
    return patt


def _smarts(smarts: str, inverse: bool = False) -> Callable:
    """1 if the molecule contains ``smarts``, else 0; ``inverse`` swaps them (GuacaMol's SMARTSScoringFunction)."""
    return lambda mol: float(mol.HasSubstructMatch(_pattern(smarts)) != inverse)


# ---------------------------------------------------------------------------------------- descriptors

def _logp(mol) -> float:
    from rdkit.Chem import Descriptors
    return float(Descriptors.MolLogP(mol))


def _tpsa(mol) -> float:
    from rdkit.Chem import Descriptors
    return float(Descriptors.TPSA(mol))


def _bertz(mol) -> float:
    from rdkit.Chem import Descriptors
    return float(Descriptors.BertzCT(mol))


def _rings(mol, aromatic: bool = False) -> int:
    from rdkit.Chem import rdMolDescriptors as R
    return int(R.CalcNumAromaticRings(mol) if aromatic else R.CalcNumRings(mol))


def _count(mol, element: str) -> int:
    """Atoms of ``element`` in the molecule, implicit hydrogens included for "H" (GuacaMol's AtomCounter)."""
    if element == "H":
        mol = rdkit_chem().AddHs(mol)
    return sum(1 for a in mol.GetAtoms() if a.GetSymbol() == element)


def _total_atoms(mol) -> int:
    """All atoms, hydrogens included (GuacaMol's ``num_atoms``)."""
    return int(rdkit_chem().AddHs(mol).GetNumAtoms())


@lru_cache(maxsize=None)
def _reference_value(descriptor: Callable, smiles: str) -> float:
    return descriptor(rdkit_chem().MolFromSmiles(smiles))


def _prop(descriptor: Callable, modifier: Callable, mu, sigma: float) -> Callable:
    """``modifier(descriptor(mol), mu, sigma)`` (GuacaMol's RdkitScoringFunction); a SMILES ``mu`` means the
    descriptor's value on that reference molecule (computed once, on first use)."""
    def prop(mol) -> float:
        m = _reference_value(descriptor, mu) if isinstance(mu, str) else mu
        return float(modifier(descriptor(mol), m, sigma))
    return prop


# ------------------------------------------------------------------------------------------------- isomers

def parse_formula(formula: str) -> dict:
    """Element counts of a molecular formula such as ``"C9H10N2O2PF2Cl"`` -> ``{"C": 9, "H": 10, ...}``
    (an element without a number counts once; repeated elements add up)."""
    import re
    if not isinstance(formula, str) or not re.fullmatch(r"(?:[A-Z][a-z]?\d*)+", formula):
        raise ValueError(f"formula must be a molecular formula like 'C7H8N2O2', got {formula!r}")
    counts: dict = {}
    for element, n in re.findall(r"([A-Z][a-z]?)(\d*)", formula):
        counts[element] = counts.get(element, 0) + (int(n) if n else 1)
    return counts


def isomer_score(mol, formula: str) -> float:
    """GuacaMol's IsomerScoringFunction (geometric mean, its v2 setting): for every element of ``formula`` a
    Gaussian (sigma 1) on the molecule's count of that element (hydrogens included), and a Gaussian
    (sigma 2) on its total atom count (hydrogens included) against the formula's; their geometric mean.
    An exact isomer scores 1. Elements absent from the formula get no term of their own: they only add
    to the total count."""
    target = parse_formula(formula)
    terms = [gaussian(_count(mol, el), n, 1.0) for el, n in target.items()]
    terms.append(gaussian(_total_atoms(mol), sum(target.values()), 2.0))
    return _gmean(terms)


def _mean(kind: str, *parts: Callable) -> Callable:
    """Geometric or arithmetic mean (GuacaMol's Geometric- / ArithmeticMeanScoringFunction, equal weights)."""
    mean = {"geometric": _gmean, "arithmetic": lambda v: float(np.mean(v))}[kind]
    return lambda mol: mean([p(mol) for p in parts])


def _qed(mol) -> float:
    from rdkit.Chem import QED
    return float(QED.qed(mol))


# ---------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class BenchmarkTask:
    """One PMO oracle. ``score_mol`` scores one parsed RDKit molecule in [0, 1]; ``score_fn`` scores a list
    (the form :class:`~marabook.chem.oracles.Oracle` calls, a molecule whose score cannot be computed gives
    NaN, which the Oracle counts as failed and scores 0). ``optimum`` is "single" (rediscovery, similarity:
    one target molecule) or "many" (isomers, MPOs, medians, hops, QED: many molecules score alike).
    ``threshold`` is the score at or above which the book counts a molecule as a hit for Yield, OB100,
    IntDiv1 and #Circles (chapter 8); ``threshold_reason`` says why."""

    name: str
    description: str
    source: str
    optimum: str
    threshold: float
    threshold_reason: str
    score_mol: Callable = field(repr=False, compare=False)

    def __post_init__(self):
        if self.optimum not in ("single", "many"):
            raise ValueError(f"optimum must be 'single' or 'many', got {self.optimum!r}")

    def score_fn(self, mols) -> np.ndarray:
        out = np.empty(len(mols))
        for i, m in enumerate(mols):
            try:
                out[i] = self.score_mol(m)
            except Exception:  # a descriptor RDKit cannot compute: counted as failed by the Oracle
                out[i] = np.nan
        return out


CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
TROGLITAZONE = "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"
THIOTHIXENE = "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
MESTRANOL = "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"
CAMPHOR = "CC1(C)C2CCC1(C)C(=O)C2"
MENTHOL = "CC(C)C1CCC(C)CC1O"
TADALAFIL = "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"
SILDENAFIL = "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
AMLODIPINE = r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
VALSARTAN_SMARTS = "CN(C=O)Cc1ccc(c2ccccc2)cc1"
HOP_START = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
HOP_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"

_G = f"{GUACAMOL}; as used in {PMO}"
_SATURATED = "1.0: the task's own saturation point (every molecule past the clipped similarity scores 1)"
_ISOMER = ("0.99: exact isomers only (an exact isomer scores 1; the closest non-isomer, one extra atom of an "
           "element outside the formula, scores exp(-1/(8 m)) with m terms: 0.975 and 0.985 on the two tasks)")
_MPO = "0.8: chapter 8's screening threshold, the default where the definition gives no natural level"
_MEDIAN = ("{t}: what each reference molecule scores itself (the square root of their similarity, {s}), "
           "i.e. a molecule at least as good a median as either reference")


def _rediscovery(name, target, drug):
    return BenchmarkTask(
        name, f"Rediscover {drug}: ECFP4 (count) Tanimoto similarity to {drug}, unmodified "
              "(GuacaMol clips at 1.0).", _G, "single", 0.8,
        "0.8: close analogues of the one target (ECFP4 count Tanimoto >= 0.8)",
        _similarity(target, "ECFP4", lambda s: clipped(s, 1.0)))


def _similarity_task(name, target, drug, kind):
    return BenchmarkTask(
        name, f"Molecules similar to {drug}: {kind} Tanimoto similarity to {drug}, ClippedScoreModifier("
              "upper_x=0.75), so every molecule at similarity >= 0.75 scores 1.", _G, "single", 1.0, _SATURATED,
        _similarity(target, kind, lambda s: clipped(s, 0.75)))


def _isomers(name, formula):
    return BenchmarkTask(
        name, f"Isomers of {formula}: geometric mean of a Gaussian (sigma 1) per element count and a Gaussian "
              "(sigma 2) on the total atom count, hydrogens included.", _G, "many", 0.99, _ISOMER,
        partial(isomer_score, formula=formula))


def _build_tasks() -> dict:
    tasks = [
        BenchmarkTask("qed", "QED drug-likeness (RDKit's QED.qed).", f"{QED_SOURCE}; {GUACAMOL}; {PMO}", "many",
                      0.9, "0.9: clearly drug-like; QED tops out near 0.948", _qed),
        _rediscovery("celecoxib_rediscovery", CELECOXIB, "celecoxib"),
        _rediscovery("troglitazone_rediscovery", TROGLITAZONE, "troglitazone"),
        _rediscovery("thiothixene_rediscovery", THIOTHIXENE, "thiothixene"),
        _similarity_task("albuterol_similarity", ALBUTEROL, "albuterol", "FCFP4"),
        _similarity_task("mestranol_similarity", MESTRANOL, "mestranol", "AP"),
        _isomers("isomers_c7h8n2o2", "C7H8N2O2"),
        _isomers("isomers_c9h10n2o2pf2cl", "C9H10N2O2PF2Cl"),
        BenchmarkTask("median1", "Median of camphor and menthol: geometric mean of the ECFP4 (count) similarities "
                      "to both.", _G, "many", 0.4, _MEDIAN.format(t="0.40", s="0.400"),
                      _mean("geometric", _similarity(CAMPHOR, "ECFP4"), _similarity(MENTHOL, "ECFP4"))),
        BenchmarkTask("median2", "Median of tadalafil and sildenafil: geometric mean of the ECFP6 (count) "
                      "similarities to both.", _G, "many", 0.36, _MEDIAN.format(t="0.36", s="0.362"),
                      _mean("geometric", _similarity(TADALAFIL, "ECFP6"), _similarity(SILDENAFIL, "ECFP6"))),
        BenchmarkTask("osimertinib_mpo", "Osimertinib MPO: geometric mean of FCFP4 similarity (clipped at 0.8), "
                      "ECFP6 similarity through MinGaussian(0.85, 0.1) (not too similar), TPSA MaxGaussian(100, 10) "
                      "and logP MinGaussian(1, 1).", _G, "many", 0.8, _MPO,
                      _mean("geometric", _similarity(OSIMERTINIB, "FCFP4", lambda s: clipped(s, 0.8)),
                             _similarity(OSIMERTINIB, "ECFP6", lambda s: min_gaussian(s, 0.85, 0.1)),
                             _prop(_tpsa, max_gaussian, 100, 10), _prop(_logp, min_gaussian, 1, 1))),
        BenchmarkTask("fexofenadine_mpo", "Fexofenadine MPO (a less greasy fexofenadine): geometric mean of AP "
                      "similarity (clipped at 0.8), TPSA MaxGaussian(90, 10) and logP MinGaussian(4, 1).", _G, "many",
                      0.8, _MPO, _mean("geometric", _similarity(FEXOFENADINE, "AP", lambda s: clipped(s, 0.8)),
                                        _prop(_tpsa, max_gaussian, 90, 10), _prop(_logp, min_gaussian, 4, 1))),
        BenchmarkTask("ranolazine_mpo", "Ranolazine MPO (a more polar ranolazine with a fluorine): geometric mean "
                      "of AP similarity (clipped at 0.7), logP MaxGaussian(7, 1), TPSA MaxGaussian(95, 20) and the "
                      "fluorine count through Gaussian(1, 1).", _G, "many", 0.8, _MPO,
                      _mean("geometric", _similarity(RANOLAZINE, "AP", lambda s: clipped(s, 0.7)),
                             _prop(_logp, max_gaussian, 7, 1), _prop(_tpsa, max_gaussian, 95, 20),
                             _prop(lambda m: _count(m, "F"), gaussian, 1, 1))),
        BenchmarkTask("perindopril_mpo", "Perindopril MPO (perindopril with two aromatic rings): geometric mean of "
                      "ECFP4 similarity and the aromatic-ring count through Gaussian(2, 0.5).", _G, "many", 0.8, _MPO,
                      _mean("geometric", _similarity(PERINDOPRIL, "ECFP4"),
                             _prop(lambda m: _rings(m, aromatic=True), gaussian, 2, 0.5))),
        BenchmarkTask("amlodipine_mpo", "Amlodipine MPO (amlodipine with three rings): geometric mean of ECFP4 "
                      "similarity and the ring count through Gaussian(3, 0.5).", _G, "many", 0.8, _MPO,
                      _mean("geometric", _similarity(AMLODIPINE, "ECFP4"), _prop(_rings, gaussian, 3, 0.5))),
        BenchmarkTask("sitagliptin_mpo", "Sitagliptin MPO (sitagliptin's properties, not its structure): geometric "
                      "mean of ECFP4 similarity through Gaussian(0, 0.1), logP Gaussian(logP(sitagliptin), 0.2), "
                      "TPSA Gaussian(TPSA(sitagliptin), 5) and the isomer score for C16H15F6N5O.", _G, "many", 0.8,
                      _MPO, _mean("geometric", _similarity(SITAGLIPTIN, "ECFP4", lambda s: gaussian(s, 0.0, 0.1)),
                                   _prop(_logp, gaussian, SITAGLIPTIN, 0.2), _prop(_tpsa, gaussian, SITAGLIPTIN, 5),
                                   partial(isomer_score, formula="C16H15F6N5O"))),
        BenchmarkTask("zaleplon_mpo", "Zaleplon MPO (zaleplon-like with another formula): geometric mean of ECFP4 "
                      "similarity and the isomer score for C19H17N3O2.", _G, "many", 0.8, _MPO,
                      _mean("geometric", _similarity(ZALEPLON, "ECFP4"), partial(isomer_score, formula="C19H17N3O2"))),
        BenchmarkTask("valsartan_smarts", f"Valsartan SMARTS with sitagliptin's properties: geometric mean of the "
                      f"SMARTS {VALSARTAN_SMARTS} being present (1 or 0), logP Gaussian(logP(sitagliptin), 0.2), "
                      "TPSA Gaussian(TPSA(sitagliptin), 5) and Bertz complexity Gaussian(BertzCT(sitagliptin), 30); "
                      "a molecule without the SMARTS scores 0.", _G, "many", 0.8, _MPO,
                      _mean("geometric", _smarts(VALSARTAN_SMARTS),
                             _prop(_logp, gaussian, SITAGLIPTIN, 0.2), _prop(_tpsa, gaussian, SITAGLIPTIN, 5),
                             _prop(_bertz, gaussian, SITAGLIPTIN, 30))),
        BenchmarkTask("deco_hop", "Decoration hop: arithmetic mean of PHCO (Gobbi pharmacophore) similarity to the "
                      "start molecule clipped at 0.85, the absence of its sulfone CS([#6])(=O)=O and of its "
                      "benzothiazole amine [#7]-c1ccc2ncsc2c1, and the presence of its quinazoline scaffold.", _G,
                      "many", 0.8, _MPO,
                      _mean("arithmetic", _similarity(HOP_START, "PHCO", lambda s: clipped(s, 0.85)),
                             _smarts("CS([#6])(=O)=O", inverse=True), _smarts("[#7]-c1ccc2ncsc2c1", inverse=True),
                             _smarts(HOP_SCAFFOLD))),
        BenchmarkTask("scaffold_hop", "Scaffold hop: arithmetic mean of PHCO similarity to the start molecule "
                      "clipped at 0.75, the presence of its decoration "
                      "[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1 and the absence of its "
                      "quinazoline scaffold.", _G, "many", 0.8, _MPO,
                      _mean("arithmetic", _similarity(HOP_START, "PHCO", lambda s: clipped(s, 0.75)),
                             _smarts("[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"),
                             _smarts(HOP_SCAFFOLD, inverse=True))),
    ]
    return {t.name: t for t in tasks}


TASKS: dict = _build_tasks()


# -------------------------------------------------------------------------------------------- public API

def _task(name) -> BenchmarkTask:
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"name must be one of the {len(TASKS)} PMO task names {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def oracle(name: str, budget: int | None = 10_000) -> Oracle:
    """A counted, recorded :class:`~marabook.chem.oracles.Oracle` for PMO task ``name`` (default budget: PMO's
    10,000 calls; ``None`` for no limit). As everywhere in ``marabook.chem`` every string passed in is one
    call, invalid and repeated ones included, and invalid strings score 0 and count in ``n_invalid``.
    Chapter 9 runs REINVENT and MARA against these."""
    task = _task(name)
    if budget is not None:
        budget = check_int(budget, "budget")
    return Oracle(task.score_fn, name=task.name, budget=budget, clip=True)


def score(name: str, smiles) -> np.ndarray:
    """Scores in [0, 1] of a list of SMILES on PMO task ``name`` (GuacaMol's definition, see :data:`TASKS`);
    invalid, unparsable and empty strings score 0.0, never an exception."""
    task = _task(name)
    smiles = check_smiles_list(smiles, "smiles")
    return Oracle(task.score_fn, name=task.name, clip=True)(smiles)


def _buffer(history) -> list:
    """PMO's buffer from records (distinct valid molecules, first score, in order of first call) or from a
    plain score sequence (each entry one distinct molecule)."""
    bad = "history must be a list of oracle records or of finite scores in call order"
    if history is None or isinstance(history, (str, bytes)):
        raise ValueError(bad)
    try:
        history = history.records if isinstance(history, Oracle) else (
            history.tolist() if isinstance(history, np.ndarray) else list(history))
    except TypeError:
        raise ValueError(bad) from None
    if history and all(isinstance(h, (OracleRecord, tuple, list)) for h in history):
        seen, scores = set(), []
        for r in check_records(history):
            if r.canonical is not None and r.canonical not in seen:
                seen.add(r.canonical)
                scores.append(float(r.score))
    elif any(isinstance(h, (bool, np.bool_)) or not isinstance(h, (int, float, np.number)) for h in history):
        raise ValueError(bad)
    else:
        scores = [float(h) for h in history]
    if not all(math.isfinite(s) for s in scores):
        raise ValueError(bad)
    return scores


def auc_top10(history, budget: int = 10_000, freq: int = 100, top_n: int = 10, finish: bool = True) -> float:
    """PMO's AUC top-10 (Gao et al. 2022, the ``top_auc`` of their code) in [0, 1].

    The run's history becomes PMO's buffer: from oracle ``records`` (or an :class:`~marabook.chem.Oracle`) the distinct
    valid molecules in order of first appearance, each with its score (PMO's oracle caches molecules, so
    repeats and invalid strings are not calls there); a plain sequence of scores is taken as one distinct
    molecule per entry. Entries past ``budget`` are dropped. With ``n`` buffered molecules, the mean of the
    ``top_n`` best scores so far (all of them while fewer than ``top_n``) is taken after every ``freq``
    molecules below ``n`` and at ``n``; the curve starts at 0 before the first molecule and is integrated
    with the trapezoidal rule. A run that stops early (``n < budget``, ``finish=True`` as at the end of every
    PMO run) is filled up to ``budget`` with its last top-10 value; the area is divided by ``budget``.

    So a constant score ``c`` over the whole budget gives ``c * (1 - freq / (2 * budget))`` (0.995 c for PMO's
    10,000 / 100), the first interval rising from 0. Note that the book's :class:`~marabook.chem.Oracle` counts every
    proposed string against the budget, so a book run of ``budget`` calls usually buffers fewer distinct
    molecules and is filled as an early stop."""
    budget, freq, top_n = check_int(budget, "budget"), check_int(freq, "freq"), check_int(top_n, "top_n")
    if not isinstance(finish, (bool, np.bool_)):
        raise ValueError(f"finish must be a bool, got {finish!r}")
    scores = _buffer(history)[:budget]
    n = len(scores)
    if n == 0:
        return 0.0
    top_mean = lambda k: float(np.mean(sorted(scores[:k], reverse=True)[:top_n]))  # noqa: E731

    area, prev, called = 0.0, 0.0, 0
    for idx in range(freq, n, freq):
        now = top_mean(idx)
        area += freq * (now + prev) / 2
        prev, called = now, idx
    now = top_mean(n)
    area += (n - called) * (now + prev) / 2
    if finish and n < budget:
        area += (budget - n) * now
    return float(area / budget)


def summarize(name: str, records, threshold: float | None = None, k: int = 100, budget: int = 10_000) -> dict:
    """A run on PMO task ``name`` in PMO's and the book's terms: ``auc_top10`` beside chapter 8's
    :func:`~marabook.chem.summarize_run` (validity, uniqueness, Yield, OB``k``, IntDiv1, #Circles)
    at the task's hit ``threshold`` (default :attr:`BenchmarkTask.threshold`), plus the threshold used."""
    task = _task(name)
    threshold = task.threshold if threshold is None else check_number(threshold, "threshold")
    records = check_records(records if not isinstance(records, Oracle) else records.records)
    out = {"task": task.name, "threshold": threshold, "auc_top10": auc_top10(records, budget=budget)}
    run = summarize_run(records, thresholds=(threshold,), k=k)
    key = f"{threshold:.2f}"
    out.update({kk.replace(f"@{key}", ""): v for kk, v in run.items()})
    return out
