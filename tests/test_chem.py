"""marabook.chem: tokenizer, data, prior, oracles, metrics, the DAP fixed point, REINVENT + MARA."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rdkit")

from marabook import chem  # noqa: E402
from marabook.chem import metrics as M  # noqa: E402
from marabook.chem.data import SUBSET_PATH, load_smiles, subset_info  # noqa: E402
from marabook.chem.oracles import (Oracle, hbd_term, make_reward, qed_term, ramp, sa_term,  # noqa: E402
                                   size_term)
from marabook.chem.metrics import summarize_run  # noqa: E402
from marabook.chem.reinvent import (DiversityFilter, ReinventConfig, ReinventTrainer, ReplayMemory,  # noqa: E402
                                    dap_fixed_point, dap_loss)
from marabook.experiments import molecules  # noqa: E402
from marabook.experiments.molecules import method_config  # noqa: E402
from marabook.mara import mara_rewards, mara_target  # noqa: E402

torch.set_num_threads(2)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(scope="module")
def prior():
    return chem.load_prior(device="cpu")


@pytest.fixture(scope="module")
def smiles():
    return load_smiles()


# ------------------------------------------------------------------------------------------- data
def test_shipped_subset_matches_its_provenance(smiles):
    import hashlib

    info = subset_info()
    assert hashlib.sha256(SUBSET_PATH.read_bytes()).hexdigest() == info["subset_sha256"]
    assert len(smiles) == info["n_subset"] == 200_000
    assert (SUBSET_PATH.parent / "LICENSE").read_text().startswith("Copyright 2018 Insilico Medicine")


def test_load_smiles_sample_is_seeded(smiles):
    a, b, c = load_smiles(50, seed=3), load_smiles(50, seed=3), load_smiles(50, seed=4)
    assert a == b and a != c and set(a) <= set(smiles)
    for bad in (0, -1, 2.5, 10**7):
        with pytest.raises(ValueError, match="n"):
            load_smiles(bad)


# ------------------------------------------------------------------------------------------- tokenizer
def test_tokenize_hand_cases():
    tok = chem.SmilesTokenizer
    t = tok(["C"])
    assert t.tokenize("ClCc1ccc[nH]1") == ["Cl", "C", "c", "1", "c", "c", "c", "[nH]", "1"]
    assert t.tokenize("BrC%10CC%10") == ["Br", "C", "%10", "C", "C", "%10"]
    assert t.tokenize("C[C@@H](N)[N+](=O)[O-]") == ["C", "[C@@H]", "(", "N", ")", "[N+]", "(", "=", "O", ")",
                                                    "[O-]"]
    # "Sc" is sulfur then aromatic carbon, not scandium; "Cc" two carbons
    assert t.tokenize("Sc1ccccc1") == ["S", "c", "1", "c", "c", "c", "c", "c", "1"]


def test_tokenizer_round_trip_on_the_whole_dataset(smiles):
    tok = chem.SmilesTokenizer.from_smiles(smiles)
    assert all(tok.decode(tok.encode(s)) == s for s in smiles)
    assert tok.tokens[:3] == ["<pad>", "^", "$"] and len(tok) == 26


def test_tokenizer_json_round_trip_and_errors(tmp_path):
    tok = chem.SmilesTokenizer.from_smiles(["CCO", "c1ccccc1Cl", "C[nH]"])
    tok.save(tmp_path / "v.json")
    assert chem.SmilesTokenizer.load(tmp_path / "v.json") == tok
    ids = tok.encode("CCO")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids + [tok.index["C"]]) == "CCO"  # stops at the end token
    with pytest.raises(ValueError, match="Br"):
        tok.encode("CBr")
    with pytest.raises(ValueError, match="smiles"):
        tok.tokenize(3)
    with pytest.raises(ValueError, match="ids"):
        tok.decode([999])
    (tmp_path / "bad.json").write_text(json.dumps({"tokens": ["a"]}))
    with pytest.raises(ValueError, match="vocabulary"):
        chem.SmilesTokenizer.load(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------- prior
def test_shipped_prior_matches_its_report(prior):
    report = json.loads((chem.prior.PRIOR_DIR / "report.json").read_text())
    assert report["validity"] >= 0.90 and report["n"] == 10_000
    assert report["n_parameters"] == sum(p.numel() for p in prior.parameters())
    s = prior.sample(1000, seed=7)
    # 1000 samples: binomial SE sqrt(0.95 * 0.05 / 1000) = 0.007 (report's own SE on 10k: 0.002);
    # 0.04 is a 5-SE band, far below the drop a mis-loaded prior shows (validity < 0.5)
    assert abs(M.validity(s) - report["validity"]) < 0.04
    assert M.uniqueness(s) > 0.98


@pytest.mark.parametrize("device", DEVICES)
def test_prior_sampling_is_seeded_and_log_probs_agree(device):
    prior = chem.load_prior(device=device)
    assert prior.sample(20, seed=1) == prior.sample(20, seed=1) != prior.sample(20, seed=2)
    g = torch.Generator(device=device).manual_seed(0)
    ids, lp = prior.sample_ids(32, generator=g)
    ll = prior.log_likelihood(ids)
    # float32 sums of ~40 token log-probs of size ~1-10, computed step by step (sampling) and in one
    # pass (scoring): rounding ~1e-6 relative per term, so ~1e-4 in the sum; 1e-3 leaves 10x room
    assert torch.allclose(lp, ll, atol=1e-3)
    # decoded strings re-encode to the same log-likelihood (padding contributes nothing)
    texts = [prior.tokenizer.decode(r) for r in ids.tolist()]
    ended = [i for i, r in enumerate(ids.tolist()) if prior.tokenizer.eos_id in r]
    ll2 = prior.smiles_log_likelihood([texts[i] for i in ended])
    assert np.allclose(ll2, ll[ended].detach().cpu().numpy(), atol=1e-3)


def test_prior_likelihood_is_a_distribution_over_short_strings():
    """Sum of pi(y) over ALL strings of length <= 2 plus the mass of longer ones equals 1."""
    tok = chem.SmilesTokenizer.from_smiles(["CO"])
    torch.manual_seed(0)
    m = chem.SmilesGRU(tok, embedding_dim=4, hidden_size=8, num_layers=1, max_length=3)
    body = [t for t in range(3, len(tok))]
    seqs = [[1, 2]] + [[1, a, 2] for a in body] + [[1, a, b, 2] for a in body for b in body]
    p_end = m.log_likelihood(chem.prior.collate_ids(seqs)).exp().sum()
    # mass of strings with 3+ body tokens: P(first three tokens are body tokens)
    longer = chem.prior.collate_ids([[1, a, b, c] for a in body for b in body for c in body])
    logits, _ = m(longer[:, :-1])
    lp = torch.log_softmax(logits, -1).gather(-1, longer[:, 1:, None]).squeeze(-1).sum(1).exp().sum()
    assert abs(float((p_end + lp).detach()) - 1.0) < 1e-5


def test_prior_save_load_round_trip_and_pretraining(tmp_path, smiles):
    model, hist = chem.pretrain_prior(smiles[:2000], epochs=2, batch_size=64, lr=3e-3, seed=0, progress=False,
                                      device="cpu",
                                      log_every=10, model_kwargs={"embedding_dim": 16, "hidden_size": 32,
                                                                  "num_layers": 1})
    assert hist[-1][1] < hist[0][1] - 0.5  # the NLL falls
    model.save_pretrained(tmp_path / "p", report={"x": 1})
    again = chem.load_prior(tmp_path / "p", device="cpu")
    assert again.sample(10, seed=3) == model.sample(10, seed=3)
    with pytest.raises(ValueError, match="path"):
        chem.load_prior(tmp_path / "missing")
    with pytest.raises(ValueError, match="n"):
        model.sample(0)
    with pytest.raises(ValueError, match="smiles"):
        model.encode("CCO")


# ------------------------------------------------------------------------------------------- oracles
def test_oracle_functions_on_known_molecules():
    aspirin = "CC(=O)Oc1ccccc1C(=O)O"
    assert chem.qed_score(aspirin) == pytest.approx(0.5501, abs=1e-3)  # Bickerton et al.'s QED of aspirin
    assert chem.hbd_count(aspirin) == 1 and chem.hbd_count("NC(N)=O") == 2
    assert chem.sa_score("c1ccccc1") == pytest.approx(1.0)
    assert chem.tanimoto(aspirin, aspirin) == 1.0
    assert chem.heavy_atoms(aspirin) == 13
    assert chem.murcko_scaffold("Cc1ccccc1CC1CCNCC1") == "c1ccc(CC2CCNCC2)cc1"
    for bad in ("C1CC", "", "xyz", None, 5, "C(C"):
        assert chem.is_valid(bad) is False
        assert chem.qed_score(bad) == 0.0
        assert chem.sa_score(bad) == 10.0
        assert chem.tanimoto(bad, aspirin) == 0.0
        assert chem.canonical_smiles(bad) is None
    assert chem.is_valid("C1CC1") and chem.canonical_smiles("OCC") == "CCO"


def test_reward_terms_and_builder():
    assert np.allclose(ramp([0, 1, 2, 3], 1, 3), [0, 0, 0.5, 1])
    assert np.allclose(ramp([0, 1, 2, 3], 3, 1), [1, 1, 0.5, 0])
    mols = [chem.oracles.mol_from_smiles(s) for s in ("CCO", "NC(=O)NC(N)=O", "C" * 23)]
    assert np.allclose(hbd_term(mols), [1, 1, 1]) and hbd_term(mols, max_donors=2).tolist() == [1, 0, 1]
    assert size_term(mols).tolist() == [0.0, 0.0, 0.5]
    assert sa_term(mols[:1])[0] == pytest.approx(float(ramp(chem.sa_score("CCO"), 5, 3)))
    r = make_reward(qed_term, size_term)
    assert np.allclose(r(mols), qed_term(mols) * size_term(mols))
    r2 = make_reward(qed_term, size_term, aggregate="mean")
    assert np.allclose(r2(mols), (qed_term(mols) + size_term(mols)) / 2)
    with pytest.raises(ValueError, match="aggregate"):
        make_reward(qed_term, aggregate="max")
    with pytest.raises(ValueError, match="terms"):
        make_reward()


def test_oracle_counts_calls_and_invalid_strings():
    o = chem.product_task(budget=100)
    s = o(["CCO", "C1CC", "CCO", "", "c1ccccc1C(=O)NC1CCN(Cc2ccccc2)CC1"])
    assert o.calls == 5 and o.n_invalid == 2 and o.remaining == 95
    assert s[1] == s[3] == 0.0 and s[0] == s[2]
    assert [r[0] for r in o.records] == [0, 1, 2, 3, 4] and o.records[1][2] is None
    expected = (qed_term, hbd_term, sa_term, size_term)
    m = chem.oracles.mol_from_smiles(o.records[4][1])
    assert s[4] == pytest.approx(np.prod([f([m])[0] for f in expected]))
    with pytest.raises(ValueError, match="smiles"):
        o("CCO")
    with pytest.raises(ValueError, match="takes"):
        Oracle(len, takes="x")
    docked = Oracle(lambda smi: np.array([len(x) / 10 for x in smi]), takes="smiles")  # a plug-in oracle
    assert docked(["OCC", "bad("]).tolist() == [0.3, 0.0]


def test_multi_mode_task_rewards_each_reference_drug():
    o = chem.multi_mode_task()
    refs = list(chem.REFERENCE_DRUGS.values())
    assert np.allclose(o(refs), 1.0)
    assert chem.assign_modes(refs) == list(chem.REFERENCE_DRUGS)
    sim = max(chem.tanimoto("CCO", r) for r in refs)
    assert o(["CCO"])[0] == pytest.approx(float(ramp(sim, 0.1, 0.4)))
    assert chem.hbd_count("OCC(O)C(N)CN") == 4 and o(["OCC(O)C(N)CN"])[0] == 0.0  # 4 H-bond donors break the constraint


# ------------------------------------------------------------------------------------------- metrics
def _records(items):
    return [(i, s, chem.canonical_smiles(s), v) for i, (s, v) in enumerate(items)]


def test_validity_uniqueness_novelty_hand_cases():
    s = ["CCO", "OCC", "C1CC", "c1ccccc1"]
    assert M.validity(s) == 0.75
    assert M.uniqueness(s) == pytest.approx(2 / 3)
    assert M.novelty(s, ["CCO"]) == 0.5
    assert M.validity([]) == 0.0
    with pytest.raises(ValueError, match="smiles"):
        M.validity("CCO")


def test_intdiv_against_hand_computation():
    a, b = "c1ccccc1O", "c1ccccc1N"
    fa, fb = (set(M.fingerprints([x])[0].GetOnBits()) for x in (a, b))
    s = len(fa & fb) / len(fa | fb)
    assert 0 < s < 1
    # all ordered pairs including self-pairs: (1 + 1 + 2 s) / 4
    assert M.intdiv([a, b]) == pytest.approx(1 - (2 + 2 * s) / 4)
    assert M.intdiv([a, b], p=2) == pytest.approx(1 - np.sqrt((2 + 2 * s**2) / 4))
    assert M.intdiv([a, a, a]) == pytest.approx(0.0)
    assert M.intdiv([a, "bad("]) == pytest.approx(0.0)  # invalid strings are dropped


def test_n_circles_greedy_and_deterministic():
    a, a2, far = "c1ccccc1O", "Oc1ccccc1", "CCCCCCCCN"
    assert M.n_circles([a, a2]) == 1  # the same molecule twice
    assert chem.tanimoto(a, far) < 0.25
    assert M.n_circles([a, far]) == 2
    near = "c1ccccc1N"
    assert 1 - chem.tanimoto(a, near) < 0.75  # too close to count twice
    assert M.n_circles([a, near, far]) == 2
    assert M.n_circles([a, near], threshold=0.5) == (2 if 1 - chem.tanimoto(a, near) > 0.5 else 1)
    assert M.n_circles([]) == 0
    with pytest.raises(ValueError, match="threshold"):
        M.n_circles([a], threshold=1.0)


def test_yield_and_oracle_burden_hand_cases():
    rec = _records([("CCO", 0.9), ("C1CC", 0.0), ("OCC", 0.95), ("CCN", 0.7), ("CCCl", 0.85), ("CCBr", 0.99)])
    assert M.hits_above(rec, 0.8) == ["CCO", "CCCl", "CCBr"]  # OCC is CCO again
    assert M.yield_count(rec, 0.8) == 3 and M.yield_count(rec, 0.9) == 2
    assert M.oracle_burden(rec, 0.8, k=2) == 5 and M.oracle_burden(rec, 0.8, k=3) == 6
    assert M.oracle_burden(rec, 0.8, k=4) is None
    assert M.modes_covered(["a", "b", "a", None], min_hits=2) == {"hits": {"a": 2, "b": 1}, "covered": 1}
    curve = M.discovery_curve(rec, thresholds=(0.8,), at=[2, 4, 6])
    assert curve == {"calls": [2, 4, 6], "distinct": [1, 2, 4], "hits@0.80": [1, 1, 3]}
    assert M.discovery_curve(rec, thresholds=(0.8,))["hits@0.80"] == [1, 1, 1, 1, 2, 3]
    summ = summarize_run(rec, thresholds=(0.8,), k=2)
    assert summ["yield@0.80"] == 3 and summ["OB2@0.80"] == 5 and summ["validity"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="k"):
        M.oracle_burden(rec, 0.8, k=0)


# ------------------------------------------------------------------------------------------- DAP loss
def _descend_dap(prior_probs, scores, sigma):
    # Adam on the exact (expected) DAP loss, 4000 steps: it reaches the fixed point to ~1e-16 on
    # this 5-molecule toy; the 2e-3 tolerances below leave room for other versions, while the nearest
    # wrong answer (the prior, or the fixed point at a different sigma) is > 0.05 away
    return chem.fit_dap_tabular(prior_probs, scores, sigma, steps=4000, lr=0.05)


def test_dap_fixed_point_is_the_gibbs_target_with_beta_one_over_sigma():
    prior = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    scores = np.array([0.2, 0.9, 0.95, 0.5, 0.95])
    sigma = 5.0
    found = _descend_dap(prior, scores, sigma)
    expected = dap_fixed_point(prior, scores, sigma)
    assert np.allclose(found, expected, atol=2e-3)
    assert np.allclose(expected, chem.reinvent.reverse_kl_target(prior, scores, 1 / sigma))
    assert expected[2] / expected[4] == pytest.approx(5.0)  # equal scores keep the prior ratio 0.15 / 0.03


def test_mara_scores_in_dap_give_the_flat_mara_target():
    prior = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    scores = np.array([0.2, 0.9, 0.95, 0.5, 0.95])
    sigma, tau = 5.0, 0.85
    augmented = mara_rewards(scores, np.log(prior), 1 / sigma, tau)
    found = _descend_dap(prior, augmented, sigma)
    target = mara_target(prior, scores, 1 / sigma, tau)
    assert np.allclose(found, target, atol=2e-3)
    assert found[2] == pytest.approx(found[4], abs=2e-3)  # good molecules equally likely


def test_dap_loss_values_and_errors():
    assert dap_loss(np.array([-3.0]), np.array([-2.0]), np.array([0.5]), 2.0)[0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="sigma"):
        dap_loss(np.zeros(1), np.zeros(1), np.zeros(1), 0)
    with pytest.raises(ValueError, match="shape"):
        dap_loss(np.zeros(2), np.zeros(1), np.zeros(1), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        dap_fixed_point([0.5, 0.5], [0, 1], -1)


# ------------------------------------------------------------------------------------------- REINVENT
def test_config_validation():
    assert ReinventConfig(sigma=128).beta == pytest.approx(1 / 128)
    assert ReinventConfig(budget=100, batch_size=32).steps == 4
    for kw, name in [({"sigma": 0}, "sigma"), ({"batch_size": 0}, "batch_size"), ({"budget": -1}, "budget"),
                     ({"lr": 0}, "lr"), ({"mara_tau": "q9"}, "tau"), ({"replay_size": 1, "replay_batch": 2},
                                                                     "replay_batch")]:
        with pytest.raises(ValueError, match=name):
            ReinventConfig(**kw)
    with pytest.raises(ValueError, match="method"):
        method_config("PPO")
    assert method_config("MARA 0.85", seed=3).mara_tau == 0.85


def test_diversity_filter_and_replay_memory():
    f = DiversityFilter(bucket_size=2, min_score=0.5)
    out = f(["Cc1ccccc1", "CCc1ccccc1", "OCc1ccccc1", "C1CCCCC1", "CCO"], [0.9, 0.9, 0.9, 0.9, 0.3])
    assert out.tolist() == [0.9, 0.9, 0.0, 0.9, 0.3]  # third benzene-scaffold molecule zeroed
    mem = ReplayMemory(2)
    mem.add(["A", "B", "C", "A"], [0.5, 0.9, 0.7, 0.99], [-1, -2, -3, -4])
    assert [s for _, s, _ in mem.items] == ["B", "C"]


def test_reinvent_learns_counts_and_mara_changes_the_targets(prior):
    oracle = chem.product_task(budget=160)
    cfg = ReinventConfig(budget=160, batch_size=32, lr=5e-4, seed=0, mara_tau=0.5, replay_size=8, replay_batch=4)
    tr = ReinventTrainer(prior, oracle, cfg, device="cpu", progress=False)
    hist = tr.train()
    assert oracle.calls == 160 and len(hist) == 5
    assert oracle.n_invalid == sum(r[2] is None for r in oracle.records)
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(tr.agent.parameters(), prior.parameters()))
    assert all(p.requires_grad is False for p in tr.prior.parameters())


@pytest.mark.parametrize("device", DEVICES)
def test_reinvent_resume_equals_uninterrupted(prior, tmp_path, device):
    def make(ckpt=None):
        cfg = ReinventConfig(budget=96, batch_size=16, lr=5e-4, seed=1, diversity_filter=True, mara_tau=0.6,
                             replay_size=8, replay_batch=4)
        return ReinventTrainer(prior, chem.product_task(budget=96), cfg, device=device, checkpoint_dir=ckpt,
                               progress=False)

    full = make()
    full.train()
    part = make(tmp_path / "ck")
    part.train(until_calls=48)
    resumed = make(tmp_path / "ck")
    assert resumed.oracle.calls == 48 and resumed.step == 3
    resumed.train()
    assert resumed.history == full.history
    assert resumed.oracle.records == full.oracle.records
    for a, b in zip(resumed.agent.parameters(), full.agent.parameters()):
        assert torch.equal(a, b)
    other = ReinventConfig(budget=96, batch_size=16, seed=2)
    with pytest.raises(ValueError, match="config"):
        ReinventTrainer(prior, chem.product_task(), other, device=device, checkpoint_dir=tmp_path / "ck")


def test_trainer_rejects_bad_arguments(prior):
    with pytest.raises(ValueError, match="prior"):
        ReinventTrainer("x", chem.product_task(), ReinventConfig())
    with pytest.raises(ValueError, match="oracle"):
        ReinventTrainer(prior, len, ReinventConfig())
    with pytest.raises(ValueError, match="config"):
        ReinventTrainer(prior, chem.product_task(), {})


def _fake_runs():
    runs = []
    for m, ys in (("REINVENT", [10, 12, 11]), ("MARA 0.85", [15, 16, 14])):
        for seed, y in enumerate(ys):
            runs.append({"task": "multi_mode", "method": m, "seed": seed,
                         "summary": {"yield@0.80": y, "OB100@0.80": None if y < 12 else 500 + y,
                                     "modes@0.80": {"a": y, "b": seed}}})
    return runs


def test_compare_methods_against_scipy_and_tables():
    from scipy import stats

    rows = molecules.compare_methods(_fake_runs(), "multi_mode", budget=1000)
    base, mara = rows
    assert base["yield@0.80"] == pytest.approx((11.0, 1.0)) and mara["yield@0.80"] == pytest.approx((15.0, 1.0))
    p = stats.ttest_ind([15, 16, 14], [10, 12, 11], equal_var=False, alternative="greater").pvalue
    assert mara["yield@0.80 p"] == pytest.approx(p)
    # censored OB100: runs that never found 100 hits count the budget
    assert base["OB100@0.80"][0] == pytest.approx((1000 + 512 + 1000) / 3) and base["OB100@0.80 reached"] == 1
    text = molecules.format_comparison(rows, ["yield@0.80"])
    assert "15 ± 1" in text and "p vs REINVENT" in text
    assert text.rows[-1] == ("p vs REINVENT", f"{p:.3f}")  # the p-value row under the method it tests
    mt = molecules.mode_table(_fake_runs(), modes=["a", "b", "c"])
    assert mt["REINVENT"]["hits"] == {"a": 11.0, "b": 1.0, "c": 0.0}
    assert mt["REINVENT"]["covered"] == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="task"):
        molecules.compare_methods(_fake_runs(), "product")
    same = [{"task": "t", "method": m, "seed": i, "summary": {"uniqueness": 1.0}} for m in ("REINVENT", "MARA 0.85")
            for i in range(3)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert molecules.compare_methods(same, "t", metrics=["uniqueness"])[1]["uniqueness p"] == 1.0


def test_draw_grid_skips_invalid_and_checks_arguments():
    try:
        from rdkit.Chem import Draw  # noqa: F401  (needs the system library libXrender)
    except ImportError as e:
        pytest.skip(f"RDKit drawing unavailable here: {e}")
    img = chem.draw_grid(["CCO", "bad(", "c1ccccc1"], legends=["a", "b", "c"], per_row=2, size=100)
    assert img.size == (200, 100)
    with pytest.raises(ValueError, match="legends"):
        chem.draw_grid(["CCO"], legends=[])
    with pytest.raises(ValueError, match="smiles"):
        chem.draw_grid(["bad("])
    # by default one row of molecules fills the book's column (690 px), however many fit per row
    assert chem.draw_grid(["CCO", "c1ccccc1", "CCN"], per_row=3).size == (690, 230)
    with pytest.raises(ValueError, match="width"):
        chem.draw_grid(["CCO"], width=10)
    with pytest.raises(ValueError, match="size"):
        chem.draw_grid(["CCO"], size=0)


def test_mara_in_the_loop_makes_good_targets_equal(prior):
    """With every valid molecule scoring 1 and tau = 0.5, eq. (8.1): every valid molecule's target is
    log pi_prior(z) + sigma * S(z), one number; without MARA the targets differ by the prior term."""
    flat = Oracle(lambda mols: np.ones(len(mols)), name="all good")
    for tau, equal in ((0.5, True), (None, False)):
        cfg = ReinventConfig(budget=32, batch_size=32, seed=0, mara_tau=tau)
        tr = ReinventTrainer(prior, Oracle(flat.score_fn), cfg, device="cpu", progress=False)
        tr.train_step()
        b = tr.last_batch
        good = b["scores"] >= 0.5
        assert good.sum() > 10
        spread = np.ptp(b["target"][good])
        assert (spread < 1e-3) == equal, spread
        if equal:
            anchor = np.argmax(np.where(good, b["prior_logp"], -np.inf))
            assert b["target"][good][0] == pytest.approx(b["prior_logp"][anchor] + cfg.sigma * 1.0, abs=1e-3)


def test_run_helpers_reject_bad_arguments():
    with pytest.raises(ValueError, match="task"):
        molecules.run("docking", "REINVENT", 0, budget=32)
    with pytest.raises(ValueError, match="workers"):
        molecules.sweep(budget=32, workers=0)
    with pytest.raises(ValueError, match="methods"):
        molecules.sweep(methods=["PPO"], budget=32)


def test_public_functions_name_the_bad_argument(prior, tmp_path):
    """Bad input anywhere in the chemistry API is a ValueError that names the argument."""
    from marabook.chem.data import read_smiles_file
    from marabook.chem.prior import collate_ids
    from marabook.chem.reinvent import fit_dap_tabular

    cases = [
        (lambda: read_smiles_file(tmp_path / "none.csv"), "path"),
        (lambda: chem.morgan_fingerprint("CCO", radius=-1), "radius"),
        (lambda: chem.tanimoto("CCO", "CCN", n_bits=0), "n_bits"),
        (lambda: chem.bulk_tanimoto(["CCO"], ["bad("]), "references"),
        (lambda: ramp([1.0], 2, 2), "low and high"),
        (lambda: make_reward(qed_term, 3), "terms"),
        (lambda: Oracle(qed_term, budget=0), "budget"),
        (lambda: Oracle(lambda mols: np.zeros(5))(["CCO"]), "score_fn"),
        (lambda: M.intdiv(["CCO"], p=0), "p"),
        (lambda: M.hits_above([(0, "CCO")], 0.5), "records"),
        (lambda: M.discovery_curve([(0, "CCO", "CCO")]), "records"),
        (lambda: M.novelty("CCO", ["CCO"]), "smiles"),
        (lambda: collate_ids([]), "seqs"),
        (lambda: chem.SmilesGRU("tok"), "tokenizer"),
        (lambda: chem.SmilesGRU(prior.tokenizer, hidden_size=0), "hidden_size"),
        (lambda: chem.SmilesGRU(prior.tokenizer, dropout=1.0), "dropout"),
        (lambda: prior.sample(4, batch_size=0), "batch_size"),
        (lambda: prior.sample_ids(4, temperature=0), "temperature"),
        (lambda: prior.log_likelihood(torch.zeros(3, dtype=torch.long)), "ids"),
        (lambda: chem.pretrain_prior([], progress=False), "smiles"),
        (lambda: chem.pretrain_prior(["CCO"], epochs=0, progress=False), "epochs"),
        (lambda: fit_dap_tabular([0.5, 0.5], [0.0], 1.0), "prior_probs"),
        (lambda: fit_dap_tabular([0.5, 0.5], [0.0, 1.0], 1.0, steps=0), "steps"),
        (lambda: fit_dap_tabular([0.5, 0.5], [0.0, 1.0], 0.0), "sigma"),
        (lambda: molecules.format_comparison([], ["yield@0.80"]), "rows"),
        (lambda: molecules.mode_table([{"task": "product"}]), "method"),  # run 0 has no method field
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


# --- the de-duplicated fixed point (chapter 7, eq. 7.4) ------------------------------------------------

TOY_PRIOR = np.array([0.50, 0.25, 0.15, 0.07, 0.03])
TOY_SCORE = np.array([0.20, 0.90, 0.95, 0.50, 0.95])


def test_dedup_fixed_point_on_chapter_7s_toy():
    d = chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE, 5.0, 64)
    g = chem.dap_fixed_point(TOY_PRIOR, TOY_SCORE, 5.0)
    # the hand-solved values to 2 decimals; far from the Gibbs target [0.03, 0.49, 0.38, 0.02, 0.08]
    assert d.round(2).tolist() == [0.14, 0.28, 0.27, 0.12, 0.19]
    assert np.abs(d - g).max() > 0.2
    # its stationarity residual is at rounding level (bisection to machine precision), Gibbs' is not
    assert np.abs(chem.dedup_stationarity(d, TOY_PRIOR, TOY_SCORE, 5.0, 64)).max() < 1e-12
    assert np.abs(chem.dedup_stationarity(g, TOY_PRIOR, TOY_SCORE, 5.0, 64)).max() > 1.0
    # one draw per batch cannot repeat: de-duplication changes nothing, eq. 7.2 holds exactly
    np.testing.assert_allclose(chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE, 5.0, 1), g, rtol=1e-12, atol=1e-15)
    # pi << 1/B everywhere (a flat prior over many molecules, small sigma): de-duplication barely matters
    flat = np.full(2000, 1 / 2000)
    sc = np.linspace(0, 1, 2000)
    assert np.abs(chem.dedup_fixed_point(flat, sc, 2.0, 8) - chem.dap_fixed_point(flat, sc, 2.0)).max() < 1e-4


def test_dedup_fixed_point_zeroes_the_trainers_sampled_update():
    """The trainer's update, replayed on a tabular agent: B draws, each distinct molecule once, the torch DAP
    loss summed and differentiated. Averaged over batches it vanishes at eq. 7.4, not at eq. 7.2."""
    import torch

    from marabook.chem.reinvent import dap_loss

    rng = np.random.default_rng(0)
    n_batches, b, sigma = 3000, 64, 5.0

    def mean_grad(pi):
        logits = torch.tensor(np.log(pi), requires_grad=True)
        prior_lp, s = torch.tensor(np.log(TOY_PRIOR)), torch.tensor(TOY_SCORE)
        grads = []
        for _ in range(n_batches):
            idx = np.unique(rng.choice(5, size=b, p=pi))  # REINVENT's de-duplication
            lp = torch.log_softmax(logits, 0)[idx]
            loss = dap_loss(lp, prior_lp[idx], s[idx], sigma).sum()
            (g,) = torch.autograd.grad(loss, logits)
            grads.append(g.numpy())
        grads = np.array(grads)
        return grads.mean(axis=0), grads.std(axis=0) / np.sqrt(n_batches)

    mean_d, se_d = mean_grad(chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE, sigma, b))
    mean_g, se_g = mean_grad(chem.dap_fixed_point(TOY_PRIOR, TOY_SCORE, sigma))
    assert np.all(np.abs(mean_d) <= 4 * se_d + 1e-9)        # zero within Monte Carlo error
    assert np.abs(mean_g).max() > 20 * se_g.max()            # clearly not zero at the Gibbs target


def test_fit_dap_tabular_with_dedup_reaches_eq_7_4():
    fitted = chem.fit_dap_tabular(TOY_PRIOR, TOY_SCORE, 5.0, steps=4000, lr=0.05, batch_size=64)
    np.testing.assert_allclose(fitted, chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE, 5.0, 64), atol=1e-8)


def test_dedup_fixed_point_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE, 5.0, 0)
    with pytest.raises(ValueError, match="sigma"):
        chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE, -1.0, 64)
    with pytest.raises(ValueError, match="prior_probs"):
        chem.dedup_fixed_point(TOY_PRIOR[:4], TOY_SCORE, 5.0, 64)
    with pytest.raises(ValueError, match="scores"):
        chem.dedup_fixed_point(TOY_PRIOR, TOY_SCORE - 5.0, 5.0, 64)
    with pytest.raises(ValueError, match="agent_probs"):
        chem.dedup_stationarity(np.ones(5), TOY_PRIOR, TOY_SCORE, 5.0, 64)
