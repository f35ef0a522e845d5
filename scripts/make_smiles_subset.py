"""Build marabook/data/moses/train_subset.csv.gz: a seeded random subset of the MOSES training set.

    pip download --no-deps molsets==0.3.1 -d /tmp/moses     # the wheel holds the data (MIT licence)
    python scripts/make_smiles_subset.py /tmp/moses/molsets-0.3.1-py3-none-any.whl --n 200000

molsets itself is never installed (its dependency pins are broken); we only read one file from the
wheel. The output is deterministic (seeded sample, sorted by original row, gzip mtime 0).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import hashlib
import io
import zipfile

import numpy as np

from marabook.chem.data import DATA_DIR, MOSES_WHEEL_SHA256, SUBSET_PATH, _MEMBER
from marabook.provenance import save_json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    blob = open(args.wheel, "rb").read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MOSES_WHEEL_SHA256:
        raise SystemExit(f"unexpected wheel SHA-256 {digest}")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        raw = gzip.decompress(zf.read(_MEMBER)).decode()
        licence = zf.read("molsets-0.3.1.dist-info/LICENSE").decode()
    smiles = [s.strip() for s in raw.splitlines()[1:] if s.strip()]
    idx = np.sort(np.random.default_rng(args.seed).choice(len(smiles), size=args.n, replace=False))
    text = "SMILES\n" + "".join(smiles[i] + "\n" for i in idx)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(text.encode())
    SUBSET_PATH.write_bytes(buf.getvalue())
    (DATA_DIR / "LICENSE").write_text(licence)
    save_json(DATA_DIR / "provenance.json", {
        "source": "MOSES training set, moses/dataset/data/train.csv.gz in the PyPI wheel molsets==0.3.1",
        "wheel_sha256": digest, "licence": "MIT (Insilico Medicine), see LICENSE in this folder",
        "reference": "Polykovskiy et al. 2020, Molecular Sets (MOSES), Frontiers in Pharmacology",
        "n_full": len(smiles), "n_subset": args.n, "seed": args.seed,
        "subset_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
    }, command="python scripts/make_smiles_subset.py " + " ".join(sys.argv[1:]))
    print(f"wrote {args.n} of {len(smiles)} SMILES to {SUBSET_PATH} ({len(buf.getvalue()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
