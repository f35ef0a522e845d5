"""Benchmark: the REINVENT loop's throughput on PMO oracles, and where its time goes (issue 29, item 4).

    python scripts/bench_pmo.py                                   # 4 tasks, 1,280 calls each, one CPU thread
    python scripts/bench_pmo.py --tasks deco_hop qed --calls 640 --threads 2

For each task the real loop (chem.ReinventTrainer, REINVENT at the book's sigma and learning rate, batch 64) runs
``--calls`` oracle calls from the shipped prior with a timed oracle, then the same loop runs against a free oracle
(every molecule scores 0, no RDKit work: the model's own cost, measured in the same run). Printed per task:
molecules per second, the oracle's share of the wall time (parsing and canonicalising every string, then the
task's scoring function; the scoring alone in brackets) and the model's (sampling, log-likelihoods, backward,
Adam, the rest of the step), the wall time relative to the free-oracle loop, and the CPU-seconds a 10,000-call
run would take at this rate. Figures are measurements on this machine at this moment (other processes on the
same cores inflate them); the script asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from marabook import chem
from marabook.chem import benchmarks
from marabook.chem.reinvent import REINVENT_LR, REINVENT_SIGMA

DEFAULT_TASKS = ("isomers_c7h8n2o2", "median1", "osimertinib_mpo", "deco_hop")


@dataclass
class TimedOracle(chem.Oracle):
    """An Oracle that adds up the wall time of its calls (``seconds``) and of its scoring function alone
    (``score_seconds``)."""

    seconds: float = 0.0
    score_seconds: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        inner = self.score_fn

        def timed(mols):
            t = time.perf_counter()
            out = inner(mols)
            self.score_seconds += time.perf_counter() - t
            return out

        self.score_fn = timed

    def __call__(self, smiles):
        t = time.perf_counter()
        out = super().__call__(smiles)
        self.seconds += time.perf_counter() - t
        return out


def free_scores(mols):
    """The free oracle: every molecule scores 0 (the loop's cost without any scoring work)."""
    return np.zeros(len(mols))


def loop(prior, oracle, calls, batch, device):
    cfg = chem.ReinventConfig(budget=calls, batch_size=batch, sigma=REINVENT_SIGMA, lr=REINVENT_LR, seed=0)
    trainer = chem.ReinventTrainer(prior, oracle, cfg, device=device, progress=False)
    t, c = time.perf_counter(), time.process_time()
    trainer.train()
    return time.perf_counter() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help=f"PMO names, e.g. {DEFAULT_TASKS}")
    ap.add_argument("--calls", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    bad = [t for t in args.tasks if t not in benchmarks.TASKS]
    if bad:
        ap.error(f"--tasks: unknown PMO task(s) {bad}; choose from {sorted(benchmarks.TASKS)}")
    if args.calls < args.batch or args.batch < 1:
        ap.error("--calls must be at least --batch, and --batch at least 1")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    prior = chem.load_prior(device=args.device)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.calls} calls per task, batch "
          f"{args.batch}, sigma {REINVENT_SIGMA:g}, lr {REINVENT_LR:g}")

    free = TimedOracle(free_scores, name="free", budget=args.calls)
    free_wall, free_cpu = loop(prior, free, args.calls, args.batch, args.device)
    model_share = (free_wall - free.seconds) / free_wall
    print(f"{'free oracle':>24}: {args.calls / free_wall:6.0f} mol/s, oracle (parsing only) {free.seconds / free_wall:4.0%},"
          f" model {model_share:4.0%}; 10,000 calls ~ {free_cpu * 10_000 / args.calls:5.0f} CPU-s")
    for name in args.tasks:
        task = benchmarks.TASKS[name]
        oracle = TimedOracle(task.score_fn, name=name, budget=args.calls, clip=True)
        wall, cpu = loop(prior, oracle, args.calls, args.batch, args.device)
        print(f"{name:>24}: {args.calls / wall:6.0f} mol/s, oracle {oracle.seconds / wall:4.0%} (scoring "
              f"{oracle.score_seconds / wall:4.0%}, {1e3 * oracle.score_seconds / args.calls:5.2f} ms/call), model "
              f"{(wall - oracle.seconds) / wall:4.0%}; wall x{wall / free_wall:4.2f} the free-oracle loop; 10,000 "
              f"calls ~ {cpu * 10_000 / args.calls:5.0f} CPU-s")


if __name__ == "__main__":
    main()
