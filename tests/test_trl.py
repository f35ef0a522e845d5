"""marabook.integrations.trl: MARA as a TRL reward function, and the configuration it needs."""

import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from marabook import lm, rl  # noqa: E402
from marabook.integrations import trl as mtrl  # noqa: E402
from marabook.mara import mara_rewards  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    return lm.load_reference_lm()


def _grpo_args(**kw):
    from trl import GRPOConfig

    base = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=32, num_generations=8,
                max_completion_length=4, report_to="none", save_strategy="no", use_cpu=True, bf16=False)
    return GRPOConfig(**{**base, **kw})


def test_wrapper_rewards_equal_mara_rewards_on_hand_cases(reference):
    model, tok = reference
    task = lm.OneTwoTask.for_reference_lm()
    prompts = [task.prompts[0]] * 4 + [task.prompts[1]] * 4
    completions = [" 1", " 2", " 1", " 3", " 2", " 2", " one", " 1"]
    eos = tok.eos_token_id
    ids = [tok(c, add_special_tokens=False)["input_ids"] + [eos] for c in completions]  # as TRL passes them

    def base(prompts, completions, **kw):
        return task.reward(prompts, completions)

    wrapped = mtrl.mara_reward(base, model, tok, tau=1.0, beta=0.05, num_generations=4)
    got = np.asarray(wrapped(prompts=prompts, completions=completions, completion_ids=ids, trainer_state=None))
    ref_lp = rl.completion_logprobs(model, tok, prompts, completions).double().numpy()
    expected = mara_rewards(np.asarray(base(prompts, completions), float), ref_lp, 0.05, 1.0,
                            groups=np.repeat([0, 1], 4))
    np.testing.assert_array_equal(got, expected)  # the same numbers, through the same function
    # group 0: anchor " 1" (the likelier good answer) keeps 1, " 2" is paid 0.05 * (log p(1) - log p(2)) > 0
    assert got[0] == 1.0 and got[1] > 1.0 and got[3] == 0.0
    # one anchor for the whole batch
    whole = mtrl.mara_reward(base, model, tok, tau=1.0, beta=0.05, anchor="batch")
    got_b = np.asarray(whole(prompts=prompts, completions=completions, completion_ids=ids))
    np.testing.assert_array_equal(got_b, mara_rewards(np.asarray(base(prompts, completions), float), ref_lp, 0.05, 1.0))
    # the token ids are scored as sampled: a special token inside a completion changes its reference log-prob
    extra = [ids[0][:-1] + [eos, eos]] + ids[1:]
    lp = mtrl.reference_logprobs(model, tok, prompts, extra)
    assert lp[0] < ref_lp[0] - 0.1 and np.allclose(lp[1:], ref_lp[1:], atol=1e-5)


def test_percentile_threshold_per_group(reference):
    model, tok = reference
    task = lm.OneTwoTask.for_reference_lm()
    prompts = [task.prompts[0]] * 4
    completions = [" 1", " 2", " 1", " 2"]
    ids = [tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in completions]
    graded = lambda prompts, completions, **kw: [0.2, 0.9, 0.5, 1.0]  # noqa: E731
    got = mtrl.mara_reward(graded, model, tok, tau="p50", beta=0.1, num_generations=4)(
        prompts=prompts, completions=completions, completion_ids=ids)
    ref_lp = rl.completion_logprobs(model, tok, prompts, completions).double().numpy()
    np.testing.assert_array_equal(got, mara_rewards(np.array([0.2, 0.9, 0.5, 1.0]), ref_lp, 0.1, "p50",
                                                    groups=np.zeros(4, int)))


def test_check_trl_config_refuses_what_breaks_mara():
    with pytest.raises(ValueError, match="beta"):
        mtrl.check_trl_config(_grpo_args())  # TRL's GRPO default: beta = 0
    with pytest.raises(ValueError, match="scale_rewards"):
        mtrl.check_trl_config(_grpo_args(beta=0.02))  # default scale_rewards="group"
    with pytest.raises(ValueError, match="scale_rewards"):
        mtrl.check_trl_config(_grpo_args(beta=0.02, scale_rewards="batch"))
    ok = _grpo_args(beta=0.02, scale_rewards="none")
    assert mtrl.check_trl_config(ok) is ok
    from trl import RLOOConfig

    with pytest.raises(ValueError, match="normalize_advantages"):
        mtrl.check_trl_config(RLOOConfig(output_dir=tempfile.mkdtemp(), beta=0.05, normalize_advantages=True,
                                          report_to="none", use_cpu=True))
    with pytest.raises(ValueError, match="config"):
        mtrl.check_trl_config(object())
    with pytest.raises(ValueError, match="scale_rewards"):  # the wrapper checks the config it is given
        mtrl.mara_reward(lambda **kw: [], None, None, tau=1.0, config=_grpo_args(beta=0.02))


def test_supported_versions():
    assert mtrl.check_trl_version(trl.__version__) == trl.__version__
    for bad in ("0.19.1", "2.0.0"):
        with pytest.raises(ImportError, match="supports TRL"):
            mtrl.check_trl_version(bad)


def test_grpo_with_mara_moves_toward_one_half_more_than_vanilla(reference):
    """A short GRPOTrainer run (3 steps, lr 1e-3, beta 0.05, scale_rewards="none"), vanilla and MARA from the
    same seed: the first batches are the same samples, so the difference is MARA's rewards alone.

    Measured (TRL 1.16, CPU): share of "1" after 3 steps, seeds 0/1: vanilla 0.814 / 0.696, MARA 0.760 /
    0.532 (start 0.806; MARA's target 0.5). The test asks, per seed, for MARA at least 0.02 below vanilla and
    closer to 0.5: a third of the smaller measured gap. It does not ask that vanilla stays put: on so few
    steps sampling noise moves it too (seed 1), which is why the comparison is paired.
    """
    from datasets import Dataset
    from trl import GRPOTrainer

    task = lm.OneTwoTask.for_reference_lm()

    def base(prompts, completions, **kw):
        return task.reward(prompts, completions)

    shares = {}
    for method in ("vanilla", "MARA"):
        for seed in (0, 1):
            model, tok = lm.load_reference_lm()
            ref, _ = reference
            args = _grpo_args(learning_rate=1e-3, beta=0.05, max_steps=3, temperature=1.0, top_k=0, top_p=1.0,
                              scale_rewards="none", seed=seed, logging_steps=1000, lr_scheduler_type="constant",
                              warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, disable_tqdm=True)
            reward = base if method == "vanilla" else mtrl.mara_reward(base, ref, tok, tau=1.0, config=args)
            ds = Dataset.from_dict({"prompt": [task.prompts[i % 4] for i in range(12)]})
            trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, reward_funcs=[reward])
            trainer.train()
            shares[method, seed] = float(np.mean([lm.onetwo_answer_probs(trainer.model.eval(), tok, p)["share_1"]
                                                  for p in task.prompts]))
    for seed in (0, 1):
        assert shares["MARA", seed] < shares["vanilla", seed] - 0.02, shares
        assert abs(shares["MARA", seed] - 0.5) < abs(shares["vanilla", seed] - 0.5), shares
