"""Reading chapter 6's real-model study: exact targets on a string-level support, the comparison family and the exact
trajectories (marabook.experiments.open_ended_real_report), on hand-made inputs whose answers are known."""

import numpy as np
import pytest

from marabook.experiments import open_ended_real_report as report
from marabook.mara import method_targets

# three answers, two accepted strings each; the rest of the reference's mass (0.4) is invalid
STRINGS = {" red": 0.20, " red.": 0.10, " blue": 0.12, " blue.": 0.08, " tan": 0.06, " tan.": 0.04}
OWNER = {s: s.strip(" .") for s in STRINGS}
REWARDS = {"red": 0.92, "blue": 1.0, "tan": 0.8}
R32 = {a: float(np.float32(v)) for a, v in REWARDS.items()}  # as the trainer holds them
EXACT = {"strings": STRINGS, "answer_of": OWNER, "rewards": REWARDS,
         "answers": {a: sum(p for s, p in STRINGS.items() if OWNER[s] == a) for a in REWARDS}}
BETA, TAU, ETA = 0.05, 0.9, 0.05


def test_vanilla_reverse_target_by_hand():
    t = report.targets(EXACT, beta=BETA, tau=TAU, eta=ETA)["RLOO"]
    w = {a: EXACT["answers"][a] * np.exp(R32[a] / BETA) for a in REWARDS}  # eq. 1.3, per answer
    z = sum(w.values()) + 0.4
    assert t["p_valid"] == pytest.approx(sum(w.values()) / z, rel=1e-12)
    for a in REWARDS:
        assert t["answers"][a] == pytest.approx(w[a] / sum(w.values()), rel=1e-12)
    assert t["top"] == "blue" and t["top_share"] == pytest.approx(max(t["answers"].values()))
    assert t["reward_valid"] == pytest.approx(sum(t["answers"][a] * REWARDS[a] for a in REWARDS))


def test_mara_reverse_target_is_flat_over_good_strings():
    t = report.targets(EXACT, beta=BETA, tau=TAU)["MARA-rev"]
    # good strings (red, blue: R >= 0.9) each get pi_ref(z) exp(R(z)/beta), z = " red" (the likeliest good string)
    good = 0.20 * np.exp(R32["red"] / BETA)
    bad = {"tan": 0.10 * np.exp(R32["tan"] / BETA)}
    valid = 4 * good + bad["tan"]
    assert t["answers"]["red"] == pytest.approx(2 * good / valid, rel=1e-12)
    assert t["answers"]["blue"] == pytest.approx(2 * good / valid, rel=1e-12)
    assert t["answers"]["tan"] == pytest.approx(bad["tan"] / valid, rel=1e-12)
    assert t["p_valid"] == pytest.approx(valid / (valid + 0.4), rel=1e-12)
    assert "entropy" not in report.targets(EXACT, beta=BETA, tau=TAU)  # no eta: no entropy target


def test_lumping_the_invalid_rest_is_exact_except_for_the_entropy_target():
    """Spread the invalid 0.4 over 400 outcomes instead of one: every target but the entropy bonus's is unchanged."""
    lumped = report.targets(EXACT, beta=BETA, tau=TAU, eta=ETA)
    p = np.array(list(STRINGS.values()))
    r = np.array([R32[OWNER[s]] for s in STRINGS])
    split = method_targets(np.concatenate([p, np.full(400, 0.001)]), np.concatenate([r, np.zeros(400)]), BETA, TAU,
                           eta=ETA)
    for method, key in report.TARGET_OF.items():
        t = split[key][:len(p)]
        shares = {a: t[[OWNER[s] == a for s in STRINGS]].sum() / t.sum() for a in REWARDS}
        for a in REWARDS:  # the shape among valid answers is exact for every target
            assert lumped[method]["answers"][a] == pytest.approx(shares[a], rel=1e-9), (method, a)
        if key == "entropy":
            assert lumped[method]["p_valid"] is None
            one = method_targets(np.append(p, 0.4), np.append(r, 0.0), BETA, TAU, eta=ETA)[key]
            # flattening 400 invalid outcomes instead of one puts 400 * 0.001^(1/2) / 0.4^(1/2) = 20 times the weight
            # off the valid strings: the lump cannot show it
            assert (1 - t.sum()) / t.sum() == pytest.approx(20 * one[-1] / one[:-1].sum(), rel=1e-9)
        else:
            assert lumped[method]["p_valid"] == pytest.approx(t.sum(), rel=1e-9), method


def test_targets_bad_input_is_named():
    with pytest.raises(ValueError, match="exact"):
        report.targets({"strings": STRINGS}, beta=BETA, tau=TAU)
    with pytest.raises(ValueError, match="exact"):
        report.targets({**EXACT, "strings": {**STRINGS, " red": 0.9}}, beta=BETA, tau=TAU)


def _run(method, seed, reward_in, distinct, top):
    ev = {"in": {"reward": reward_in, "distinct": distinct, "semantic": 0.1, "coverage": 0.5, "ead1": 1.0},
          "out": {"reward": 0.5, "distinct": 3.0, "coverage": 0.1, "ead1": 1.0}}
    traj = [{"step": s, "state": {"color": {"top_share": top * s / 10, "p_valid": 0.5}}} for s in (0, 5, 10)]
    return {"method": method, "config": {"seed": seed}, "eval": ev, "trajectory": traj}


def test_compare_is_one_holm_family_over_declared_pairs():
    rng = np.random.default_rng(0)
    runs = [_run(m, s, mu + 0.01 * rng.standard_normal(), d + rng.standard_normal(), 1.0)
            for s in range(5) for m, mu, d in (("RLOO", 0.90, 6.0), ("MARA-rev", 0.95, 9.0))]
    base = [{"method": "base", "eval": _run("base", s, 0.3 + 0.01 * rng.standard_normal(), 4 + rng.standard_normal(),
                                             0.0)["eval"]} for s in range(5)]
    rows = report.compare(runs, base)
    pairs = {(r["method"], r["against"]) for r in rows}
    assert pairs == {("RLOO", "base"), ("MARA-rev", "base"), ("MARA-rev", "RLOO")}  # the others have no runs
    cols = {r["column"] for r in rows}
    assert "semantic" in cols and "reward (in)" in cols
    assert all(r["family_size"] == len(rows) for r in rows)
    assert all(r["p_holm"] >= r["p"] for r in rows)
    d = next(r for r in rows if (r["method"], r["against"], r["column"]) == ("MARA-rev", "RLOO", "reward (in)"))
    a = [r["eval"]["in"]["reward"] for r in runs if r["method"] == "MARA-rev"]
    b = [r["eval"]["in"]["reward"] for r in runs if r["method"] == "RLOO"]
    assert d["effect"] == pytest.approx(np.mean(a) - np.mean(b)) and d["ci_low"] < d["effect"] < d["ci_high"]
    assert d["p_holm"] < 0.05  # a 0.05 gap with 0.01 noise over 5 seeds
    # reward (out) is 0.5 everywhere: no difference at all
    assert all(r["p"] == 1.0 and r["effect"] == 0.0 for r in rows if r["column"] == "reward (out)")
    with pytest.raises(ValueError, match="columns"):
        report.compare(runs, base, columns=("speed",))
    with pytest.raises(ValueError, match="pairs"):
        report.compare(runs, base, pairs=["RLOO"])
    with pytest.raises(ValueError, match="pairs"):
        report.compare(runs, base, pairs=[("GRPO", "entropy")])


def test_exact_curves_stack_runs_per_method():
    runs = [_run("RLOO", s, 0.9, 5, top) for s, top in enumerate((0.5, 0.7))] + [_run("GRPO", 0, 0.9, 1, 1.0)]
    cur = report.exact_curves(runs, "color")
    steps, vals = cur["RLOO"]
    assert list(steps) == [0, 5, 10] and vals.shape == (2, 3)
    assert vals[1, 2] == pytest.approx(0.7) and vals[0, 1] == pytest.approx(0.25)
    assert cur["GRPO"][1].shape == (1, 3)
    with pytest.raises(ValueError, match="category"):
        report.exact_curves(runs, "fruit")
    with pytest.raises(ValueError, match="metric"):
        report.exact_curves(runs, "color", "speed")


# two answers and invalid mass; rewards 1.0 (a) and 0.8 (b)
STATE = {"answers": {"a": 0.2, "b": 0.1}, "rewards": {"a": 1.0, "b": 0.8}}


def test_threshold_value_marks_the_same_answers_every_time():
    s = report.threshold_stats([STATE], 0.9, group_size=8, n_draws=40_000)
    # good = the samples of "a": 8 * 0.2 per group on average, one distinct answer at most, never junk
    assert s["good"] == pytest.approx(1.6, abs=0.02) and s["junk"] == 0.0 and s["across"] == 0.0
    assert s["good_answers"] == pytest.approx(1 - 0.8 ** 8, abs=0.01)  # "a" appears at least once
    lax = report.threshold_stats([STATE], 0.8, group_size=8, n_draws=40_000)
    assert lax["across"] == pytest.approx(1 - 0.8 ** 8 - 0.9 ** 8 + 0.7 ** 8, abs=0.01)  # both answers drawn


def test_group_percentile_is_zero_when_no_answer_is_valid():
    """p90 of 8 rewards interpolates between the two largest: 0 exactly when no sample is valid, and then every
    sample, invalid ones included, is 'good'."""
    s = report.threshold_stats([STATE], "p90", group_size=8, n_draws=40_000)
    assert s["junk"] == pytest.approx(0.7 ** 8, abs=0.005)  # SE sqrt(0.058 * 0.94 / 40000) = 0.0012
    # otherwise only the top sample and its exact ties (the same answer): never two different answers
    assert s["across"] == 0.0
    batch = report.threshold_stats([STATE, STATE], "p90", group_size=8, scope="batch", n_draws=40_000)
    # over 16 rewards p90 interpolates halfway between the 14th and 15th smallest: 0 when at most one is valid
    assert batch["junk"] == pytest.approx(0.7 ** 16 + 16 * 0.3 * 0.7 ** 15, abs=0.004) and batch["across"] > 0


def test_a_reward_equal_to_tau_only_in_float64_is_not_good_as_in_training():
    """name_reward gives "Iran" exactly 0.9; the trainer holds rewards in float32 (0.8999999761), so MARA at tau = 0.9
    does not count it good. The targets and the threshold statistics use the trainer's good set."""
    import torch

    from marabook.lm.naming import name_reward
    from marabook.mara import mara_rewards

    assert name_reward("country", "Iran") == 0.9
    trained = mara_rewards(torch.tensor([0.9, 0.95]), torch.log(torch.tensor([0.6, 0.1])), BETA, 0.9)
    assert float(trained[0]) == pytest.approx(0.9)  # unchanged: not good
    state = {"answers": {"x": 0.5, "y": 0.1}, "rewards": {"x": 0.9, "y": 0.95}}
    assert report.threshold_stats([state], 0.9, group_size=4, n_draws=2000)["across"] == 0.0
    exact = {"strings": {" x": 0.5, " y": 0.1}, "answer_of": {" x": "x", " y": "y"}, "rewards": state["rewards"],
             "answers": state["answers"]}
    t = report.targets(exact, beta=BETA, tau=0.9)["MARA-rev"]
    # only " y" is good, and it is its own anchor: MARA-rev is the reverse-KL target here
    assert t["answers"] == pytest.approx(report.targets(exact, beta=BETA, tau=0.9)["RLOO"]["answers"], rel=1e-9)


def test_threshold_stats_bad_input_is_named():
    with pytest.raises(ValueError, match="states"):
        report.threshold_stats(STATE, 0.9)
    with pytest.raises(ValueError, match="scope"):
        report.threshold_stats([STATE], "p90", scope="prompt")
    with pytest.raises(ValueError, match="group_size"):
        report.threshold_stats([STATE], 0.9, group_size=0)
    with pytest.raises(ValueError, match="rewards"):
        report.threshold_stats([{"answers": {"a": 0.5}}], 0.9)
    with pytest.raises(ValueError, match="tau"):
        report.threshold_stats([STATE], "top10")
