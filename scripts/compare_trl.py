"""TRL's GRPOTrainer vs marabook's trainer on the 1-2 task, same tiny model, same beta (chapter 5).

    pip install -e ".[trl]"
    python scripts/compare_trl.py                       # writes results/trl_onetwo.json (not into the package)
    python scripts/compare_trl.py --seeds 3 --steps 100 --betas 0.001 0.01 0.03
    python scripts/compare_trl.py --seeds 5 --betas 0.001 0.01 0.03 --scales none --no-marabook \
        --out marabook/data/results/trl_mara.json            # chapter 5's "MARA in TRL" comparison (shipped file)

For each seed and beta it runs, on the shipped reference LM (CPU):
  * TRL GRPOTrainer, default reward scaling (divide by the group std), vanilla and MARA;
  * TRL GRPOTrainer with scale_rewards="none", vanilla and MARA;
  * marabook's rl.Trainer with the closest settings (k3 in the loss, std / mean advantages).
MARA enters TRL as a reward function, marabook.integrations.trl.mara_reward: the 0/1 reward is augmented
per prompt group with the reference model's sequence log-probabilities of the sampled token ids
(marabook.mara.mara_rewards), exactly as marabook's trainer does.
Every run ends with the exact answer probabilities of the trained model (marabook.lm.onetwo_answer_probs)
and its wall time per step. Results are saved with provenance.
"""

import argparse
from pathlib import Path

import torch

from marabook import lm, rl
from marabook.experiments import onetwo
from marabook.provenance import default_out, save_json

def run_marabook(beta, mara_tau, advantage, seed, steps):
    model, tok = lm.load_reference_lm()
    cfg = rl.RLConfig(beta=beta, kl="reverse", kl_estimator="k3_loss", advantage=advantage, mara_tau=mara_tau, steps=steps,
                      group_size=8, prompts_per_step=4, lr=3e-3, max_new_tokens=4, seed=seed)
    res = onetwo.run(cfg, model=model, tokenizer=tok, device="cpu")
    final = {k: v for k, v in res["final"].items() if k != "per_prompt"}
    return final


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--betas", type=float, nargs="+", default=[0.01])
    ap.add_argument("--scales", nargs="+", default=["group", "none"], help="TRL's scale_rewards settings to run")
    ap.add_argument("--no-marabook", action="store_true", help="TRL runs only (not marabook's rl.Trainer)")
    ap.add_argument("--out", default=default_out("trl_onetwo.json"),
                    help="where to write (default results/trl_onetwo.json; the shipped file is in marabook/data/results)")
    ap.add_argument("--work", default="/tmp/marabook_trl")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import trl

    runs = []
    for beta in args.betas:
        for seed in range(args.seeds):
            for mara_tau in (None, 1.0):
                method = "vanilla" if mara_tau is None else "MARA"
                for scale in args.scales:
                    f = onetwo.run_trl(beta, seed, mara_tau=mara_tau, steps=args.steps, scale_rewards=scale,
                                       output_dir=Path(args.work) / f"{beta}_{seed}_{method}_{scale}")
                    runs.append({"trainer": f"TRL {trl.__version__} GRPOTrainer", "scale_rewards": scale,
                                 "method": method, "beta": beta, "seed": seed, "final": f})
                    print(runs[-1], flush=True)
                for adv in () if args.no_marabook else ("grpo", "dr_grpo"):
                    f = run_marabook(beta, mara_tau, adv, seed, args.steps)
                    runs.append({"trainer": "marabook rl.Trainer (k3 in loss)",
                                 "scale_rewards": "group" if adv == "grpo" else "none",
                                 "method": method, "beta": beta, "seed": seed, "final": f})
                    print(runs[-1], flush=True)
    settings = {"steps": args.steps, "prompts_per_step": 4, "group_size": 8, "lr": 3e-3, "max_new_tokens": 4,
                "threads": 1, "model": "marabook reference LM", "seeds": args.seeds, "betas": args.betas,
                "scales": args.scales}
    path = save_json(args.out, {"settings": settings, "runs": runs},
                     command="python scripts/compare_trl.py " + " ".join(argv or __import__("sys").argv[1:]))
    print("wrote", path)


if __name__ == "__main__":
    main()
