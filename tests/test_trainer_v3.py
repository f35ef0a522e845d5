"""Trainer v3 (chapter 5): the named loss, the rollout/loss split, and the shared-prompt computation.

* :func:`marabook.estimators.policy_loss` against hand-computed terms, and its micro-batch normalisation;
* :func:`marabook.rl.shared_prompt_logprobs` (each prompt once, its key/value cache shared, the head only at
  scored positions) against the full computation: values and *gradients* on tiny random Llama and Qwen2
  models with left padding and unequal prompt lengths;
* ``Trainer.rollout`` / ``Trainer.loss``: the loss of a given batch checked against our own computation, and
  ``backward=True`` (micro-batched) giving the gradient of ``loss(batch).backward()``;
* the trainer's refusals before any optimiser step, and a resume under another task refused.
"""

import copy
import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from marabook import estimators, lm, rl  # noqa: E402
from marabook.checkpoints import CheckpointError  # noqa: E402
from marabook.mara import mara_rewards  # noqa: E402


# ------------------------------------------------------------------------------ policy_loss
def test_policy_loss_terms_hand_computed():
    tok = torch.tensor([[-0.5, -1.0, 0.0], [-2.0, 0.0, 0.0]], requires_grad=True)  # row 2: one token
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([1.0, -2.0])
    ref = torch.tensor([[-0.7, -0.9, 0.0], [-1.0, 0.0, 0.0]])
    t = estimators.policy_loss(tok, mask, adv, beta=0.1, kl_placement="k3_loss", ref_token_logprobs=ref)
    # pg: -(1 * (-1.5) + (-2) * (-2.0)) / 2 = -(−1.5 + 4) / 2 = -1.25
    assert float(t["pg_loss"]) == pytest.approx(-1.25)
    k3 = lambda x: math.exp(x) - 1 - x  # noqa: E731 - x = log pi_ref - log pi per token
    kl = (k3(-0.7 + 0.5) + k3(-0.9 + 1.0) + k3(-1.0 + 2.0)) / 2
    assert float(t["kl_loss"]) == pytest.approx(kl, rel=1e-6)
    assert float(t["sft_loss"]) == 0.0
    assert float(t["entropy"]) == pytest.approx((1.5 + 2.0) / 2)
    assert float(t["loss"]) == pytest.approx(-1.25 + 0.1 * kl, rel=1e-6)
    t["loss"].backward()  # d pg / d tok[0, j] = -A_0 / 2; d kl / d tok = (1 - e^x) / 2 per scored token
    expect = [[-0.5 + 0.1 * (1 - math.exp(-0.2)) / 2, -0.5 + 0.1 * (1 - math.exp(0.1)) / 2, 0.0],
              [1.0 + 0.1 * (1 - math.exp(1.0)) / 2, 0.0, 0.0]]
    np.testing.assert_allclose(tok.grad.numpy(), expect, rtol=1e-6, atol=1e-7)


def test_policy_loss_sft_and_k1_placements():
    tok = torch.tensor([[-0.5], [-1.5]])
    adv = torch.tensor([0.5, -0.5])
    sft = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]])
    t = estimators.policy_loss(tok, torch.ones(2, 1), adv, beta=0.2, kl_placement="sft", sft_token_logprobs=sft)
    assert float(t["sft_loss"]) == pytest.approx(6.0 / 2)               # eq. 5.5: -sum log pi(y') / N
    assert float(t["loss"]) == pytest.approx(-(0.5 * -0.5 - 0.5 * -1.5) / 2 + 0.2 * 3.0)
    k1 = estimators.policy_loss(tok, torch.ones(2, 1), adv, beta=0.2, kl_placement="k1_reward")
    assert float(k1["loss"]) == float(k1["pg_loss"])                     # k1 lives in the reward, not here
    assert float(k1["kl_loss"]) == float(k1["sft_loss"]) == 0.0


def test_policy_loss_micro_batches_sum_to_the_batch():
    g = torch.Generator().manual_seed(0)
    tok, ref = -torch.rand(5, 4, generator=g), -torch.rand(5, 4, generator=g)
    mask, adv = (torch.rand(5, 4, generator=g) > 0.2).long(), torch.randn(5, generator=g)
    kw = dict(beta=0.3, kl_placement="k3_loss")
    whole = estimators.policy_loss(tok * mask, mask, adv, ref_token_logprobs=ref * mask, **kw)
    parts = [estimators.policy_loss((tok * mask)[s], mask[s], adv[s], ref_token_logprobs=(ref * mask)[s],
                                    normalizer=5, **kw) for s in (slice(0, 2), slice(2, 5))]
    for key in whole:
        assert float(sum(p[key] for p in parts)) == pytest.approx(float(whole[key]), rel=1e-6, abs=1e-7), key


def test_policy_loss_rejects_bad_input():
    tok, mask, adv = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2)
    cases = [
        (lambda: estimators.policy_loss(tok[0], mask, adv), "token_logprobs"),
        (lambda: estimators.policy_loss(tok, mask[:, :2], adv), "completion_mask"),
        (lambda: estimators.policy_loss(tok, mask, torch.zeros(3)), "advantages"),
        (lambda: estimators.policy_loss(tok, mask, adv, kl_placement="k2_loss"), "kl_placement"),
        (lambda: estimators.policy_loss(tok, mask, adv, beta=-1.0), "beta"),
        (lambda: estimators.policy_loss(tok, mask, adv, beta=True), "beta"),
        (lambda: estimators.policy_loss(tok, mask, adv, kl_placement="k3_loss"), "ref_token_logprobs"),
        (lambda: estimators.policy_loss(tok, mask, adv, kl_placement="sft"), "sft_token_logprobs"),
        (lambda: estimators.policy_loss(tok, mask, adv, normalizer=0), "normalizer"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


# ------------------------------------------------------------------------- shared prompts
def _tiny(arch: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cls, cfg = {"llama": (LlamaForCausalLM, LlamaConfig), "qwen2": (Qwen2ForCausalLM, Qwen2Config)}[arch]
    torch.manual_seed(0)
    return cls(cfg(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128)).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    lens, width, k, t = [7, 3, 5], 7, 4, 5
    pids, pmask = torch.zeros(3, width, dtype=torch.long), torch.zeros(3, width, dtype=torch.long)
    for i, n in enumerate(lens):  # left padding, unequal prompt lengths
        pids[i, width - n:] = torch.randint(1, 97, (n,), generator=g)
        pmask[i, width - n:] = 1
    index = torch.arange(3).repeat_interleave(k)
    comp, cmask = torch.randint(1, 97, (3 * k, t), generator=g), torch.ones(3 * k, t, dtype=torch.long)
    cmask[2, 3:] = 0
    cmask[5, 1:] = 0  # an immediate end of sequence
    comp[cmask == 0] = 0
    comp[1], cmask[1] = comp[0], cmask[0]  # a repeated completion (deduplicated)
    return pids, pmask, index, comp, cmask


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_shared_prompt_logprobs_equal_the_full_computation_values_and_gradients(arch):
    """Same numbers and same gradients as scoring every full sequence: float32 rounding only. Each prompt's
    cache is read by 4 completions; the sums run in another order, so entries agree to ~1e-7 of the largest
    (measured 2e-7); the bound 1e-5 leaves a 50x margin."""
    model = _tiny(arch)
    pids, pmask, index, comp, cmask = _batch()
    w = torch.randn(comp.shape, generator=torch.Generator().manual_seed(2))

    def run(fn):
        model.zero_grad()
        lp = fn()
        (lp * w).sum().backward()
        return lp.detach(), torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    full, g_full = run(lambda: rl.token_logprobs(model, pids[index], pmask[index], comp, cmask, dedupe=False))
    shared, g_shared = run(lambda: rl.shared_prompt_logprobs(model, pids, pmask, index, comp, cmask))
    assert float((shared - full).abs().max()) <= 1e-5 * float(full.abs().max())
    assert bool((shared[cmask == 0] == 0).all())
    assert float((g_shared - g_full).abs().max()) <= 1e-5 * float(g_full.abs().max())
    assert float(g_full.abs().max()) > 1e-3


def test_shared_prompt_logprobs_rejects_bad_input():
    model = _tiny("llama")
    pids, pmask, index, comp, cmask = _batch()
    with pytest.raises(ValueError, match="prompt_index"):
        rl.shared_prompt_logprobs(model, pids, pmask, index.float(), comp, cmask)
    with pytest.raises(ValueError, match="prompt_index"):
        rl.shared_prompt_logprobs(model, pids, pmask, index + 1, comp, cmask)
    with pytest.raises(ValueError, match="completion_ids"):
        rl.shared_prompt_logprobs(model, pids, pmask, index[:-1], comp, cmask)
    with pytest.raises(ValueError, match="completion_mask_"):
        rl.shared_prompt_logprobs(model, pids, pmask, index, comp, cmask[:, :-1])


# ------------------------------------------------------------------- rollout and loss, by hand
@pytest.fixture(scope="module")
def reference():
    return lm.load_reference_lm()


@pytest.mark.parametrize("kl,est,tau", [("reverse", None, 1.0), ("reverse", "k3_loss", None), ("forward", None, 1.0)])
def test_loss_of_a_rollout_equals_our_own_computation(reference, kl, est, tau):
    model, tok = reference
    task = lm.OneTwoTask.for_reference_lm()
    cfg = rl.RLConfig(beta=0.05, kl=kl, kl_estimator=est, mara_tau=tau, group_size=4, prompts_per_step=3, steps=1,
                      max_new_tokens=4, seed=4)
    policy = copy.deepcopy(model)
    with torch.no_grad():  # away from the reference, so that the KL terms are not zero
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    trainer = rl.Trainer(policy, tok, task, cfg, ref_model=model, device="cpu", progress=False)
    batch = trainer.rollout()
    assert batch.size == 12 and batch.prompt_ids.shape[0] == 3 and batch.rewards.shape == (12,)
    loss, stats = trainer.loss(batch)
    # our own computation, from full sequences and the package's named pieces
    ids, mask = batch.prompt_ids[batch.prompt_index], batch.prompt_mask[batch.prompt_index]
    tok_lp = rl.token_logprobs(policy, ids, mask, batch.completion_ids, batch.completion_mask)
    with torch.no_grad():
        ref_tok = rl.token_logprobs(model, ids, mask, batch.completion_ids, batch.completion_mask)
    logp, ref_logp = tok_lp.sum(-1), ref_tok.sum(-1)
    r = batch.rewards
    if tau is not None:
        r = mara_rewards(r, ref_logp, cfg.beta, tau, groups=batch.prompt_index)
    if kl == "reverse" and est is None:
        r = r - cfg.beta * (logp.detach() - ref_logp)
    adv = rl.rloo_advantages(r, cfg.group_size)
    own = -(adv * logp).mean()
    if est == "k3_loss":
        x = ref_tok - tok_lp
        own = own + cfg.beta * ((torch.exp(x) - 1 - x) * batch.completion_mask).sum() / 12
    if kl == "forward":
        sft = rl.sequence_logprobs(policy, ids, mask, batch.ref_sample_ids, batch.ref_sample_mask)
        own = own - cfg.beta * sft.mean()
    assert float(loss) == pytest.approx(float(own), rel=1e-5, abs=1e-6)
    assert stats["kl"] == pytest.approx(float((logp - ref_logp).mean()), rel=1e-4, abs=1e-6)
    torch.testing.assert_close(batch.ref_token_logprobs, ref_tok, rtol=0, atol=1e-5)
    # loss(batch).backward() and the trainer's micro-batched backward give one gradient
    loss.backward()
    g_whole = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    trainer.config = dataclasses.replace(cfg, micro_batch_size=5)
    trainer.loss(batch, backward=True)
    scale = max(float(g.abs().max()) for g in g_whole)
    for g, p in zip(g_whole, policy.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-5 * scale)


def test_trainer_refuses_bad_tasks_before_any_step(reference):
    model, tok = reference
    cfg = rl.RLConfig(steps=1, max_new_tokens=2)

    class NoMetrics:
        prompts = ["<u>Pick 1 or 2<a>"]

        def reward(self, prompts, completions):
            return [1.0] * len(completions)

    class BarePrompt(NoMetrics):
        prompts = "<u>Pick 1 or 2<a>"

        def metrics(self, prompts, completions):
            return {}

    class Words(BarePrompt):
        prompts = ["<u>Pick 1 or 2<a>"]

        def reward(self, prompts, completions):
            return ["good"] * len(completions)

    with pytest.raises(ValueError, match="metrics"):
        rl.Trainer(copy.deepcopy(model), tok, NoMetrics(), cfg, ref_model=model, device="cpu")
    with pytest.raises(ValueError, match="prompts"):
        rl.Trainer(copy.deepcopy(model), tok, BarePrompt(), cfg, ref_model=model, device="cpu")
    policy = copy.deepcopy(model)
    before = [p.detach().clone() for p in policy.parameters()]
    t = rl.Trainer(policy, tok, Words(), cfg, ref_model=model, device="cpu", progress=False)
    with pytest.raises(ValueError, match="task.reward"):
        t.train_step()
    assert t.step == 0 and not t.history
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))  # nothing was updated
    with pytest.raises(ValueError, match="batch"):
        t.loss({"completion_ids": None})


def test_resume_under_another_task_is_refused(reference, tmp_path):
    model, tok = reference
    cfg = rl.RLConfig(beta=0.05, steps=2, group_size=4, prompts_per_step=1, max_new_tokens=3, seed=0)
    t = rl.Trainer(copy.deepcopy(model), tok, lm.OneTwoTask.for_reference_lm(), cfg, ref_model=model, device="cpu",
                   checkpoint_dir=tmp_path, progress=False)
    t.train(until=1)
    other = lm.NameTask(("color",))
    with pytest.raises(CheckpointError, match="task"):
        rl.Trainer(copy.deepcopy(model), tok, other, cfg, ref_model=model, device="cpu", checkpoint_dir=tmp_path)


# ---------------------------------------------------------------------------------- REINVENT
def test_reinvent_logs_the_threshold_and_good_count_its_update_used():
    pytest.importorskip("rdkit")
    from marabook import chem

    prior = chem.load_prior()
    cfg = chem.ReinventConfig(sigma=128, mara_tau="p50", budget=128, batch_size=64, lr=5e-4, seed=0)
    t = chem.ReinventTrainer(prior, chem.multi_mode_task(budget=128), cfg, device="cpu", progress=False)
    for entry in t.train():
        assert entry["tau"] > 0  # a percentile at 0 is lifted above 0: invalid molecules are never good
        # the batch the loss saw, re-counted against the logged threshold
        assert entry["n_good"] == t.mara.last_n_good
    seen = t.last_batch["scores"]
    assert t.history[-1]["n_good"] == int((seen >= t.history[-1]["tau"]).sum())
