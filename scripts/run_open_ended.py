"""Chapter 6's comparison with more seeds, stored with provenance ("Results at full scale").

    python scripts/run_open_ended.py                  # 5 seeds x 6 trainers, about 5 CPU minutes
    python scripts/run_open_ended.py --seeds 10 --out open_ended_10.json

Same calls as the chapter (marabook.experiments.open_ended): the six trainers of ``configs``, trained on
the colour question, evaluated on the colour (in) and animal (out) questions with 32 answers each,
semantic diversity with all-MiniLM-L6-v2. Writes marabook/data/results/open_ended.json by default.
"""

import argparse
import sys
import time

import torch

from marabook import lm
from marabook.experiments import open_ended as oe
from marabook.provenance import RESULTS_DIR, save_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default=str(RESULTS_DIR / "open_ended.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, tok = lm.load_reference_lm()
    embedder = lm.load_sentence_embedder()
    train = lm.NameTask(("color",))
    evals = {"in": lm.NameTask(("color",)), "out": lm.NameTask(("animal",))}
    t0, runs = time.time(), []
    reference = {k: {m: v for m, v in oe.evaluate(model, tok, t, n_per_prompt=32, seed=10_000,
                                                  embedder=embedder).items() if m != "samples"}
                 for k, t in evals.items()}
    for seed in range(args.seeds):
        for name, cfg in oe.configs(seed, steps=args.steps).items():
            r = oe.run(cfg, model=model, tokenizer=tok, train_task=train, eval_tasks=evals, embedder=embedder, n_eval=32)
            runs.append({"method": name, "seed": seed, "config": r["config"], "eval": dict(r["eval"])})
            print(name, seed, {k: round(v["reward"], 3) for k, v in r["eval"].items()},
                  r["eval"]["in"]["distinct"], flush=True)
    out = save_json(args.out, {"seeds": args.seeds, "steps": args.steps, "minutes": (time.time() - t0) / 60,
                               "reference": reference, "runs": runs},
                    command="python scripts/run_open_ended.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
