"""Molecule metrics (book chapters 7-8): validity, uniqueness, novelty, Yield, OB100, IntDiv1,
#Circles and mode coverage. Each one is tested on hand-computed cases in ``tests/test_chem.py``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from marabook._validate import check_int
from marabook.chem.oracles import OracleRecord, check_smiles_list, mol_fingerprint, rdkit_chem, canonical_smiles, mol_from_smiles

__all__ = ["validity", "uniqueness", "novelty", "sample_report", "fingerprints", "similarity_matrix",
           "intdiv", "n_circles", "yield_count", "oracle_burden", "hits_above", "modes_covered",
           "discovery_curve"]


def _check_list(smiles, name="smiles"):
    return check_smiles_list(smiles, name)


def _check_threshold(threshold) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    if not np.isfinite(t):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return t


def validity(smiles) -> float:
    """Fraction of strings RDKit parses (0.0 for an empty list)."""
    smiles = _check_list(smiles)
    return float(np.mean([canonical_smiles(s) is not None for s in smiles])) if smiles else 0.0


def uniqueness(smiles) -> float:
    """Distinct canonical molecules / valid molecules."""
    canon = [c for c in (canonical_smiles(s) for s in _check_list(smiles)) if c is not None]
    return len(set(canon)) / len(canon) if canon else 0.0


def novelty(smiles, training) -> float:
    """Fraction of the distinct valid molecules that are not in ``training`` (compared canonically)."""
    canon = {c for c in (canonical_smiles(s) for s in _check_list(smiles)) if c is not None}
    if not canon:
        return 0.0
    train = {canonical_smiles(s) for s in _check_list(training, "training")}  # canonical, whatever the container
    return len(canon - train) / len(canon)


def sample_report(smiles, training=None) -> dict:
    """Validity, uniqueness and (with ``training``) novelty of a set of samples."""
    out = {"n": len(_check_list(smiles)), "validity": validity(smiles), "uniqueness": uniqueness(smiles)}
    if training is not None:
        out["novelty"] = novelty(smiles, training)
    return out


def fingerprints(smiles, radius: int = 2, n_bits: int = 1024):
    """Morgan bit vectors of the valid molecules (invalid strings are dropped)."""
    fps = []
    for s in _check_list(smiles):
        m = mol_from_smiles(s)
        if m is not None and m.GetNumAtoms() > 0:
            fps.append(mol_fingerprint(m, radius, n_bits))
    return fps


def similarity_matrix(smiles, radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """Tanimoto similarity matrix of the valid molecules' Morgan fingerprints."""
    from rdkit import DataStructs

    fps = fingerprints(smiles, radius, n_bits)
    return np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps]).reshape(len(fps), len(fps))


def intdiv(smiles, p: int = 1) -> float:
    """Internal diversity, MOSES convention: ``1 - (mean over all ordered pairs, self-pairs included, of
    T(x, y)^p)^(1/p)`` with Morgan radius-2, 1024-bit fingerprints of the valid molecules."""
    check_int(p, "p", minimum=1)
    sim = similarity_matrix(smiles)
    if sim.size == 0:
        return 0.0
    return float(1.0 - np.mean(sim ** p) ** (1.0 / p))


def n_circles(smiles, threshold: float = 0.75) -> int:
    """#Circles (Xie et al. 2023), greedy and deterministic: walk the distinct valid molecules in the
    given order and keep one whenever its Tanimoto *distance* (1 - similarity) to every molecule kept
    so far exceeds ``threshold``. The count of kept molecules lower-bounds the packing number."""
    from rdkit import DataStructs

    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    seen, kept = set(), []
    for s in _check_list(smiles):
        m = mol_from_smiles(s)
        if m is None or m.GetNumAtoms() == 0:
            continue
        c = rdkit_chem().MolToSmiles(m)
        if c in seen:
            continue
        seen.add(c)
        fp = mol_fingerprint(m, 2, 1024)
        if not kept or max(DataStructs.BulkTanimotoSimilarity(fp, kept)) < 1.0 - threshold:
            kept.append(fp)
    return len(kept)


def check_records(records) -> list:
    """Records as :class:`~marabook.chem.oracles.OracleRecord` (plain 4-tuples are accepted)."""
    if records is None or isinstance(records, (str, bytes)):
        raise ValueError("records must be a list of (call, smiles, canonical, score) tuples")
    out = []
    for r in records:
        if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) != 4:
            raise ValueError("records must be (call, smiles, canonical, score) tuples")
        out.append(r if isinstance(r, OracleRecord) else OracleRecord(*r))
    return out


def hits_above(records, threshold: float) -> list:
    """Distinct canonical molecules whose score is >= ``threshold``, in order of first discovery."""
    threshold = _check_threshold(threshold)
    seen, out = set(), []
    for r in check_records(records):
        if r.canonical is not None and r.score >= threshold and r.canonical not in seen:
            seen.add(r.canonical)
            out.append(r.canonical)
    return out


def yield_count(records, threshold: float) -> int:
    """Yield: the number of distinct valid molecules scored at or above ``threshold`` in a run."""
    return len(hits_above(records, threshold))


def oracle_burden(records, threshold: float, k: int = 100):
    """OB``k`` (OB100 by default): the number of oracle calls made until the ``k``-th distinct molecule at
    or above ``threshold`` was found (lower is better); ``None`` if the run never found ``k``."""
    check_int(k, "k", minimum=1)
    threshold = _check_threshold(threshold)
    seen = set()
    for r in check_records(records):
        if r.canonical is not None and r.score >= threshold and r.canonical not in seen:
            seen.add(r.canonical)
            if len(seen) == k:
                return int(r.call) + 1
    return None


def discovery_curve(records, thresholds=(0.80, 0.85), at=None) -> dict:
    """Cumulative counts over a run: distinct valid molecules and distinct hits at or above each threshold,
    after each number of oracle calls in ``at`` (default: every call). ``{"calls", "distinct",
    "hits@0.80", ...}``; the last entry of ``hits@t`` is the run's Yield at ``t``."""
    records = check_records(records)
    thresholds = [_check_threshold(t) for t in thresholds]
    at = list(range(1, len(records) + 1)) if at is None else sorted(int(a) for a in at)
    seen, hits = set(), {t: set() for t in thresholds}
    out = {"calls": at, "distinct": []}
    out.update({f"hits@{t:.2f}": [] for t in thresholds})
    j = 0
    for n in at:
        while j < min(n, len(records)):
            canon, score = records[j].canonical, records[j].score
            if canon is not None:
                seen.add(canon)
                for t in thresholds:
                    if score >= t:
                        hits[t].add(canon)
            j += 1
        out["distinct"].append(len(seen))
        for t in thresholds:
            out[f"hits@{t:.2f}"].append(len(hits[t]))
    return out


def modes_covered(modes: Sequence, min_hits: int = 1) -> dict:
    """Hits per mode label (``None`` labels are ignored) and how many modes have at least ``min_hits``."""
    if modes is None or isinstance(modes, (str, bytes)):
        raise ValueError("modes must be a list of mode labels (one per hit)")
    check_int(min_hits, "min_hits")
    counts: dict = {}
    for m in modes:
        if m is not None:
            counts[m] = counts.get(m, 0) + 1
    return {"hits": counts, "covered": sum(v >= min_hits for v in counts.values())}


def summarize_run(records, thresholds=(0.80, 0.85), k: int = 100, modes=None) -> dict:
    """Chapter 8's metrics of one run from its oracle records: validity and uniqueness of everything
    sampled; per screening threshold the Yield, OB``k``, and IntDiv1 and #Circles of the hits; with
    ``modes`` (a function ``list[str] -> list[label]``) the hits per mode and the modes covered."""
    records = check_records(records)
    calls = len(records)
    canon = [r.canonical for r in records]
    valid = [c for c in canon if c is not None]
    out = {"calls": calls, "validity": len(valid) / calls if calls else 0.0,
           "uniqueness": len(set(valid)) / len(valid) if valid else 0.0}
    for t in thresholds:
        hits = hits_above(records, t)
        key = f"{t:.2f}"
        out[f"yield@{key}"] = len(hits)
        ob = oracle_burden(records, t, k)
        out[f"OB{k}@{key}"] = ob
        out[f"intdiv1@{key}"] = intdiv(hits) if len(hits) > 1 else 0.0
        out[f"circles@{key}"] = n_circles(hits)
        if modes is not None:
            out[f"modes@{key}"] = modes_covered(modes(hits))["hits"]
    return out
