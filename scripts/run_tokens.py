"""Chapter 4's token experiment at full scale, stored with provenance for its "Results at full scale".

    python scripts/run_tokens.py                       # 10 seeds, 20,000 sampled steps (a few CPU minutes)
    python scripts/run_tokens.py --seeds 20 --steps 50000 --out book/results/tokens_big.json

Same problem and calls as the chapter: problems.two_block_tokens(), tau = 0.5, beta in {0.01, 1},
{vanilla, MARA} x {reverse, forward} KL, sampled RLOO training with batch 64 (marabook.bandit), and
the exact targets. Stores, per configuration, the block-2 mass, the entropy over the good tokens (bits)
and the total-variation distance to the exact target, for every seed.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from marabook import bandit, metrics, problems, targets
from marabook.provenance import save_json

ROOT = Path(__file__).resolve().parents[1]
TAU = 0.5


def exact_target(prob, beta, direction, use_mara):
    r = bandit.augmented_rewards_global(prob.ref_probs, prob.rewards, beta, TAU) if use_mara else prob.rewards
    fn = targets.reverse_kl_target if direction == "reverse" else targets.forward_kl_target
    return fn(prob.ref_probs, r, beta)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--out", default=str(ROOT / "book" / "results" / "tokens_full.json"))
    args = ap.parse_args(argv)
    prob = problems.two_block_tokens()
    block2, good = prob.modes["block 2"], prob.rewards >= TAU
    rows, t0 = [], time.time()
    for beta in (0.01, 1.0):
        for direction in ("reverse", "forward"):
            for use_mara in (False, True):
                target = exact_target(prob, beta, direction, use_mara)
                run = bandit.train_sampled(prob.ref_probs, prob.rewards, beta, direction=direction,
                                           mara_tau=TAU if use_mara else None, steps=args.steps, batch_size=64,
                                           lr=0.1, seeds=tuple(range(args.seeds)), progress=True)
                s = run.final
                rows.append({"method": "MARA" if use_mara else "vanilla", "kl": direction, "beta": beta,
                             "target_block2": float(metrics.mass_on(target, block2)),
                             "target_good_entropy_bits": float(metrics.entropy_on(target, good, base=2)),
                             "block2": np.asarray(metrics.mass_on(s, block2)).tolist(),
                             "good_entropy_bits": np.asarray(metrics.entropy_on(s, good, base=2)).tolist(),
                             "tv_to_target": np.asarray(metrics.total_variation(s, target)).tolist()})
                print(rows[-1]["method"], direction, beta, f"TV {np.mean(rows[-1]['tv_to_target']):.3f}", flush=True)
    out = save_json(args.out, {"seeds": args.seeds, "steps": args.steps, "batch_size": 64, "lr": 0.1, "tau": TAU,
                               "minutes": (time.time() - t0) / 60, "rows": rows},
                    command="python scripts/run_tokens.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
