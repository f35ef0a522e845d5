"""marabook.experiments: one sweep runner over any Executor, the chapter experiments' verbs, stored results."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from marabook import provenance
from marabook.experiments import sweep as S
from marabook.experiments import tokens


def _slow_square(x):
    time.sleep(0.02 * (5 - x))  # later jobs finish first
    return x * x


def test_run_sweep_keeps_job_order_on_any_executor():
    jobs = list(range(5))
    assert S.run_sweep(_slow_square, jobs, progress=False) == [0, 1, 4, 9, 16]
    with ThreadPoolExecutor(max_workers=5) as pool:
        assert S.run_sweep(_slow_square, jobs, executor=pool, progress=False) == [0, 1, 4, 9, 16]


def test_token_sweep_same_numbers_in_process_threads_and_processes():
    """Every job depends only on its own seed: where it ran does not change a number."""
    grid = tokens.configs()[:2]
    kw = dict(steps_exact=20, steps_sampled=30, seeds=(0, 1), progress=False)
    here = tokens.sweep(grid, **kw)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threads = tokens.sweep(grid, executor=pool, **kw)
    procs = tokens.sweep(grid, workers=2, **kw)  # a local pool of spawned processes
    for key in here:
        np.testing.assert_array_equal(here[key]["sampled"].final, threads[key]["sampled"].final)
        np.testing.assert_array_equal(here[key]["sampled"].final, procs[key]["sampled"].final)
        np.testing.assert_array_equal(here[key]["exact"].final, procs[key]["exact"].final)


def test_run_sweep_bad_input():
    with pytest.raises(ValueError, match="jobs"):
        S.run_sweep(_slow_square, [], progress=False)
    with pytest.raises(ValueError, match="workers"):
        S.run_sweep(_slow_square, [1], workers=0, progress=False)
    with pytest.raises(ValueError, match="executor"):
        S.run_sweep(_slow_square, [1], executor=object(), progress=False)
    with pytest.raises(ValueError, match="fn"):
        S.run_sweep(3, [1], progress=False)


def test_token_experiment_targets_and_summary():
    runs = tokens.sweep(steps_exact=50, steps_sampled=20, seeds=(0,), progress=False)
    assert list(runs) == [c.key for c in tokens.configs()]
    rows = tokens.summarize(runs)
    by = {(r["method"], r["kl"], r["beta"]): r for r in rows}
    assert by["MARA", "reverse", 0.01]["target_block2"] == pytest.approx(0.5, abs=1e-12)  # flat target (4.2)
    assert by["vanilla", "reverse", 0.01]["target_block2"] < 0.1
    text = tokens.table(rows)
    assert text.count("\n") == len(rows) and "MARA" in text  # header + one line per row
    with pytest.raises(ValueError, match="direction"):
        tokens.TokenConfig(0.1, "sideways", False)


def test_stored_results_load_and_describe():
    names = sorted(p.stem for p in provenance.RESULTS_DIR.glob("*.json"))
    assert {"tokens_full", "onetwo_sweep", "open_ended", "reinvent_study", "reinvent_tau", "trl_onetwo"} <= set(names)
    for name in names:
        data = provenance.load_stored(name)
        line = provenance.describe(data["provenance"])
        assert line.startswith("stored: python scripts/") and " | revision " in line
        assert "/work/" not in line and "/tmp/" not in line  # no machine paths reach the page
    rows = provenance.load_stored("tokens_full")["results"]["rows"]
    assert "MARA" in tokens.table(rows)
    with pytest.raises(FileNotFoundError, match="no_such"):
        provenance.load_stored("no_such")
    with pytest.raises(ValueError, match="name"):
        provenance.load_stored("../reinvent.json")
    with pytest.raises(ValueError, match="date"):
        provenance.describe({"command": "x", "git_revision": "y", "device": "z"})


def test_onetwo_labels_and_selection():
    onetwo = pytest.importorskip("marabook.experiments.onetwo")
    runs = [{"config": {"mara_tau": None, "kl": "reverse", "beta": 0.01}},
            {"config": {"mara_tau": 1.0, "kl": "reverse", "beta": 0.01}},
            {"config": {"mara_tau": 1.0, "kl": "forward", "beta": 0.03}}]
    assert [onetwo.method_label(r["config"]) for r in runs] == ["vanilla", "MARA", "MARA"]
    assert onetwo.select(runs, method="MARA", kl="reverse") == [runs[1]]
    grid = onetwo.configs(betas=(0.01,), seeds=range(2), steps=3)
    assert len(grid) == 2 * 2 * 2 and grid[0].kl == "reverse" and grid[0].mara_tau is None and grid[-1].seed == 1
    stored = provenance.load_stored("onetwo_sweep")
    assert "MARA" in onetwo.stored_table(stored)


def test_molecule_sweep_rejects_unknown_methods_and_tasks():
    molecules = pytest.importorskip("marabook.experiments.molecules")
    with pytest.raises(ValueError, match="methods"):
        molecules.sweep(("product",), ("PPO",), range(1), budget=64, progress=False)
    with pytest.raises(ValueError, match="tasks"):
        molecules.sweep(("docking",), molecules.METHODS, range(1), budget=64, progress=False)


def test_failed_runs_are_counted_and_never_averaged_into_the_share():
    onetwo = pytest.importorskip("marabook.experiments.onetwo")
    from marabook.experiments import onetwo_trl

    finals = [{"p_valid": 0.99, "share_1": 0.8, "entropy_bits": 0.7}, {"p_valid": 0.06, "share_1": 0.1,
                                                                        "entropy_bits": 0.4},
              {"p_valid": 0.98, "share_1": 0.6, "entropy_bits": 0.97}]
    runs = [{"config": {"mara_tau": 1.0, "kl": "forward", "advantage": "rloo", "beta": 0.02, "seed": s}, "final": f}
            for s, f in enumerate(finals)]
    (row,) = onetwo.summarize(runs)
    assert row["failed"] == 1 and row["runs"] == 3
    assert row["share_1_mean"] == pytest.approx(0.7)          # the failed run's 0.1 is not an answer
    assert row["reward_mean"] == pytest.approx((0.99 + 0.06 + 0.98) / 3)  # but it does count in the reward
    assert onetwo.failed_runs(runs) == ["MARA forward beta=0.02 seed 1 (P(valid) 0.060)"]
    all_failed = onetwo.summarize([{**runs[1]}])
    assert np.isnan(all_failed[0]["share_1_mean"]) and "undefined" in onetwo.table(all_failed)
    text = onetwo_trl.trl_table({"results": {"runs": [{"method": "MARA", "beta": 0.01, "final": f} for f in finals]}})
    assert "--" in text and "1/3" in text


def test_time_to_target_and_exact_dynamics():
    onetwo = pytest.importorskip("marabook.experiments.onetwo")
    traj = [{"step": s, "share_1": x, "p_valid": 1.0} for s, x in ((0, 0.8), (20, 0.55), (40, 0.7), (60, 0.52),
                                                                     (80, 0.49))]
    assert onetwo.time_to_target(traj, 0.5, within=0.1) == 60       # settles (and stays) from step 60
    assert onetwo.time_to_target(traj, 0.5, within=0.01) is None      # never that close
    traj[-1]["p_valid"] = 0.1                                          # a run that stopped answering never settles
    assert onetwo.time_to_target(traj, 0.5, within=0.1) is None
    rows = onetwo.exact_dynamics([0.7461, 0.1801, 0.0738], (0.003, 0.03), steps=2000)
    by = {(r["method"], r["beta"]): r for r in rows}
    # exact dynamics under the default Adam (lr 0.01): vanilla starts at its target (the reference ratio) and
    # stays; MARA gets to 0.5, later at
    # smaller beta (measured 1458 vs 297 steps: slower, though by less than the factor 10 of 1/beta)
    assert by["vanilla", 0.03]["steps_to_target"] == 0 and by["vanilla", 0.003]["steps_to_target"] == 0
    assert by["MARA", 0.03]["target"] == pytest.approx(0.5)
    assert by["MARA", 0.03]["steps_to_target"] < by["MARA", 0.003]["steps_to_target"] < 10 * by["MARA", 0.03]["steps_to_target"]


def test_pareto_front_of_checkpoints():
    onetwo = pytest.importorskip("marabook.experiments.onetwo")
    traj = [{"entropy_bits": h, "p_valid": v, "step": 0, "share_1": 0.5} for h, v in
            ((0.2, 1.0), (0.9, 0.95), (0.5, 0.9), (1.0, 0.8), (0.9, 0.97))]
    pts, front = onetwo.pareto_points([{"config": {"mara_tau": 1.0}, "trajectory": traj}], "MARA")
    assert sorted(map(tuple, pts[front].tolist())) == [(0.2, 1.0), (0.9, 0.97), (1.0, 0.8)]  # (0.5, 0.9) is beaten
    with pytest.raises(ValueError, match="trajectory"):
        onetwo.pareto_points([{"config": {"mara_tau": None}, "trajectory": traj}], "MARA")


# --- this session: numbers the chapters quote ----------------------------------------------------------

def _molecule_run(task, method, seed, sigma, y80, modes=None, anchors=None):
    summary = {"yield@0.80": y80, "calls": 10}
    if modes is not None:
        summary["modes@0.80"] = modes
    hist = {"calls": [5, 10], "score": [0.1, 0.2]}
    if anchors is not None:
        hist.update(anchor_score=anchors, n_good=[len([a for a in anchors if a is not None])] * len(anchors))
    return {"task": task, "method": method, "seed": seed, "sigma": sigma, "summary": summary, "history": hist}


def test_study_rows_coverage_and_anchor_report_on_hand_made_runs():
    molecules = pytest.importorskip("marabook.experiments.molecules")
    runs = [_molecule_run("multi_mode", "REINVENT", s, 128.0, y, {"diazepam": 0, "tolbutamide": y})
            for s, y in enumerate((100, 110, 90))]
    runs += [_molecule_run("multi_mode", "MARA 0.85", s, 128.0, y, {"diazepam": 2 if s else 0, "tolbutamide": y},
                           anchors=[None, 1.0, 0.9, 1.0]) for s, y in enumerate((150, 160, 140))]
    rows = molecules.study_rows(runs, "yield@0.80")
    mara = next(r for r in rows if r["method"] == "MARA 0.85")
    assert mara["mean"] == 150 and mara["ratio"] == pytest.approx(1.5) and mara["ratio_sd"] == pytest.approx(0.1)
    assert 0 < mara["p"] < 0.01                      # 150 +- 10 against 100 +- 10, n = 3 each: Welch t = 6.1
    assert next(r for r in rows if r["method"] == "REINVENT")["p"] is None
    assert "1.50" in molecules.format_study(rows)
    cov = {r["method"]: r for r in molecules.coverage_rows(runs, "multi_mode")}
    assert cov["MARA 0.85"]["reached"]["diazepam"] == 2 and cov["REINVENT"]["reached"]["diazepam"] == 0
    assert cov["MARA 0.85"]["covered"] == pytest.approx(5 / 3)   # 2 modes in two runs, 1 in one
    report = molecules.anchor_report(runs, "multi_mode")
    assert report["MARA 0.85"]["steps_with_anchor"] == 9 and report["MARA 0.85"]["anchor_below_top"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="runs"):
        molecules.study_rows([])
    with pytest.raises(ValueError, match="task"):
        molecules.coverage_rows(runs, "product")


def test_study_rows_pooled_rows_and_mode_shift_use_marabook_stats():
    molecules = pytest.importorskip("marabook.experiments.molecules")
    from marabook import stats
    ys = {("REINVENT", 64.0): (100, 110, 90), ("MARA 0.85", 64.0): (150, 160, 140),
          ("REINVENT", 128.0): (100, 105, 95), ("MARA 0.85", 128.0): (104, 112, 99),
          ("REINVENT+DF", 64.0): (80, 90, 70), ("REINVENT+DF", 128.0): (95, 90, 85)}
    runs = [_molecule_run("unequal_modes", m, s, sg, y, {"anilide": y, "benzimidazole": s})
            for (m, sg), vals in ys.items() for s, y in enumerate(vals)]
    rows = {(r["method"], r["sigma"]): r for r in molecules.study_rows(runs, "yield@0.80", n_resamples=999)}
    mara = [rows[("MARA 0.85", sg)] for sg in (64.0, 128.0)]
    assert [r["p_holm"] for r in mara] == pytest.approx(stats.holm([r["p"] for r in mara]))   # one MARA family
    assert rows[("REINVENT+DF", 64.0)]["family"] == "REINVENT+DF" and mara[0]["family_size"] == 2
    assert mara[0]["ci_low"] <= mara[0]["ratio"] <= mara[0]["ci_high"] and rows[("REINVENT", 64.0)]["ci_low"] is None
    assert "Holm" in molecules.format_study(list(rows.values()))
    pooled = {r["method"]: r for r in molecules.pooled_rows(runs)}
    ref = stats.stratified([(ys[("MARA 0.85", sg)], ys[("REINVENT", sg)]) for sg in (64.0, 128.0)])
    assert pooled["MARA 0.85"]["p"] == pytest.approx(ref.pvalue) and pooled["MARA 0.85"]["ahead"] == 2
    assert pooled["REINVENT+DF"]["ahead"] == 0 and pooled["MARA 0.85"]["family_size"] == 1
    assert "van Elteren" in molecules.format_pooled(list(pooled.values()))
    shift = {(r["mode"], r["method"]): r for r in molecules.mode_shift_rows(runs, "unequal_modes")}
    same = shift[("benzimidazole", "MARA 0.85")]           # every method has seeds 0, 1, 2 hits there
    assert same["hits"] == {64.0: 1.0, 128.0: 1.0} and same["p"] == pytest.approx(1.0)
    assert shift[("anilide", "MARA 0.85")]["hits"][64.0] == 150 and shift[("anilide", "MARA 0.85")]["z"] > 0
    with pytest.raises(ValueError, match="runs"):
        molecules.pooled_rows([])
    with pytest.raises(ValueError, match="runs"):
        molecules.mode_shift_rows(runs, "multi_mode")


def test_share_stats_and_trl_summary_count_failures():
    from marabook.experiments import onetwo, onetwo_trl

    finals = [{"p_valid": 0.99, "share_1": 0.5, "entropy_bits": 1.0, "seconds_per_step": 0.1},
              {"p_valid": 0.20, "share_1": 1.0, "entropy_bits": 0.0, "seconds_per_step": 0.3},
              {"p_valid": 0.98, "share_1": 0.0, "entropy_bits": 0.0, "seconds_per_step": 0.2}]
    st = onetwo.share_stats(finals)
    assert (st["runs"], st["failed"], st["valid"], st["on_1"], st["on_2"], st["fair"]) == (3, 1, 2, 0, 1, 1)
    assert st["share_mean"] == 0.25 and st["collapsed"] == 1 and (st["sps_min"], st["sps_max"]) == (0.1, 0.3)
    stored = {"results": {"runs": [{"trainer": "TRL 1.0", "method": "MARA", "beta": 0.01, "seed": s, "final": f}
                                   for s, f in enumerate(finals)]}}
    (row,) = onetwo_trl.trl_summary(stored)
    assert row["trainer"] == "TRL" and row["failed_seeds"] == [1] and row["valid"] == 2


def test_open_ended_predictions_match_the_closed_forms():
    from marabook import mara, targets
    from marabook.experiments import open_ended as oe

    ref = np.array([0.5, 0.3, 0.1])                  # the rest, 0.1, is one more outcome with reward 0
    rewards = np.array([0.9, 1.0, 0.95])
    pr = oe.predictions(ref, rewards, beta=0.05, tau=0.9, eta=0.02, n=4)
    full_ref, full_r = np.append(ref, 0.1), np.append(rewards, 0.0)
    g = targets.reverse_kl_target(full_ref, full_r, 0.05)
    np.testing.assert_allclose(pr["RLOO"]["target"], g[:3], rtol=1e-12)
    assert pr["RLOO"]["reward"] == pytest.approx(g[:3] @ rewards)
    assert pr["RLOO"]["distinct"] == pytest.approx(np.sum(1 - (1 - g[:3]) ** 4))
    flat = pr["MARA-rev"]["target"]
    np.testing.assert_allclose(flat, mara.mara_target(full_ref, full_r, 0.05, 0.9)[:3], rtol=1e-12)
    assert np.ptp(flat) < 1e-12                       # every answer is good: flat
    assert pr["MARA-rev p90"] is None
