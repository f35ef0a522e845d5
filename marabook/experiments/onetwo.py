"""Chapter 5's experiment: the 1-2 task, vanilla vs MARA, reverse vs forward KL, over beta and seeds.

Verbs: :func:`configs` (the chapter's grid), :func:`run` (train one configuration from a copy of the
reference model and evaluate it *exactly*), :func:`sweep` (a list of configurations through
:func:`marabook.experiments.sweep.run_sweep`), :func:`summarize` (one row per method, KL, advantage
and beta), :func:`table` and :func:`stored_table`; :func:`method_label` and :func:`select` read runs.
``python -m marabook.experiments.onetwo`` stores the full-scale sweep (``scripts/run_onetwo.py``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Sequence

import numpy as np

from marabook.experiments.sweep import run_sweep
from marabook.lm import REFERENCE_LM_DIR, OneTwoTask, load_reference_lm, onetwo_answer_probs
from marabook.rl import RLConfig, Trainer

__all__ = ["COMMON", "BETAS", "configs", "run", "sweep", "summarize", "table", "stored_table", "method_label",
           "select", "run_onetwo", "run_onetwo_sweep", "summarize_onetwo"]

#: The chapter's training settings (4 prompts x 8 completions, Adam lr 3e-3, RLOO, 4 new tokens).
COMMON = dict(group_size=8, prompts_per_step=4, lr=3e-3, max_new_tokens=4, advantage="rloo")
BETAS = (0.001, 0.01, 0.02, 0.03)


def method_label(config) -> str:
    """``"vanilla"`` or ``"MARA"`` for an :class:`~marabook.rl.RLConfig` or a stored config dict."""
    tau = config["mara_tau"] if isinstance(config, dict) else config.mara_tau
    return "vanilla" if tau is None else "MARA"


def select(results: Sequence[dict], **where) -> list[dict]:
    """The runs whose config matches every ``key=value`` of ``where``; ``method="MARA"`` or
    ``"vanilla"`` is understood too. E.g. ``select(runs, kl="reverse", method="MARA", beta=0.01)``."""
    out = []
    for r in results:
        c = r["config"]
        if all((method_label(c) if k == "method" else c[k]) == v for k, v in where.items()):
            out.append(r)
    return out


def configs(betas=BETAS, seeds=range(5), steps: int = 100, kls=("reverse", "forward"), **overrides) -> list[RLConfig]:
    """The chapter's grid: KL direction x {vanilla, MARA (tau = 1)} x beta x seed, in that order."""
    common = {**COMMON, "steps": steps, **overrides}
    return [RLConfig(beta=b, kl=kl, mara_tau=tau, seed=s, **common)
            for kl in kls for tau in (None, 1.0) for b in betas for s in seeds]


def run(config: RLConfig, *, model=None, tokenizer=None, task=None, answers=(" 1", " 2"),
               device=None, progress: bool = False, checkpoint_dir=None, checkpoint_every: int = 0) -> dict:
    """Train one 1-2 run from a copy of the reference model and evaluate it exactly.

    ``model``/``tokenizer`` default to :func:`load_reference_lm`; the model passed in is copied, not
    modified. Returns ``{"config", "history", "final"}`` where ``final`` holds the exact answer
    probabilities averaged over the task's prompts (and per prompt), and ``seconds_per_step``.
    """
    if model is None or tokenizer is None:
        model, tokenizer = load_reference_lm(device=device)
    task = task or OneTwoTask.for_reference_lm()
    policy = copy.deepcopy(model)
    for p in policy.parameters():
        p.requires_grad_(True)
    trainer = Trainer(policy, tokenizer, task, config, ref_model=None if config.lora else model, device=device,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, progress=progress)
    history = trainer.train()
    per_prompt = [onetwo_answer_probs(trainer.policy, tokenizer, p, answers) for p in task.prompts]
    final = {k: float(np.mean([pp[k] for pp in per_prompt])) for k in per_prompt[0]}
    final["per_prompt"] = per_prompt
    final["seconds_per_step"] = float(np.mean([h["seconds"] for h in history]))
    return {"config": asdict(config), "history": history, "final": final}




def _sweep_worker(args):
    config, path = args
    model, tokenizer = load_reference_lm(path=path, device="cpu")
    return run(config, model=model, tokenizer=tokenizer, device="cpu")


def sweep(configs: Sequence[RLConfig], *, workers: int = 1, executor=None, path=None, model=None, tokenizer=None,
          task=None, answers=(" 1", " 2"), device=None, progress: bool = True) -> list[dict]:
    """:func:`run` for every config; the results come back in the order of ``configs``.

    In this process (``workers=1``, no executor) with ``model``/``tokenizer``/``task``/``answers``
    (default: the reference LM and its task; e.g. a Qwen model on Colab). Otherwise through
    :func:`~marabook.experiments.sweep.run_sweep` (``workers`` local processes or your ``executor``):
    each job loads the reference LM from ``path`` on the CPU with one torch thread. Every run depends
    only on its config, so the numbers are the same either way.
    """
    configs_ = list(configs)
    if not configs_ or not all(isinstance(c, RLConfig) for c in configs_):
        raise ValueError("configs must be a non-empty list of RLConfig")
    if workers == 1 and executor is None:
        if model is None or tokenizer is None:
            model, tokenizer = load_reference_lm(path=path, device=device)
        return run_sweep(lambda c: run(c, model=model, tokenizer=tokenizer, task=task, answers=answers,
                                       device=device), configs_, desc="runs", progress=progress)
    if model is not None or task is not None or (device not in (None, "cpu")):
        raise ValueError("workers > 1 (or an executor) runs CPU jobs that load the model from path; pass path, not model")
    p = str(path) if path is not None else str(REFERENCE_LM_DIR)
    return run_sweep(_sweep_worker, [(c, p) for c in configs_], workers=workers, executor=executor,
                     desc="runs", progress=progress)


def summarize(results: Sequence[dict], collapse_bits: float = 0.2) -> list[dict]:
    """One row per (method, kl, beta): mean and std over seeds of the final reward (exact valid
    mass) and valid-answer entropy, the number of runs, and how many collapsed (entropy below
    ``collapse_bits``; the issue's and the paper's criterion is 0.2 bits)."""
    if not 0 < collapse_bits < 1:
        raise ValueError(f"collapse_bits must be in (0, 1), got {collapse_bits!r}")
    rows: dict = {}
    for r in results:
        c = r["config"]
        key = (method_label(c), c["kl"], c["advantage"], c["beta"])
        rows.setdefault(key, []).append(r["final"])
    out = []
    for (method, kl, adv, beta), finals in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2], kv[0][3])):
        ent = np.array([f["entropy_bits"] for f in finals])
        rew = np.array([f["p_valid"] for f in finals])
        out.append({"method": method, "kl": kl, "advantage": adv, "beta": beta, "runs": len(finals),
                    "reward_mean": float(rew.mean()), "reward_std": float(rew.std(ddof=1)) if len(rew) > 1 else 0.0,
                    "entropy_mean": float(ent.mean()), "entropy_std": float(ent.std(ddof=1)) if len(ent) > 1 else 0.0,
                    "collapsed": int((ent < collapse_bits).sum()),
                    "share_1_mean": float(np.mean([f["share_1"] for f in finals]))})
    return out


def table(rows: Sequence[dict]) -> str:
    """The summary rows as a plain-text table (reward is the exact P(valid), entropy over valid answers)."""
    lines = [f"{'KL':>8} {'method':>8} {'beta':>6} {'reward':>14} {'entropy (bits)':>16} {'share of 1':>11} "
             f"{'collapsed':>10}"]
    for row in rows:
        lines.append(f"{row['kl']:>8} {row['method']:>8} {row['beta']:>6g} "
                     f"{row['reward_mean']:7.3f} ± {row['reward_std']:.3f} {row['entropy_mean']:9.3f} ± "
                     f"{row['entropy_std']:.3f} {row['share_1_mean']:11.3f} {row['collapsed']:>5}/{row['runs']}")
    return "\n".join(lines)


def stored_table(stored: dict) -> str:
    """:func:`table` of a stored sweep (``provenance.load_stored("onetwo_sweep")``), its summary rows as stored."""
    rows = stored["results"]["summary"]
    if all("reward_mean" in r for r in rows):
        return table(rows)
    lines = [f"{'KL':>8} {'method':>8} {'beta':>6} {'entropy (bits)':>16} {'share of 1':>11} {'collapsed':>10}"]
    for row in rows:
        lines.append(f"{row['kl']:>8} {row['method']:>8} {row['beta']:>6g} {row['entropy_mean']:9.3f} ± "
                     f"{row['entropy_std']:.3f} {row['share_1_mean']:11.3f} {row['collapsed']:>5}/{row['runs']}")
    return "\n".join(lines)


# the first edition's names (also importable from marabook.lm)
run_onetwo, run_onetwo_sweep, summarize_onetwo = run, sweep, summarize


def main(argv=None):
    """Store the full-scale sweep with provenance (``scripts/run_onetwo.py`` is the same command)."""
    import argparse
    import sys
    import time

    from marabook.lm import load_causal_lm
    from marabook.provenance import RESULTS_DIR, save_json

    ap = argparse.ArgumentParser(description="The 1-2 sweep of chapter 5, stored with provenance.")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None, help="Hugging Face id or directory (default: the shipped LM)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(RESULTS_DIR / "onetwo_sweep.json"))
    args = ap.parse_args(argv)
    grid = configs(args.betas, range(args.seeds), args.steps)
    t0 = time.time()
    if args.model is None:
        results = sweep(grid, workers=args.workers, device=args.device)
        model_name = "marabook reference LM"
    else:
        model, tok = load_causal_lm(args.model, device=args.device)
        results = sweep(grid, model=model, tokenizer=tok, task=OneTwoTask.for_chat_model(tok), answers=("1", "2"),
                        device=args.device)
        model_name = args.model
    minutes = (time.time() - t0) / 60
    runs = [{"config": r["config"], "final": {k: v for k, v in r["final"].items() if k != "per_prompt"},
             "share_1_every_5": [h["share_1"] for h in r["history"][4::5]]} for r in results]
    out = save_json(args.out, {"model": model_name, "minutes": minutes, "workers": args.workers,
                               "summary": summarize(results), "runs": runs},
                    command="python scripts/run_onetwo.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(table(summarize(results)))
    print(f"{len(grid)} runs in {minutes:.1f} min -> {out}")


if __name__ == "__main__":
    main()
