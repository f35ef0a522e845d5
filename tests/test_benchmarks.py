"""marabook.chem.benchmarks: the 20 RDKit-only PMO / GuacaMol oracles, their modifiers and PMO's AUC top-10.

Every expected value below is computed in the test from the published definition (Brown et al. 2019,
GuacaMol; Gao et al. 2022, PMO) - a Gaussian by hand, a count-Tanimoto from the raw fingerprint counts,
a descriptor straight from RDKit - never read back from the module under test.
"""

import math

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem import QED, Descriptors, rdFingerprintGenerator, rdMolDescriptors  # noqa: E402

from marabook import chem  # noqa: E402
from marabook.chem import benchmarks as B  # noqa: E402

PMO_20 = {"qed", "celecoxib_rediscovery", "troglitazone_rediscovery", "thiothixene_rediscovery",
          "albuterol_similarity", "mestranol_similarity", "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl",
          "median1", "median2", "osimertinib_mpo", "fexofenadine_mpo", "ranolazine_mpo", "perindopril_mpo",
          "amlodipine_mpo", "sitagliptin_mpo", "zaleplon_mpo", "valsartan_smarts", "deco_hop", "scaffold_hop"}

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "Cn1cnc2c1c(=O)n(C)c(=O)n2C"
IBUPROFEN = "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
VALSARTAN = "CCCCC(=O)N(Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1)C(C(C)C)C(=O)O"
DRUGS = [ASPIRIN, CAFFEINE, IBUPROFEN, B.CELECOXIB, "CC(=O)Nc1ccc(O)cc1", "CN(C)C(=N)N=C(N)N", B.TROGLITAZONE,
         B.SILDENAFIL, VALSARTAN, B.HOP_START, B.SITAGLIPTIN, "[Na+].[Cl-]", "[H]OC([H])([H])[H]", "C[N+](C)(C)C",
         "O=P(N)(Cl)c1cc(F)c(F)cc1C(=O)NCC", "ClC(Cl)(Cl)Cl", "C"]


def g(x, mu, sigma):
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def mol(smiles):
    return Chem.MolFromSmiles(smiles)


def count_tanimoto(a, b, radius=2, features=False):
    """Tanimoto of two *count* Morgan fingerprints from their raw counts: sum min / (sum a + sum b - sum min)."""
    kw = {"atomInvariantsGenerator": rdFingerprintGenerator.GetMorganFeatureAtomInvGen()} if features else {}
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, **kw)
    ca, cb = (gen.GetSparseCountFingerprint(mol(s)).GetNonzeroElements() for s in (a, b))
    inter = sum(min(v, cb.get(k, 0)) for k, v in ca.items())
    return inter / (sum(ca.values()) + sum(cb.values()) - inter)


def one(name, smiles):
    return float(B.score(name, [smiles])[0])


# ----------------------------------------------------------------------------------------------- registry

def test_registry_has_exactly_the_20_rdkit_only_pmo_oracles():
    assert set(B.TASKS) == PMO_20 and len(B.TASKS) == 20
    assert not {"drd2", "gsk3b", "jnk3"} & set(B.TASKS)
    assert chem.benchmarks is B
    for name, task in B.TASKS.items():
        assert task.name == name and task.description and task.threshold_reason
        assert 0.0 < task.threshold <= 1.0
        assert "GuacaMol" in task.source and "Sample Efficiency Matters" in task.source
    singles = {n for n, t in B.TASKS.items() if t.optimum == "single"}
    assert singles == {"celecoxib_rediscovery", "troglitazone_rediscovery", "thiothixene_rediscovery",
                       "albuterol_similarity", "mestranol_similarity"}
    with pytest.raises(Exception):
        B.TASKS["qed"].threshold = 0.1  # frozen
    with pytest.raises(ValueError, match="optimum"):
        B.BenchmarkTask("x", "d", "s", "several", 0.5, "r", lambda m: 0.0)


# ------------------------------------------------------------------------------------------- modifiers

def test_score_modifiers_at_hand_computed_points():
    assert B.gaussian(1.0, 0.0, 1.0) == pytest.approx(math.exp(-0.5))
    assert B.gaussian(3.0, 3.0, 0.5) == 1.0
    assert B.gaussian(2.0, 3.0, 0.5) == pytest.approx(math.exp(-2.0))
    assert B.min_gaussian(0.5, 1.0, 1.0) == 1.0  # below mu: nothing to minimise
    assert B.min_gaussian(2.0, 1.0, 1.0) == pytest.approx(math.exp(-0.5))
    assert B.max_gaussian(5.0, 1.0, 1.0) == 1.0
    assert B.max_gaussian(80.0, 100.0, 10.0) == pytest.approx(math.exp(-2.0))
    assert B.clipped(0.375, 0.75) == pytest.approx(0.5)
    assert B.clipped(0.9, 0.75) == 1.0 and B.clipped(-0.1, 0.75) == 0.0
    assert B.clipped(0.25, upper_x=0.0, lower_x=1.0) == pytest.approx(0.75)  # decreasing form
    assert B.clipped(0.5, 1.0, high_score=0.8, low_score=0.2) == pytest.approx(0.5)
    assert B.thresholded(0.3, 0.6) == pytest.approx(0.5) and B.thresholded(0.9, 0.6) == 1.0
    arr = B.min_gaussian(np.array([0.0, 0.95]), 0.85, 0.1)
    np.testing.assert_allclose(arr, [1.0, math.exp(-0.5)])
    assert isinstance(B.gaussian(0.0, 0.0, 1.0), float)


def test_parse_formula():
    assert B.parse_formula("C9H10N2O2PF2Cl") == {"C": 9, "H": 10, "N": 2, "O": 2, "P": 1, "F": 2, "Cl": 1}
    assert B.parse_formula("CH3CH3") == {"C": 2, "H": 6}


# ---------------------------------------------------------------------------------- single-optimum tasks

@pytest.mark.parametrize("name, target", [("celecoxib_rediscovery", B.CELECOXIB),
                                          ("troglitazone_rediscovery", B.TROGLITAZONE),
                                          ("thiothixene_rediscovery", B.THIOTHIXENE)])
def test_rediscovery_target_scores_one_and_another_drug_its_ecfp4_count_similarity(name, target):
    canonical = Chem.MolToSmiles(mol(target))
    shuffled = Chem.MolToSmiles(mol(target), doRandom=True, canonical=False)
    np.testing.assert_allclose(B.score(name, [target, canonical, shuffled]), 1.0)
    other = B.SILDENAFIL
    expected = count_tanimoto(other, target)
    assert one(name, other) == pytest.approx(expected, abs=1e-12)
    assert expected < 0.5


def test_rediscovery_uses_count_not_bit_fingerprints():
    """Aspirin vs celecoxib differ between ECFP4 counts and 2048-bit vectors: the task must give the counts'."""
    counts = count_tanimoto(ASPIRIN, B.CELECOXIB)
    bits = DataStructs.TanimotoSimilarity(*(rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
                                            .GetFingerprint(mol(s)) for s in (ASPIRIN, B.CELECOXIB)))
    assert abs(counts - bits) > 1e-3
    assert one("celecoxib_rediscovery", ASPIRIN) == pytest.approx(counts, abs=1e-12)


def test_similarity_tasks_score_one_on_their_target_and_clip_at_075():
    assert one("albuterol_similarity", B.ALBUTEROL) == 1.0
    assert one("mestranol_similarity", B.MESTRANOL) == 1.0
    # FCFP4 (count, feature invariants) similarity, clipped linearly: min(s / 0.75, 1)
    s = count_tanimoto(IBUPROFEN, B.ALBUTEROL, features=True)
    assert one("albuterol_similarity", IBUPROFEN) == pytest.approx(min(s / 0.75, 1.0), abs=1e-12)
    # AP: count atom pairs up to 10 bonds
    ap = rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10)
    s = DataStructs.TanimotoSimilarity(*(ap.GetSparseCountFingerprint(mol(x)) for x in (B.TROGLITAZONE, B.MESTRANOL)))
    assert one("mestranol_similarity", B.TROGLITAZONE) == pytest.approx(min(s / 0.75, 1.0), abs=1e-12)


# --------------------------------------------------------------------------------------------- isomers

def test_an_exact_isomer_scores_one_and_one_atom_off_lowers_it_as_the_gaussians_predict():
    iso = "NC(=O)c1ccc(N)cc1O"
    assert rdMolDescriptors.CalcMolFormula(mol(iso)) == "C7H8N2O2"
    assert one("isomers_c7h8n2o2", iso) == 1.0
    assert one("isomers_c7h8n2o2", "Cc1ccc(N)cc1[N+](=O)[O-]") == 1.0  # another isomer: many optima
    # one extra O (C7H8N2O3): O term g(3; 2, 1), total-atom term g(20; 19, 2), 5 terms in the geometric mean
    plus_o = "NC(=O)c1ccc(NO)cc1O"
    assert rdMolDescriptors.CalcMolFormula(mol(plus_o)) == "C7H8N2O3"
    expected = (g(3, 2, 1) * g(20, 19, 2)) ** (1 / 5)
    assert expected == pytest.approx(math.exp(-0.125))
    assert one("isomers_c7h8n2o2", plus_o) == pytest.approx(expected)
    # one extra atom of an element outside the formula (an S): only the total term moves
    plus_s = "NC(=O)c1ccc(NS)cc1O"
    assert one("isomers_c7h8n2o2", plus_s) == pytest.approx(g(20, 19, 2) ** (1 / 5))
    # H -> F: H term g(7; 8, 1), total unchanged, F has no term of its own
    assert one("isomers_c7h8n2o2", "NC(=O)c1ccc(N)c(F)c1O") == pytest.approx(g(7, 8, 1) ** (1 / 5))
    # the stated hit threshold separates exact isomers from the closest non-isomer
    assert one("isomers_c7h8n2o2", plus_s) < B.TASKS["isomers_c7h8n2o2"].threshold


def test_c9_isomer_task():
    iso = "O=P(N)(Cl)c1cc(F)c(F)cc1C(=O)NCC"
    assert rdMolDescriptors.CalcMolFormula(mol(iso)) == "C9H10ClF2N2O2P"
    assert one("isomers_c9h10n2o2pf2cl", iso) == 1.0
    # one fluorine fewer, one H more: F term g(1; 2, 1), H term g(11; 10, 1), total unchanged; 8 terms
    assert one("isomers_c9h10n2o2pf2cl", "O=P(N)(Cl)c1ccc(F)cc1C(=O)NCC") == pytest.approx(
        (g(1, 2, 1) * g(11, 10, 1)) ** (1 / 8))


# ---------------------------------------------------------------------------------- medians and MPOs

def test_median_tasks_on_their_references():
    s1 = count_tanimoto(B.CAMPHOR, B.MENTHOL)
    np.testing.assert_allclose(B.score("median1", [B.CAMPHOR, B.MENTHOL]), math.sqrt(s1), atol=1e-12)
    s2 = count_tanimoto(B.TADALAFIL, B.SILDENAFIL, radius=3)
    np.testing.assert_allclose(B.score("median2", [B.TADALAFIL, B.SILDENAFIL]), math.sqrt(s2), atol=1e-12)
    # a molecule dissimilar to both: geometric mean of its two similarities
    a, b = count_tanimoto(ASPIRIN, B.CAMPHOR), count_tanimoto(ASPIRIN, B.MENTHOL)
    assert one("median1", ASPIRIN) == pytest.approx(math.sqrt(a * b), abs=1e-12)


def test_ring_mpos_on_their_own_drug():
    # perindopril: similarity 1, no aromatic ring against Gaussian(2, 0.5): sqrt(exp(-8))
    assert one("perindopril_mpo", B.PERINDOPRIL) == pytest.approx(math.exp(-4.0))
    # amlodipine: similarity 1, two rings against Gaussian(3, 0.5): sqrt(exp(-2))
    assert one("amlodipine_mpo", B.AMLODIPINE) == pytest.approx(math.exp(-1.0))


def test_sitagliptin_and_zaleplon_mpo_on_their_own_drug():
    # sitagliptin: similarity 1 through Gaussian(0, 0.1) is exp(-50); its own logP, TPSA and formula score 1
    assert rdMolDescriptors.CalcMolFormula(mol(B.SITAGLIPTIN)) == "C16H15F6N5O"
    assert one("sitagliptin_mpo", B.SITAGLIPTIN) == pytest.approx(math.exp(-50 / 4))
    # zaleplon (C17H15N5O) against C19H17N3O2: C -2, H -2, N +2, O -1, total 38 vs 41
    assert rdMolDescriptors.CalcMolFormula(mol(B.ZALEPLON)) == "C17H15N5O"
    iso = (g(17, 19, 1) * g(15, 17, 1) * g(5, 3, 1) * g(1, 2, 1) * g(38, 41, 2)) ** (1 / 5)
    assert one("zaleplon_mpo", B.ZALEPLON) == pytest.approx(math.sqrt(iso))


def test_property_mpos_on_their_own_drug():
    m = mol(B.OSIMERTINIB)
    tpsa, logp = Descriptors.TPSA(m), Descriptors.MolLogP(m)
    parts = [1.0, g(1.0, 0.85, 0.1), g(min(tpsa, 100), 100, 10), g(max(logp, 1), 1, 1)]
    assert one("osimertinib_mpo", B.OSIMERTINIB) == pytest.approx(np.prod(parts) ** 0.25)
    m = mol(B.FEXOFENADINE)
    tpsa, logp = Descriptors.TPSA(m), Descriptors.MolLogP(m)
    parts = [1.0, g(min(tpsa, 90), 90, 10), g(max(logp, 4), 4, 1)]
    assert one("fexofenadine_mpo", B.FEXOFENADINE) == pytest.approx(np.prod(parts) ** (1 / 3))
    m = mol(B.RANOLAZINE)
    tpsa, logp = Descriptors.TPSA(m), Descriptors.MolLogP(m)
    parts = [1.0, g(min(logp, 7), 7, 1), g(min(tpsa, 95), 95, 20), g(0, 1, 1)]  # no fluorine
    assert one("ranolazine_mpo", B.RANOLAZINE) == pytest.approx(np.prod(parts) ** 0.25)


def test_valsartan_smarts_gates_the_score():
    sita = mol(B.SITAGLIPTIN)
    # sitagliptin has the target properties exactly (logP, TPSA, Bertz terms all 1) but not the SMARTS: 0
    assert one("valsartan_smarts", B.SITAGLIPTIN) == 0.0
    assert one("valsartan_smarts", ASPIRIN) == 0.0
    v = mol(VALSARTAN)
    assert v.HasSubstructMatch(Chem.MolFromSmarts(B.VALSARTAN_SMARTS))
    parts = [1.0, g(Descriptors.MolLogP(v), Descriptors.MolLogP(sita), 0.2),
             g(Descriptors.TPSA(v), Descriptors.TPSA(sita), 5), g(Descriptors.BertzCT(v), Descriptors.BertzCT(sita), 30)]
    expected = np.prod(parts) ** 0.25
    assert expected > 0
    assert one("valsartan_smarts", VALSARTAN) == pytest.approx(expected, rel=1e-9)


def test_hops_on_the_start_molecule():
    # deco hop: pharmacophore similarity 1, both decorations present (0, 0), scaffold kept (1): mean 2/4
    assert one("deco_hop", B.HOP_START) == pytest.approx(0.5)
    # scaffold hop: similarity 1, decoration present (1), scaffold not changed (0): mean 2/3
    assert one("scaffold_hop", B.HOP_START) == pytest.approx(2 / 3)


def test_qed_equals_rdkit_qed():
    np.testing.assert_allclose(B.score("qed", DRUGS[:8]), [QED.qed(mol(s)) for s in DRUGS[:8]], atol=1e-12)


# ---------------------------------------------------------------------------------------- robustness

def test_invalid_smiles_score_zero_and_never_raise():
    bad = ["", "xx", "C1CC", "c1cccc1", None, 42, "   "]
    for name in B.TASKS:
        out = B.score(name, bad + [ASPIRIN])
        assert out.shape == (8,) and np.all(out[:7] == 0.0)
    orc = B.oracle("qed", budget=20)
    orc(bad)
    assert orc.n_invalid == 7 and orc.calls == 7


def test_every_task_gives_finite_scores_in_unit_interval_on_real_drugs():
    for name in B.TASKS:
        out = B.score(name, DRUGS)
        assert out.shape == (len(DRUGS),) and np.all(np.isfinite(out))
        assert np.all((out >= 0.0) & (out <= 1.0)), name
        raw = B.TASKS[name].score_fn([mol(s) for s in DRUGS])  # unclipped, as computed
        assert np.all((raw >= 0.0) & (raw <= 1.0)), name


def test_oracle_respects_its_budget_and_records_every_call():
    orc = B.oracle("celecoxib_rediscovery", budget=3)
    assert isinstance(orc, chem.Oracle) and orc.name == "celecoxib_rediscovery"
    np.testing.assert_allclose(orc([B.CELECOXIB, "xx"]), [1.0, 0.0])
    with pytest.raises(ValueError, match="budget"):
        orc([ASPIRIN, ASPIRIN])
    orc([ASPIRIN])
    assert orc.calls == 3 and orc.remaining == 0 and len(orc.records) == 3 and orc.n_invalid == 1
    assert B.oracle("qed").budget == 10_000 and B.oracle("qed", budget=None).budget is None
    np.testing.assert_allclose(B.oracle("median2", None)(DRUGS), B.score("median2", DRUGS))


@pytest.mark.parametrize("call, arg", [
    (lambda: B.score("drd2", [ASPIRIN]), "name"),
    (lambda: B.score(3, [ASPIRIN]), "name"),
    (lambda: B.score("qed", ASPIRIN), "smiles"),
    (lambda: B.score("qed", None), "smiles"),
    (lambda: B.oracle("nope"), "name"),
    (lambda: B.oracle("qed", budget=0), "budget"),
    (lambda: B.oracle("qed", budget=-5), "budget"),
    (lambda: B.oracle("qed", budget=True), "budget"),
    (lambda: B.oracle("qed", budget=2.5), "budget"),
    (lambda: B.auc_top10([0.5], budget=0), "budget"),
    (lambda: B.auc_top10([0.5], budget=False), "budget"),
    (lambda: B.auc_top10([0.5], freq=0), "freq"),
    (lambda: B.auc_top10([0.5], top_n=0), "top_n"),
    (lambda: B.auc_top10([0.5], finish="yes"), "finish"),
    (lambda: B.auc_top10("0.5"), "history"),
    (lambda: B.auc_top10(None), "history"),
    (lambda: B.auc_top10([True, 0.5]), "history"),
    (lambda: B.auc_top10([0.5, float("nan")]), "history"),
    (lambda: B.auc_top10(7), "history"),
    (lambda: B.summarize("qed", [], threshold=float("nan")), "threshold"),
    (lambda: B.summarize("unknown", []), "name"),
    (lambda: B.gaussian(1.0, 0.0, 0.0), "sigma"),
    (lambda: B.gaussian("a", 0.0, 1.0), "x"),
    (lambda: B.min_gaussian(1.0, float("inf"), 1.0), "mu"),
    (lambda: B.clipped(0.5, 0.0, 0.0), "upper_x"),
    (lambda: B.clipped(0.5, 1.0, high_score=0.0, low_score=1.0), "low_score"),
    (lambda: B.thresholded(0.5, 0.0), "threshold"),
    (lambda: B.parse_formula("c7h8"), "formula"),
    (lambda: B.fingerprint(mol(ASPIRIN), "MACCS"), "kind"),
])
def test_bad_inputs_are_refused_with_the_argument_named(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


# ------------------------------------------------------------------------------------------ AUC top-10

def test_auc_top10_constant_run_over_the_whole_budget():
    # PMO's curve starts at 0: the first interval is a ramp, so a constant c gives c (1 - freq / (2 budget))
    assert B.auc_top10([0.7] * 10_000) == pytest.approx(0.7 * 0.995)
    assert B.auc_top10(np.full(1000, 0.4), budget=1000, freq=10) == pytest.approx(0.4 * (1 - 10 / 2000))


def test_auc_top10_hand_made_run_that_stops_early():
    scores = [0.2] * 100 + [1.0] * 100  # 200 molecules of a 300 budget, logged every 100
    # [0, 100]: (0 + 0.2) / 2 * 100 = 10;  [100, 200]: (0.2 + 1.0) / 2 * 100 = 60;  filled [200, 300] at 1.0: 100
    assert B.auc_top10(scores, budget=300) == pytest.approx(170 / 300)
    assert B.auc_top10(scores, budget=300, finish=False) == pytest.approx(70 / 300)
    # fewer than 10 molecules: their mean; 2 molecules then 98 filled at 0.75
    assert B.auc_top10([0.5, 1.0], budget=100) == pytest.approx((2 * 0.75 / 2 + 98 * 0.75) / 100)
    # the top-10 is a mean of the best 10 so far, not the best one
    run = [1.0] + [0.0] * 99 + [0.0] * 100
    assert B.auc_top10(run, budget=200) == pytest.approx((100 * 0.1 / 2 + 100 * 0.1) / 200)
    # entries past the budget are dropped
    assert B.auc_top10(scores + [1.0] * 500, budget=300) == B.auc_top10(scores + [1.0] * 100, budget=300)
    assert B.auc_top10([]) == 0.0


def test_auc_top10_from_records_counts_distinct_valid_molecules_only():
    records = [(0, "CCO", "CCO", 0.5), (1, "OCC", "CCO", 0.5), (2, "xx", None, 0.0), (3, "c1ccccc1", "c1ccccc1", 1.0)]
    assert B.auc_top10(records, budget=100) == pytest.approx(B.auc_top10([0.5, 1.0], budget=100))
    orc = B.oracle("qed", budget=50)
    orc([ASPIRIN, CAFFEINE, ASPIRIN, "xx"])
    q = [QED.qed(mol(ASPIRIN)), QED.qed(mol(CAFFEINE))]
    assert B.auc_top10(orc, budget=50) == pytest.approx(B.auc_top10(q, budget=50))


def test_summarize_puts_auc_beside_the_book_metrics_at_the_task_threshold():
    orc = B.oracle("celecoxib_rediscovery", budget=10)
    orc([B.CELECOXIB, ASPIRIN, Chem.MolToSmiles(mol(B.CELECOXIB)), "xx"])
    out = B.summarize("celecoxib_rediscovery", orc.records, budget=10)
    assert out["threshold"] == B.TASKS["celecoxib_rediscovery"].threshold == 0.8
    assert out["yield"] == 1 and out["calls"] == 4 and out["validity"] == pytest.approx(0.75)
    assert out["auc_top10"] == pytest.approx(B.auc_top10(orc.records, budget=10))
    assert B.summarize("celecoxib_rediscovery", orc, threshold=0.05, budget=10)["yield"] == 2
