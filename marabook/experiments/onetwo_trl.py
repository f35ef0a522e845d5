"""Chapter 5's TRL comparison on the 1-2 task: TRL's ``GRPOTrainer`` (vanilla or with MARA as a reward-function
wrapper) trained and evaluated exactly, and the stored comparisons summarised (:func:`trl_summary`) and printed
(:func:`trl_table`).
"""

from __future__ import annotations

import numpy as np

from marabook.experiments.onetwo import share_stats
from marabook.lm import OneTwoTask, load_reference_lm, onetwo_answer_probs
from marabook.tables import Table

__all__ = ["run_trl", "trl_summary", "trl_table"]


def run_trl(beta: float, seed: int, *, mara_tau=None, steps: int = 100, scale_rewards: str = "none", lr: float = 3e-3,
            output_dir=None) -> dict:
    """One 1-2 run with TRL's ``GRPOTrainer`` on the reference LM (the chapter's batch: 4 prompts x 8
    completions, 4 new tokens), vanilla or with MARA through :func:`marabook.integrations.trl.mara_reward`,
    evaluated exactly like :func:`~marabook.experiments.onetwo.run`. ``scale_rewards="group"`` (TRL's default) is the pitfall chapter 5
    demonstrates; with it the wrapper is not given the config (which :func:`~marabook.integrations.trl.check_trl_config`
    would refuse). Needs ``pip install "marabook[trl]"``."""
    import tempfile
    import time

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from marabook.integrations.trl import mara_reward

    model, tok = load_reference_lm()
    ref_model, _ = load_reference_lm()
    task = OneTwoTask.for_reference_lm()

    def onetwo(prompts, completions, **kwargs):
        return task.reward(prompts, completions)

    ds = Dataset.from_dict({"prompt": [task.prompts[i % len(task.prompts)] for i in range(4 * steps)]})
    args = GRPOConfig(output_dir=str(output_dir or tempfile.mkdtemp()), per_device_train_batch_size=32,
                      num_generations=8, max_completion_length=4, learning_rate=lr, beta=beta, max_steps=steps,
                      temperature=1.0, top_k=0, top_p=1.0, scale_rewards=scale_rewards, seed=seed, logging_steps=10,
                      report_to="none", save_strategy="no", use_cpu=True, bf16=False, lr_scheduler_type="constant",
                      warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, disable_tqdm=True)
    reward = onetwo
    if mara_tau is not None:
        reward = mara_reward(onetwo, ref_model, tok, tau=mara_tau, beta=beta, num_generations=8,
                             config=args if scale_rewards == "none" else None)
    trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, reward_funcs=[reward])
    # with tqdm off, transformers prints every log dict to stdout (PrinterCallback); the result is returned instead
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    per_prompt = [onetwo_answer_probs(trainer.model.eval(), tok, p) for p in task.prompts]
    final = {k: float(np.mean([pp[k] for pp in per_prompt])) for k in per_prompt[0]}
    final["seconds_per_step"] = seconds / steps
    import trl

    # which KL gradient TRL's k3 term had: with the importance ratio (TRL's default since mid-2026) the per-token
    # reverse KL's, without it the per-token forward KL's (chapter 5.10)
    final["trl"], final["use_bias_correction_kl"] = trl.__version__, bool(getattr(args, "use_bias_correction_kl", False))
    return final


def trl_summary(stored: dict, fail_below: float = 0.5) -> list[dict]:
    """A stored TRL comparison as rows: per trainer (``"TRL"`` or ``"rl.Trainer"``), reward scaling, method and
    beta, the :func:`share_stats` of its seeds plus ``seeds`` (their numbers, in order) and ``failed_seeds``."""
    if not isinstance(stored, dict) or "runs" not in stored.get("results", {}):
        raise ValueError("stored must be a stored TRL comparison (provenance.load_stored('trl_mara'), say)")
    rows: dict = {}
    for r in stored["results"]["runs"]:
        trainer = "TRL" if r.get("trainer", "TRL").startswith("TRL") else "rl.Trainer"
        rows.setdefault((trainer, r.get("scale_rewards", "none"), r["method"], r["beta"]), []).append(r)
    out = []
    for (trainer, scale, method, beta), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3],
                                                                                  kv[0][2] != "vanilla")):
        out.append({"trainer": trainer, "scaling": scale, "method": method, "beta": beta,
                    "seeds": [r.get("seed") for r in rs],
                    "failed_seeds": [r.get("seed") for r in rs if r["final"]["p_valid"] < fail_below],
                    **share_stats([r["final"] for r in rs], fail_below=fail_below)})
    return out


def trl_table(stored: dict, fail_below: float = 0.5) -> Table:
    """A stored TRL comparison (``provenance.load_stored("trl_mara")`` or ``"trl_onetwo"``) as a table
    (:class:`~marabook.tables.Table`): per trainer, reward scaling, method and beta, the share of "1" in every
    seed, its mean over the runs that still answer validly, the mean valid mass and the failures (valid mass
    below ``fail_below``: counted, shown as "--", never averaged into the share, and never read as "ended on 2")."""
    runs = stored["results"]["runs"]

    def key(r):
        return (r.get("trainer", "TRL GRPOTrainer"), r.get("scale_rewards", "none"), r["method"], r["beta"])

    keys = sorted({key(r) for r in runs}, key=lambda k: (k[0], k[1], k[3], k[2] != "vanilla"))
    cols = ["trainer", "std scaling", "method", "beta", "share of 1 per seed", "mean (valid runs)", "P(valid)",
            "failed"]
    cells = []
    for k in keys:
        finals = [r["final"] for r in runs if key(r) == k]
        ok = [f for f in finals if f["p_valid"] >= fail_below]
        shares = " ".join(f"{f['share_1']:.2f}" if f["p_valid"] >= fail_below else "--" for f in finals)
        mean = f"{np.mean([f['share_1'] for f in ok]):.3f}" if ok else "undefined"
        cells.append([k[0], "yes" if k[1] == "group" else "no", k[2], f"{k[3]:g}", shares, mean,
                      f"{np.mean([f['p_valid'] for f in finals]):.3f}", f"{len(finals) - len(ok)}/{len(finals)}"])
    return Table(cols, cells)
