"""The optimiser as an axis of the exact dynamics (issue 27 item 6; chapter 5, section 5.9; chapter 1).

Gradient flow (``optimizer="flow"``) is checked against an independent ODE solution, small-step SGD against
the flow, every optimiser against the closed-form fixed point, and the measured transients the book quotes.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.special import softmax

from marabook import bandit, mara, problems, targets
from marabook.experiments import onetwo

REF3 = np.array([0.7461, 0.1801, 0.0738])  # the shipped LM's "1", "2", anything else (chapter 5)
R3 = np.array([1.0, 1.0, 0.0])


def independent_flow(ref, r, beta, times, direction="reverse"):
    """d theta/dt = dJ/d theta written out from eq. 1.5 / 2.5, solved by Radau (not the package's LSODA)."""
    def rhs(t, th):
        pi = np.exp(th - th.max()) / np.exp(th - th.max()).sum()
        if direction == "reverse":
            a = r - beta * (np.log(pi) - np.log(ref))
            return pi * (a - pi @ a)
        return pi * (r - pi @ r) + beta * (ref - pi)
    sol = solve_ivp(rhs, (0.0, times[-1]), np.log(ref), method="Radau", t_eval=times, rtol=1e-11, atol=1e-11)
    assert sol.success
    return softmax(sol.y.T, axis=-1)


def share(policies):
    return policies[:, 0] / (policies[:, 0] + policies[:, 1])


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_flow_matches_an_independent_ode_solution(direction):
    rng = np.random.default_rng(3)
    ref, r = rng.dirichlet(np.ones(6)), rng.normal(size=6)
    tr = bandit.train_exact(ref, r, 0.05, direction=direction, optimizer="flow", lr=0.5, steps=400, n_snapshots=5)
    want = independent_flow(ref, r, 0.05, 0.5 * tr.steps, direction)
    assert tr.steps.tolist() == [0, 100, 200, 300, 400]
    # both solvers at tolerances <= 1e-9: measured max difference 3e-11; the policy moves by 0.5 over the run
    np.testing.assert_allclose(tr.policies, want, atol=1e-7)
    assert np.abs(tr.policies[-1] - ref).max() > 0.1
    assert tr.settings == {"optimizer": "flow", "lr": 0.5, "time_per_step": 0.5, "rtol": bandit.FLOW_RTOL,
                           "atol": bandit.FLOW_ATOL, "steps": 400}


def test_small_step_gradient_ascent_follows_the_flow_with_error_of_order_the_step():
    beta, t_end = 0.01, 400.0  # the transient of chapter 5: the share of "1" rises from 0.806 to 0.934 near t = 339
    want = independent_flow(REF3, R3, beta, np.linspace(0, t_end, 41))
    errors = {}
    for lr in (0.2, 0.02):
        steps = int(round(t_end / lr))
        tr = bandit.train_exact(REF3, R3, beta, optimizer="sgd", lr=lr, steps=steps, n_snapshots=41)
        np.testing.assert_allclose(lr * tr.steps, np.linspace(0, t_end, 41))
        errors[lr] = np.abs(share(tr.policies) - share(want)).max()
    # Euler's global error is O(lr): measured 3.2e-4 at lr 0.2 and 3.2e-5 at lr 0.02 over a move of 0.13
    assert errors[0.02] < 4e-5 and errors[0.2] < 4e-4
    assert 5 < errors[0.2] / errors[0.02] < 20
    assert share(want).max() - share(want)[0] > 0.1


def test_one_step_uses_exactly_the_packages_gradient():
    ref, r = problems.three_action_equal_reward().ref_probs, problems.three_action_equal_reward().rewards
    for direction in ("reverse", "forward"):
        tr = bandit.train_exact(ref, r, 0.05, direction=direction, optimizer="sgd", lr=1.0, steps=1, n_snapshots=2)
        theta = np.log(ref)
        assert np.array_equal(tr.final, softmax(theta + targets.kl_regularized_gradient(theta, ref, r, 0.05, direction)))


def test_defaults_are_adam_with_torch_betas_and_are_recorded():
    a = bandit.train_exact(REF3, R3, 0.03, steps=50, lr=0.01)
    b = bandit.train_exact(REF3, R3, 0.03, steps=50, lr=0.01, optimizer="adam", adam_betas=(0.9, 0.999), adam_eps=1e-8)
    c = bandit.train_exact(REF3, R3, 0.03, steps=50, lr=0.01, adam_betas=(0.9, 0.99))
    assert np.array_equal(a.policies, b.policies) and not np.array_equal(a.policies, c.policies)
    assert a.settings == {"optimizer": "adam", "lr": 0.01, "adam_betas": (0.9, 0.999), "adam_eps": 1e-8, "steps": 50}


@pytest.mark.parametrize("name", list(onetwo.EXACT_OPTIMIZERS))
def test_every_optimiser_reaches_the_closed_form_target(name):
    s = {k: v for k, v in onetwo.EXACT_OPTIMIZERS[name].items() if k != "steps"}
    steps = {"flow": 200_000, "sgd": 2000}.get(s["optimizer"], 8000)  # t = 20,000 for the flow and SGD
    beta = 0.1
    for tau, target in ((None, targets.reverse_kl_target(REF3, R3, beta)), (1.0, mara.mara_target(REF3, R3, beta, 1.0))):
        tr = bandit.train_exact(REF3, R3, beta, mara_tau=tau, steps=steps, **s)
        # largest distance at the end (measured): flow and SGD 1e-4 (the softmax gradient of the tiny third
        # outcome, target 3.6e-6, is proportional to it: the flow's slowest mode), Adam <= 3e-4; the two targets
        # are 0.31 apart, so 1e-3 says which one was reached and that it was reached
        assert np.abs(tr.final - target).max() < 1e-3, (name, tau)


def test_the_optimiser_changes_the_path_not_the_fixed_point():
    rows = {}
    for name in ("gradient flow", "Adam, lr 0.01"):
        s = {k: v for k, v in onetwo.EXACT_OPTIMIZERS[name].items() if k != "steps"}
        steps = 40_000 if s["optimizer"] == "flow" else 4000
        rows[name] = {(r["method"], r["beta"]): r for r in onetwo.exact_dynamics(REF3, (0.01,), steps=steps,
                                                                                  n_snapshots=2001, **s)}
    flow, adam = rows["gradient flow"], rows["Adam, lr 0.01"]
    for m in ("vanilla", "MARA"):
        assert flow[m, 0.01]["target"] == adam[m, 0.01]["target"]
        assert abs(flow[m, 0.01]["final_share_1"] - flow[m, 0.01]["target"]) < 0.01
        assert abs(adam[m, 0.01]["final_share_1"] - adam[m, 0.01]["target"]) < 0.01
    # the re-analysis's transient: under the flow vanilla's share of "1" rises to 0.934 (from 0.806) and returns;
    # Adam moves both correct answers' logits alike and the share never leaves the reference's (< 1e-5)
    assert flow["vanilla", 0.01]["peak_share_1"] == pytest.approx(0.934, abs=2e-3)
    assert 16_000 < flow["vanilla", 0.01]["steps_to_target"] < 17_000  # back within 0.05 at t = 1642
    assert adam["vanilla", 0.01]["departure"] < 1e-5 and adam["vanilla", 0.01]["steps_to_target"] == 0
    assert flow["MARA", 0.01]["peak_share_1"] > 0.88 and adam["MARA", 0.01]["peak_share_1"] < 0.806 + 1e-6
    assert flow["MARA", 0.01]["settings"]["optimizer"] == "flow" and adam["MARA", 0.01]["settings"]["lr"] == 0.01


def test_chapter_1_three_action_ratio_detours_under_the_flow():
    eq = problems.three_action_equal_reward()
    flow = bandit.train_exact(eq.ref_probs, eq.rewards, 0.05, optimizer="flow", lr=0.1, steps=60_000, n_snapshots=6001)
    adam = bandit.train_exact(eq.ref_probs, eq.rewards, 0.05, steps=3000)
    ratio = flow.policies[:, 1] / flow.policies[:, 2]
    # measured: the flow's ratio peaks at 328 at t = 585 and is back within 10% of 15 from t = 3687; Adam (lr 0.1)
    # never leaves 15 by more than 1e-4
    assert 320 < ratio.max() < 335 and abs(ratio[-1] - 15) < 0.5
    assert np.abs(adam.policies[:, 1] / adam.policies[:, 2] - 15).max() < 1e-3


def test_settle_step():
    st = np.array([0, 10, 20, 30, 40])
    assert bandit.settle_step(st, [0.8, 0.55, 0.7, 0.52, 0.49], 0.5, 0.1) == 30
    assert bandit.settle_step(st, [0.5, 0.5, 0.5, 0.5, 0.5], 0.5, 0.1) == 0
    assert bandit.settle_step(st, [0.5, 0.5, 0.5, 0.5, 0.9], 0.5, 0.1) is None
    with pytest.raises(ValueError, match="steps and values"):
        bandit.settle_step(st, [0.5, 0.5], 0.5, 0.1)
    with pytest.raises(ValueError, match="within"):
        bandit.settle_step(st, [0.5] * 5, 0.5, 0.0)


@pytest.mark.parametrize("kwargs, name", [
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"optimizer": "sgd", "lr": 0.0}, "lr"),
    ({"optimizer": "flow", "lr": -1.0}, "lr"),
    ({"adam_betas": (0.9,)}, "adam_betas"),
    ({"adam_betas": 0.9}, "adam_betas"),
    ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
    ({"adam_betas": (-0.1, 0.999)}, "adam_betas"),
    ({"adam_betas": (0.9, float("nan"))}, "adam_betas"),
    ({"adam_eps": 0.0}, "adam_eps"),
])
def test_bad_optimiser_settings_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        bandit.train_exact(REF3, R3, 0.1, steps=5, **kwargs)
    if name != "adam_eps":  # exact_dynamics passes on optimizer, lr and adam_betas
        with pytest.raises(ValueError, match=name):
            onetwo.exact_dynamics(REF3, (0.1,), steps=5, **kwargs)
