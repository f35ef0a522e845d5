"""Chapter 8's stored comparison: REINVENT vs REINVENT+MARA (tau 0.80, 0.85) vs REINVENT + diversity
filter on the two offline tasks, several seeds, the full 10,000-call oracle budget.

    python scripts/run_reinvent.py --budget 10000 --seeds 5 --workers 14 --device cuda
    python scripts/run_reinvent.py --budget 640 --seeds 2 --workers 2 --out /tmp/x.json   # quick look

Stored results were made one task per call on a GPU machine and merged:

    python scripts/run_reinvent.py --tasks product --out a.json --device cuda --workers 14
    python scripts/run_reinvent.py --tasks multi_mode --out b.json --device cuda --workers 14
    python scripts/run_reinvent.py --merge a.json b.json

Writes marabook/data/results/reinvent.json (runs: summary metrics, per-step history, top molecules; provenance).
"""

from __future__ import annotations

import argparse
import sys
import time

from marabook.experiments.molecules import METHODS, sweep
from marabook.provenance import RESULTS_DIR, load_json, save_json


COMMAND = "python scripts/run_reinvent.py " + " ".join(sys.argv[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=128.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tasks", nargs="+", default=["product", "multi_mode"])
    ap.add_argument("--out", default=str(RESULTS_DIR / "reinvent.json"))
    ap.add_argument("--merge", nargs="+", help="combine result files (e.g. one per task) into --out")
    args = ap.parse_args()
    if args.merge:
        parts = [load_json(f) for f in args.merge]
        res = dict(parts[0]["results"])
        res["runs"] = [r for p in parts for r in p["results"]["runs"]]
        res["parts"] = [{"provenance": p["provenance"], "settings": p["results"]["settings"],
                         "wall_seconds": p["results"]["wall_seconds"]} for p in parts]
        save_json(args.out, res, command=COMMAND)
        print(f"merged {len(res['runs'])} runs -> {args.out}")
        return
    t0 = time.time()
    runs = sweep(args.tasks, METHODS, range(args.seeds), budget=args.budget, workers=args.workers,
                             device=args.device, batch_size=args.batch_size, sigma=args.sigma, lr=args.lr)
    for r in runs:  # keep the stored file small: the score curve, not every log field
        r["history"] = {k: [h[k] for h in r["history"]] for k in ("calls", "score", "valid", "unique")}
    save_json(args.out, {"settings": vars(args), "methods": list(METHODS), "wall_seconds": round(time.time() - t0, 1),
                         "runs": runs}, command=COMMAND)
    print(f"{len(runs)} runs in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
