"""Benchmark: where a REINVENT step spends its time, and what batched sampling buys.

    python scripts/bench_reinvent.py                 # CPU (or cuda if available)
    python scripts/bench_reinvent.py --device cpu --threads 1

Prints measured figures only (no claims): molecules per second for batched sampling from the shipped
prior against sampling the same number one molecule at a time (the reference, measured in the same run),
and the wall time of each phase of ReinventTrainer.train_step (sampling, oracle scoring, prior and
agent log-likelihoods with the backward pass) for both offline tasks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from marabook import chem


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    prior = chem.load_prior(device=dev)
    n = args.batch
    print(f"device {dev}, torch threads {torch.get_num_threads()}, batch {n}")

    g = torch.Generator(device=dev).manual_seed(0)
    batched = timed(lambda: prior.sample_ids(n, generator=g), args.repeats)
    single = timed(lambda: [prior.sample_ids(1, generator=g) for _ in range(n)], max(1, args.repeats // 2))
    print(f"sampling {n} molecules: batched {batched * 1e3:.0f} ms ({n / batched:.0f} mol/s), one at a time "
          f"{single * 1e3:.0f} ms ({n / single:.0f} mol/s): batched is {single / batched:.1f}x faster")

    ids, _ = prior.sample_ids(n, generator=g)
    smiles = [prior.tokenizer.decode(r) for r in ids.cpu().tolist()]
    agent = prior.clone().train()
    for task in ("product", "multi_mode"):
        oracle = chem.product_task() if task == "product" else chem.multi_mode_task()
        t_score = timed(lambda: oracle(smiles), args.repeats)

        def loss_step():
            with torch.no_grad():
                p = prior.log_likelihood(ids)
            a = agent.log_likelihood(ids)
            ((p - a) ** 2).mean().backward()

        t_loss = timed(loss_step, args.repeats)
        total = batched + t_score + t_loss
        print(f"task {task:>10}: per step sampling {batched * 1e3:.0f} ms ({batched / total:.0%}), oracle "
              f"{t_score * 1e3:.0f} ms ({t_score / total:.0%}), log-likelihoods + backward {t_loss * 1e3:.0f} ms "
              f"({t_loss / total:.0%}); total {total * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
