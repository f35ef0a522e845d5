"""Regenerate the tiny reference LM shipped in marabook/data/onetwo_lm (chapter 5).

    python scripts/train_reference_lm.py            # the shipped model (about a minute on 2 CPU cores)
    python scripts/train_reference_lm.py --out DIR  # somewhere else

Deterministic on CPU for a given seed and torch version. Prints the measured answer bias.
"""

import argparse
import json
import sys
import time

import torch

from marabook.lm import REFERENCE_LM_DIR, pretrain_reference_lm
from marabook.provenance import provenance


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REFERENCE_LM_DIR))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--n-docs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    report = pretrain_reference_lm(args.out, n_docs=args.n_docs, steps=args.steps, seed=args.seed)
    report["train_seconds"] = round(time.time() - t0, 1)
    report["provenance"] = provenance("python scripts/train_reference_lm.py " + " ".join(sys.argv[1:]))
    with open(f"{args.out}/report.json", "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: report[k] for k in ("final_loss_mean_last_100", "one_two", "train_seconds")}, indent=1))


if __name__ == "__main__":
    main()
