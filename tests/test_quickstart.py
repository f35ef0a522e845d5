"""The quick-start page (book/quickstart.md) runs as printed: its own-loop snippet gives MARA's rewards, and its
TRL snippet trains (one step, on the book's toy model, with the test machine's settings added)."""

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

PAGE = Path(__file__).resolve().parents[1] / "book" / "quickstart.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def test_the_page_has_the_two_snippets():
    blocks = _blocks()
    assert len(blocks) == 2
    assert "mara_rewards(" in blocks[0] and "mara_reward(" in blocks[1]


def test_own_loop_snippet_runs_and_gives_eq_4_1(capsys):
    torch = pytest.importorskip("torch")
    ns: dict = {}
    exec(compile(_blocks()[0], str(PAGE), "exec"), ns)
    r_bar = ns["r_bar"].numpy()
    # by hand (eq. 4.1, tau = 1, beta = 0.05): prompt 0's good samples have log pi_ref -2, -5, -2; the anchor is
    # the likeliest (-2), so they get 1, 1 + 0.05 * 3, 1; prompt 1's good ones (-0.5, -4) get 1, 1 + 0.05 * 3.5
    np.testing.assert_allclose(r_bar, [1.0, 1.15, 0.0, 1.0, 0.0, 1.0, 1.175, 0.0], rtol=1e-6)
    assert ns["policy_logprobs"].grad is not None and torch.isfinite(ns["policy_logprobs"].grad).all()
    assert "tensor" in capsys.readouterr().out


def test_trl_snippet_trains_one_step_and_refuses_the_two_silent_settings():
    pytest.importorskip("torch")
    trl = pytest.importorskip("trl")
    from datasets import Dataset

    from marabook import lm
    from marabook.integrations.trl import check_trl_config

    model, tokenizer = lm.load_reference_lm()
    ref_model, _ = lm.load_reference_lm()
    task = lm.OneTwoTask.for_reference_lm()

    def my_reward(prompts, completions, **kwargs):
        return task.reward(prompts, completions)

    test_settings = dict(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, report_to="none",
                         save_strategy="no", max_steps=1, per_device_train_batch_size=8, disable_tqdm=True,
                         logging_steps=1000)

    def GRPOConfig(**kw):  # the page's settings, plus what a CPU test run needs
        return trl.GRPOConfig(**{**kw, **test_settings})

    code = _blocks()[1].replace("from trl import GRPOConfig, GRPOTrainer\n", "")
    ns = dict(GRPOConfig=GRPOConfig, GRPOTrainer=trl.GRPOTrainer, model=model, ref_model=ref_model,
              tokenizer=tokenizer, my_reward=my_reward,
              dataset=Dataset.from_dict({"prompt": [task.prompts[0], task.prompts[1]]}))
    before = [p.detach().clone() for p in model.parameters()]
    exec(compile(code, str(PAGE), "exec"), ns)
    assert ns["args"].beta > 0 and ns["args"].scale_rewards == "none"
    assert any(not np.allclose(b.numpy(), p.detach().numpy()) for b, p in zip(before, model.parameters()))
    # the warning box: beta = 0 and std scaling are refused, naming the setting
    with pytest.raises(ValueError, match="beta"):
        check_trl_config(GRPOConfig(beta=0.0, scale_rewards="none"))
    with pytest.raises(ValueError, match="scale_rewards"):
        check_trl_config(GRPOConfig(beta=0.04, scale_rewards="group"))
