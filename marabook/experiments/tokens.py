"""Chapter 4's token experiment: vanilla and MARA, reverse and forward KL, on the two-block token problem.

MARA runs in its reward form (Algorithm 1, eq. 4.1) and, with the forward KL, also in Algorithm 2's form
(eq. 4.3; with the reverse KL the two forms are the same update). Verbs: :func:`configs` (the grid),
:func:`exact_target` (what each configuration's objective wants, eqs. 1.3, 2.2, 4.2 and 4.3), :func:`run` (exact-gradient and sampled training of one configuration),
:func:`sweep` (the grid, through :func:`marabook.experiments.sweep.run_sweep`), :func:`summarize`
(block-2 mass, entropy over the good tokens and distance to the target, per seed) and :func:`table`.
``python -m marabook.experiments.tokens`` runs the stored full-scale version
(``scripts/run_tokens.py`` is the same command).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marabook import bandit, mara, metrics, problems, targets
from marabook.experiments.sweep import JobFailure, run_sweep
from marabook.tables import Table

__all__ = ["TAU", "BETAS", "TokenConfig", "configs", "exact_target", "run", "sweep", "summarize", "table"]

#: MARA's threshold on the two-block problem (rewards are 0 or 1, so any tau in (0, 1] gives the same target)
TAU = 0.5
BETAS = (0.01, 1.0)


@dataclass(frozen=True)
class TokenConfig:
    """One cell of the grid: KL coefficient, KL direction, MARA on or off, and MARA's form: ``"reward"``
    (Algorithm 1, eq. 4.1) or ``"alg2"`` (Algorithm 2, eq. 4.3; only with MARA on)."""

    beta: float
    direction: str
    use_mara: bool
    mara_form: str = "reward"

    def __post_init__(self):
        if self.direction not in ("reverse", "forward"):
            raise ValueError(f"direction must be 'reverse' or 'forward', got {self.direction!r}")
        if not (isinstance(self.beta, (int, float)) and self.beta > 0):
            raise ValueError(f"beta must be > 0, got {self.beta!r}")
        if self.mara_form not in ("reward", "alg2") or (self.mara_form == "alg2" and not self.use_mara):
            raise ValueError(f"mara_form must be 'reward', or 'alg2' with use_mara=True, got {self.mara_form!r}")

    @property
    def method(self) -> str:
        return ("MARA (alg. 2)" if self.mara_form == "alg2" else "MARA") if self.use_mara else "vanilla"

    @property
    def key(self) -> tuple:
        """``(beta, direction, use_mara)`` for vanilla and Algorithm 1, ``(beta, direction, "alg2")`` for Algorithm 2."""
        return (self.beta, self.direction, "alg2" if self.mara_form == "alg2" else self.use_mara)


def configs(betas=BETAS, alg2: bool = True) -> list[TokenConfig]:
    """The chapter's grid, in the chapter's order: every beta x {reverse, forward} x {vanilla, MARA}, plus
    (``alg2``) MARA in Algorithm 2's form with the forward KL (with the reverse KL it is Algorithm 1's update)."""
    forms = [("reverse", False, "reward"), ("reverse", True, "reward"), ("forward", False, "reward"),
             ("forward", True, "reward")] + ([("forward", True, "alg2")] if alg2 else [])
    return [TokenConfig(float(b), d, m, f) for b in betas for d, m, f in forms]


def exact_target(prob, config: TokenConfig, tau: float = TAU) -> np.ndarray:
    """What the configuration's objective wants: the Gibbs (1.3) or forward (2.2) target of the task
    rewards, or of MARA's rewards with the global anchor (eq. 4.1; reverse: the flat target 4.2), or
    Algorithm 2's forward target (eq. 4.3, :func:`marabook.mara.alg2_forward_target`)."""
    if config.mara_form == "alg2":
        if config.direction == "forward":
            return mara.alg2_forward_target(prob.ref_probs, prob.rewards, config.beta, tau)
        return mara.mara_target(prob.ref_probs, prob.rewards, config.beta, tau)
    r = bandit.augmented_rewards_global(prob.ref_probs, prob.rewards, config.beta, tau) if config.use_mara \
        else prob.rewards
    fn = targets.reverse_kl_target if config.direction == "reverse" else targets.forward_kl_target
    return fn(prob.ref_probs, r, config.beta)


def run(config: TokenConfig, *, steps_exact: int = 4000, steps_sampled: int = 5000, seeds=(0, 1, 2),
        batch_size: int = 64, lr: float = 0.1, tau: float = TAU, progress: bool = False, prob=None) -> dict:
    """One configuration: ``{"config", "target", "exact", "sampled"}`` with the exact-gradient
    trajectory (``steps_exact > 0``) and the sampled RLOO trajectories of ``seeds`` (chapter 4, (a), (b))."""
    prob = prob or problems.two_block_tokens()
    mara_tau = tau if config.use_mara else None
    out = {"config": config, "target": exact_target(prob, config, tau), "exact": None}
    if steps_exact:
        out["exact"] = bandit.train_exact(prob.ref_probs, prob.rewards, config.beta, direction=config.direction,
                                          mara_tau=mara_tau, mara_form=config.mara_form, steps=steps_exact, lr=lr)
    out["sampled"] = bandit.train_sampled(prob.ref_probs, prob.rewards, config.beta, direction=config.direction,
                                          mara_tau=mara_tau, mara_form=config.mara_form, steps=steps_sampled,
                                          batch_size=batch_size, lr=lr,
                                          seeds=tuple(seeds), progress=progress)
    return out


def _run_job(job):
    config, kw = job
    return run(config, **kw)


def sweep(grid=None, *, workers: int = 1, executor=None, progress: bool = True, **kw) -> dict:
    """:func:`run` for every configuration of ``grid`` (default :func:`configs`), keyed by
    :attr:`TokenConfig.key`. ``workers``/``executor`` as in :func:`~marabook.experiments.sweep.run_sweep`; a
    configuration whose job raised holds its :class:`~marabook.experiments.sweep.JobFailure` record."""
    grid = configs() if grid is None else list(grid)
    kw.setdefault("progress", progress and workers == 1 and executor is None)
    results = run_sweep(_run_job, [(c, kw) for c in grid], workers=workers, executor=executor,
                        desc="token configurations", progress=progress)
    return {c.key: r for c, r in zip(grid, results)}


def summarize(runs: dict, tau: float = TAU, prob=None) -> list[dict]:
    """Per configuration: the target's block-2 mass and entropy over the good tokens (bits), the exact
    run's block-2 mass, and per seed of the sampled runs the block-2 mass, good-token entropy and total
    variation to the target. The rows of the stored full-scale result have the same keys. A configuration
    whose job raised (a :class:`~marabook.experiments.sweep.JobFailure` record) gets a row with its method,
    KL and beta and ``error`` (the exception, one line) instead of numbers: reported, never averaged."""
    if not isinstance(runs, dict):
        raise ValueError(f"runs must be the dict sweep() returns, got {type(runs).__name__}")
    prob = prob or problems.two_block_tokens()
    block2, good = prob.modes["block 2"], prob.rewards >= tau
    rows = []
    for r in runs.values():
        if isinstance(r, JobFailure):
            c = r.job[0] if isinstance(r.job, tuple) and isinstance(r.job[0], TokenConfig) else None
            if c is None:
                raise ValueError(f"runs: the failed {r} holds no TokenConfig")
            rows.append({"method": c.method, "kl": c.direction, "beta": c.beta, "error": f"{r.error}: {r.message}"})
            continue
        c = r["config"]
        s, target = r["sampled"].final, r["target"]
        row = {"method": c.method, "kl": c.direction, "beta": c.beta,
               "target_block2": float(metrics.mass_on(target, block2)),
               "target_good_entropy_bits": float(metrics.entropy_on(target, good, base=2)),
               "block2": np.atleast_1d(metrics.mass_on(s, block2)).tolist(),
               "good_entropy_bits": np.atleast_1d(metrics.entropy_on(s, good, base=2)).tolist(),
               "tv_to_target": np.atleast_1d(metrics.total_variation(s, target)).tolist()}
        if r.get("exact") is not None:
            row["exact_block2"] = float(metrics.mass_on(r["exact"].final, block2))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> Table:
    """The summary as a table (:class:`~marabook.tables.Table`: plain text, HTML in a notebook): target next
    to measurement (mean ± std over seeds); a configuration whose job raised shows the error instead."""
    exact = any("exact_block2" in r for r in rows)
    cols = (["method", "KL", "beta", "block-2 mass: target"] + (["exact"] if exact else [])
            + ["sampled", "good entropy (bits): target", "sampled", "TV to target"])
    cells = []
    for r in rows:
        if "error" in r:
            cells.append([r["method"], r["kl"], f"{r['beta']:g}", f"raised {r['error']}"] + [""] * (len(cols) - 4))
            continue
        b2, h, tv = (np.asarray(r[k]) for k in ("block2", "good_entropy_bits", "tv_to_target"))
        cells.append([r["method"], r["kl"], f"{r['beta']:g}", f"{r['target_block2']:.3f}"]
                     + ([f"{r.get('exact_block2', float('nan')):.3f}"] if exact else [])
                     + [f"{b2.mean():.3f} ± {b2.std():.3f}", f"{r['target_good_entropy_bits']:.2f}",
                        f"{h.mean():.2f} ± {h.std():.2f}", f"{tv.mean():.3f}"])
    return Table(cols, cells)

def main(argv=None):
    """Store the full-scale run (10 seeds x 20,000 sampled steps by default) with provenance."""
    import argparse
    import sys
    import time

    from marabook.provenance import default_out, save_json

    ap = argparse.ArgumentParser(description="Chapter 4's token experiment at full scale, stored with provenance.")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=default_out("tokens_full.json"),
                    help="where to write (default results/tokens_full.json; the shipped file is in marabook/data/results)")
    args = ap.parse_args(argv)
    t0 = time.time()
    runs = sweep(steps_exact=0, steps_sampled=args.steps, seeds=tuple(range(args.seeds)), workers=args.workers)
    rows = summarize(runs)
    print(table(rows))
    if any("error" in r for r in rows):
        print(sum("error" in r for r in rows), "configurations raised: their rows hold the error, not numbers")
    out = save_json(args.out, {"seeds": args.seeds, "steps": args.steps, "batch_size": 64, "lr": 0.1, "tau": TAU,
                               "minutes": (time.time() - t0) / 60, "rows": rows},
                    command="python scripts/run_tokens.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
