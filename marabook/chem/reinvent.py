"""REINVENT with MARA (book chapters 7-8).

REINVENT (Olivecrona et al. 2017) fine-tunes an *agent* (initialised as a copy of the prior) with the
"augmented likelihood" (DAP) loss

    L(y) = ( log pi_prior(y) + sigma * S(y) - log pi_agent(y) )^2                       (eq. 7.1)

on molecules ``y`` the agent itself sampled. Its fixed point (chapter 7 derives it, :func:`dap_fixed_point`
computes it, the tests check it against gradient descent) is

    pi_agent(y) proportional to pi_prior(y) exp(sigma * S(y)),                          (eq. 7.2)

the reverse-KL Gibbs target with reward ``S`` and ``beta = 1 / sigma``: REINVENT's default
``sigma = 128`` is ``beta ~ 0.008``. MARA (chapter 4, :func:`marabook.mara.mara_rewards`) plugs in as
the score transform ``S -> S_bar`` computed with the prior log-likelihoods the loop already has, which
makes the fixed point flat over the molecules at or above ``tau`` (eq. 8.1).

:class:`ReinventTrainer` is the one REINVENT loop of the book: sample a batch, score it with a counted
:class:`~marabook.chem.oracles.Oracle`, optionally zero the scores of crowded scaffolds (diversity
filter) and/or apply MARA, optionally add replayed top molecules, take one Adam step on the DAP loss.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from marabook._validate import check_beta, check_finite
from marabook.chem.metrics import discovery_curve, hits_above, intdiv, modes_covered, n_circles, oracle_burden
from marabook.chem.oracles import Oracle, murcko_scaffold
from marabook.chem.prior import SmilesGRU, collate_ids
from marabook.mara import mara_rewards, parse_tau
from marabook.targets import reverse_kl_target

__all__ = ["dap_loss", "dap_fixed_point", "fit_dap_tabular", "format_comparison", "mode_table", "ReinventConfig", "DiversityFilter", "ReplayMemory",
           "ReinventTrainer", "run_reinvent", "run_reinvent_grid", "compare_methods", "summarize_run", "METHODS",
           "method_config"]


def dap_loss(agent_logp, prior_logp, scores, sigma: float):
    """Per-sample DAP loss ``(log pi_prior + sigma * S - log pi_agent)^2`` (eq. 7.1), NumPy or torch."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if isinstance(agent_logp, torch.Tensor):
        return (prior_logp + sigma * scores - agent_logp) ** 2
    a, p, s = (check_finite(x, n) for x, n in ((agent_logp, "agent_logp"), (prior_logp, "prior_logp"),
                                              (scores, "scores")))
    if not a.shape == p.shape == s.shape:
        raise ValueError(f"agent_logp, prior_logp and scores must have one shape: {a.shape}, {p.shape}, {s.shape}")
    return (p + sigma * s - a) ** 2


def dap_fixed_point(prior_probs, scores, sigma: float) -> np.ndarray:
    """The agent distribution at which the expected DAP gradient vanishes (eq. 7.2):
    ``pi_prior * exp(sigma * S)`` normalised, i.e. :func:`marabook.targets.reverse_kl_target` with
    ``beta = 1 / sigma``."""
    s = check_beta(sigma, "sigma")
    return reverse_kl_target(prior_probs, scores, 1.0 / s)


def fit_dap_tabular(prior_probs, scores, sigma: float, steps: int = 4000, lr: float = 0.05,
                    record_every: int = 0):
    """Train a tabular agent (one logit per molecule, started at the prior) on the *exact* expected
    REINVENT gradient: molecules drawn from the agent itself (the sampling weights are not
    differentiated), squared error of ``log pi_agent`` against ``log pi_prior + sigma * S`` (eq. 7.1).
    Adam on the logits. Returns the final agent probabilities, or ``(final, trajectory)`` with
    ``record_every > 0``. Chapter 7 uses it to show that the fixed point is eq. (7.2)."""
    s = float(check_beta(sigma, "sigma"))
    p = np.asarray(prior_probs, dtype=float)
    sc = check_finite(scores, "scores")
    if p.ndim != 1 or p.shape != sc.shape or np.any(p <= 0) or abs(p.sum() - 1) > 1e-6:
        raise ValueError("prior_probs must be a positive 1-D distribution with the shape of scores")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    logits = torch.log(torch.as_tensor(p, dtype=torch.float64)).clone().requires_grad_(True)
    target = torch.log(torch.as_tensor(p, dtype=torch.float64)) + s * torch.as_tensor(sc, dtype=torch.float64)
    opt = torch.optim.Adam([logits], lr=lr)
    traj = []
    for t in range(steps):
        logp = torch.log_softmax(logits, 0)
        loss = (logp.exp().detach() * (target - logp) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if record_every and t % record_every == 0:
            traj.append(torch.softmax(logits, 0).detach().numpy().copy())
    final = torch.softmax(logits, 0).detach().numpy()
    return (final, np.array(traj)) if record_every else final


@dataclass
class ReinventConfig:
    """Settings of one REINVENT run.

    sigma: score multiplier (``beta = 1/sigma``); batch_size: molecules sampled per step; budget: oracle
    calls per run (every sampled string is one call); lr: Adam learning rate; mara_tau: None (vanilla),
    a score threshold, or ``"pNN"`` (batch percentile); diversity_filter: REINVENT's identical-Murcko-
    scaffold filter (a scaffold's molecules score 0 once ``df_bucket_size`` molecules with score >=
    ``df_min_score`` have it); replay_size / replay_batch: experience replay of the best molecules seen
    (0 = off); seed; max_length: token limit per SMILES; label: a name for logs and tables.
    """

    sigma: float = 128.0
    batch_size: int = 64
    budget: int = 10_000
    lr: float = 1e-4
    mara_tau: float | str | None = None
    diversity_filter: bool = False
    df_bucket_size: int = 25
    df_min_score: float = 0.4
    replay_size: int = 0
    replay_batch: int = 0
    seed: int = 0
    max_length: int = 100
    label: str = "reinvent"

    def __post_init__(self):
        if not (isinstance(self.sigma, (int, float)) and self.sigma > 0 and np.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma!r}")
        for name in ("batch_size", "budget", "max_length", "df_bucket_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("replay_size", "replay_batch", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.replay_batch > self.replay_size:
            raise ValueError("replay_batch must be <= replay_size")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.mara_tau is not None:
            parse_tau(self.mara_tau)
        if not 0.0 <= self.df_min_score <= 1.0:
            raise ValueError(f"df_min_score must be in [0, 1], got {self.df_min_score}")

    @property
    def beta(self) -> float:
        """The KL coefficient REINVENT implicitly uses: ``1 / sigma``."""
        return 1.0 / self.sigma

    @property
    def steps(self) -> int:
        return -(-self.budget // self.batch_size)


class DiversityFilter:
    """REINVENT's identical-Murcko-scaffold diversity filter (the standard heuristic baseline).

    Molecules with score >= ``min_score`` fill their scaffold's bucket; once a bucket holds
    ``bucket_size`` molecules, every later molecule with that scaffold scores 0 for training.
    """

    def __init__(self, bucket_size: int = 25, min_score: float = 0.4):
        self.bucket_size, self.min_score = bucket_size, min_score
        self.buckets: dict[str, int] = {}

    def __call__(self, smiles, scores) -> np.ndarray:
        out = np.asarray(scores, dtype=float).copy()
        for i, s in enumerate(smiles):
            if out[i] < self.min_score:
                continue
            scaf = murcko_scaffold(s)
            if scaf is None:
                continue
            n = self.buckets.get(scaf, 0)
            if n >= self.bucket_size:
                out[i] = 0.0
            else:
                self.buckets[scaf] = n + 1
        return out


class ReplayMemory:
    """The ``size`` best distinct molecules seen so far (by training score), with their prior log-likelihoods."""

    def __init__(self, size: int):
        self.size = size
        self.items: list[tuple[float, str, float]] = []  # (score, smiles, prior_logp)

    def add(self, smiles, scores, prior_logp) -> None:
        if self.size == 0:
            return
        known = {s for _, s, _ in self.items}
        for s, sc, lp in zip(smiles, scores, prior_logp):
            if s not in known and sc > 0:
                self.items.append((float(sc), s, float(lp)))
                known.add(s)
        self.items.sort(key=lambda t: (-t[0], t[1]))
        del self.items[self.size:]

    def sample(self, n: int, rng: np.random.Generator):
        if n == 0 or not self.items:
            return []
        idx = rng.choice(len(self.items), size=min(n, len(self.items)), replace=False)
        return [self.items[i] for i in np.sort(idx)]


class ReinventTrainer:
    """The REINVENT loop (chapter 8), readable top to bottom in :meth:`train_step`.

    ``ReinventTrainer(prior, oracle, config, device=None, checkpoint_dir=None, checkpoint_every=0)``.
    The prior stays frozen; the agent is a copy of it. With ``checkpoint_dir`` the whole state (agent
    weights, optimiser, random generators, oracle records, filter buckets, replay memory, history) is
    saved and a new trainer pointed at the directory resumes; the resumed run equals an uninterrupted one.
    """

    def __init__(self, prior: SmilesGRU, oracle: Oracle, config: ReinventConfig, *, device=None,
                 checkpoint_dir=None, checkpoint_every: int = 0, progress: bool = True):
        if not isinstance(prior, SmilesGRU):
            raise ValueError("prior must be a SmilesGRU")
        if not isinstance(oracle, Oracle):
            raise ValueError("oracle must be an Oracle")
        if not isinstance(config, ReinventConfig):
            raise ValueError("config must be a ReinventConfig")
        if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
        self.config, self.oracle = config, oracle
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # the caller's prior is used as is on its own device (and frozen), copied to another device
        self.prior = (prior if prior.device == self.device else prior.clone().to(self.device)).eval()
        for p in self.prior.parameters():
            p.requires_grad_(False)
        self.agent = prior.clone().to(self.device).eval()
        for p in self.agent.parameters():
            p.requires_grad_(True)
        self.tokenizer = prior.tokenizer
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=config.lr)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.filter = DiversityFilter(config.df_bucket_size, config.df_min_score) if config.diversity_filter else None
        self.memory = ReplayMemory(config.replay_size)
        self.step = 0
        self.history: list[dict] = []
        self.last_batch: dict = {}
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "state.pt").exists():
            self.load_checkpoint(self.checkpoint_dir)

    @property
    def done(self) -> bool:
        return self.oracle.calls >= self.config.budget

    def train_step(self) -> dict:
        """One REINVENT step; returns (and records) its log entry."""
        c = self.config
        n = min(c.batch_size, c.budget - self.oracle.calls)
        # 1. sample a batch from the agent
        ids, _ = self.agent.sample_ids(n, generator=self.generator, max_length=c.max_length)
        smiles = [self.tokenizer.decode(r) for r in ids.cpu().tolist()]
        # 2. score it: every string is one oracle call; invalid strings score 0 and are counted
        scores = self.oracle(smiles)
        train_scores = self.filter(smiles, scores) if self.filter is not None else scores.copy()
        # 3. the loss sees each distinct sequence once (REINVENT's de-duplication)
        _, first = np.unique(np.asarray(smiles, dtype=object).astype(str), return_index=True)
        keep = np.sort(first)
        ids, smiles_k, s_k = ids[keep], [smiles[i] for i in keep], train_scores[keep]
        with torch.no_grad():
            prior_lp = self.prior.log_likelihood(ids)
        # 4. experience replay: the best molecules so far, re-scored by the agent below
        replay = self.memory.sample(c.replay_batch, self.rng)
        if replay:
            r_ids = collate_ids([self.tokenizer.encode(s) for _, s, _ in replay], self.tokenizer.pad_id)
            width = max(ids.shape[1], r_ids.shape[1])
            ids = torch.cat([torch.nn.functional.pad(ids, (0, width - ids.shape[1])),
                             torch.nn.functional.pad(r_ids.to(self.device), (0, width - r_ids.shape[1]))])
            prior_lp = torch.cat([prior_lp, torch.tensor([lp for _, _, lp in replay], device=self.device)])
            s_k = np.concatenate([s_k, [sc for sc, _, _ in replay]])
        # 5. MARA: flat target over the molecules at or above tau (eq. 8.1), beta = 1 / sigma
        s_used = s_k
        if c.mara_tau is not None:
            s_used = mara_rewards(s_k, prior_lp.double().cpu().numpy(), c.beta, c.mara_tau)
        # 6. DAP loss (eq. 7.1) and one Adam step
        self.agent.train()  # cuDNN's GRU backward needs training mode (the shipped prior has no dropout)
        agent_lp = self.agent.log_likelihood(ids)
        self.agent.eval()
        target = prior_lp + c.sigma * torch.as_tensor(s_used, dtype=prior_lp.dtype, device=self.device)
        loss = ((target - agent_lp) ** 2).mean()
        # what the loss saw, for inspection and tests (fresh distinct molecules first, then replayed ones)
        self.last_batch = {"smiles": smiles_k + [s for _, s, _ in replay], "scores": np.asarray(s_k, dtype=float),
                           "train_scores": np.asarray(s_used, dtype=float),
                           "prior_logp": prior_lp.detach().cpu().numpy(), "target": target.detach().cpu().numpy()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.memory.add(smiles_k, train_scores[keep], prior_lp[: len(keep)].cpu().numpy())
        self.step += 1
        valid = [r[2] is not None for r in self.oracle.records[-n:]]
        entry = {"step": self.step, "calls": self.oracle.calls, "score": float(scores.mean()),
                 "max_score": float(scores.max()), "valid": float(np.mean(valid)),
                 "unique": len(keep) / n, "loss": float(loss.item()),
                 "agent_logp": float(agent_lp[: len(keep)].mean().item()),
                 "prior_logp": float(prior_lp[: len(keep)].mean().item())}
        self.history.append(entry)
        return entry

    def train(self, until_calls: int | None = None) -> list[dict]:
        """Run steps until the oracle budget is spent (or ``until_calls`` calls, to stop early as if
        killed). Checkpoints as configured. Returns the history."""
        from tqdm.auto import tqdm

        end = self.config.budget if until_calls is None else min(int(until_calls), self.config.budget)
        bar = tqdm(total=end, initial=self.oracle.calls, desc=self.config.label, disable=not self.progress,
                   leave=False)
        while self.oracle.calls < end:
            before = self.oracle.calls
            entry = self.train_step()
            bar.update(self.oracle.calls - before)
            bar.set_postfix(score=f"{entry['score']:.2f}", valid=f"{entry['valid']:.2f}")
            if self.checkpoint_dir is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.save_checkpoint(self.checkpoint_dir)
        bar.close()
        if self.checkpoint_dir is not None:
            self.save_checkpoint(self.checkpoint_dir)
        return self.history

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, directory) -> Path:
        """Write the whole run state to ``directory/state.pt`` (loadable with ``weights_only=True``)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {
            "config": json.dumps(asdict(self.config)),
            "agent": {k: v.detach().cpu() for k, v in self.agent.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state().cpu(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "oracle": json.dumps(self.oracle.state_dict()),
            "buckets": json.dumps(self.filter.buckets if self.filter is not None else {}),
            "memory": json.dumps(self.memory.items),
            "history": json.dumps(self.history),
            "step": self.step,
        }
        tmp = d / "state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(d / "state.pt")  # appears complete or not at all
        return d

    def load_checkpoint(self, directory) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (configs must match)."""
        d = Path(directory)
        state = torch.load(d / "state.pt", weights_only=True, map_location="cpu")
        if json.loads(state["config"]) != json.loads(json.dumps(asdict(self.config))):
            raise ValueError(f"checkpoint in {d} was written with a different config: {state['config']}")
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.oracle.load_state_dict(json.loads(state["oracle"]))
        if self.filter is not None:
            self.filter.buckets = json.loads(state["buckets"])
        self.memory.items = [tuple(t) for t in json.loads(state["memory"])]
        self.history = json.loads(state["history"])
        self.step = int(state["step"])


# ------------------------------------------------------------------------------------- experiments
METHODS = ("REINVENT", "MARA 0.80", "MARA 0.85", "REINVENT+DF")


def method_config(method: str, **overrides) -> ReinventConfig:
    """The config of one of chapter 8's methods (:data:`METHODS`), with shared ``overrides``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    extra = {"REINVENT": {}, "MARA 0.80": {"mara_tau": 0.80}, "MARA 0.85": {"mara_tau": 0.85},
             "REINVENT+DF": {"diversity_filter": True}}[method]
    return ReinventConfig(**{**overrides, **extra, "label": method})


def summarize_run(records, thresholds=(0.80, 0.85), k: int = 100, modes=None) -> dict:
    """Chapter 8's metrics of one run from its oracle records: validity and uniqueness of everything
    sampled; per screening threshold the Yield, OB``k``, and IntDiv1 and #Circles of the hits; with
    ``modes`` (a function ``list[str] -> list[label]``) the hits per mode and the modes covered."""
    calls = len(records)
    canon = [r[2] for r in records]
    valid = [c for c in canon if c is not None]
    out = {"calls": calls, "validity": len(valid) / calls if calls else 0.0,
           "uniqueness": len(set(valid)) / len(valid) if valid else 0.0}
    for t in thresholds:
        hits = hits_above(records, t)
        key = f"{t:.2f}"
        out[f"yield@{key}"] = len(hits)
        ob = oracle_burden(records, t, k)
        out[f"OB{k}@{key}"] = ob
        out[f"intdiv1@{key}"] = intdiv(hits) if len(hits) > 1 else 0.0
        out[f"circles@{key}"] = n_circles(hits)
        if modes is not None:
            out[f"modes@{key}"] = modes_covered(modes(hits))["hits"]
    return out


def run_reinvent(task: str, method: str, seed: int, *, budget: int, batch_size: int = 64, sigma: float = 128.0,
                 lr: float = 1e-4, prior: SmilesGRU | None = None, device=None, progress: bool = False,
                 thresholds=(0.80, 0.85)) -> dict:
    """One chapter-8 run: a fresh oracle for ``task`` ("product" or "multi_mode"), the method's
    config, train to the budget, summarise. Returns ``{"summary", "history", "curve", "top"}``: ``curve`` is
    the :func:`~marabook.chem.metrics.discovery_curve` after every step, ``top`` the 12 best distinct
    molecules (score, SMILES)."""
    from marabook.chem.oracles import assign_modes, multi_mode_task, product_task
    from marabook.chem.prior import load_prior

    tasks = {"product": product_task, "multi_mode": multi_mode_task}
    if task not in tasks:
        raise ValueError(f"task must be one of {sorted(tasks)}, got {task!r}")
    oracle = tasks[task](budget=budget)
    cfg = method_config(method, seed=seed, budget=budget, batch_size=batch_size, sigma=sigma, lr=lr)
    trainer = ReinventTrainer(prior if prior is not None else load_prior(device=device), oracle, cfg,
                              device=device, progress=progress)
    trainer.train()
    summary = summarize_run(oracle.records, thresholds, modes=assign_modes if task == "multi_mode" else None)
    best = {}
    for _, _, canon, score in oracle.records:
        if canon is not None:
            best[canon] = max(score, best.get(canon, 0.0))
    top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    curve = discovery_curve(oracle.records, thresholds, at=[h["calls"] for h in trainer.history])
    return {"task": task, "method": method, "seed": seed, "summary": summary, "history": trainer.history,
            "curve": curve, "top": [(float(v), s) for s, v in top]}


def _grid_worker(args):
    task, method, seed, kw = args
    torch.set_num_threads(1)
    return run_reinvent(task, method, seed, **kw)


def run_reinvent_grid(tasks=("product", "multi_mode"), methods=METHODS, seeds=range(5), *, budget: int,
                      workers: int = 1, device=None, progress: bool = True, **kw) -> list[dict]:
    """Every (task, method, seed) run of chapter 8; ``workers > 1`` runs them in spawned processes (one
    torch thread each; results do not depend on the number of workers). Returns the runs in grid order."""
    from tqdm.auto import tqdm

    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods must be drawn from {METHODS}, got {m!r}")
    jobs = [(t, m, int(s), {"budget": budget, "device": device, **kw}) for t in tasks for m in methods
            for s in seeds]
    if workers == 1:
        return [_grid_worker(j) for j in tqdm(jobs, desc="REINVENT runs", disable=not progress)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(_grid_worker, jobs), total=len(jobs), desc="REINVENT runs",
                         disable=not progress))


def compare_methods(runs, task: str, metrics=None, baseline: str = "REINVENT", budget: int | None = None) -> list:
    """Table-2-style rows for one task: per method and metric the mean, the standard deviation over
    seeds, and a one-sided Welch t-test p-value against ``baseline`` (alternative: the method is better,
    i.e. larger, or smaller for OB metrics). A run that never reached 100 hits counts ``budget`` calls
    for OB100 (a censored value; the row says how many runs reached it)."""
    from scipy import stats

    rows = [r for r in runs if r["task"] == task]
    if not rows:
        raise ValueError(f"task {task!r} has no runs")
    metrics = metrics or [k for k in rows[0]["summary"] if k.split("@")[0] in
                          ("yield", "OB100", "intdiv1", "circles")]
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def values(method, key):  # None (OB never reached) counts as the budget when one is given
        return np.array([float(budget if budget is not None else np.nan) if r["summary"][key] is None
                         else float(r["summary"][key]) for r in rows if r["method"] == method])

    out = []
    for m in methods:
        row = {"method": m, "n": sum(r["method"] == m for r in rows)}
        for k in metrics:
            vals, base = values(m, k), values(baseline, k)
            row[k] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            if k.startswith("OB"):
                row[k + " reached"] = sum(r["summary"][k] is not None for r in rows if r["method"] == m)
            if m != baseline and len(vals) > 1 and len(base) > 1 and np.isfinite(vals).all() and np.isfinite(base).all():
                alt = "less" if k.startswith("OB") else "greater"
                if np.ptp(np.concatenate([vals, base])) <= 1e-9 * max(1.0, float(np.abs(base).max())):
                    p = 1.0  # identical samples: no evidence either way
                else:
                    with warnings.catch_warnings():  # near-identical samples: scipy warns, p is still defined
                        warnings.simplefilter("ignore", RuntimeWarning)
                        p = float(stats.ttest_ind(vals, base, equal_var=False, alternative=alt).pvalue)
                if np.isfinite(p):
                    row[k + " p"] = p
        out.append(row)
    return out


def format_comparison(rows, metrics, baseline: str = "REINVENT") -> str:
    """A plain-text table of :func:`compare_methods` rows: ``mean +- std`` per metric and, for the other
    methods, the one-sided p-value against ``baseline`` in brackets."""
    if not rows:
        raise ValueError("rows must not be empty")
    width = 25
    lines = [f"{'method':<12}" + "".join(f"{m:>{width}}" for m in metrics)]
    for r in rows:
        cells = []
        for m in metrics:
            mean, sd = r[m]
            fmt = (".3f" if m.startswith(("intdiv", "uniqueness", "validity")) else ".1f" if m.startswith("circles")
                   else ".0f")
            cell = f"{mean:{fmt}} +- {sd:{fmt}}"
            if r["method"] != baseline and f"{m} p" in r:
                cell += f" ({r[m + ' p']:.3f})"
            cells.append(f"{cell:>{width}}")
        lines.append(f"{r['method']:<12}" + "".join(cells))
    return "\n".join(lines)


def mode_table(runs, threshold: str = "0.80", modes=None) -> dict:
    """Per method: mean hits per mode of the multi-mode task over seeds, and the mean number of modes
    with at least one hit. ``{method: {"hits": {mode: mean}, "covered": mean}}``."""
    from marabook.chem.oracles import REFERENCE_DRUGS

    names = list(modes or REFERENCE_DRUGS)
    out = {}
    rows = [r for r in runs if r["task"] == "multi_mode"]
    if not rows:
        raise ValueError("runs must contain multi_mode runs")
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r["summary"][f"modes@{threshold}"] for r in rows if r["method"] == m]
        out[m] = {"hits": {n: float(np.mean([d.get(n, 0) for d in mine])) for n in names},
                  "covered": float(np.mean([sum(d.get(n, 0) > 0 for n in names) for d in mine]))}
    return out
