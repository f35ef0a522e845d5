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

from marabook._validate import check_int, check_number
from marabook.experiments.sweep import failure_counts, run_sweep, split_failures
from marabook.provenance import need
from marabook.lm import REFERENCE_LM_DIR, OneTwoTask, load_reference_lm, onetwo_answer_probs
from marabook.rl import RLConfig, Trainer
from marabook.style import METHOD_COLORS
from marabook.tables import Table

__all__ = ["COMMON", "BETAS", "configs", "run", "sweep", "summarize", "table", "stored_table", "method_label",
           "select", "failed_runs", "predicted_shares", "DYNAMICS", "dynamics_configs", "time_to_target",
           "EXACT_OPTIMIZERS", "exact_dynamics", "dynamics_sweep", "dynamics_summary", "dynamics_table", "plot_dynamics", "pareto_points", "share_stats"]

#: The chapter's training settings (4 prompts x 8 completions, Adam lr 3e-3, RLOO, 4 new tokens).
COMMON = dict(group_size=8, prompts_per_step=4, lr=3e-3, max_new_tokens=4, advantage="rloo")
BETAS = (0.001, 0.01, 0.02, 0.03)


def method_label(config) -> str:
    """``"vanilla"`` or ``"MARA"`` for an :class:`~marabook.rl.RLConfig` or a stored config dict."""
    tau = config["mara_tau"] if isinstance(config, dict) else config.mara_tau
    return "vanilla" if tau is None else "MARA"


def _job_config(job) -> dict:
    """The config (as a dict) of a sweep job of this module: an RLConfig, or a tuple that starts with one."""
    c = job if isinstance(job, RLConfig) else job[0]
    if not isinstance(c, RLConfig):
        raise TypeError("the job holds no RLConfig")
    return asdict(c)


def _runs(results, fields=("config", "final")) -> tuple[list, list]:
    """The finished runs of ``results`` (each checked for ``fields``: a stored file of another version is named
    by the field it lacks) and the :class:`~marabook.experiments.sweep.JobFailure` records, counted apart."""
    done, fails = split_failures(results)
    for i, r in enumerate(done):
        need(r, *fields, where=f"run {i}")
        need(r["config"], "mara_tau", where=f"run {i}'s config")
    return done, fails


def select(results: Sequence[dict], **where) -> list[dict]:
    """The runs whose config matches every ``key=value`` of ``where``; ``method="MARA"`` or
    ``"vanilla"`` is understood too. E.g. ``select(runs, kl="reverse", method="MARA", beta=0.01)``.
    Failed jobs (:class:`~marabook.experiments.sweep.JobFailure`) are left out."""
    out = []
    for r in _runs(results, ("config",))[0]:
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
        device=None, progress: bool = False, checkpoint_dir=None, checkpoint_every: int = 0,
        eval_every: int | None = None) -> dict:
    """Train one 1-2 run from a copy of the reference model and evaluate it exactly.

    ``model``/``tokenizer`` default to :func:`load_reference_lm`; the model passed in is copied, not
    modified. Returns ``{"config", "history", "final"}`` where ``final`` holds the exact answer
    probabilities averaged over the task's prompts (and per prompt), and ``seconds_per_step``. With
    ``eval_every``, ``"trajectory"`` holds the exact averages (share of "1", P(valid), entropy) at step 0 and
    every ``eval_every`` steps: the dynamics, to set beside the target (evaluation draws no random numbers,
    so the run's numbers are those of an uninterrupted run).
    """
    if model is None or tokenizer is None:
        model, tokenizer = load_reference_lm(device=device)
    task = task or OneTwoTask.for_reference_lm()
    policy = copy.deepcopy(model)
    for p in policy.parameters():
        p.requires_grad_(True)
    trainer = Trainer(policy, tokenizer, task, config, ref_model=None if config.lora else model, device=device,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, progress=progress)

    def exact():
        per_prompt = [onetwo_answer_probs(trainer.policy, tokenizer, p, answers) for p in task.prompts]
        return per_prompt, {k: float(np.mean([pp[k] for pp in per_prompt])) for k in per_prompt[0]}

    trajectory = []
    if eval_every:
        check_int(eval_every, "eval_every", minimum=1)
        for stop in [*range(0, config.steps, eval_every), config.steps]:
            trainer.train(until=stop)
            avg = exact()[1]
            trajectory.append({"step": trainer.step, **{k: avg[k] for k in ("share_1", "p_valid", "entropy_bits")}})
    history = trainer.train()
    per_prompt, final = exact()
    final["per_prompt"] = per_prompt
    final["seconds_per_step"] = float(np.mean([h["seconds"] for h in history]))
    out = {"config": asdict(config), "history": history, "final": final}
    if eval_every:
        out["trajectory"] = trajectory
    return out


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


def summarize(results: Sequence[dict], collapse_bits: float = 0.2, fail_below: float = 0.5) -> list[dict]:
    """One row per (method, kl, advantage, beta): the number of runs; the mean and std over seeds of the final
    reward (the exact valid mass, over every run); how many runs *failed* (valid mass below ``fail_below``:
    the policy stopped answering the task, so its share of "1" says nothing); and, over the runs that did
    not fail, the valid-answer entropy, how many collapsed at the end (entropy below ``collapse_bits``: 0.2 bits
    is the book's own threshold, the paper states none; ``marabook.experiments.onetwo_transient`` reads the
    whole trajectory) and the mean and std of the share of "1" (NaN, shown as undefined, when every run
    failed). ``results`` may hold :class:`~marabook.experiments.sweep.JobFailure` records (jobs that raised):
    each row counts them as ``errors`` (included in ``runs``) and averages only the finished runs."""
    if not 0 < collapse_bits < 1:
        raise ValueError(f"collapse_bits must be in (0, 1), got {collapse_bits!r}")
    if not 0 <= fail_below < 1:
        raise ValueError(f"fail_below must be in [0, 1), got {fail_below!r}")
    done, fails = _runs(results)
    key = lambda c: (method_label(c), c["kl"], c["advantage"], c["beta"])  # noqa: E731
    errors = failure_counts(fails, lambda job: key(_job_config(job)))
    rows: dict = {k: [] for k in errors}
    for i, r in enumerate(done):
        need(r["config"], "kl", "advantage", "beta", where=f"run {i}'s config")
        rows.setdefault(key(r["config"]), []).append(r["final"])
    out = []
    for (method, kl, adv, beta), finals in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2], kv[0][3])):
        rew = np.array([f["p_valid"] for f in finals])
        ok = [f for f in finals if f["p_valid"] >= fail_below]
        ent = np.array([f["entropy_bits"] for f in ok])
        n_err = errors.get((method, kl, adv, beta), 0)
        out.append({"method": method, "kl": kl, "advantage": adv, "beta": beta, "runs": len(finals) + n_err,
                    "errors": n_err, "reward_mean": float(rew.mean()) if finals else float("nan"),
                    "reward_std": float(rew.std(ddof=1)) if len(rew) > 1 else 0.0,
                    "failed": len(finals) - len(ok),
                    "entropy_mean": float(ent.mean()) if ok else float("nan"),
                    "entropy_std": float(ent.std(ddof=1)) if len(ok) > 1 else 0.0,
                    "collapsed": int((ent < collapse_bits).sum()),
                    "share_1_mean": float(np.mean([f["share_1"] for f in ok])) if ok else float("nan"),
                    "share_1_std": float(np.std([f["share_1"] for f in ok], ddof=1)) if len(ok) > 1 else 0.0})
    return out


def table(rows: Sequence[dict]) -> Table:
    """The summary rows as a table (:class:`~marabook.tables.Table`): reward (exact P(valid)) and failures
    (and jobs that raised, if any) first, then, over the runs that did not fail, the valid-answer entropy, the
    share of "1" and how many collapsed."""
    cols = ["KL", "method", "beta", "reward = P(valid)", "failed", "entropy (bits)", "share of 1", "collapsed"]
    cells = []
    for row in rows:
        share = f"{row['share_1_mean']:.3f}" if np.isfinite(row["share_1_mean"]) else "undefined"
        ent = (f"{row['entropy_mean']:.3f} ± {row['entropy_std']:.3f}" if np.isfinite(row["entropy_mean"])
               else "undefined")
        err = row.get("errors", 0)
        cells.append([row["kl"], row["method"], f"{row['beta']:g}",
                      f"{row['reward_mean']:.3f} ± {row['reward_std']:.3f}",
                      f"{row.get('failed', 0)}/{row['runs']}" + (f" ({err} raised)" if err else ""),
                      ent, share, f"{row['collapsed']}/{row['runs'] - row.get('failed', 0) - err}"])
    return Table(cols, cells)

def stored_table(stored: dict) -> Table:
    """:func:`table` of a stored sweep (``provenance.load_stored("onetwo_sweep")``), summarised again from its
    runs so that reward and failures are shown even where the stored summary predates those columns."""
    need(stored, "results", where="stored")
    need(stored["results"], "runs", where="stored results")
    return table(summarize(stored["results"]["runs"]))


def failed_runs(results: Sequence[dict], fail_below: float = 0.5) -> list[str]:
    """Names of the runs whose valid mass fell below ``fail_below`` ("MARA forward beta=0.02 seed 5 (P(valid) 0.057)"),
    and of the jobs that raised (``JobFailure`` records: "... seed 5 (raised RuntimeError: ...)")."""
    done, fails = _runs(results)
    out = []
    for f in fails:
        c = _job_config(f.job)
        out.append(f"{method_label(c)} {c['kl']} beta={c['beta']:g} seed {c['seed']} (raised {f.error}: {f.message})")
    for r in done:
        c, f = r["config"], r["final"]
        if f["p_valid"] < fail_below:
            out.append(f"{method_label(c)} {c['kl']} beta={c['beta']:g} seed {c['seed']} (P(valid) {f['p_valid']:.3f})")
    return out


def predicted_shares(model, tokenizer, task, beta: float, answers=(" 1", " 2")) -> dict:
    """What each objective wants: the share of "1" among valid answers under each method's exact target
    (:func:`marabook.mara.method_targets` on the outcomes "1", "2", anything else, with rewards 1, 1, 0 and
    the model's exact answer probabilities), averaged over the task's prompts. Keys as in ``method_targets``."""
    from marabook.mara import method_targets

    out: dict = {}
    for p in task.prompts:
        a = onetwo_answer_probs(model, tokenizer, p, answers)
        ref = np.array([a["p_1"], a["p_2"], max(0.0, 1.0 - a["p_1"] - a["p_2"])])
        for name, g in method_targets(ref / ref.sum(), np.array([1.0, 1.0, 0.0]), beta, 1.0).items():
            out.setdefault(name, []).append(g[0] / (g[0] + g[1]))
    return {k: float(np.mean(v)) for k, v in out.items()}


# ------------------------------------------------------------------------------ target vs dynamics
#: The grid of the "target versus dynamics" study (chapter 5): reverse KL with k1 in the reward, RLOO,
#: learning rate 3e-3, exact evaluation every 20 steps.
DYNAMICS = {"betas": (0.001, 0.003, 0.01, 0.03), "group_sizes": (8, 32), "steps": 300, "eval_every": 20,
            "lr": 3e-3}


def dynamics_configs(betas=DYNAMICS["betas"], group_sizes=DYNAMICS["group_sizes"], seeds=range(5),
                     steps: int = DYNAMICS["steps"], lr: float = DYNAMICS["lr"]) -> list[RLConfig]:
    """Vanilla and MARA (tau = 1) x beta x group size x seed, reverse KL (k1 in the reward), 4 prompts per step."""
    return [RLConfig(beta=b, kl="reverse", mara_tau=tau, seed=s, group_size=g, prompts_per_step=4, steps=steps,
                     lr=lr, max_new_tokens=4, advantage="rloo")
            for tau in (None, 1.0) for b in betas for g in group_sizes for s in seeds]


def time_to_target(trajectory, target: float, within: float = 0.1, fail_below: float = 0.5):
    """The first evaluated step from which the exact share of "1" stays within ``within`` of ``target`` (with
    valid mass >= ``fail_below``) to the end of the run; None if it never settles there."""
    for name, value in (("target", target), ("fail_below", fail_below)):
        if not 0.0 <= check_number(value, name, minimum=0.0) <= 1.0:
            raise ValueError(f"{name} must be a share in [0, 1], got {value!r}")
    within = check_number(within, "within", positive=True)
    ok = [abs(t["share_1"] - target) <= within and t["p_valid"] >= fail_below for t in trajectory]
    for i in range(len(ok)):
        if all(ok[i:]):
            return int(trajectory[i]["step"])
    return None


#: Section 5.9's optimiser axis, each name with its :func:`marabook.bandit.train_exact` settings and a step budget
#: in which the grid's smallest beta (0.001) settles. "gradient flow" is the ODE read at t = 0.1 k, where plain
#: gradient ascent with step 0.1 is after k steps (within 4e-4 in the share of "1"); SGD is the same update
#: with step 10; the first Adam row is the book's default (torch's defaults but lr).
EXACT_OPTIMIZERS = {
    "gradient flow": {"optimizer": "flow", "lr": 0.1, "steps": 500_000},
    "SGD, lr 10": {"optimizer": "sgd", "lr": 10.0, "steps": 5_000},
    "Adam, lr 0.01": {"optimizer": "adam", "lr": 0.01, "adam_betas": (0.9, 0.999), "steps": 6_000},
    "Adam, lr 0.01, beta2 0.99": {"optimizer": "adam", "lr": 0.01, "adam_betas": (0.9, 0.99), "steps": 6_000},
    "Adam, lr 0.003": {"optimizer": "adam", "lr": 0.003, "adam_betas": (0.9, 0.999), "steps": 12_000}}


def exact_dynamics(ref_probs, betas, *, steps: int = 3000, lr: float = 0.01, within: float = 0.05,
                   optimizer: str = "adam", adam_betas=(0.9, 0.999), n_snapshots: int | None = None) -> list[dict]:
    """The same question under exact expected-gradient dynamics (a softmax over the outcomes "1", "2",
    anything else, with the reference's probabilities ``ref_probs``), with the optimiser as an axis:
    ``optimizer``, ``lr`` and ``adam_betas`` as in :func:`marabook.bandit.train_exact` (default: Adam, lr 0.01,
    betas (0.9, 0.999); :data:`EXACT_OPTIMIZERS` names the chapter's settings). Per beta and method: the
    target share of "1"; ``steps_to_target``, the step from which the share stays within ``within`` of it
    (None if not within ``steps``); ``final_share_1``; ``peak_share_1`` and ``peak_step`` (the largest share
    of "1" along the run and where); ``departure``, the largest distance from the target; ``settings``, the
    optimiser's; ``trajectory``, the steps read and the share of "1" at each (arrays): every step, or
    ``n_snapshots`` evenly spaced steps (then every step count above is to that resolution)."""
    from marabook import bandit
    from marabook.mara import method_targets

    ref = np.asarray(ref_probs, dtype=float)
    r = np.array([1.0, 1.0, 0.0])
    rows = []
    for b in betas:
        targets_ = method_targets(ref, r, b, 1.0)
        for method, key, tau in (("vanilla", "vanilla-reverse", None), ("MARA", "mara-reverse", 1.0)):
            tr = bandit.train_exact(ref, r, b, mara_tau=tau, steps=steps, lr=lr, optimizer=optimizer,
                                    adam_betas=adam_betas, n_snapshots=n_snapshots or steps + 1)
            share = tr.policies[:, 0] / (tr.policies[:, 0] + tr.policies[:, 1])
            t = float(targets_[key][0] / (targets_[key][0] + targets_[key][1]))
            i = int(np.argmax(share))
            rows.append({"method": method, "beta": b, "target": t,
                         "steps_to_target": bandit.settle_step(tr.steps, share, t, within),
                         "final_share_1": float(share[-1]), "peak_share_1": float(share[i]),
                         "peak_step": int(tr.steps[i]), "departure": float(np.max(np.abs(share - t))),
                         "settings": tr.settings, "trajectory": {"step": tr.steps, "share_1": share}})
    return rows


def _dynamics_job(args):
    config, path, eval_every = args
    model, tokenizer = load_reference_lm(path=path, device="cpu")
    return run(config, model=model, tokenizer=tokenizer, device="cpu", eval_every=eval_every)


def dynamics_sweep(configs, *, eval_every: int = DYNAMICS["eval_every"], workers: int = 1, executor=None,
                   progress: bool = True) -> list[dict]:
    """:func:`run` with exact evaluation every ``eval_every`` steps for every config (CPU, the reference LM)."""
    jobs = [(c, str(REFERENCE_LM_DIR), eval_every) for c in configs]
    return run_sweep(_dynamics_job, jobs, workers=workers, executor=executor, desc="dynamics runs", progress=progress)


def dynamics_summary(runs, within: float = 0.1, fail_below: float = 0.5) -> list[dict]:
    """Per method, beta and group size: how many runs end within ``within`` of their target (vanilla: the
    reference ratio; MARA: 0.5, both from :func:`marabook.mara.method_targets` on the reference model), how
    many failed, and the median number of steps until a run settles within reach of its target. Jobs that
    raised (``JobFailure`` records) are counted as ``errors`` (and in ``runs``), never averaged."""
    done, fails = _runs(runs, ("config", "final", "trajectory"))
    key = lambda c: (method_label(c), c["beta"], c["group_size"])  # noqa: E731
    errors = failure_counts(fails, lambda job: key(_job_config(job)))
    model, tok = load_reference_lm()
    task = OneTwoTask.for_reference_lm()
    preds = {}
    groups: dict = {k: [] for k in errors}
    for r in done:
        groups.setdefault(key(r["config"]), []).append(r)
    rows = []
    for (method, beta, g), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "vanilla", kv[0][1], kv[0][2])):
        if beta not in preds:
            preds[beta] = predicted_shares(model, tok, task, beta)
        target = preds[beta]["vanilla-reverse" if method == "vanilla" else "mara-reverse"]
        failed = sum(x["final"]["p_valid"] < fail_below for x in rs)
        ended = sum(abs(x["final"]["share_1"] - target) <= within and x["final"]["p_valid"] >= fail_below for x in rs)
        times = [t for t in (time_to_target(x["trajectory"], target, within, fail_below) for x in rs) if t is not None]
        n_err = errors.get((method, beta, g), 0)
        rows.append({"method": method, "beta": beta, "group_size": g, "runs": len(rs) + n_err, "errors": n_err,
                     "target": target,
                     "ended_near_target": ended, "failed": failed, "settled": len(times),
                     "median_steps_to_target": float(np.median(times)) if times else None})
    return rows


def dynamics_table(rows) -> Table:
    """:func:`dynamics_summary` as a table (:class:`~marabook.tables.Table`)."""
    cols = ["method", "beta", "group", "target", "ended within 0.1", "failed", "settled", "median steps to settle"]
    cells = [[r["method"], f"{r['beta']:g}", str(r["group_size"]), f"{r['target']:.3f}", f"{r['ended_near_target']}/"
              f"{r['runs']}", f"{r['failed']}/{r['runs']}" + (f" ({r['errors']} raised)" if r.get("errors") else ""),
              f"{r['settled']}/{r['runs']}",
              "never" if r["median_steps_to_target"] is None else f"{r['median_steps_to_target']:.0f}"] for r in rows]
    return Table(cols, cells)

def plot_dynamics(runs, rows, axes) -> None:
    """The exact share of "1" along every run of the grid, one panel per (group size, beta), vanilla and
    MARA, with each method's target dashed: dynamics drawn against targets (chapter 5)."""
    colors = dict(METHOD_COLORS)
    runs = _runs(runs, ("config", "trajectory"))[0]  # jobs that raised have nothing to draw
    keys = sorted({(r["config"]["group_size"], r["config"]["beta"]) for r in runs})
    target = {(x["method"], x["beta"]): x["target"] for x in rows}
    for ax, (g, b) in zip(np.ravel(axes), keys):
        for r in runs:
            c = r["config"]
            if (c["group_size"], c["beta"]) != (g, b):
                continue
            m = method_label(c)
            tr = r["trajectory"]
            ax.plot([t["step"] for t in tr], [t["share_1"] for t in tr], color=colors[m], alpha=0.5, lw=1)
        for m in ("vanilla", "MARA"):
            ax.axhline(target[m, b], color=colors[m], ls="--", lw=1.2)
        ax.set_title(f"group {g}, beta {b:g}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel('share of "1"')


def pareto_points(runs, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Every evaluated checkpoint of ``method``'s runs as (valid-answer entropy, reward = P(valid)), and the
    indices of the Pareto front (no other checkpoint has both more entropy and more reward)."""
    pts = np.array([(t["entropy_bits"], t["p_valid"]) for r in _runs(runs, ("config",))[0] if method_label(r["config"]) == method
                    for t in r.get("trajectory", [])])
    if pts.size == 0:
        raise ValueError(f"runs hold no trajectory for method {method!r}")
    order = np.lexsort((-pts[:, 1], -pts[:, 0]))  # decreasing entropy, ties by decreasing reward
    front, best = [], -np.inf
    for k in order:  # decreasing entropy: keep a point if its reward beats every point of higher entropy
        if pts[k, 1] > best:
            front.append(k)
            best = pts[k, 1]
    return pts, np.array(front)


def dynamics_main(argv=None):
    """Store the target-versus-dynamics grid (scripts/run_dynamics.py is the same command)."""
    import argparse
    import sys
    import time

    from marabook.provenance import default_out, save_json

    ap = argparse.ArgumentParser(description="Chapter 5's target-versus-dynamics grid, stored with provenance.")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=DYNAMICS["steps"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=default_out("onetwo_dynamics.json"),
                    help="where to write (default results/onetwo_dynamics.json; the shipped file is in marabook/data/results)")
    args = ap.parse_args(argv)
    grid = dynamics_configs(seeds=range(args.seeds), steps=args.steps)
    t0 = time.time()
    done, fails = split_failures(dynamics_sweep(grid, workers=args.workers))
    keep = [{"config": r["config"], "final": {k: v for k, v in r["final"].items() if k != "per_prompt"},
             "trajectory": r["trajectory"]} for r in done]
    out = save_json(args.out, {"grid": DYNAMICS, "seeds": args.seeds, "steps": args.steps,
                               "minutes": (time.time() - t0) / 60, "runs": keep, "failures": [str(f) for f in fails]},
                    command="python scripts/run_dynamics.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(dynamics_table(dynamics_summary(keep)))
    print("wrote", out)


def share_stats(finals: Sequence[dict], fail_below: float = 0.5, near: float = 0.1, collapse_bits: float = 0.2) -> dict:
    """What a set of final evaluations (``run(...)["final"]`` dicts) says, in the numbers the chapter quotes.

    ``runs``; ``failed`` (valid mass below ``fail_below``: the run stopped answering, its share of "1" says
    nothing) and ``valid``; over the valid runs, the share of "1" (``share_min``, ``share_max``,
    ``share_mean``), how many ended on "1" (share >= 0.95), on "2" (<= 0.05), within ``near`` of a fair
    coin (``fair``) or collapsed (entropy below ``collapse_bits``), and their mean entropy in bits; over
    every run, ``p_valid_min`` and ``p_valid_mean``; ``sps_min``/``sps_max`` (seconds per step) when the
    runs recorded them. Shares are NaN when no run is valid.
    """
    if not 0 <= fail_below < 1:
        raise ValueError(f"fail_below must be in [0, 1), got {fail_below!r}")
    if not 0 < near <= 0.5:
        raise ValueError(f"near must be in (0, 0.5], got {near!r}")
    if not 0 < collapse_bits < 1:
        raise ValueError(f"collapse_bits must be in (0, 1), got {collapse_bits!r}")
    finals = list(finals)
    if not finals:
        raise ValueError("finals must hold at least one run's final evaluation")
    ok = [f for f in finals if f["p_valid"] >= fail_below]
    share = np.array([f["share_1"] for f in ok], dtype=float)
    ent = np.array([f["entropy_bits"] for f in ok], dtype=float)
    nan = float("nan")
    out = {"runs": len(finals), "failed": len(finals) - len(ok), "valid": len(ok),
           "share_min": float(share.min()) if ok else nan, "share_max": float(share.max()) if ok else nan,
           "share_mean": float(share.mean()) if ok else nan,
           "on_1": int((share >= 0.95).sum()), "on_2": int((share <= 0.05).sum()),
           "fair": int((np.abs(share - 0.5) <= near).sum()), "collapsed": int((ent < collapse_bits).sum()),
           "entropy_mean": float(ent.mean()) if ok else nan,
           "p_valid_min": float(min(f["p_valid"] for f in finals)),
           "p_valid_mean": float(np.mean([f["p_valid"] for f in finals]))}
    sps = [f["seconds_per_step"] for f in finals if "seconds_per_step" in f]
    if sps:
        out.update(sps_min=float(min(sps)), sps_max=float(max(sps)))
    return out


def main(argv=None):
    """Store the full-scale sweep with provenance (``scripts/run_onetwo.py`` is the same command)."""
    import argparse
    import sys
    import time

    from marabook.lm import load_causal_lm
    from marabook.provenance import default_out, save_json

    ap = argparse.ArgumentParser(description="The 1-2 sweep of chapter 5, stored with provenance.")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None, help="Hugging Face id or directory (default: the shipped LM)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=default_out("onetwo_sweep.json"),
                    help="where to write (default results/onetwo_sweep.json; the shipped file is in marabook/data/results)")
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
    done, fails = split_failures(results)
    runs = [{"config": r["config"], "final": {k: v for k, v in r["final"].items() if k != "per_prompt"},
             "share_1_every_5": [h["share_1"] for h in r["history"][4::5]]} for r in done]
    out = save_json(args.out, {"model": model_name, "minutes": minutes, "workers": args.workers,
                               "summary": summarize(results), "runs": runs, "failures": [str(f) for f in fails]},
                    command="python scripts/run_onetwo.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(table(summarize(results)))
    print(f"{len(grid)} runs in {minutes:.1f} min -> {out}")


if __name__ == "__main__":
    main()
