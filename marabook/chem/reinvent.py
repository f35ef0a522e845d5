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
The loop itself, checkpoints and device choice are shared with the language-model trainer
(:class:`marabook.plumbing.TrainLoop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from marabook._validate import check_beta, check_finite, check_int, check_number
from marabook.chem.dedup import check_tabular as _check_tabular
from marabook.chem.dedup import dedup_fixed_point, dedup_stationarity  # noqa: F401 - re-exported (chapter 7)
from marabook.chem.oracles import Oracle, murcko_scaffold
from marabook.chem.prior import SmilesGRU, collate_ids
from marabook.mara import Threshold, mara_rewards
from marabook.plumbing import TrainLoop, default_device, pad_right
from marabook.targets import reverse_kl_target

__all__ = ["dap_loss", "dap_fixed_point", "dedup_fixed_point", "dedup_stationarity", "fit_dap_tabular", "ReinventConfig", "ScoreTransform", "MaraTransform",
           "DiversityFilter", "ReplayMemory", "Replayed", "ReinventTrainer", "REINVENT_LR", "REINVENT_SIGMA"]

#: The book's REINVENT learning rate (Adam on the agent), the one home of that default. Chapter 8's live runs
#: and its stored studies (``reinvent_study.json``, ``reinvent_tau.json``) ran at 5e-4, not REINVENT's usual
#: 1e-4 (the book's small prior moves slowly otherwise); :class:`ReinventConfig`, the experiment runners and
#: their command lines all default to this value.
REINVENT_LR = 5e-4
#: The book's REINVENT score multiplier sigma (``beta = 1 / sigma``, eq. 7.2), REINVENT's own default 128 and
#: the middle sigma of chapter 8's stored study; the one home of that default.
REINVENT_SIGMA = 128.0


def dap_loss(agent_logp, prior_logp, scores, sigma: float, *, validate: bool = True):
    """Per-sample DAP loss ``(log pi_prior + sigma * S - log pi_agent)^2`` (eq. 7.1), NumPy or torch.

    ``validate=False`` (torch only) skips the checks of ``sigma`` and of the tensors' values (each value check is
    a host synchronisation): for :class:`ReinventTrainer`, whose config checked ``sigma`` once at construction
    and whose own forward passes and oracle guarantee finite values."""
    if isinstance(agent_logp, torch.Tensor) and not validate:
        return (prior_logp + sigma * scores - agent_logp) ** 2
    check_number(sigma, "sigma", positive=True)
    if isinstance(agent_logp, torch.Tensor):
        for x, n in ((agent_logp, "agent_logp"), (prior_logp, "prior_logp"), (scores, "scores")):
            if isinstance(x, torch.Tensor) and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{n} must be finite (a NaN would train the agent on nothing)")
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
                    record_every: int = 0, batch_size: int | None = None):
    """Train a tabular agent (one logit per molecule, started at the prior) on the *exact* expected
    REINVENT gradient: molecules drawn from the agent itself (the sampling weights are not
    differentiated), squared error of ``log pi_agent`` against ``log pi_prior + sigma * S`` (eq. 7.1).
    Adam on the logits. Returns the final agent probabilities, or ``(final, trajectory)`` with
    ``record_every > 0``. Chapter 7 uses it to show that the fixed point is eq. (7.2). With ``batch_size=B``
    each molecule is weighted by the probability ``1 - (1 - pi)^B`` that a batch of B contains it, the
    exact expected gradient of the loss summed over a batch's *distinct* molecules (REINVENT's
    de-duplication), whose fixed point is :func:`dedup_fixed_point` (eq. 7.4)."""
    s = float(check_beta(sigma, "sigma"))
    p, sc = _check_tabular(prior_probs, scores)
    check_int(steps, "steps", minimum=1)
    if batch_size is not None:
        check_int(batch_size, "batch_size")
    logits = torch.log(torch.as_tensor(p, dtype=torch.float64)).clone().requires_grad_(True)
    target = torch.log(torch.as_tensor(p, dtype=torch.float64)) + s * torch.as_tensor(sc, dtype=torch.float64)
    opt = torch.optim.Adam([logits], lr=lr)
    traj = []
    for t in range(steps):
        logp = torch.log_softmax(logits, 0)
        pi = logp.exp().detach()
        weight = pi if batch_size is None else -torch.expm1(batch_size * torch.log1p(-pi))
        loss = (weight * (target - logp) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if record_every and t % record_every == 0:
            traj.append(torch.softmax(logits, 0).detach().numpy().copy())
    final = torch.softmax(logits, 0).detach().numpy()
    return (final, np.array(traj)) if record_every else final


@dataclass
class ReinventConfig:
    """Settings of one REINVENT run, checked once here.

    sigma: score multiplier (``beta = 1/sigma``); batch_size: molecules sampled per step; budget: oracle
    calls per run (every sampled string is one call); lr: Adam learning rate (the defaults of lr and sigma are
    ``REINVENT_LR`` and ``REINVENT_SIGMA``, their one home); mara_tau: None (vanilla), a score threshold, or
    ``"pNN"`` (a percentile of the batch's scores); diversity_filter: REINVENT's
    identical-Murcko-scaffold filter (a scaffold's molecules score 0 once ``df_bucket_size`` molecules with
    score >= ``df_min_score`` have it); replay_size / replay_batch: experience replay of the best molecules
    seen (0 = off); seed; max_length: token limit per SMILES; label: a name for logs and tables.
    """

    sigma: float = REINVENT_SIGMA
    batch_size: int = 64
    budget: int = 10_000
    lr: float = REINVENT_LR
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
        check_number(self.sigma, "sigma", positive=True)
        for name in ("batch_size", "budget", "max_length", "df_bucket_size"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("replay_size", "replay_batch", "seed"):
            check_int(getattr(self, name), name, minimum=0)
        if self.replay_batch > self.replay_size:
            raise ValueError("replay_batch must be <= replay_size")
        check_number(self.lr, "lr", positive=True)
        if self.threshold is not None and self.threshold.kind == "value" and not 0.0 < self.threshold.value <= 1.0:
            raise ValueError(f"mara_tau must be in (0, 1] (scores lie in [0, 1]; tau > 1 admits no molecule and "
                             f"tau <= 0 would count invalid molecules, which score 0, as good), got {self.mara_tau!r}")
        if not 0.0 <= self.df_min_score <= 1.0:
            raise ValueError(f"df_min_score must be in [0, 1], got {self.df_min_score}")

    @property
    def beta(self) -> float:
        """The KL coefficient REINVENT implicitly uses, ``1 / sigma``."""
        return 1.0 / self.sigma

    @property
    def steps(self) -> int:
        return -(-self.budget // self.batch_size)

    @cached_property
    def threshold(self) -> Threshold | None:
        """MARA's threshold, parsed (a percentile is taken over the batch); None when MARA is off."""
        return None if self.mara_tau is None else Threshold.parse(self.mara_tau, "batch")


# ------------------------------------------------------------------------------ score transforms
class ScoreTransform:
    """What the trainer may do to the oracle's scores before the loss sees them.

    ``transform(smiles, scores, prior_logp) -> training scores`` (NumPy arrays). The oracle's own
    scores (and so every metric) are never changed; only what the agent is trained towards. Two
    transforms ship: :class:`DiversityFilter` (applied to the whole sampled batch, since it counts every
    molecule that fills a bucket) and :class:`MaraTransform` (applied to the distinct and replayed
    molecules the loss sees, since its anchor is one of them).
    """

    def __call__(self, smiles, scores, prior_logp=None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def state(self) -> dict:
        """JSON-able state for checkpoints (stateless transforms return {})."""
        return {}

    def load_state(self, state: dict) -> None:
        pass


class MaraTransform(ScoreTransform):
    """MARA as a score transform (eq. 8.1): molecules at or above ``threshold`` are scored so that the
    DAP fixed point is flat over them, anchored on the batch's best-supported good molecule; ``beta``
    is ``1 / sigma``. Needs the prior log-likelihoods."""

    def __init__(self, beta: float, threshold: Threshold):
        self.beta = check_number(beta, "beta", positive=True)
        self.threshold = Threshold.parse(threshold)

    def __call__(self, smiles, scores, prior_logp=None) -> np.ndarray:
        if prior_logp is None:
            raise ValueError("prior_logp is required by MARA")
        scores = np.asarray(scores, dtype=float)
        threshold = self.threshold.for_batch(scores)
        if threshold.value <= 0.0:  # a percentile at 0: an invalid molecule (score 0) must never count as good
            threshold = Threshold("value", float(np.nextafter(0.0, 1.0)))
        self.last_anchor_score = None
        good = scores >= threshold.value
        # what this batch used, resolved once: the trainer logs these, so the log always matches the update
        self.last_threshold, self.last_n_good = float(threshold.value), int(good.sum())
        if good.any():  # the anchor: the good molecule the prior likes most (for the chapter's diagnostics)
            lp = np.asarray(prior_logp, dtype=float)
            self.last_anchor_score = float(scores[np.flatnonzero(good)[np.argmax(lp[good])]])
        return mara_rewards(scores, np.asarray(prior_logp, dtype=float), self.beta, threshold)


class DiversityFilter(ScoreTransform):
    """REINVENT's identical-Murcko-scaffold diversity filter (the standard heuristic baseline).

    Molecules with score >= ``min_score`` fill their scaffold's bucket; once a bucket holds
    ``bucket_size`` molecules, every later molecule with that scaffold scores 0 for training.
    """

    def __init__(self, bucket_size: int = 25, min_score: float = 0.4):
        self.bucket_size = check_int(bucket_size, "bucket_size", minimum=1)
        self.min_score = check_number(min_score, "min_score")
        self.buckets: dict[str, int] = {}

    def __call__(self, smiles, scores, prior_logp=None) -> np.ndarray:
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

    def state(self) -> dict:
        return {"buckets": self.buckets}

    def load_state(self, state: dict) -> None:
        self.buckets = dict(state["buckets"])


class Replayed(NamedTuple):
    """One molecule in replay memory."""

    score: float
    smiles: str
    prior_logp: float


class ReplayMemory:
    """The ``size`` best distinct molecules seen so far (by training score), with their prior log-likelihoods."""

    def __init__(self, size: int):
        self.size = size
        self.items: list[Replayed] = []

    def add(self, smiles, scores, prior_logp) -> None:
        if self.size == 0:
            return
        known = {m.smiles for m in self.items}
        for s, sc, lp in zip(smiles, scores, prior_logp):
            if s not in known and sc > 0:
                self.items.append(Replayed(float(sc), s, float(lp)))
                known.add(s)
        self.items.sort(key=lambda t: (-t.score, t.smiles))
        del self.items[self.size:]

    def sample(self, n: int, rng: np.random.Generator) -> list[Replayed]:
        if n == 0 or not self.items:
            return []
        idx = rng.choice(len(self.items), size=min(n, len(self.items)), replace=False)
        return [self.items[i] for i in np.sort(idx)]


class ReinventTrainer(TrainLoop):
    """The REINVENT loop (chapter 8), readable top to bottom in :meth:`train_step`.

    ``ReinventTrainer(prior, oracle, config, device=None, checkpoint_dir=None, checkpoint_every=0)``.
    The prior stays frozen (a copy of the caller's, which is left as it was); the agent is another copy.
    :meth:`train` (``until_calls``), checkpoints and resume come from :class:`marabook.plumbing.TrainLoop`:
    with ``checkpoint_dir`` the whole state (agent weights, optimiser, random generators, oracle records,
    filter buckets, replay memory, history) is saved, and a new trainer pointed at the directory resumes;
    the resumed run equals an uninterrupted one. All randomness comes from the config's seed, through the
    trainer's own generators (the global torch seed is never touched).
    """

    trained_module = "agent"
    unit = "call"

    def __init__(self, prior: SmilesGRU, oracle: Oracle, config: ReinventConfig, *, device=None,
                 checkpoint_dir=None, checkpoint_every: int = 0, progress: bool = True):
        if not isinstance(prior, SmilesGRU):
            raise ValueError("prior must be a SmilesGRU")
        if not isinstance(oracle, Oracle):
            raise ValueError("oracle must be an Oracle")
        if not isinstance(config, ReinventConfig):
            raise ValueError("config must be a ReinventConfig")
        self._init_loop(checkpoint_dir, checkpoint_every, progress)
        self.config, self.oracle = config, oracle
        self.device = default_device(device)
        self.prior = prior.clone().to(self.device).eval()
        for p in self.prior.parameters():
            p.requires_grad_(False)
        self.agent = prior.clone().to(self.device).eval()
        for p in self.agent.parameters():
            p.requires_grad_(True)
        self.tokenizer = prior.tokenizer
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=config.lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.filter = DiversityFilter(config.df_bucket_size, config.df_min_score) if config.diversity_filter else None
        self.mara = MaraTransform(config.beta, config.threshold) if config.threshold is not None else None
        self.memory = ReplayMemory(config.replay_size)
        self.last_batch: dict = {}
        self._resume_if_checkpointed()

    @property
    def position(self) -> int:
        return self.oracle.calls

    @property
    def end(self) -> int:
        """The calls this run may make (the config's budget, or the oracle's if that is smaller)."""
        return int(min(self.config.budget, self.oracle.budget or self.config.budget))

    @property
    def done(self) -> bool:
        return self.oracle.calls >= self.end

    def train(self, until_calls: int | None = None) -> list[dict]:
        """Run steps until the oracle budget is spent (or ``until_calls`` calls, to stop early as if
        killed). Checkpoints as configured. Returns the history."""
        return super().train(until_calls)

    def _postfix(self, entry):
        return {"score": f"{entry['score']:.2f}", "valid": f"{entry['valid']:.2f}"}

    def train_step(self) -> dict:
        """One REINVENT step; returns (and records) its log entry."""
        c = self.config
        n = min(c.batch_size, self.end - self.oracle.calls)
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
            r_ids = collate_ids([self.tokenizer.encode(m.smiles) for m in replay], self.tokenizer.pad_id)
            width = max(ids.shape[1], r_ids.shape[1])
            ids = torch.cat([pad_right(ids, width, self.tokenizer.pad_id),
                             pad_right(r_ids.to(self.device), width, self.tokenizer.pad_id)])
            prior_lp = torch.cat([prior_lp, torch.tensor([m.prior_logp for m in replay], device=self.device)])
            s_k = np.concatenate([s_k, [m.score for m in replay]])
        all_smiles = smiles_k + [m.smiles for m in replay]
        # 5. MARA: flat target over the molecules at or above tau (eq. 8.1), beta = 1 / sigma
        s_used = self.mara(all_smiles, s_k, prior_lp.double().cpu().numpy()) if self.mara is not None else s_k
        # 6. DAP loss (eq. 7.1) and one Adam step
        self.agent.train()  # cuDNN's GRU backward needs training mode (the shipped prior has no dropout)
        agent_lp = self.agent.log_likelihood(ids)
        self.agent.eval()
        s_t = torch.as_tensor(s_used, dtype=prior_lp.dtype, device=self.device)
        loss = dap_loss(agent_lp, prior_lp, s_t, c.sigma, validate=False).mean()
        # what the loss saw, for inspection and tests (fresh distinct molecules first, then replayed ones)
        self.last_batch = {"smiles": all_smiles, "scores": np.asarray(s_k, dtype=float),
                           "train_scores": np.asarray(s_used, dtype=float),
                           "prior_logp": prior_lp.detach().cpu().numpy(),
                           "target": (prior_lp + c.sigma * s_t).detach().cpu().numpy()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.memory.add(smiles_k, train_scores[keep], prior_lp[: len(keep)].cpu().numpy())
        self.step += 1
        valid = [r.canonical is not None for r in self.oracle.records[-n:]]
        entry = {"step": self.step, "calls": self.oracle.calls, "score": float(scores.mean()),
                 "max_score": float(scores.max()), "valid": float(np.mean(valid)),
                 "unique": len(keep) / n, "loss": float(loss.item()),
                 "agent_logp": float(agent_lp[: len(keep)].mean().item()),
                 "prior_logp": float(prior_lp[: len(keep)].mean().item())}
        if self.mara is not None:  # what MARA flattened toward: the anchor's score, the threshold, how many were good
            entry["anchor_score"] = self.mara.last_anchor_score
            entry["tau"], entry["n_good"] = self.mara.last_threshold, self.mara.last_n_good
        self.history.append(entry)
        return entry

    def _identity(self) -> dict:
        """The oracle a checkpoint of this run belongs to (its name and a fingerprint of its settings): a resume
        with another oracle is refused, so its records never mix with another task's
        (``TrainLoop._identity``; the prior is covered by the start-weights fingerprint)."""
        return {"oracle": self.oracle.identity()}

    # ---- the parts of the state the shared checkpoint does not know about ----------------------
    def _extra_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "oracle": self.oracle.state_dict(),
                "filter": self.filter.state() if self.filter is not None else {},
                "memory": [list(m) for m in self.memory.items]}

    def _load_extra_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.oracle.load_state_dict(state["oracle"])
        if self.filter is not None:
            self.filter.load_state(state["filter"])
        self.memory.items = [Replayed(*m) for m in state["memory"]]
