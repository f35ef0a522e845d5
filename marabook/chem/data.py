"""SMILES data for the chemistry chapters (book chapter 7).

The project ships a seeded random subset of the MOSES training set (Polykovskiy et al. 2020; ZINC
Clean Leads filtered for drug-likeness; MIT licence), taken from the ``moses/dataset/data/train.csv.gz``
file inside the PyPI wheel ``molsets==0.3.1``. ``scripts/make_smiles_subset.py`` rebuilds it
byte-for-byte; the licence and provenance sit next to it in ``marabook/data/moses/``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["DATA_DIR", "SUBSET_PATH", "load_smiles", "read_smiles_file", "download_moses_train",
           "MOSES_WHEEL_URL", "MOSES_WHEEL_SHA256"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "moses"
SUBSET_PATH = DATA_DIR / "train_subset.csv.gz"
# The public source of the full MOSES training set used by download_moses_train (needs internet).
MOSES_WHEEL_URL = ("https://files.pythonhosted.org/packages/py3/m/molsets/molsets-0.3.1-py3-none-any.whl")
MOSES_WHEEL_SHA256 = "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34"
_MEMBER = "moses/dataset/data/train.csv.gz"


def read_smiles_file(path) -> list[str]:
    """Read a one-column SMILES file (plain or ``.gz``; a header line ``SMILES`` is skipped)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"path does not exist: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        lines = [ln.strip().split(",")[0] for ln in fh]
    return [s for s in lines if s and s.upper() != "SMILES"]


def load_smiles(n: int | None = None, *, seed: int = 0, full: bool = False, cache_dir=None) -> list[str]:
    """SMILES strings of the MOSES training set.

    Parameters
    ----------
    n : int, optional
        Return a seeded random sample of ``n`` strings (without replacement); ``None``: all of them.
    seed : int
        Seed of that sample.
    full : bool
        ``False`` (default): the shipped subset (no network). ``True``: the full 1.58M-molecule
        training set, downloaded once from PyPI into ``cache_dir`` (needs internet; never used by the
        tests or the book build).
    """
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if full:
        smiles = read_smiles_file(download_moses_train(cache_dir))
    else:
        smiles = read_smiles_file(SUBSET_PATH)
    if n is None:
        return smiles
    if n > len(smiles):
        raise ValueError(f"n={n} is larger than the data set ({len(smiles)} SMILES)")
    idx = np.random.default_rng(seed).choice(len(smiles), size=int(n), replace=False)
    return [smiles[i] for i in np.sort(idx)]


def download_moses_train(cache_dir=None) -> Path:
    """Download the ``molsets==0.3.1`` wheel from PyPI (once), check its SHA-256, and extract the full
    MOSES training set to ``cache_dir`` (default ``~/.cache/marabook``). Returns the ``.csv.gz`` path."""
    cache = Path(cache_dir or os.environ.get("MARABOOK_CACHE", Path.home() / ".cache" / "marabook"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / "moses_train.csv.gz"
    if out.exists():
        return out
    with urllib.request.urlopen(MOSES_WHEEL_URL, timeout=60) as resp:  # noqa: S310 (fixed https URL)
        blob = resp.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MOSES_WHEEL_SHA256:
        raise RuntimeError(f"molsets wheel has SHA-256 {digest}, expected {MOSES_WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        out.write_bytes(zf.read(_MEMBER))
    return out


def subset_info() -> dict:
    """The provenance record of the shipped subset (``marabook/data/moses/provenance.json``)."""
    return json.loads((DATA_DIR / "provenance.json").read_text())["results"]
