"""The PMO study's machinery (issue 29, marabook.experiments.pmo): its grid, one tiny run through the store,
the comparison table against hand-computed Welch + Holm numbers, and the one home of REINVENT's defaults."""

import inspect
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("rdkit")

from marabook.chem import benchmarks  # noqa: E402
from marabook.chem.oracles import OracleRecord  # noqa: E402
from marabook.chem.reinvent import REINVENT_LR, REINVENT_SIGMA, ReinventConfig  # noqa: E402
from marabook.experiments import molecules, pmo  # noqa: E402
from marabook.experiments.sweep import JobFailure  # noqa: E402

TINY = dict(budget=128, batch_size=32)


# ------------------------------------------------------------------------------------------------ the grid
def test_the_study_covers_the_tasks_the_issue_asks_for():
    tasks = set(pmo.STUDY_TASKS)
    assert {"isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl", "median1", "median2", "deco_hop", "scaffold_hop"} <= tasks
    assert sum(t.endswith("_mpo") for t in tasks) >= 3
    assert all(benchmarks.TASKS[t].optimum == "many" for t in pmo.MULTI_OPTIMUM)
    assert all(benchmarks.TASKS[t].optimum == "single" for t in pmo.NO_HARM)
    assert any(t.endswith("_rediscovery") for t in pmo.NO_HARM) and any(t.endswith("_similarity") for t in pmo.NO_HARM)
    assert pmo.STUDY_TASKS == pmo.MULTI_OPTIMUM + pmo.NO_HARM and len(tasks) == len(pmo.STUDY_TASKS)
    assert pmo.METHODS == ("REINVENT", "REINVENT+DF", "MARA", "MARA+DF") and pmo.SEEDS == (0, 1, 2, 3, 4)
    assert pmo.BUDGET == 10_000


def test_grid_is_seed_major_with_shared_settings():
    jobs = pmo.grid()
    assert len(jobs) == len(pmo.STUDY_TASKS) * 4 * 5
    per_seed = len(pmo.STUDY_TASKS) * 4
    assert [j[2] for j in jobs] == [s for s in pmo.SEEDS for _ in range(per_seed)]
    assert [(j[0], j[1]) for j in jobs[:per_seed]] == [(t, m) for t in pmo.STUDY_TASKS for m in pmo.METHODS]
    assert all(j[3] == {"budget": 10_000, "batch_size": 64, "sigma": REINVENT_SIGMA, "lr": REINVENT_LR} for j in jobs)
    small = pmo.grid(["median1", "deco_hop"], ["MARA", "REINVENT"], [3, 1], budget=640, batch_size=32, sigma=64, lr=1e-3)
    assert [j[:3] for j in small] == [("median1", "MARA", 3), ("median1", "REINVENT", 3), ("deco_hop", "MARA", 3),
                                      ("deco_hop", "REINVENT", 3), ("median1", "MARA", 1), ("median1", "REINVENT", 1),
                                      ("deco_hop", "MARA", 1), ("deco_hop", "REINVENT", 1)]
    assert small[0][3] == {"budget": 640, "batch_size": 32, "sigma": 64.0, "lr": 1e-3}


@pytest.mark.parametrize("kwargs, name", [
    ({"tasks": ["docking"]}, "tasks"), ({"tasks": "median1"}, "tasks"), ({"tasks": []}, "tasks"),
    ({"tasks": ["median1", "median1"]}, "tasks"), ({"methods": ["PPO"]}, "methods"),
    ({"methods": ["MARA high"]}, "methods"), ({"methods": [None]}, "methods"), ({"seeds": [-1]}, "seeds"),
    ({"seeds": [0, 0]}, "seeds"), ({"seeds": [0.5]}, "seeds"), ({"seeds": 5}, "seeds"), ({"budget": 0}, "budget"),
    ({"batch_size": 0}, "batch_size"), ({"sigma": 0.0}, "sigma"), ({"lr": -1e-4}, "lr"), ({"lr": True}, "lr"),
])
def test_grid_refuses_bad_arguments_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        pmo.grid(**kwargs)


def test_methods_and_their_tau():
    assert pmo.tau_for("REINVENT", "median1") is None and pmo.tau_for("REINVENT+DF", "median1") is None
    for task in pmo.STUDY_TASKS:  # tau is the task's stated hit threshold, never tuned here
        assert pmo.tau_for("MARA", task) == pmo.tau_for("MARA+DF", task) == benchmarks.TASKS[task].threshold
    assert pmo.tau_for("MARA", "isomers_c7h8n2o2") == 0.99 and pmo.tau_for("MARA 0.7+DF", "median1") == 0.7
    assert pmo.tau_for("MARA p90", "median1") == "p90"
    cfg = pmo.method_config("MARA+DF", "median2", seed=3, budget=640)
    assert (cfg.mara_tau, cfg.diversity_filter, cfg.df_bucket_size, cfg.df_min_score, cfg.seed, cfg.label) == \
        (0.36, True, 25, 0.4, 3, "MARA+DF")
    assert pmo.DIVERSITY_FILTER == {"bucket_size": 25, "min_score": 0.4}
    plain = pmo.method_config("REINVENT", "median2")
    assert plain.mara_tau is None and not plain.diversity_filter
    for call, name in [(lambda: pmo.tau_for("MARA", "docking"), "task"), (lambda: pmo.tau_for("PPO", "median1"), "method"),
                       (lambda: pmo.tau_for("MARA x", "median1"), "method"), (lambda: pmo.method_config(3, "qed"), "method"),
                       (lambda: pmo.method_config("MARA 1.5", "qed"), "mara_tau")]:
        with pytest.raises(ValueError, match=name):
            call()


# ------------------------------------------------------------------------------------------------ one run
def test_discovery_curve_on_hand_made_records():
    # 250 calls: call i proposes molecule "C"*(i % 120 + 1) (120 distinct, then repeats) scoring (i % 120) / 119;
    # every 7th call is invalid
    recs = []
    for i in range(250):
        k = i % 120
        recs.append(OracleRecord(i, "x", None, 0.0) if i % 7 == 0 else OracleRecord(i, "C" * (k + 1), "C" * (k + 1), k / 119))
    c = pmo.discovery(recs, every=100, threshold=0.9)
    assert c["calls"] == [100, 200, 250]
    # up to call 100: valid k in 0..99 except multiples of 7 -> best k = 99 (99 % 7 = 1), top 10 = 99, 97..90 less 91 and 98
    top = sorted([k for k in range(100) if k % 7], reverse=True)[:10]
    assert c["best"][0] == pytest.approx(99 / 119) and c["top10"][0] == pytest.approx(np.mean(top) / 119)
    assert c["distinct"][0] == len([k for k in range(100) if k % 7])
    # by call 250 every k in 0..119 has appeared valid at least once (i and i + 120 cannot both be multiples of 7)
    assert c["best"][-1] == 1.0 and c["distinct"][-1] == 120
    assert c["top10"][-1] == pytest.approx(np.mean(range(110, 120)) / 119)
    assert c["hits"][-1] == sum(k / 119 >= 0.9 for k in range(120))
    assert pmo.discovery([], every=100) == {"calls": [], "best": [], "top10": [], "distinct": [], "hits": []}
    with pytest.raises(ValueError, match="every"):
        pmo.discovery(recs, every=0)
    with pytest.raises(ValueError, match="threshold"):
        pmo.discovery(recs, threshold=float("nan"))


@pytest.mark.parametrize("call, name", [
    (lambda: pmo.run("docking", "REINVENT", 0, **TINY), "task"),
    (lambda: pmo.run("median1", "PPO", 0, **TINY), "method"),
    (lambda: pmo.run("median1", "REINVENT", -1, **TINY), "seed"),
    (lambda: pmo.run("median1", "REINVENT", 0, budget=0), "budget"),
    (lambda: pmo.run("median1", "REINVENT", 0, top_k=5, **TINY), "top_k"),
    (lambda: pmo.run("median1", "REINVENT", 0, prior="gru", **TINY), "prior"),
    (lambda: pmo.job_dir("", ("median1", "MARA", 0, {})), "store"),
    (lambda: pmo.job_dir("/tmp/x", ("median1", "MARA")), "job"),
    (lambda: pmo.collect("/nonexistent/pmo_store"), "store"),
    (lambda: pmo.study(None, ["median1"], **TINY), "store"),
    (lambda: pmo.study("/tmp/pmo_never", ["median1"], workers=0, **TINY), "workers"),
    (lambda: pmo.mean_curves([], "median1", key="worst"), "key"),
    (lambda: pmo.mean_curves([], "median1"), "runs"),
    (lambda: pmo.compare([], "auc_top10"), "runs"),
    (lambda: pmo.compare("runs"), "results"),
    (lambda: pmo.format_comparison([]), "rows"),
])
def test_entry_points_refuse_bad_input_by_name(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.fixture
def one_thread():
    """One torch thread, as in the study's workers (several threads on two busy cores are many times slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_tiny_study_through_the_store(tmp_path, monkeypatch, one_thread):
    store = tmp_path / "store"
    runs = pmo.study(store, ["isomers_c7h8n2o2"], pmo.METHODS, [0], progress=False, **TINY)
    assert not runs.failures and [(r["method"], r["seed"]) for r in runs] == [(m, 0) for m in pmo.METHODS]
    for r in runs:
        s = r["summary"]
        assert s["calls"] == 128 and 0.0 <= s["auc_top10"] <= 1.0 and s["threshold"] == 0.99
        assert {"yield", "OB100", "intdiv1", "circles", "validity", "uniqueness", "scaffolds_top10"} <= set(s)
        scores = [v for v, _ in r["top"]]
        assert scores == sorted(scores, reverse=True) and s["best"] == scores[0]
        assert s["top10_mean"] == pytest.approx(np.mean(scores[:10]))
        assert 1 <= s["scaffolds_top10"] <= 10 and s["scaffolds_top10"] <= s["scaffolds_top100"] <= len(r["top"])
        assert r["curve"]["calls"] == [100, 128] and r["curve"]["top10"][-1] == pytest.approx(s["top10_mean"])
        assert r["history"]["calls"] == [32, 64, 96, 128] and r["settings"]["lr"] == REINVENT_LR
        assert r["seconds"] > 0 and r["cpu_seconds"] > 0 and r["revision"]
        mara, df = r["method"].startswith("MARA"), r["method"].endswith("+DF")
        assert (r["tau"] == 0.99) == mara and (r["mara_active"] is not None) == mara and ("n_good" in r["history"]) == mara
        assert (r["diversity_filter"] == pmo.DIVERSITY_FILTER) == df and (r["df_full_buckets"] is not None) == df
        assert (pmo.job_dir(store, ("isomers_c7h8n2o2", r["method"], 0, {})) / "job-00000.json").exists()

    def never(*a, **k):
        raise AssertionError("a stored run was run again")

    monkeypatch.setattr(pmo, "run", never)
    again = pmo.study(store, ["isomers_c7h8n2o2"], pmo.METHODS, [0], progress=False, **TINY)
    assert not again.failures and json.dumps(list(again)) == json.dumps(list(runs))
    assert pmo.collect(store) == list(again)
    # a later part of the grid that must run records its failure (here: run refuses), the stored runs stay
    more = pmo.study(store, ["isomers_c7h8n2o2"], ["REINVENT"], [0, 1], progress=False, **TINY)
    assert more[0] == runs[0] and isinstance(more[1], JobFailure) and more[1].job[:3] == ("isomers_c7h8n2o2", "REINVENT", 1)
    # another budget in the same store is refused before anything runs
    with pytest.raises(ValueError, match="store"):
        pmo.study(store, ["isomers_c7h8n2o2"], ["REINVENT"], [0], progress=False, budget=64, batch_size=32)
    monkeypatch.undo()
    # the same seed gives the same run outside the store
    fresh = pmo.run("isomers_c7h8n2o2", "MARA+DF", 0, **TINY)
    assert fresh["summary"] == runs[3]["summary"] and fresh["top"] == runs[3]["top"]
    # the command writes what the store holds, with provenance
    out = tmp_path / "pmo.json"
    pmo.main(["--store", str(store), "--collect", "--out", str(out), "--tasks", "isomers_c7h8n2o2", "--seeds", "0",
              "--budget", "128", "--batch-size", "32"])
    data = json.loads(out.read_text())
    assert data["provenance"]["command"].startswith("python scripts/run_pmo_study.py --store")
    res = data["results"]
    assert (res["planned"], res["finished"], res["partial"], len(res["runs"])) == (4, 4, False, 4)
    assert res["design"]["tasks"]["isomers_c7h8n2o2"]["tau"]["MARA"] == 0.99
    curves = pmo.mean_curves(res["runs"], "isomers_c7h8n2o2")
    assert list(curves) == list(pmo.METHODS) and curves["MARA"]["calls"] == [100, 128] and curves["MARA"]["n"] == 1
    # a store file damaged by hand is named
    (pmo.job_dir(store, ("isomers_c7h8n2o2", "MARA", 0, {})) / "job-00000.json").write_text("{")
    with pytest.raises(ValueError, match="job-00000.json"):
        pmo.collect(store)


# -------------------------------------------------------------------------------------------- the table
def _record(task, method, seed, auc, ob=None):
    return {"task": task, "method": method, "seed": seed, "settings": {"budget": 1000, "batch_size": 64,
                                                                       "sigma": 128.0, "lr": REINVENT_LR},
            "summary": {"auc_top10": auc, "OB100": ob}}


def _welch(a, b):
    from scipy import stats as st

    return st.ttest_ind(a, b, equal_var=False, alternative="two-sided").pvalue


def test_comparison_table_matches_welch_and_holm_by_hand():
    values = {"REINVENT": [0.50, 0.52, 0.55], "REINVENT+DF": [0.40, 0.43, 0.44], "MARA": [0.60, 0.61, 0.65],
              "MARA+DF": [0.50, 0.52, 0.55]}
    runs = [_record("median1", m, s, v) for m, vals in values.items() for s, v in enumerate(vals)]
    runs.append(JobFailure(12, ("median1", "MARA", 3, {}), "RuntimeError", "boom"))
    rows = pmo.compare(runs, n_resamples=200)
    assert [r["method"] for r in rows] == list(pmo.METHODS)
    by = {r["method"]: r for r in rows}
    assert by["MARA"]["n"] == 3 and by["MARA"]["errors"] == 1 and by["REINVENT"]["errors"] == 0
    assert by["REINVENT"]["mean"] == pytest.approx(np.mean(values["REINVENT"]))
    assert by["REINVENT"]["sd"] == pytest.approx(np.std(values["REINVENT"], ddof=1))
    assert "tests" not in by["REINVENT"] and "tests" not in by["REINVENT+DF"]
    raw = {(m, b): _welch(values[m], values[b]) for m in ("MARA", "MARA+DF") for b in ("REINVENT", "REINVENT+DF")}
    assert raw[("MARA+DF", "REINVENT")] == pytest.approx(1.0)  # identical samples: no difference at all
    # Holm by hand: the i-th smallest of m p-values times (m - i), running maximum, capped at 1
    order = sorted(raw, key=raw.get)
    adjusted, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, raw[key] * (len(raw) - i)))
        adjusted[key] = running
    for (m, b), p in raw.items():
        t = by[m]["tests"][b]
        assert t["p"] == pytest.approx(p) and t["p_holm"] == pytest.approx(adjusted[(m, b)])
        assert t["effect"] == pytest.approx(np.mean(values[m]) - np.mean(values[b]))
        assert t["ci_low"] <= t["effect"] <= t["ci_high"]
    assert by["MARA"]["tests"]["REINVENT+DF"]["p_holm"] < 0.05
    assert by["MARA+DF"]["tests"]["REINVENT"]["p_holm"] == 1.0
    assert all(r["family_size"] == 4 for r in rows)
    table = pmo.format_comparison(rows)
    assert "median1" in table and "Holm p" in table and "[1 raised]" in table and "4 tests" in table


def test_the_filter_tested_against_reinvent_is_a_family_of_its_own():
    values = {"REINVENT": [0.50, 0.52, 0.55, 0.51], "REINVENT+DF": [0.40, 0.43, 0.44, 0.47],
              "MARA": [0.90, 0.91, 0.95, 0.93]}
    runs = [_record(t, m, s, v + (0.1 if t == "qed" else 0.0)) for t in ("median1", "qed")
            for m, vals in values.items() for s, v in enumerate(vals)]
    rows = pmo.compare(runs, treatments=("REINVENT+DF",), baselines=("REINVENT",), n_resamples=200)
    tested = [r for r in rows if "tests" in r]
    assert [(r["task"], r["method"]) for r in tested] == [("median1", "REINVENT+DF"), ("qed", "REINVENT+DF")]
    raw = _welch(values["REINVENT+DF"], values["REINVENT"])  # the same shift on both tasks: the same p twice
    for r in tested:
        t = r["tests"]["REINVENT"]
        assert set(r["tests"]) == {"REINVENT"} and r["family_size"] == 2
        assert t["effect"] == pytest.approx(np.mean(values["REINVENT+DF"]) - np.mean(values["REINVENT"]))
        assert t["p"] == pytest.approx(raw) and t["p_holm"] == pytest.approx(min(1.0, 2 * raw))
    assert all("tests" not in r for r in rows if r["method"] == "MARA")  # MARA is not tested in this family
    table = pmo.format_comparison(rows)
    assert "REINVENT+DF: difference of means to REINVENT (R)" in table and "2 tests" in table
    for bad in ("REINVENT+DF", (), ("REINVENT",)):
        with pytest.raises(ValueError, match="treatments"):
            pmo.compare(runs, treatments=bad, baselines=("REINVENT",))


def test_comparison_counts_an_unreached_ob_as_the_budget_and_names_a_missing_metric():
    runs = [_record("qed", m, s, 0.5, ob) for m, obs in (("REINVENT", [None, 800]), ("MARA", [300, 500]))
            for s, ob in enumerate(obs)]
    by = {r["method"]: r for r in pmo.compare(runs, "OB100", n_resamples=200)}
    assert by["REINVENT"]["mean"] == pytest.approx((1000 + 800) / 2)
    assert set(by["MARA"]["tests"]) == {"REINVENT"}  # no REINVENT+DF runs: no test against it
    assert by["MARA"]["family_size"] == 1
    with pytest.raises(ValueError, match="yield"):
        pmo.compare(runs, "yield")


# --------------------------------------------------------------------------- one home for lr and sigma
def test_every_entry_point_reads_the_one_lr_and_sigma(monkeypatch, one_thread):
    assert REINVENT_LR == 5e-4 and REINVENT_SIGMA == 128.0
    from marabook.provenance import load_stored

    for name in ("reinvent_study", "reinvent_tau"):  # what the stored studies ran with is the default
        assert load_stored(name)["results"]["settings"]["lr"] == REINVENT_LR
    cfg = ReinventConfig()
    assert (cfg.lr, cfg.sigma) == (REINVENT_LR, REINVENT_SIGMA)
    for fn in (molecules.run, pmo.run, pmo.grid, pmo.study, pmo.design):
        params = inspect.signature(fn).parameters
        assert params["lr"].default == REINVENT_LR and params["sigma"].default == REINVENT_SIGMA, fn.__name__

    seen = {}

    class Stop(Exception):
        pass

    def capture(args, command, sigmas):
        seen[command.split()[1]] = (args.lr, list(sigmas))
        raise Stop

    monkeypatch.setattr(molecules, "_store_grid", capture)
    for main in (molecules.main, molecules.study_main):
        with pytest.raises(Stop):
            main([])
    assert seen == {"scripts/run_reinvent.py": (REINVENT_LR, [REINVENT_SIGMA]),
                    "scripts/run_reinvent_study.py": (REINVENT_LR, list(molecules.SIGMAS))}

    def study(store, tasks, methods, seeds, **kw):
        seen["pmo"] = (kw["lr"], kw["sigma"], kw["budget"], list(seeds))
        raise Stop

    monkeypatch.setattr(pmo, "study", study)
    with pytest.raises(Stop):
        pmo.main(["--store", "unused"])
    assert seen["pmo"] == (REINVENT_LR, REINVENT_SIGMA, 10_000, [0, 1, 2, 3, 4])


# ------------------------------------------------------------------------------------------ the report (chapter 9)
def _fake(task, method, seed, auc, yld=0, best=0.5, active=None, n_good=()):
    return {"task": task, "method": method, "seed": seed, "tau": None if active is None else 0.8,
            "mara_active": active, "summary": {"auc_top10": auc, "yield": yld, "best": best},
            "history": {"n_good": list(n_good)}}


FAKE = [_fake("a", "REINVENT", 0, 0.30, best=0.40), _fake("a", "MARA", 0, 0.30, active=0.0),
        _fake("a", "REINVENT", 1, 0.32, best=0.50), _fake("a", "MARA", 1, 0.32, active=0.0),
        _fake("b", "REINVENT", 0, 0.70, 4, best=0.9), _fake("b", "MARA", 0, 0.75, 9, active=0.5, n_good=(0, 3, 2, 1)),
        _fake("b", "REINVENT", 1, 0.80, 6, best=1.0), _fake("b", "MARA", 1, 0.78, 6, active=0.25, n_good=(0, 0, 1, 1)),
        _fake("b", "MARA", 2, 0.90, 9, active=1.0)]  # seed 2 has no REINVENT run: left out of every pairing


def test_activity_counts_where_mara_could_act_on_hand_made_runs():
    from marabook.experiments import pmo_report

    a, b = pmo_report.activity(FAKE)
    assert (a["task"], a["seeds"], a["runs_active"], a["identical"], a["mean_active"]) == ("a", 2, 0, 2, 0.0)
    assert a["best_baseline"] == pytest.approx(0.45)
    assert (b["task"], b["seeds"], b["runs_active"], b["identical"]) == ("b", 2, 2, 0)
    assert b["mean_active"] == pytest.approx(0.375) and b["best_baseline"] == pytest.approx(0.95)
    # a lone good molecule is its own anchor: only batches with two or more change a score
    assert (a["runs_changed"], b["runs_changed"]) == (0, 1) and b["mean_changed"] == pytest.approx((2 / 4 + 0) / 2)
    table = pmo_report.format_activity([a, b])
    assert "0/2" in table and "2/2" in table and "1/2" in table and "25%" in table


def test_paired_differences_seed_by_seed():
    from marabook.experiments import pmo_report

    a, b = pmo_report.paired(FAKE, "auc_top10")
    assert a["diffs"] == [0.0, 0.0] and (a["equal"], a["higher"], a["lower"]) == (2, 0, 0)
    assert b["diffs"] == pytest.approx([0.05, -0.02]) and b["mean"] == pytest.approx(0.015)
    assert (b["higher"], b["lower"], b["n"]) == (1, 1, 2)
    y = pmo_report.paired(FAKE, "yield")[1]
    assert y["diffs"] == [5.0, 0.0] and y["mean"] == 2.5


def test_reference_table_puts_pmo_beside_the_book():
    from marabook.experiments import pmo_report

    assert set(pmo_report.PMO_REINVENT_AUC) == set(pmo.STUDY_TASKS)  # every task of the study has its reference
    assert all(0 < v < 1 for v in pmo_report.PMO_REINVENT_AUC.values())
    rows = [{"task": "median1", "method": "REINVENT", "mean": 0.2241, "n": 3},
            {"task": "median1", "method": "MARA", "mean": 0.2250, "n": 3}]
    t = pmo_report.reference_table(rows)
    assert t.columns == ("task", "PMO's REINVENT", "book: REINVENT", "book: MARA")
    assert t.rows == (("median1", "0.356", "0.224", "0.225"),)


@pytest.mark.parametrize("call, name", [
    (lambda R: R.activity(FAKE, method="REINVENT"), "method"),
    (lambda R: R.activity(FAKE, baseline="MARA"), "baseline"),
    (lambda R: R.activity([]), "runs"),
    (lambda R: R.activity(FAKE, method="MARA+DF"), "runs"),
    (lambda R: R.paired(FAKE, "nope"), "metric"),
    (lambda R: R.paired(FAKE, method="PPO"), "method"),
    (lambda R: R.format_activity([]), "rows"),
    (lambda R: R.reference_table("x"), "compare_rows"),
    (lambda R: R.reference_table([{"task": "a", "method": "MARA", "mean": 1, "n": 1}], reference=[1]), "reference"),
])
def test_the_report_refuses_bad_input_by_name(call, name):
    from marabook.experiments import pmo_report

    with pytest.raises(ValueError, match=name):
        call(pmo_report)
