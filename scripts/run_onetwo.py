"""The 1-2 sweep of chapter 5 at a chosen size, stored with provenance for the chapter's
"Results at full scale" section.

    python scripts/run_onetwo.py                                 # 10 seeds x 4 betas x 2 methods x 2 KLs
    python scripts/run_onetwo.py --seeds 5 --steps 200 --out book/results/onetwo_200steps.json
    python scripts/run_onetwo.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --seeds 3  # Colab / GPU

Same code path as the chapter (marabook.lm.run_onetwo_sweep). The file holds, per run, the config, the
final exact answer probabilities, seconds per step, and the sampled share of "1" every 5 steps.
"""

import argparse
import sys
import time
from pathlib import Path

from marabook import lm, rl
from marabook.provenance import save_json

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--betas", type=float, nargs="+", default=[0.001, 0.01, 0.02, 0.03])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None, help="Hugging Face id or directory (default: the shipped LM)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(ROOT / "book" / "results" / "onetwo_sweep.json"))
    args = ap.parse_args(argv)
    common = dict(group_size=8, prompts_per_step=4, steps=args.steps, lr=3e-3, max_new_tokens=4, advantage="rloo")
    configs = [rl.RLConfig(beta=b, kl=kl, mara_tau=tau, seed=s, **common)
               for kl in ("reverse", "forward") for tau in (None, 1.0) for b in args.betas for s in range(args.seeds)]
    t0 = time.time()
    if args.model is None:
        results = lm.run_onetwo_sweep(configs, workers=args.workers, device=args.device)
        model_name = "marabook reference LM"
    else:
        model, tok = lm.load_causal_lm(args.model, device=args.device)
        results = lm.run_onetwo_sweep(configs, model=model, tokenizer=tok, task=lm.OneTwoTask.for_chat_model(tok),
                                      answers=("1", "2"), device=args.device)
        model_name = args.model
    minutes = (time.time() - t0) / 60
    runs = [{"config": r["config"],
             "final": {k: v for k, v in r["final"].items() if k != "per_prompt"},
             "share_1_every_5": [h["share_1"] for h in r["history"][4::5]]} for r in results]
    out = save_json(args.out, {"model": model_name, "minutes": minutes, "workers": args.workers,
                               "summary": lm.summarize_onetwo(results), "runs": runs},
                    command="python scripts/run_onetwo.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"{len(configs)} runs in {minutes:.1f} min -> {out}")


if __name__ == "__main__":
    main()
