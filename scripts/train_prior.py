"""Pretrain the shipped SMILES prior (marabook/data/smiles_prior) and measure it.

    python scripts/train_prior.py                      # cuda if available, else CPU
    python scripts/train_prior.py --epochs 1 --out /tmp/prior   # a quick look

A GRU language model (REINVENT's architecture scaled down: 2 x 256 GRU, 64-dim embedding, about 0.65M
parameters) trained by maximum likelihood on the shipped 200k-molecule MOSES subset. Measured cost: about
18 CPU-minutes per epoch on 2 cores; seconds per epoch on one GPU. The report (report.json next to the
weights) measures 10,000 samples: validity, uniqueness and novelty against the training subset.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from marabook.chem.data import load_smiles, subset_info
from marabook.chem.metrics import sample_report
from marabook.chem.prior import PRIOR_DIR, pretrain_prior
from marabook.provenance import provenance


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=8.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--embedding-dim", type=int, default=64)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-report", type=int, default=10_000)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(PRIOR_DIR))
    args = ap.parse_args()
    smiles = load_smiles()
    t0 = time.time()
    model, history = pretrain_prior(
        smiles, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
        model_kwargs={"embedding_dim": args.embedding_dim, "hidden_size": args.hidden_size,
                      "num_layers": args.num_layers})
    train_s = time.time() - t0
    samples = model.sample(args.n_report, seed=12345)
    report = sample_report(samples, training=smiles)
    report.update({
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "train_seconds": round(train_s, 1), "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "final_token_nll": history[-1][1],
        "nll_history": history[:: max(1, len(history) // 50)],
        "training_data": {"n": len(smiles), "sha256": subset_info()["subset_sha256"]},
        "report_samples": {"n": args.n_report, "seed": 12345, "device": str(model.device)},
        "provenance": provenance("python scripts/train_prior.py " + " ".join(sys.argv[1:])),
    })
    model.cpu().save_pretrained(args.out, report=report)
    print({k: report[k] for k in ("validity", "uniqueness", "novelty", "n_parameters", "train_seconds")})


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = False
    np.seterr(all="ignore")
    main()
