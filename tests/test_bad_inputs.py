"""Bad input to the public functions added in the second edition raises a ValueError naming the argument.

(The first edition's functions are covered next to their numerical tests; this file gathers the
newer plumbing, LM-sizing, experiment and integration entry points in one place.)
"""
import pytest

torch = pytest.importorskip("torch")

from marabook import plumbing  # noqa: E402
from marabook.chem.reinvent import DiversityFilter, MaraTransform  # noqa: E402
from marabook.experiments import onetwo  # noqa: E402
from marabook.lm import random_models  # noqa: E402
from marabook.mara import Threshold  # noqa: E402
from marabook.rl.config import LoraSettings, RLConfig  # noqa: E402


@pytest.mark.parametrize("call, name", [
    (lambda: plumbing.default_device("nope"), "device"),
    (lambda: plumbing.device_name("nope"), "device"),
    (lambda: plumbing.pad_sequences([], 0), "seqs"),
    (lambda: Threshold.parse("p90", "nope"), "tau_scope"),
    (lambda: LoraSettings(rank=0), "rank"),
    (lambda: RLConfig(micro_batch_size=0), "micro_batch_size"),
    (lambda: RLConfig(lora={"bogus": 1}), "lora"),
    (lambda: RLConfig(kl_estimator="k9"), "kl_estimator"),
    (lambda: onetwo.time_to_target([], 0.5, within=0.0), "within"),
    (lambda: onetwo.time_to_target([], 1.5), "target"),
    (lambda: onetwo.time_to_target([], 0.5, fail_below=-0.1), "fail_below"),
    (lambda: onetwo.summarize([], fail_below=1.5), "fail_below"),
    (lambda: random_models.save_random_lm("unused", arch="gpt9"), "arch"),
    (lambda: MaraTransform(beta=-1.0, threshold=Threshold.parse(0.5)), "beta"),
    (lambda: MaraTransform(beta=0.1, threshold="top"), "tau"),
    (lambda: DiversityFilter(bucket_size=0), "bucket_size"),
    (lambda: DiversityFilter(min_score=float("nan")), "min_score"),
])
def test_named_value_error(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_trl_entry_points_name_their_arguments():
    itrl = pytest.importorskip("marabook.integrations.trl")
    with pytest.raises(ValueError, match="prompts and completion_ids"):
        itrl.reference_logprobs(None, None, ["a", "b"], [[1]])
    with pytest.raises(ValueError, match="batch_size"):
        itrl.reference_logprobs(None, None, ["a"], [[1]], batch_size=0)


def test_time_to_target_finds_the_settling_step():
    # step 10 is within reach but step 15 leaves it; from step 20 on it stays
    traj = [{"step": s, "share_1": v, "p_valid": 1.0} for s, v in [(0, 0.9), (10, 0.52), (15, 0.7), (20, 0.49),
                                                                     (25, 0.55)]]
    assert onetwo.time_to_target(traj, 0.5, within=0.1) == 20
    assert onetwo.time_to_target(traj, 0.5, within=0.01) is None
    # a run whose valid mass drops below fail_below has not settled, whatever its share
    traj[-1]["p_valid"] = 0.3
    assert onetwo.time_to_target(traj, 0.5, within=0.1) is None


# --- this session's additions: glue, chapter 5/6 numbers, modes, chemistry (issue 18's probe list) ---------

def _chem():
    pytest.importorskip("rdkit")
    from marabook import chem
    return chem


@pytest.mark.parametrize("call, name", [
    (lambda: __import__("marabook.glue", fromlist=["x"]).glue_name(), "parts"),
    (lambda: __import__("marabook.glue", fromlist=["x"]).glue_rows([{"a": 1}], (), ("a",)), "keys"),
    (lambda: __import__("marabook.glue", fromlist=["x"]).glue_rows([{"a": 1}], ("a",), ("b",)), "rows"),
    (lambda: onetwo.share_stats([]), "finals"),
    (lambda: onetwo.share_stats([{"p_valid": 1, "share_1": 0.5, "entropy_bits": 1}], near=0.0), "near"),
    (lambda: __import__("marabook.experiments.open_ended", fromlist=["x"]).predictions([0.7, 0.6], [1, 1]),
     "ref_probs"),
    (lambda: __import__("marabook.experiments.open_ended", fromlist=["x"]).predictions([0.5, 0.4], [1]), "rewards"),
])
def test_named_value_error_session5(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_chem_bad_input_is_refused_by_name():
    chem = _chem()
    import numpy as np

    from marabook.experiments import molecules

    oracle = chem.Oracle(lambda mols: np.ones(len(mols)), budget=3)
    with pytest.raises(ValueError, match="budget"):
        oracle(["CCO"] * 5)                                   # was: 5 calls accepted against a budget of 3
    assert oracle.calls == 0
    with pytest.raises(ValueError, match="clip"):
        chem.Oracle(lambda mols: np.full(len(mols), 7.0))(["CCO"])   # was: silently clipped to 1
    clipped = chem.Oracle(lambda mols: np.full(len(mols), np.inf), clip=True)
    assert clipped(["CCO"]).tolist() == [1.0]
    failing = chem.Oracle(lambda mols: np.full(len(mols), np.nan))
    assert failing(["CCO", "CCN"]).tolist() == [0.0, 0.0] and failing.n_failed == 2   # counted, not hidden
    for tau in (1.5, -0.5, 0.0):
        with pytest.raises(ValueError, match="mara_tau"):
            chem.ReinventConfig(mara_tau=tau)
    with pytest.raises(ValueError, match="threshold"):
        chem.yield_count([(0, "CCO", "CCO", 0.9)], float("nan"))
    with pytest.raises(ValueError, match="training"):
        chem.novelty(["OCC"], "OCC")
    with pytest.raises(ValueError, match="smiles"):
        chem.bulk_tanimoto("CCO", ["CCO"])
    with pytest.raises(ValueError, match="references"):
        chem.assign_modes(["CCO"], references={})
    with pytest.raises(ValueError, match="max_length"):
        chem.load_prior(device="cpu").sample(2, seed=0, max_length=0)
    with pytest.raises(ValueError, match="records"):
        chem.yield_count(None, 0.8)
    with pytest.raises(ValueError, match="smiles"):
        chem.validity(None)
    with pytest.raises(ValueError, match="agent_logp"):
        chem.dap_loss(torch.tensor([float("nan")]), torch.tensor([0.0]), torch.tensor([1.0]), 10.0)
    with pytest.raises(ValueError, match="method"):
        molecules.method_config("MARA high")
    with pytest.raises(ValueError, match="task"):
        molecules.run("docking", "REINVENT", 0, budget=8)
    with pytest.raises(ValueError, match="task"):
        molecules.mode_table([], task="unequal_modes")


def test_chem_documented_behaviour_replaces_the_probed_surprises():
    chem = _chem()
    import numpy as np

    from marabook.experiments import molecules

    # novelty canonicalises whatever container holds the training molecules
    assert chem.novelty(["OCC"], {"OCC"}) == chem.novelty(["OCC"], ["OCC"]) == 0.0
    # NumPy arrays of SMILES are lists of SMILES
    arr = np.array(["CCO", "CCO", "c1ccccc1"])
    assert chem.validity(arr) == 1.0 and chem.uniqueness(arr) == pytest.approx(2 / 3)
    # MARA at a percentile never counts an invalid molecule (score 0) as good
    mt = chem.MaraTransform(beta=0.01, threshold=__import__("marabook.mara", fromlist=["x"]).Threshold.parse("p10", "batch"))
    out = mt(["x", "y", "CCO"], np.array([0.0, 0.0, 0.9]), np.array([-5.0, -1.0, -20.0]))
    assert out[:2].tolist() == [0.0, 0.0]
    # the trainer stops at the oracle's budget when it is smaller than the config's
    prior = chem.load_prior(device="cpu")
    oracle = chem.multi_mode_task(budget=10)
    chem.ReinventTrainer(prior, oracle, chem.ReinventConfig(budget=128, batch_size=8), device="cpu",
                         progress=False).train()
    assert oracle.calls == 10
    # any tau and a user's own oracle go through the same runner
    res = molecules.run(lambda budget: chem.Oracle(chem.make_reward(chem.oracles.qed_term), budget=budget),
                        "MARA 0.9", 0, budget=16, batch_size=8, prior=prior, device="cpu", modes={"ethanol": "CCO"})
    assert res["summary"]["calls"] == 16 and "modes@0.80" in res["summary"]


@pytest.mark.parametrize("call, name", [
    (lambda: __import__("marabook.experiments.open_ended", fromlist=["x"]).flat([{"n": 1}]), "rows"),
    (lambda: __import__("marabook.experiments.open_ended", fromlist=["x"]).prediction_table({"RLOO": None}), "preds"),
    (lambda: __import__("marabook.experiments.onetwo_trl", fromlist=["x"]).trl_summary({"results": {}}), "stored"),
])
def test_named_value_error_review_mends(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_prediction_table_names_and_molecule_reports_refuse_bad_input():
    import numpy as np

    from marabook.experiments import open_ended as oe

    pr = oe.predictions(np.array([0.5, 0.4]), np.array([1.0, 0.95]), n=8)
    assert "distinct of 8" in oe.prediction_table(pr, ["a", "b"])
    with pytest.raises(ValueError, match="names"):
        oe.prediction_table(pr, ["a"])
    molecules = pytest.importorskip("marabook.experiments.molecules")
    with pytest.raises(ValueError, match="rows"):
        molecules.format_study([])
    with pytest.raises(ValueError, match="top"):
        molecules.anchor_report([], top=0.0)
    with pytest.raises(ValueError, match="runs"):
        molecules.anchor_report([{"task": "product", "method": "REINVENT"}], "multi_mode")


# --- issue 28: corrupt or foreign files and the other silent cases get named errors -----------------------

def test_bools_are_not_numbers_for_beta_or_a_budget():
    import numpy as np

    from marabook import targets

    with pytest.raises(ValueError, match="beta must be a number, got True"):
        targets.reverse_kl_target(np.array([0.5, 0.5]), np.array([1.0, 0.0]), True)
    with pytest.raises(ValueError, match="beta"):
        targets.reverse_kl_target(np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.array([[True]]))
    chem = _chem()
    with pytest.raises(ValueError, match="budget"):
        chem.Oracle(lambda mols: np.ones(len(mols)), budget=True)
    assert chem.Oracle(lambda mols: np.ones(len(mols)), budget=np.int64(3)).budget == 3


def test_method_targets_broadcast_a_column_of_betas():
    import numpy as np

    from marabook.mara import method_targets

    ref, r = np.array([0.6, 0.3, 0.1]), np.array([1.0, 1.0, 0.0])
    betas = np.array([[0.05], [0.5], [5.0]])
    many = method_targets(ref, r, betas, 0.5, eta=0.1)
    for key, value in many.items():
        assert value.shape == (3, 3), key
        for i, b in enumerate(betas[:, 0]):
            np.testing.assert_allclose(value[i], method_targets(ref, r, float(b), 0.5, eta=0.1)[key], rtol=1e-12,
                                       err_msg=key)
    with pytest.raises(ValueError, match="beta"):
        method_targets(ref, r, np.array([0.1, 0.2, 0.3]), 0.5)   # a bare vector would broadcast along tokens


def test_cuda_without_cuda_is_named():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device 'cuda' asks for CUDA, but torch sees no CUDA GPU"):
        plumbing.default_device("cuda")


def test_a_run_records_where_it_ran():
    assert plumbing.device_name("cpu") == "cpu" and plumbing.device_name(torch.device("cpu")) == "cpu"
    if torch.cuda.is_available():  # the GPU's own name, not "cuda"
        assert plumbing.device_name("cuda") == torch.cuda.get_device_name(0) != "cuda"


def test_oracle_refuses_non_numeric_scores_and_survives_huge_smiles():
    import numpy as np

    chem = _chem()
    oracle = chem.Oracle(lambda mols: ["high"] * len(mols))
    with pytest.raises(ValueError, match="score_fn must return numbers"):
        oracle(["CCO"])
    # a 20,000-atom SMILES crashed RDKit's MolToSmiles (the process, not an exception): now it is invalid
    huge = "C" * 20_000
    assert not chem.is_valid(huge) and chem.canonical_smiles(huge) is None
    counted = chem.Oracle(lambda mols: np.ones(len(mols)))
    assert counted([huge, "CCO"]).tolist() == [0.0, 1.0] and counted.n_invalid == 1
    assert chem.is_valid("C" * 1000)


def test_sa_score_uses_rdkits_sascorer_not_one_in_the_working_directory(tmp_path, monkeypatch):
    import sys

    chem = _chem()
    from marabook.chem import oracles

    (tmp_path / "sascorer.py").write_text("raise RuntimeError('the wrong sascorer was imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(oracles, "_SASCORER", None)
    before = list(sys.path)
    score = chem.sa_score("CCO")
    assert 1.0 <= score < 5.0 and sys.path == before
    assert "sascorer" not in sys.modules or not str(getattr(sys.modules["sascorer"], "__file__", "")).startswith(
        str(tmp_path))


def test_oracle_identity_and_a_spent_oracle():
    import numpy as np

    chem = _chem()
    a, b = chem.product_task(), chem.product_task(budget=10)
    assert a.identity() == b.identity()                       # the budget is a limit, not the task
    assert chem.multi_mode_task().identity() != a.identity()
    assert chem.unequal_modes_task().identity()["fingerprint"] != chem.multi_mode_task().identity()["fingerprint"]
    assert chem.multi_mode_task(saturate=0.5).identity() != chem.multi_mode_task().identity()
    spent = chem.Oracle(lambda mols: np.ones(len(mols)), name="spent", budget=4)
    spent(["CCO"] * 4)
    with pytest.raises(ValueError, match="oracle 'spent' has already made 4 calls"):
        spent.check_fresh()
    # the REINVENT trainer (through TrainLoop) refuses it instead of running zero steps
    prior = chem.load_prior(device="cpu")
    with pytest.raises(ValueError, match="already made 4 calls"):
        chem.ReinventTrainer(prior, spent, chem.ReinventConfig(budget=8, batch_size=4), device="cpu", progress=False)


def test_a_prior_with_another_vocabulary_is_refused_naming_the_files(tmp_path):
    import json
    import shutil

    chem = _chem()
    from marabook.chem.prior import PRIOR_DIR

    d = tmp_path / "prior"
    shutil.copytree(PRIOR_DIR, d)
    vocab = json.loads((d / "vocab.json").read_text())
    tokens = vocab["tokens"]
    permuted = tokens[:3] + tokens[3:][::-1]                   # same size, another order
    (d / "vocab.json").write_text(json.dumps(dict(vocab, tokens=permuted)))
    with pytest.raises(ValueError, match=r"vocab\.json is not the vocabulary .*model\.safetensors was trained with"):
        chem.load_prior(d, device="cpu")
    (d / "vocab.json").write_text(json.dumps(dict(vocab, tokens=tokens + ["Xe"])))
    with pytest.raises(ValueError, match=r"vocab"):
        chem.load_prior(d, device="cpu")
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        chem.load_prior(d, device="cpu")
    # a prior saved now records its vocabulary in the weights' metadata: a permuted copy is refused too
    saved = chem.load_prior(device="cpu").save_pretrained(tmp_path / "mine")
    assert chem.load_prior(saved, device="cpu").tokenizer.tokens == tokens
    (saved / "vocab.json").write_text(json.dumps(dict(vocab, tokens=permuted)))
    with pytest.raises(ValueError, match="is not the vocabulary"):
        chem.load_prior(saved, device="cpu")


def test_trl_mara_reward_checks_groups_and_num_generations():
    from types import SimpleNamespace

    itrl = pytest.importorskip("marabook.integrations.trl")
    try:
        itrl.check_trl_version()
    except ImportError:
        pytest.skip("no supported TRL")
    cfg = SimpleNamespace(beta=0.1, num_generations=4, scale_rewards="none")

    def ones(prompts, completions, **kw):
        return [1.0] * len(prompts)

    with pytest.raises(ValueError, match="num_generations = 2 contradicts the config's num_generations = 4"):
        itrl.mara_reward(ones, None, None, tau=0.5, config=cfg, num_generations=2)
    fn = itrl.mara_reward(ones, None, None, tau=0.5, config=cfg)
    with pytest.raises(ValueError, match=r"prompts 0\.\.3 are not one prompt repeated"):
        fn(["a", "a", "b", "b"], ["x"] * 4, completion_ids=[[1]] * 4)
    bad = itrl.mara_reward(lambda prompts, completions, **kw: ["good"] * len(prompts), None, None, tau=0.5,
                           config=cfg)
    with pytest.raises(ValueError, match="reward_fn must return numbers"):
        bad(["a"] * 4, ["x"] * 4, completion_ids=[[1]] * 4)


# --- issue 28: summaries count JobFailure records, loaders name file and field, compare_methods' baseline ----------
def _failure(job, index=0):
    from marabook.experiments.sweep import JobFailure

    return JobFailure.of(index, job, RuntimeError("boom"))


def test_onetwo_summaries_count_failed_jobs():
    from dataclasses import asdict

    cfg = RLConfig(beta=0.01, kl="reverse", mara_tau=1.0, seed=0, advantage="rloo")
    final = {"p_valid": 0.9, "share_1": 0.5, "entropy_bits": 1.0}
    run = {"config": asdict(cfg), "final": final, "trajectory": [{"step": 0, **final}]}
    results = [run, _failure((RLConfig(beta=0.01, kl="reverse", mara_tau=1.0, seed=1, advantage="rloo"), "p"), 1),
               _failure(RLConfig(beta=0.03, kl="reverse", seed=0, advantage="rloo"), 2)]
    rows = {(r["method"], r["beta"]): r for r in onetwo.summarize(results)}
    assert rows["MARA", 0.01]["runs"] == 2 and rows["MARA", 0.01]["errors"] == 1
    assert rows["MARA", 0.01]["reward_mean"] == 0.9  # the finished run only, never the failure
    assert rows["vanilla", 0.03]["errors"] == 1 and rows["vanilla", 0.03]["runs"] == 1
    assert "1 raised" in str(onetwo.table(list(rows.values())))
    names = onetwo.failed_runs(results)
    assert len(names) == 2 and all("raised RuntimeError: boom" in n for n in names)
    assert onetwo.select(results, method="MARA") == [run]
    dyn = onetwo.dynamics_summary([{**run, "config": asdict(RLConfig(beta=0.01, seed=0, group_size=8))},
                                   _failure((RLConfig(beta=0.01, seed=1, group_size=8), "p", 20), 1)])
    assert [(r["runs"], r["errors"]) for r in dyn] == [(2, 1)]


def test_open_ended_summary_counts_failed_jobs():
    from marabook.experiments import open_ended as oe

    ev = {"in": {"reward": 0.5, "ead1": 0.2, "distinct": 3}, "out": {"reward": 0.4}}
    results = [{"method": "GRPO", "seed": 0, "eval": ev}, _failure((1, "GRPO", 10, {}), 1),
               _failure((0, "RLOO", 10, {}), 2)]
    rows = {r["method"]: r for r in oe.summarize(results)}
    assert rows["GRPO"]["n"] == 1 and rows["GRPO"]["errors"] == 1 and rows["GRPO"]["reward (in)"][0] == 0.5
    assert rows["RLOO"]["n"] == 0 and rows["RLOO"]["errors"] == 1 and "reward (in)" not in rows["RLOO"]
    assert "GRPO (1 raised)" in str(oe.table(list(rows.values())))
    assert oe.flat(list(rows.values()))[0]["errors"] == 1


def test_molecules_summaries_count_failed_jobs_and_name_a_bad_baseline():
    from marabook.experiments import molecules

    def run(method, seed, y, sigma=128.0):
        return {"task": "product", "method": method, "seed": seed, "sigma": sigma,
                "summary": {"yield@0.80": y, "OB100": None}, "history": [], "curve": {}, "top": []}
    runs = [run("REINVENT", s, 10.0 + s) for s in range(3)] + [run("MARA 0.80", s, 20.0 + s) for s in range(2)]
    runs += [_failure(("product", "MARA 0.80", 2, {"budget": 10, "sigma": 128.0}), 5),
             _failure(("product", "REINVENT+DF", 0, {"budget": 10}), 6)]
    rows = {r["method"]: r for r in molecules.compare_methods(runs, "product", metrics=["yield@0.80"], budget=10)}
    assert rows["MARA 0.80"]["n"] == 2 and rows["MARA 0.80"]["errors"] == 1
    assert rows["MARA 0.80"]["yield@0.80"][0] == 20.5 and "yield@0.80 p" in rows["MARA 0.80"]
    assert rows["REINVENT+DF"] == {"method": "REINVENT+DF", "n": 0, "errors": 1}
    assert "MARA 0.80 (1 raised)" in str(molecules.format_comparison(list(rows.values()), ["yield@0.80"]))
    study = {r["method"]: r for r in molecules.study_rows(runs, n_resamples=200)}
    assert study["MARA 0.80"]["errors"] == 1 and study["MARA 0.80"]["n"] == 2
    with pytest.raises(ValueError, match="baseline 'REINVNET'"):
        molecules.compare_methods(runs, "product", metrics=["yield@0.80"], baseline="REINVNET")


def test_token_summary_reports_a_failed_configuration():
    from marabook.experiments import tokens

    cfg, bad = tokens.TokenConfig(1.0, "reverse", False), tokens.TokenConfig(1.0, "reverse", True)
    runs = {cfg.key: tokens.run(cfg, steps_exact=0, steps_sampled=2, seeds=(0,)), bad.key: _failure((bad, {}), 1)}
    rows = tokens.summarize(runs)
    assert "error" not in rows[0] and rows[1] == {"method": "MARA", "kl": "reverse", "beta": 1.0,
                                                  "error": "RuntimeError: boom"}
    assert "raised RuntimeError: boom" in str(tokens.table(rows))


def test_a_stored_file_without_a_field_its_chapter_reads_is_named(tmp_path, monkeypatch):
    import json
    import re
    from pathlib import Path

    from marabook import provenance

    text = provenance.stored_path("onetwo_sweep").read_text()
    data = json.loads(text)
    del data["results"]["runs"]
    (tmp_path / "onetwo_sweep.json").write_text(json.dumps(data))
    monkeypatch.setattr(provenance, "RESULTS_DIR", tmp_path)
    with pytest.raises(provenance.ResultsFileError, match=r"onetwo_sweep\.json.*'runs'"):
        provenance.load_stored("onetwo_sweep", required=["minutes", "runs"])
    # a run of another version: the reader names the field it lacks
    old = json.loads(text)["results"]["runs"][:1]
    del old[0]["config"]["advantage"]
    with pytest.raises(provenance.ResultsFileError, match="'advantage'"):
        onetwo.summarize(old)
    # every chapter's load_stored call says which fields it reads
    book = Path(__file__).resolve().parents[1] / "book"
    for nb in sorted(book.glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            for call in re.findall(r"load_stored\([^)]*\)", "".join(cell["source"])):
                assert "required=" in call, f"{nb.name}: {call} names no required fields"
