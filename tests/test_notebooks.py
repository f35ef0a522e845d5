"""Every chapter: stored without outputs, executes top to bottom in smoke mode, and computes the right numbers.

The chapters run once per session (``executed_chapters`` in conftest.py). Each chapter glues its key
numbers (``marabook.glue.glue``); ``KEY_NUMBERS`` below says what each must be and why that tolerance,
so a chapter that silently computes a wrong number (a changed beta, a broken call, a regression in
the package that the unit tests missed) fails the suite.
"""

import json
import math
import re

import nbformat
import pytest
from conftest import CHAPTERS

from marabook.glue import glued_values


def test_there_are_chapters():
    assert len(CHAPTERS) >= 3


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a code cell has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_first_code_cell_installs_only_on_colab(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first.source
    assert "==" not in first.source  # no version pins that fight Colab's packages


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_executes_in_smoke_mode(path, executed_chapters):
    ran = executed_chapters[path.name]
    assert ran.error is None, f"{path.name} stopped with an error:\n{ran.error}"
    nb = ran.notebook
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "run scale: smoke" in text  # the chapter itself reports the scale it ran at
    assert "SMOKE-CHECK-OK" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 1, f"{path.name} produced no figure"


# ------------------------------------------------------------------------------------- key numbers
# Each check: (kind, arguments, why). Kinds: "close" (expected, atol), "below"/"above" (bound), "between"
# (lo, hi), "rule" (a function of all the chapter's glued values that returns True when right).
# Closed forms are checked to 1e-9 relative: they are evaluated in double precision in log space, so
# only rounding (~1e-15) separates the chapter from the expected value; 1e-9 leaves room for other
# NumPy/BLAS builds, while any change of a setting moves them by far more.
CLOSED = 1e-9
SMOKE_BETA_STEP = 10 ** (3 / 199)  # chapter 3's smoke sweep: 200 betas on a log grid over 3 decades

KEY_NUMBERS = {
    "intro": {  # the intro's sentences about its headline figure, checked against what they say
        "intro_toy_ref_share": ("between", 0.6, 0.95, "the small GPT-2 prefers '1' (the stored reference's share)"),
        "intro_toy_vanilla_at_100": ("rule", lambda g: g["intro_toy_vanilla_at_100"] > g["intro_toy_ref_share"],
                                     "'average ... at step 100' is above the reference (the transient the prose names)"),
        "intro_toy_vanilla_final": ("rule", lambda g: abs(g["intro_toy_vanilla_final"] - g["intro_toy_ref_share"]) < 0.05,
                                    "'keeps the reference model's preference': ends within 0.05 of its share"),
        "intro_real_vanilla_min": ("rule", lambda g: abs(g["intro_real_vanilla_min"] - g["intro_real_ref_share"]) < 0.1
                                   and abs(g["intro_real_vanilla_max"] - g["intro_real_ref_share"]) < 0.1,
                                   "SmolLM2's vanilla runs end 'around the reference's' share (within 0.1)"),
        "intro_toy_mara_final": ("close", 0.5, 0.05, "MARA's runs 'go to one half' on the small GPT-2"),
        "intro_real_mara_min": ("rule", lambda g: 0.4 < g["intro_real_mara_min"] <= g["intro_real_mara_max"] < 0.6,
                                "MARA's runs 'go to one half' on SmolLM2 (every run within 0.1)"),
        "intro_sweep_mara_small_collapsed": ("rule", lambda g: g["intro_sweep_mara_small_collapsed"] >= 1
                                             and g["intro_toy_small_mara_collapsed"] >= 1,
                                             "'MARA is not a cure-all': runs at the smallest beta collapse in both stores"),
        "intro_toy_small_vanilla_collapsed": ("rule", lambda g: g["intro_toy_small_vanilla_collapsed"]
                                              > g["intro_toy_small_runs"] / 2,
                                              "'at beta = 0.001 vanilla collapses': most of its runs end collapsed"),
    },
    "01_distribution_matching": {
        "identity_residual": ("below", 1e-10, "identity (1.4) holds exactly; both sides are sums of 8 terms "
                                              "of size < 30, rounding ~1e-14"),
        "optimiser_max_diff": ("rule", lambda g: g["optimiser_max_diff"]
                               <= math.sqrt((max(g["optimiser_gap"], 0.0) + 1e-13) / (2 * 0.3)),
                               "J(G) - J(pi) = beta KL(pi||G) (1.4) and Pinsker bound the distance by the "
                               "optimiser's own objective gap (plus J's rounding, 1e-13), beta = 0.3"),
        "optimiser_gap": ("between", -1e-13, 1e-10, "the closed form is at least as good as L-BFGS (to J's "
                                                     "rounding), and L-BFGS with the analytic gradient converges"),
        "categorical_reverse_tv": ("below", 0.01, "expressive family fits the bimodal target (300 smoke steps: a "
                                                  "convergence budget; any single Gaussian is > 0.4 away)"),
        "categorical_forward_tv": ("below", 0.01, "as above, forward KL"),
        "gaussian_reverse_tv": ("above", 0.4, "one Gaussian cannot cover two modes 5 sd apart"),
        "gaussian_reverse_mean": ("close", 2.5, 0.05, "reverse KL hides in the mode nearest its start (1.0); "
                                                      "within a few 1e-3 of the component mean 2.5"),
        "gaussian_forward_mean": ("close", 0.0, 0.05, "forward KL matches the mean of the symmetric mixture, 0"),
        "mode2_mass_beta_0_02": ("close", 0.9999722163436667, CLOSED, "Gibbs target (1.3), beta = 0.02"),
        "mode1_mass_beta_1": ("close", 0.41282067218845786, CLOSED, "Gibbs target (1.3), beta = 1"),
    },
    "02_forward_kl_target": {
        "lambda_beta_0_13": ("close", 1.000422789443336, CLOSED, "root of the forward normaliser, beta = 0.13"),
        "forward_sum_error": ("below", 1e-12, "the root-finder normalises G_fwd to machine precision"),
        "offsupport_mass_beta_0_1": ("close", 1 - 0.75 * 0.1, CLOSED, "off-support mass max(0, 1 - 0.75 beta)"),
        "entropy_only_equal_reward_ratio": ("close", 1.0, CLOSED, "entropy only: equal rewards, equal mass"),
    },
    "03_when_unimodal": {
        "best_over_runner_up_beta_1e_3": ("close", math.exp(100.0), CLOSED * math.exp(100.0),
                                          "log-ratio (3.1): exp(0.1 / 1e-3) = e^100"),
        "equal_reward_ratio_min": ("close", 15.0, 1e-6, "equal rewards keep the reference ratio 0.30/0.02 at every "
                                                        "beta (forward root-finding rounds at ~1e-12 relative)"),
        "equal_reward_ratio_max": ("close", 15.0, 1e-6, "as above"),
        "beta_star": ("close", 0.25 / 1.9, CLOSED, "crossover (3.2): reward gap 0.25 over log-support gap 1.9"),
        "reverse_peak_flip_beta": ("rule", lambda g: 0.25 / 1.9 <= g["reverse_peak_flip_beta"]
                                   <= 0.25 / 1.9 * SMOKE_BETA_STEP,
                                   "the first grid beta at or above beta* (one grid step of the smoke sweep)"),
    },
    "04_mara": {
        "mara_block2_target": ("close", 0.5, 1e-12, "MARA target (4.2) is flat over 20 good tokens, 10 in "
                                                    "block 2; bad tokens hold ~e^-100"),
        "vanilla_block2_target": ("close", 0.07585818002124355, CLOSED, "Gibbs target, beta = 0.01"),
        "mara_tau_1_5_block2": ("close", 0.07585818002124355, CLOSED, "tau above every reward: MARA is inert "
                                                                      "and equals vanilla"),
        "equal_reward_mara_ratio_beta_1e_3": ("close", 1.0, CLOSED, "MARA gives both correct answers equal mass"),
        "fwd_mara_limit_block2": ("close", 0.9123090546941057, CLOSED, "small-beta forward-MARA target: "
                                  "pi_ref / (t + log(pi_ref / pi_min)) on the good set, t from a root-finder"),
    },
    "05_rl_language_models": {
        "k3_loss_minus_forward_grad": ("below", 1e-12, "k3 in the loss has the forward-KL expected gradient "
                                                       "(5.4), an exact identity"),
        "k1_reward_minus_reverse_grad": ("below", 1e-12, "k1 in the reward has the reverse-KL gradient"),
        "naive_vs_trainer": ("below", 1e-6, "the hand-written step and the trainer's do the same float32 "
                                            "operations from the same seed (measured: 0)"),
        "ref_share_1": ("close", 0.8055, 1e-3, "exact P(1)/(P(1)+P(2)) of the shipped model (float32 "
                                               "forward passes: ~1e-6; 1e-3 allows other torch builds)"),
        "vanilla_share_1_mean": ("rule", lambda g: abs(g["vanilla_share_1_mean"] - g["ref_share_1"])
                                 < (g["ref_share_1"] - 0.5) / 2,
                                 "vanilla's target is the reference ratio at every beta (equal rewards): after "
                                 "3 smoke steps it is nearer to it than to MARA's target 0.5"),
        "mara_share_1_mean": ("rule", lambda g: g["mara_share_1_mean"] < g["vanilla_share_1_mean"] - 0.05,
                              "MARA's target is 0.5 (reverse KL): even 3 steps move it below vanilla"),
        # section 5.10's headers say "all five seeds" of each (KL, method) cell at beta 0.03
        "real_study_reverse_vanilla_0_03_runs": ("rule", lambda g: all(
            g[f"real_study_{kl}_{m}_0_03_runs"] == 5 for kl in ("reverse", "forward") for m in ("vanilla", "mara")),
            "'all five seeds' at beta 0.03, both KLs, both methods"),
        "real_study_reverse_vanilla_0_1_runs": ("rule", lambda g: all(
            g[f"real_study_{kl}_{m}_0_1_runs"] == 5 for kl in ("reverse", "forward") for m in ("vanilla", "mara")),
            "'all five seeds' at beta 0.1, both KLs, both methods"),
        "real_study_reverse_vanilla_0_01_runs": ("rule", lambda g: all(
            g[f"real_study_{kl}_{m}_0_01_runs"] == 5 for kl in ("reverse", "forward") for m in ("vanilla", "mara")),
            "'all five seeds' at beta 0.01, both KLs, both methods"),
        "real_study_missing_n": ("close", 0, 0, "'All 60 of the 60 runs have finished': the grid is complete"),
        "real_study_reverse_vanilla_0_01_late_sd_min": ("rule", lambda g: all(
            g[f"real_study_reverse_{m}_0_01_late_sd_min"] > g[f"real_study_reverse_{m}_0_1_late_sd_max"]
            for m in ("vanilla", "mara")), "'every run at 0.01 wanders more than every run of its method at 0.1' "
                                           "(reverse KL, the late window's standard deviation)"),
        "real_study_forward_vanilla_0_1_valid_max": ("rule", lambda g: g["real_study_forward_vanilla_0_1_valid_max"]
                                                     > g["real_study_forward_vanilla_0_03_valid_min"],
                                                     "'their ranges overlap' (forward vanilla's valid mass, beta 0.1 and 0.03)"),
        "real_study_reverse_vanilla_0_1_collapsed": ("rule", lambda g: all(
            g[f"real_study_reverse_{m}_{b}_collapsed"] == 0 for m in ("vanilla", "mara") for b in ("0_01", "0_03", "0_1"))
            and all(abs(g[f"real_study_reverse_mara_{b}_late_{e}"] - 0.5) < 0.05 for b in ("0_01", "0_03", "0_1")
                    for e in ("min", "max")),
            "'neither beta makes vanilla collapse, and MARA removes the bias at both'; at 0.01 none collapsed (reverse KL)"),
        "real_study_forward_vanilla_0_1_late_min": ("rule", lambda g: all(
            g[f"real_study_forward_vanilla_{b}_late_min"] > g[f"real_study_forward_vanilla_{b}_target"]
            and g[f"real_study_forward_mara_{b}_late_max"] < g[f"real_study_forward_mara_{b}_target"]
            and g[f"real_study_forward_vanilla_{b}_valid_max"] < g[f"real_pred_fwd_valid_{b}"]
            for b in ("0_03", "0_1")) and max(g["real_study_forward_vanilla_0_1_valid_max"],
                                              g["real_study_forward_mara_0_1_valid_max"]) < g["real_reverse_valid_min_0_1"], "the summary: with the forward KL vanilla a little above its share and below its "
                                      "valid mass, MARA a little below its share; 5.10: forward runs below every reverse one"),
        "real_study_forward_vanilla_0_01_late_min": ("rule", lambda g: g["real_study_forward_vanilla_0_01_late_min"]
            < g["real_study_forward_vanilla_0_01_target"] < g["real_study_forward_vanilla_0_01_late_max"]
            and g["real_study_forward_vanilla_0_01_valid_max"] < g["real_pred_fwd_valid_0_01"]
            and g["real_study_forward_mara_0_01_late_max"] < g["real_study_forward_mara_0_01_target"]
            and all(g[f"real_study_forward_vanilla_{b}_late_sd_min"] > g[f"real_study_reverse_vanilla_{b}_late_sd_max"]
                    for b in ("0_01", "0_03", "0_1")), "beta 0.01, forward KL: vanilla's late means on both sides of "
            "its target, below its valid mass, MARA below its share; every forward vanilla run wanders more than "
            "every reverse one at each beta"),
        "real_study_reverse_mara_0_01_late_sd_max": ("rule", lambda g: all(
            g[f"real_study_reverse_{m}_0_01_late_sd_{e}"] > g[f"real_study_reverse_{m}_0_03_late_sd_{e}"]
            > g[f"real_study_reverse_{m}_0_1_late_sd_{e}"] for m in ("vanilla", "mara") for e in ("min", "max")),
            "the differences note: with the reverse KL the runs wander further the smaller beta is (the late "
            "window's spread, its least and its most, both ordered by beta for both methods)"),
        "real_invalid_groups_forward_0_01": ("rule", lambda g: max(g[f"real_invalid_groups_reverse_{b}"] for b in ("0_01", "0_03", "0_1"))
            < 0.1 < 0.4 < min(g[f"real_invalid_groups_forward_{b}"] for b in ("0_01", "0_03", "0_1")),
            "groups with an invalid answer are rare with the reverse KL and common with the forward KL"),
        "real_study_forward_vanilla_0_01_valid_min": ("rule", lambda g: g["real_study_forward_vanilla_0_01_valid_min"]
            > g["real_study_forward_vanilla_0_1_valid_max"], "forward vanilla's valid mass at 0.01 above every run's at 0.1"),
        "real_reverse_entropy_lowest": ("rule", lambda g: g["real_reverse_entropy_lowest"] > 0.2
            and g["real_study_reverse_vanilla_0_01_final_max"] > g["real_study_reverse_vanilla_0_01_late_max"] + 0.05,
            "no reverse-KL evaluation fell below the 0.2-bit line; vanilla's highest final share at 0.01 is an "
            "excursion (above every run's late mean)"),
        "real_vanilla_collapsed": ("close", 0, 0, "'no vanilla run collapsed, at any of the three betas and with "
                                                  "either KL' (section 5.10, the summary, the differences note)"),
        # what section 5.10 says about TRL on the real model (stored runs): a re-run that changes any of these fails
        "trl_real_failed": ("close", 0, 0, "the prose says how many TRL runs failed: none"),
        "trl_real_mara_pred_fwd": ("above", 0.9, "the forward-KL MARA target (Algorithm 1) piles onto the bare '1'"),
        "trl_real_mara_pred": ("close", 0.5, 1e-9, "the reverse-KL MARA target is flat over two strings per answer"),
        "trl_real_bias_correction": ("close", 1, 0, "the prose says the runs had TRL's importance ratio on the KL"),
        "trl_real_valid_end_min": ("rule", lambda g: g["trl_real_valid_end_min"] > g["trl_real_fwd_target_valid"]
                                   > g["trl_real_book_fwd_valid_max"],
                                   "TRL's valid mass is above the forward-KL target's, below which the book's forward "
                                   "runs stay"),
        "trl_real_mara_end_max": ("rule", lambda g: g["trl_real_mara_end_max"] < g["trl_real_book_mara_min"]
                                  and g["trl_real_mara_mean_max"] < g["trl_real_vanilla_mean_min"]
                                  and g["trl_real_mara_below_start"] > g["trl_real_mara_evals"] / 2,
                                  "'TRL's MARA does not head for its target': every TRL MARA run ends below every "
                                  "rl.Trainer forward-KL MARA run at the same step, and below vanilla on average"),
        "trl_real_vanilla_mean_min": ("rule", lambda g: max(abs(g["trl_real_vanilla_mean_min"] - g["trl_real_vanilla_pred"]),
                                                            abs(g["trl_real_vanilla_mean_max"] - g["trl_real_vanilla_pred"])) < 0.1,
                                      "TRL's vanilla stays 'around its target' (run means within 0.1)"),
    },
    "06_open_ended": {
        "distinct_eight_colours": ("close", 8.0, 0.0, "eight different answers"),
        "semantic_repeated": ("close", 0.0, 1e-5, "identical texts embed identically (float32 rounding)"),
        "ead1_repeated": ("close", 1 / (30000 * (1 - (1 - 1 / 30000) ** 8)), CLOSED,
                          "EAD-1: 1 distinct unigram over its expectation V(1 - (1 - 1/V)^8), V = 30,000"),
        "coverage_example": ("close", 0.5, 1e-12, "3 of the 6 pairs of [red x3, blue] hold both answers: exact counting"),
        "design_same": ("close", 1, 0, "the stated rule, re-applied in this build, picks oer.DESIGN's categories"),
        # SmolLM2's exact probabilities: teacher forcing in fp32 of fixed (de-quantised) weights; another BLAS moves
        # them by ~1e-6, so 0.002 only catches a changed prompt format, loader or EOS token (measured 0.3294)
        "ref_color_valid": ("close", 0.3294, 0.002, "the reference's exact valid mass on 'Name a color.' (oer docstring)"),
        "target_rloo_color_valid": ("above", 0.999, "the reverse-KL target answers validly: a reward gap of 0.8 at "
                                                    "beta 0.05 is a factor e^16"),
        "target_mara_fwd_color_top_share": ("rule", lambda g: min(g["target_mara_fwd_color_top_share"],
                                                                  g["target_mara_fwd_country_top_share"]) > 0.9,
                                            "'a collapse, by construction': Algorithm 1's forward target piles onto "
                                            "one good answer on both questions"),
        "target_mara_rev_color_effective": ("rule", lambda g: all(
            g[f"target_mara_rev_{c}_effective"] > g[f"target_rloo_{c}_effective"] for c in ("color", "country"))
            and g["target_rloo_color_effective"] < g["ref_color_effective"]
            and abs(g["target_grpo_color_effective"] / g["target_rloo_color_effective"] - 1) < 0.25
            and g["target_grpo_country_effective"] < g["target_rloo_country_effective"] / 2,
            "the prose's reading of the targets: MARA-rev flatter than RLOO, RLOO narrower than the reference, GRPO's "
            "nearest target about as narrow as RLOO's among colours and much narrower among countries"),
        "ref_color_lenient": ("rule", lambda g: g["ref_color_starts"] < 0.5 and g["ref_color_lenient"] < 0.5,
                              "'most of the model's completions are not an acceptable answer at all'"),
        "good_color": ("close", 11, 0, "colours with reward >= 0.9: ranks 0-10 of 22 (1 - 0.2 r / 21 >= 0.9)"),
        "good_country": ("close", 13, 0, "countries with float32 reward >= 0.9: ranks 0-12 of 27; rank 13 ('Iran') "
                                         "is 0.9 in float64 only"),
        "tau_trained_tau_across": ("rule", lambda g: g["tau_trained_tau_across"] > 0.9
                                   and g["tau_trained_p90_per_batch_across"] < 0.5 and g["tau_trained_p90_per_group_across"] < 0.01,
                                   "after training the fixed tau finds two good answers 'in almost every group', the "
                                   "percentiles rarely"),
        "target_mara_fwd_alg2_color_effective": ("rule", lambda g: all(
            abs(g[f"target_mara_fwd_alg2_{c}_effective"] / g[f"target_mara_rev_{c}_effective"] - 1) < 0.15
            for c in ("color", "country")), "Algorithm 2's forward target is flat over the good strings 'like "
                                            "MARA-rev's'"),
        # what the prose says about the stored study: a re-collected study that changes any of these fails here
        "stored_finished": ("rule", lambda g: g["stored_finished"] == g["stored_planned"] == 30 and g["stored_errors"] == 0,
                            "the prose reads the complete five-seed grid, no run raised"),
        "max_p_vs_base_reward_in": ("rule", lambda g: g["max_p_vs_base_reward_in"] < 0.05
                                    and g["trained_reward_in_min"] > g["stored_base_reward_in_high"],
                                    "'each above the base model after the correction'"),
        "end_min_valid_color": ("above", 0.85, "'the valid mass going from a third to ... or more'"),
        "out_above_base_n": ("rule", lambda g: "RLOO" in g["out_above_base"] and g["stored_rloo_reward_out_mean"] == max(
            g[f"stored_{m}_reward_out_mean"] for m in ("rloo", "grpo", "grpo_no_std", "entropy", "mara_rev", "mara_fwd"))
            and g["test_mara_rev_rloo_reward_out_p_holm"] >= 0.05 and g["test_mara_fwd_rloo_reward_out_p_holm"] < 0.05
            and g["test_mara_rev_base_reward_out_p_holm"] >= 0.05
            and g["stored_grpo_reward_out_mean"] < g["stored_base_reward_out_high"] and min(
                g[f"stored_{m}_reward_out_mean"] for m in ("rloo", "grpo_no_std", "mara_rev", "mara_fwd"))
            > g["stored_base_reward_out_mean"],
            "held-out reward: RLOO's mean is the highest and above the base model after correction; MARA-fwd is below "
            "RLOO after correction, MARA-rev's differences from RLOO and from the base model are not established; every "
            "trainer but GRPO and the entropy bonus is above the base model in the mean"),
        "end_grpo_collapsed": ("rule", lambda g: g["end_grpo_collapsed"] >= 3 and g["end_grpo_no_std_collapsed"] == 0
                               and g["test_grpo_grpo_no_std_distinct_p_holm"] < 0.05
                               and g["end_grpo_color_top_share_min"] > g["target_grpo_color_top_share"] + 0.3,
                               "GRPO collapses in most runs, far beyond its nearest target; without the std division "
                               "no run collapses and the distinct answers differ after correction"),
        "end_entropy_color_p_valid_max": ("rule", lambda g: g["end_entropy_color_p_valid_max"] < 0.01 and all(
            g[f"stored_entropy_{k}_mean"] >= g[f"stored_{m}_{k}_mean"] for k in ("ead1", "semantic")
            for m in ("base", "rloo", "grpo", "grpo_no_std", "mara_rev", "mara_fwd")),
            "the entropy bonus unlearns the answer, and its EAD-1 and semantic scores are the table's highest"),
        "stored_mara_rev_coverage_mean": ("rule", lambda g: all(
            g["stored_mara_rev_coverage_mean"] >= g[f"stored_{m}_coverage_mean"]
            for m in ("base", "rloo", "grpo", "grpo_no_std", "entropy", "mara_fwd"))
            and g["test_mara_rev_grpo_coverage_p_holm"] < 0.05 and g["test_mara_rev_rloo_coverage_p_holm"] >= 0.05
            and g["test_mara_rev_base_coverage_p_holm"] < 0.05 and g["test_mara_rev_rloo_distinct_p_holm"] >= 0.05,
            "MARA-rev's coverage is the table's highest, established against GRPO and the base model, not against "
            "RLOO; distinct answers do not separate MARA-rev from RLOO"),
        "end_mara_rev_color_effective_max": ("rule", lambda g: g["end_mara_rev_color_effective_max"]
                                             < g["target_mara_rev_color_effective"]
                                             and g["end_mara_rev_color_top_share_max"] < g["end_rloo_color_top_share_min"],
                                             "MARA-rev 'on the way to, not at' its flat target, flatter than RLOO"),
        "fwd_winner_end_max": ("rule", lambda g: g["fwd_winner_end_max"] < g["fwd_winner_start"]
                               and g["end_mara_fwd_top"] != g["target_mara_fwd_color_top"]
                               and g["stored_mara_fwd_reward_in_mean"] == g["trained_reward_in_min"]
                               and g["test_mara_fwd_grpo_reward_in_p_holm"] < 0.05
                               and g["test_mara_fwd_rloo_reward_in_p_holm"] >= 0.05
                               and g["stored_mara_fwd_coverage_mean"] < g["stored_rloo_coverage_mean"],
                               "MARA-fwd moves away from its target's winner; lowest training reward among the trainers "
                               "that kept the format, established against GRPO only; coverage below RLOO's in the mean"),
        "end_grpo_top": ("rule", lambda g: g["end_grpo_top"] != g["target_grpo_color_top"]
                         and g["grpo_target_top_end_max"] < 0.01 and g["end_grpo_top_runs"] >= 3
                         and g["test_grpo_no_std_base_coverage_p_holm"] >= 0.05
                         and g["stored_grpo_no_std_coverage_mean"] < g["stored_rloo_coverage_mean"],
                         "GRPO collapses onto another answer than its nearest target's; GRPO no std's coverage is the "
                         "base model's (not separated), below RLOO's"),
        "mara_rev_step50_top_min": ("rule", lambda g: g["mara_rev_step50_top_min"] > g["end_mara_rev_color_top_share_max"]
                                    and g["end_mara_rev_color_effective_max"] < g["ref_color_effective"]
                                    and g["stored_mara_rev_ead1_mean"] < g["stored_rloo_ead1_mean"]
                                    and g["stored_grpo_reward_out_mean"] < g["stored_base_reward_out_mean"]
                                    and g["stored_entropy_reward_out_mean"] < g["stored_base_reward_out_mean"],
                                    "MARA-rev first narrowed, then fell back, still below the reference's effective "
                                    "number; its EAD-1 below RLOO's; GRPO and the entropy bonus below the base model "
                                    "out of distribution"),
        "stored_base_distinct_mean": ("rule", lambda g: g["test_rloo_base_distinct_p_holm"] >= 0.05
                                      and g["test_mara_rev_base_distinct_p_holm"] >= 0.05
                                      and g["test_grpo_base_distinct_p_holm"] < 0.05,
                                      "'RLOO and MARA-rev keep about as many distinct answers as the untrained model "
                                      "(neither difference survives)'; GRPO pays with its collapse"),
        "tau_junk_exact": ("close", 0.103, 0.003, "mean over color and country of (1 - p_valid)^8 from the exact valid "
                                                  "masses (measured 0.103)"),
        "target_mara_fwd_top_ref": ("below", 0.05, "MARA-fwd's winner is an answer the reference rarely says"),
        "tau_ref_p90_per_group_across": ("close", 0, 0, "a per-group p90 of 8 rewards admits only the best sample "
                                                        "and its ties: never two different answers"),
        "tau_ref_tau_junk": ("close", 0, 0, "a fixed tau = 0.9 never declares an invalid answer good"),
        "tau_ref_p90_per_batch_across": ("rule", lambda g: g["tau_ref_p90_per_batch_across"] > 0
                                         and g["tau_ref_p90_per_batch_junk"] < g["tau_ref_p90_per_group_junk"]
                                         and g["tau_ref_p90_per_group_junk"] > 0.02
                                         and g["tau_ref_tau_across"] > g["tau_ref_p90_per_batch_across"],
                                         "'the per-batch percentile does better' than the per-group one, the fixed "
                                         "value best, and the per-group p90 does mark junk good"),
    },
    "07_chemical_language_models": {
        "prior_validity": ("close", 0.9485, 0.062, "the prior's report (10k samples); 200 smoke samples have "
                                                   "binomial SE 0.0155, so a 4-SE band"),
        "toy_fixed_point_1": ("close", 0.4943674379031238, CLOSED, "DAP fixed point (7.2) = Gibbs target, "
                                                                   "beta = 1/sigma = 0.2"),
        "toy_fit_max_diff": ("below", 2e-3, "Adam on the exact DAP loss reaches the fixed point (measured ~1e-16)"),
        "fixed_point_ratio_sigma_32": ("close", math.exp(32 * 0.05), CLOSED * 5, "exp(sigma * 0.05)"),
        "fixed_point_ratio_sigma_128": ("close", math.exp(128 * 0.05), CLOSED * 602, "exp(sigma * 0.05)"),
        "dedup_p4": ("close", 0.18655819627495993, 1e-9, "de-duplicated fixed point (7.4), B = 64: bisection to "
                                                         "machine precision, root-find to 1e-14"),
        "dedup_fit_max_diff": ("below", 1e-6, "gradient descent on the exact de-duplicated gradient (7.3) from "
                                              "random starts reaches (7.4) on the 100-molecule toy (measured 5.9e-17)"),
        "dd_good_mass_b64": ("close", 0.2262758442931458, 1e-9, "the 100-molecule toy's fixed point (7.4) at B = 64: "
                                                               "a root-find to machine precision"),
        "dd_mara_spread": ("below", 1e-12, "MARA's de-duplicated fixed point is exactly flat over the good molecules"),
        "dd_worst_eigenvalue": ("below", 0.0, "the fixed point is stable: every eigenvalue of the linearised "
                                              "dynamics is negative"),
        "dd_mara_matches_ch4": ("below", 1e-12, "at B = 1 MARA's de-duplicated point is chapter 4's MARA target"),
    },
    "08_mara_molecules": {
        "toy_mara_fit_max_diff": ("below", 2e-3, "DAP on MARA scores reaches the MARA target (measured ~1e-16)"),
        "toy_mara_good_ratio": ("close", 1.0, CLOSED, "two good molecules, equal mass under MARA"),
        "toy_mara_good_mass": ("close", 0.9682764721508448, CLOSED, "MARA target (4.2), beta = 0.2, tau = 0.85"),
    },
    "09_pmo_benchmark": {
        "celecoxib_self": ("close", 1.0, 1e-12, "a rediscovery target is its own nearest neighbour: Tanimoto 1"),
        "albuterol_self": ("close", 1.0, 1e-12, "albuterol is past its own clipped similarity: score 1"),
        "isomer_exact": ("close", 1.0, 1e-12, "3,4-diaminobenzoic acid is C7H8N2O2: an exact isomer scores 1"),
        "invalid_score": ("close", 0.0, 0.0, "an invalid SMILES scores 0"),
        "auc_flat": ("close", 0.6 * (1 - 100 / 20_000), 1e-12, "eq. (9.1): c (1 - freq / 2B), a trapezoid sum"),
        "auc_late": ("close", (100 / 2 + 4_900) / 10_000, 1e-12, "eq. (9.1): one 100-molecule trapezoid from 0 to 1, then 4,900 at 1"),
        # what the prose says about the stored study: a re-collected study that changes any of these fails here
        "act_changed_runs": ("rule", lambda g: g["act_changed_runs"] <= g["act_runs_n"] / 2,
                             "the summary says the study cannot test MARA: it changed few of its runs"),
        "act_never_n": ("above", 1, "the prose names the tasks where MARA never acted"),
        "best_median1": ("rule", lambda g: g["best_median1"] < g["tau_median1"] and g["best_median2"] < g["tau_median2"],
                         "the medians' REINVENT best stays below their thresholds, as the prose says"),
        "df_auc_worst": ("rule", lambda g: abs(g["df_auc_worst"]) > abs(g["auc_big_diff"]),
                         "the prose says the filter's differences are larger than MARA's"),
        "scaf_sig_list": ("rule", lambda g: _each_crosses_the_filter(g["scaf_sig_list"]),
                          "each surviving scaffold test pits a filtered method against an unfiltered one"),
        "auc_sig_list": ("rule", lambda g: _each_crosses_the_filter(g["auc_sig_list"]) and g["auc_sig_same_n"] == 0,
                         "the prose says every surviving AUC test measures the filter, none MARA"),
        "n_seeds_used": ("rule", lambda g: g["n_seeds_used"] == g["n_seeds_planned"]
                         and g["study_runs_used"] == g["study_planned"], "the summary says the study is complete"),
        "act_never_baseline_reached": ("close", 0, 0, "the prose says the thresholds sit above what REINVENT finds"),
        "df_auc_sig_n": ("above", 1, "the summary lists the filter's significant AUC differences"),
    },
}


def _each_crosses_the_filter(tests: str) -> bool:
    """Every "A vs B on task, +x" of a glued list of surviving tests has exactly one of A, B with the filter."""
    return tests == "none" or all(a.split(" vs ")[0].endswith("+DF") != a.split(" vs ")[1].split(" on ")[0].endswith("+DF")
                                  for a in tests.split("; "))


def check_key_numbers(glued: dict, expected: dict) -> list:
    """The failed checks, as messages (empty when every key number is right)."""
    failures = []
    for name, (kind, *args) in expected.items():
        why = args[-1]
        if name not in glued:
            failures.append(f"{name}: not glued by the chapter")
            continue
        v = glued[name]
        if kind == "close":
            ok = abs(v - args[0]) <= args[1]
        elif kind == "below":
            ok = v <= args[0]
        elif kind == "above":
            ok = v >= args[0]
        elif kind == "between":
            ok = args[0] <= v <= args[1]
        elif kind == "rule":
            ok = bool(args[0](glued))
        else:
            raise ValueError(f"unknown check kind {kind!r}")
        if not ok:
            failures.append(f"{name} = {v!r} fails {kind} {args[:-1] if kind != 'rule' else ''} ({why})")
    return failures


def test_every_chapter_has_key_numbers():
    assert set(KEY_NUMBERS) == {p.stem for p in CHAPTERS}


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_key_numbers(path, executed_chapters):
    glued = glued_values(executed_chapters[path.name].notebook)
    failures = check_key_numbers(glued, KEY_NUMBERS[path.stem])
    assert not failures, f"{path.name}:\n" + "\n".join(failures)


GLUE_REFERENCE = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")


def glue_references(notebook: dict) -> list:
    """(name, format spec) of every ``{glue:text}`name:spec``` in a chapter's markdown cells."""
    return [m.groups(default="") for c in notebook["cells"] if c["cell_type"] == "markdown"
            for m in GLUE_REFERENCE.finditer("".join(c["source"]))]


def _myst_format(value, spec: str) -> str:
    """MyST-NB's rule for ``{glue:text}`name:spec```: the type character picks str, int or float, then format()."""
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        if float(value) != int(float(value)):
            raise ValueError("format 'd' needs a whole number")
        value = int(float(value))
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def unresolved_glue(notebook: dict, glued: dict) -> list:
    """The prose's glue references that this run did not glue, or whose value its format cannot take."""
    out = []
    for name, spec in glue_references(notebook):
        if name not in glued:
            out.append(f"{name}: quoted in the prose, never glued")
            continue
        v = glued[name]
        if not spec or v == "undefined":  # an undefined share (every run failed) is a legitimate smoke-scale value
            continue
        try:
            _myst_format(v, spec)
        except (TypeError, ValueError) as err:
            out.append(f"{name}: format {spec!r} cannot take {v!r} ({err})")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_number_quoted_in_the_prose_is_computed(path, executed_chapters):
    """Prose numbers come from code: each {glue:text} reference is glued by this run of the chapter."""
    nb = json.loads(path.read_text())
    problems = unresolved_glue(nb, glued_values(executed_chapters[path.name].notebook))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_an_unglued_prose_number_is_caught():
    nb = {"cells": [{"cell_type": "markdown", "source": ["in {glue:text}`a:d` of {glue:text}`b:.2f` runs, "
                                                          "seeds {glue:text}`c`"]}]}
    assert glue_references(nb) == [("a", "d"), ("b", ".2f"), ("c", "")]
    assert unresolved_glue(nb, {"a": 3.0, "b": 0.5, "c": "5 and 7"}) == []
    problems = unresolved_glue(nb, {"a": 2.5, "c": "x"})
    assert any(p.startswith("b: quoted in the prose, never glued") for p in problems)
    assert any(p.startswith("a: format 'd'") for p in problems)
    assert unresolved_glue({"cells": [{"cell_type": "markdown", "source": ["{glue:text}`b:.3f}`"]}]}, {"b": 0.5})


def test_a_wrong_key_number_is_caught():
    good = {"beta_star": 0.25 / 1.9, "reverse_peak_flip_beta": 0.135}
    assert check_key_numbers(good, {k: KEY_NUMBERS["03_when_unimodal"][k] for k in good}) == []
    bad = {"beta_star": 0.25 / 1.9 * 1.001, "reverse_peak_flip_beta": 0.16}  # 0.1% off; one grid step late
    failures = check_key_numbers(bad, {k: KEY_NUMBERS["03_when_unimodal"][k] for k in bad})
    assert len(failures) == 2 and "beta_star" in failures[0]
    assert check_key_numbers({}, {"beta_star": KEY_NUMBERS["03_when_unimodal"]["beta_star"]}) == \
        ["beta_star: not glued by the chapter"]


def test_glued_values_reads_what_glue_writes():
    """glue's output format round-trips through glued_values (no kernel needed: IPython's display)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from marabook.glue import glue

    InteractiveShell.instance()
    with capture_output() as cap:
        glue("x", 0.25)
        glue("label", "mode 1", display=True)
    outs = [nbformat.v4.new_output("display_data", data=o.data, metadata=o.metadata) for o in cap.outputs]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outs)])
    assert glued_values(nb) == {"x": 0.25, "label": "mode 1"}
    with pytest.raises(ValueError, match="value"):
        glue("y", float("nan"))
    from marabook.glue import glue_maybe, glue_name, glue_rows
    with capture_output() as cap2:
        glue_maybe("z", float("nan"))
        made = glue_rows([{"method": "MARA 0.85", "beta": 0.001, "share": float("nan"), "runs": 5}],
                         ("method", "beta"), ("share", "runs"), prefix="s")
    outs2 = [nbformat.v4.new_output("display_data", data=o.data, metadata=o.metadata) for o in cap2.outputs]
    got = glued_values(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outs2)]))
    assert got == {"z": "undefined", "s_mara_0_85_0_001_share": "undefined", "s_mara_0_85_0_001_runs": 5.0} == \
        {"z": "undefined", **made}
    assert glue_name("cmp", "rl.Trainer", "group", 0.03) == "cmp_rl_trainer_group_0_03"
    with pytest.raises(ValueError, match="name"):
        glue("not an identifier", 1.0)
    with pytest.raises(ValueError, match="twice"):
        glued_values(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outs + outs)]))


def cells_missing_alt_text(nb) -> list[str]:
    """Code cells that draw an image but give it no description (``metadata.mystnb.image.alt``, which the book
    puts on the <img>): a screen reader would read out a file hash."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        draws = any(any(k.startswith("image/") for k in o.get("data", {})) for o in cell.get("outputs", []))
        alt = cell.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt", "")
        if draws and len(alt.strip()) < 20:
            out.append(f"cell {i} ({cell.get('id')}): {cell.source.splitlines()[0][:60]!r}")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_figure_has_alt_text(path, executed_chapters):
    missing = cells_missing_alt_text(executed_chapters[path.name].notebook)
    assert not missing, f"{path.name}: figures without alt text (set metadata.mystnb.image.alt): {missing}"


def test_a_figure_without_alt_text_is_caught():
    nb = nbformat.v4.new_notebook()
    fig = nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output("display_data", data={"image/png": "x"})])
    nb.cells = [fig, nbformat.v4.new_code_cell("x = 1")]
    assert len(cells_missing_alt_text(nb)) == 1
    fig.metadata["mystnb"] = {"image": {"alt": "the reverse-KL target across beta"}}
    assert cells_missing_alt_text(nb) == []


LONG_CELL = 25  # lines of code a reader meets in the middle of the argument before it is collapsed


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_long_code_cells_are_collapsed(path):
    """The argument stays on the page: a code cell longer than LONG_CELL lines (a plotting routine, an
    experiment's plumbing) is shown collapsed, with its output (tag ``hide-input``), or not at all (``remove-input``
    or ``remove-cell``, as the intro's headline figure and its setup)."""
    nb = nbformat.read(path, as_version=4)
    long = [f"cell {i} ({c.get('id')}, {len(c.source.strip().splitlines())} lines)"
            for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and len(c.source.strip().splitlines()) > LONG_CELL
            and not {"hide-input", "remove-input", "remove-cell"} & set(c.metadata.get("tags", []))]
    assert not long, f"{path.name}: tag these hide-input or move their code into marabook: {long}"
