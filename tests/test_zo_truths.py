"""Zeroth-order search checked against hand-computed truths.

The optimiser runs on objectives whose every probe is known by hand (|theta - 3|, a linear
function, a first-coordinate objective), with step sizes that are exact in binary so each step
record can be compared field by field. ZOConfig's refusals are checked sentence by sentence at the
edges of each allowed range.
"""
from __future__ import annotations

import threading

import pytest
import torch

from engine.eco.zo import ScalarZO, VectorZO, ZOConfig, run, search_strength

# ============================================================================ ZOConfig.validate

FINITE = "must be a finite number (>= 0 for lr and tolerance)"
POSITIVE = "ZO settings eps, step and max_step must be positive."
LIN = dict(space="linear", max_step=100.0, rule="gradient")  # the plain central-difference update, no trust region


@pytest.mark.parametrize("bad,message", [
    (dict(lr=-1.0), f"ZO setting lr {FINITE}, got -1.0."),
    (dict(tolerance=-0.5), f"ZO setting tolerance {FINITE}, got -0.5."),
    (dict(init=float("nan")), f"ZO setting init {FINITE}, got nan."),
    (dict(min=float("-inf")), f"ZO setting min {FINITE}, got -inf."),
    (dict(eps=float("inf")), f"ZO setting eps {FINITE}, got inf."),
    (dict(lr=float("inf")), f"ZO setting lr {FINITE}, got inf."),
    (dict(max_step=float("nan")), f"ZO setting max_step {FINITE}, got nan."),
    (dict(eps=0.0), POSITIVE),
    (dict(eps=-0.5), POSITIVE),
    (dict(max_step=0.0), POSITIVE),
    (dict(step=0.0), POSITIVE),
    (dict(step=float("nan")), f"ZO setting step {FINITE}, got nan."),
    (dict(rule="newton"), "Unknown ZO rule 'newton'; known: adaptive, gradient."),
    (dict(steps=0), "ZO steps must be between 1 and 1000, got 0."),
    (dict(steps=1001), "ZO steps must be between 1 and 1000, got 1001."),
    (dict(steps=-3), "ZO steps must be between 1 and 1000, got -3."),
    (dict(draws=0), "ZO draws must be between 1 and 64, got 0."),
    (dict(space="cubic"), "Unknown ZO space 'cubic'; known: log, linear."),
    (dict(min=0.0), "A search in log sigma needs init and min above 0."),
    (dict(lr=-2.0, eps=0.0, steps=0), f"ZO setting lr {FINITE}, got -2.0."),  # the first bad field is named
])
def test_each_bad_zo_setting_is_refused_with_its_own_sentence(bad, message):
    with pytest.raises(ValueError) as err:
        ZOConfig(**bad).validate()
    assert str(err.value) == message


@pytest.mark.parametrize("good", [dict(steps=1), dict(steps=1000), dict(lr=0.0, tolerance=0.0),
                                  dict(init=-1.0, min=-2.0, space="linear"), dict(eps=1e-9), dict(draws=64)])
def test_settings_at_the_edges_of_their_ranges_are_accepted(good):
    """steps may be 1 or 1000; lr and tolerance may be 0; a linear search may go below zero."""
    config = ZOConfig(**good)
    assert config.validate() is config


def test_both_optimisers_validate_their_config():
    with pytest.raises(ValueError, match="^ZO steps must be between 1 and 1000, got 1001.$"):
        ScalarZO(ZOConfig(steps=1001))
    with pytest.raises(ValueError, match=f"^{POSITIVE}$"):
        VectorZO(ZOConfig(eps=0.0), n=2)


# ============================================================================ ScalarZO and run

def test_a_scalar_step_divides_the_difference_by_twice_eps():
    """f(s) = s*s from 1 with eps 0.25: f(1.25) - f(0.75) = 1.0, so g = 1.0 / 0.5 = 2."""
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.25, eps=0.25, min=0.0, **LIN))
    assert opt.step(lambda s, seed: s * s) == dict(theta_plus=1.25, theta_minus=0.75, f_plus=1.5625,
                                                   f_minus=0.5625, grad=2.0, one_sided=False)
    assert opt.theta == 0.5


def test_near_the_floor_a_scalar_step_takes_a_forward_difference_and_stops_at_min():
    """From 0.125 with eps 0.25 the lower probe would cross min 0.0625: probe 0.375 and 0.125 instead,
    g = (0.375 - 0.125) / 0.25 = 1, and theta falls to min."""
    seen = []
    opt = ScalarZO(ZOConfig(init=0.125, lr=1.0, eps=0.25, min=0.0625, **LIN))
    out = opt.step(lambda s, seed: seen.append(s) or s)
    assert seen == [0.375, 0.125] and out["one_sided"] and out["grad"] == 1.0
    assert opt.theta == 0.0625


def test_a_log_step_moves_log_sigma_by_at_most_max_step():
    """f(s) = -log(s) in log space: g = -1 exactly, lr 4 asks for +4, the trust region allows +1."""
    import math

    opt = ScalarZO(ZOConfig(init=1.0, lr=4.0, eps=0.25, min=0.01, max_step=1.0, rule="gradient"))
    out = opt.step(lambda s, seed: -math.log(s))
    assert out["grad"] == pytest.approx(-1.0) and out["theta_plus"] == pytest.approx(math.exp(0.25))
    assert opt.theta == pytest.approx(math.e)


# |theta - 3.125| from 0 by the adaptive rule (first move 1, eps 0.25, cap 4, linear): the slope's sign
# holds, so the move doubles 1 -> 2 (theta 1, 3); at 3 the probes (3.25, 2.75) give 0.125 and 0.375: the
# slope is -0.5 and the probes' line reaches zero 0.25 / 0.5 = 0.5 further, short of the trust step 4, so
# theta lands at 3.5 (past the target: the probes straddled it); there the sign flips, the trust step
# halves to 2 and the line lands 0.375 back, on 3.125, where the probes tie and theta stays.
ADAPTIVE_PATH = [  # (theta after the step, the trust step after it, theta_plus, theta_minus, grad)
    (1.0, 1.0, 0.25, -0.25, -1.0), (3.0, 2.0, 1.25, 0.75, -1.0), (3.5, 4.0, 3.25, 2.75, -0.5),
    (3.125, 2.0, 3.75, 3.25, 1.0), (3.125, 2.0, 3.375, 2.875, 0.0),
]


def test_the_adaptive_rule_doubles_while_the_sign_holds_halves_on_a_flip_and_lands_by_the_secant():
    opt = ScalarZO(ZOConfig(init=0.0, step=1.0, eps=0.25, min=-10.0, max_step=4.0, space="linear", steps=5,
                            tolerance=0.0))
    path = [(r.theta, opt.delta, r.theta_plus, r.theta_minus, r.grad) for r in run(lambda s, seed: abs(s - 3.125), opt)]
    assert path == ADAPTIVE_PATH


def test_the_adaptive_trust_step_stops_doubling_at_max_step():
    """|theta - 13| from 0: moves 1, 2, 4, then 4 (the cap), then the line's 2 lands on 13."""
    opt = ScalarZO(ZOConfig(init=0.0, step=1.0, eps=0.25, min=-10.0, max_step=4.0, space="linear", steps=5,
                            tolerance=0.0))
    assert [r.theta for r in run(lambda s, seed: abs(s - 13.0), opt)] == [1.0, 3.0, 7.0, 11.0, 13.0]


def test_the_adaptive_rule_probes_no_wider_than_its_move_and_caps_the_move_at_max_step():
    """eps 1 with a first move of 0.25: the probes sit at +-0.25; 10 - s has slope -1 throughout, so the move
    doubles 0.25 -> 0.5 -> 1 -> 2 and then stays at the cap 2, and the probes widen only up to eps 1."""
    opt = ScalarZO(ZOConfig(init=0.0, step=0.25, eps=1.0, min=-10.0, max_step=2.0, space="linear", steps=6,
                            tolerance=0.0))
    records = list(run(lambda s, seed: 10.0 - s, opt))
    assert [r.theta_plus - r.theta_before for r in records] == [0.25, 0.25, 0.5, 1.0, 1.0, 1.0]
    assert [r.theta - r.theta_before for r in records] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_a_first_step_larger_than_max_step_starts_at_the_cap():
    opt = ScalarZO(ZOConfig(init=0.0, step=8.0, eps=0.25, min=-10.0, max_step=2.0, space="linear"))
    opt.step(lambda s, seed: 10.0 - s)
    assert opt.theta == 2.0


def abs3(s, seed=0):
    return abs(s - 3.0)


# |theta - 3| from 1 with eps 0.25 and lr 0.5: the slope is -1 until theta reaches 3, so theta climbs by
# 0.5 a step; at 3 both probes give 0.25 and the gradient is 0. Step k shares seed k between its probes.
ABS3_STEPS = [
    dict(step=1, theta=1.5, theta_before=1.0, theta_plus=1.25, theta_minus=0.75, f_plus=1.75, f_minus=2.25,
         grad=-1.0, objective=2.0, seed=1, one_sided=False),
    dict(step=2, theta=2.0, theta_before=1.5, theta_plus=1.75, theta_minus=1.25, f_plus=1.25, f_minus=1.75,
         grad=-1.0, objective=1.5, seed=2, one_sided=False),
    dict(step=3, theta=2.5, theta_before=2.0, theta_plus=2.25, theta_minus=1.75, f_plus=0.75, f_minus=1.25,
         grad=-1.0, objective=1.0, seed=3, one_sided=False),
    dict(step=4, theta=3.0, theta_before=2.5, theta_plus=2.75, theta_minus=2.25, f_plus=0.25, f_minus=0.75,
         grad=-1.0, objective=0.5, seed=4, one_sided=False),
    dict(step=5, theta=3.0, theta_before=3.0, theta_plus=3.25, theta_minus=2.75, f_plus=0.25, f_minus=0.25,
         grad=0.0, objective=0.25, seed=5, one_sided=False),
    dict(step=6, theta=3.0, theta_before=3.0, theta_plus=3.25, theta_minus=2.75, f_plus=0.25, f_minus=0.25,
         grad=0.0, objective=0.25, seed=6, one_sided=False),
]
FIELDS = ["step", "theta", "theta_before", "theta_plus", "theta_minus", "f_plus", "f_minus", "grad", "objective",
          "seed", "one_sided", "seconds"]


def without_seconds(d: dict) -> dict:
    assert isinstance(d["seconds"], float) and 0.0 <= d["seconds"] < 5.0
    return {k: v for k, v in d.items() if k != "seconds"}


def test_run_records_every_field_of_each_step_on_a_hand_solved_objective():
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.0, **LIN))
    records = [r.to_dict() for r in run(abs3, opt)]
    assert [list(d) for d in records] == [FIELDS] * 6
    assert [without_seconds(d) for d in records] == ABS3_STEPS


def test_run_stops_once_both_probes_are_at_or_below_the_tolerance():
    """At step 5 both probes give exactly 0.25: a tolerance of 0.25 ends the run there."""
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=50, tolerance=0.25, **LIN))
    assert [without_seconds(r.to_dict()) for r in run(abs3, opt)] == ABS3_STEPS[:5]


def test_the_tolerance_argument_overrides_the_configured_one():
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.0, **LIN))
    assert [r.step for r in run(abs3, opt, tolerance=0.75)] == [1, 2, 3, 4]  # step 4: f+ .25, f- .75
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.75, **LIN))
    assert [r.step for r in run(abs3, opt, tolerance=0.0)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("configured,given,want", [(3, None, [1, 2, 3]), (8, 2, [1, 2]), (1, 4, [1, 2, 3, 4])])
def test_run_numbers_its_steps_from_one_and_takes_exactly_the_steps_asked(configured, given, want):
    calls = []
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=configured, tolerance=0.0, **LIN))
    steps = [r.step for r in run(lambda s, seed: calls.append(s) or abs3(s), opt, steps=given)]
    assert steps == want and len(calls) == 2 * len(want)


def test_a_stop_event_set_before_the_run_means_no_step_and_no_evaluation():
    event, calls = threading.Event(), []
    event.set()
    opt = ScalarZO(ZOConfig(steps=5, tolerance=0.0))
    assert list(run(lambda s, seed: calls.append(s) or s, opt, stop_event=event)) == []
    assert calls == [] and opt.theta == 1.0


def test_a_stop_event_set_during_the_run_ends_it_before_the_next_step():
    event = threading.Event()
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.0, **LIN))
    seen = []
    for rec in run(abs3, opt, stop_event=event):
        seen.append(rec.step)
        if rec.step == 3:
            event.set()
    assert seen == [1, 2, 3] and opt.theta == 2.5


# ============================================================================ VectorZO

def unit_direction(seed: int, n: int) -> torch.Tensor:
    """u ~ N(0, I) / |u| from a generator seeded with `seed`, as VectorZO documents."""
    u = torch.randn((n,), generator=torch.Generator().manual_seed(seed))
    return u / u.norm()


def test_a_vector_step_follows_a_seeded_direction_whatever_the_global_rng():
    """f(x) = x[0]: f(theta + eps u) - f(theta - eps u) = 2 eps u0, so g = u0 * u."""
    torch.manual_seed(12345)
    opt = VectorZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=-10.0, seed=7, **LIN), n=3)
    torch.manual_seed(999)
    u = unit_direction(7, 3)
    out = opt.step(lambda x, seed: x[0])
    assert out["f_plus"] == pytest.approx(1.0 + 0.25 * u[0].item(), abs=1e-6)
    assert out["f_minus"] == pytest.approx(1.0 - 0.25 * u[0].item(), abs=1e-6)
    assert out["grad"] == pytest.approx((u[0] * u).tolist(), abs=1e-6)
    assert opt.theta.tolist() == pytest.approx((1.0 - 0.5 * u[0] * u).tolist(), abs=1e-6)


def test_vector_runs_with_the_same_seed_agree_and_other_seeds_differ():
    f = lambda x, seed: sum((a - b) ** 2 for a, b in zip(x, [2.0, -1.0, 0.5]))  # noqa: E731

    def thetas(seed, noise):
        opt = VectorZO(ZOConfig(init=0.0, lr=0.5, eps=0.125, min=-10.0, steps=4, tolerance=0.0, seed=seed, **LIN), n=3)
        torch.manual_seed(noise)
        return [r.theta for r in run(f, opt)]

    assert thetas(3, 0) == thetas(3, 1)
    assert thetas(3, 0) != thetas(4, 0)


def test_a_vector_run_records_lists_and_clamps_at_min():
    """f(x) = x[0] + x[1]: both probes move along u, and theta never drops below min."""
    opt = VectorZO(ZOConfig(init=1.0, lr=4.0, eps=0.25, min=0.5, steps=2, tolerance=0.0, seed=1, **LIN), n=2)
    gen = torch.Generator().manual_seed(1)
    theta = torch.full((2,), 1.0)
    records = [r.to_dict() for r in run(lambda x, seed: x[0] + x[1], opt)]
    assert [r["step"] for r in records] == [1, 2]
    for d in records:
        u = torch.randn((2,), generator=gen)
        u = u / u.norm()
        s = (u[0] + u[1]).item()
        assert isinstance(d["theta"], list) and isinstance(d["theta_before"], list) and isinstance(d["grad"], list)
        assert d["theta_before"] == pytest.approx(theta.tolist(), abs=1e-6)
        assert d["f_plus"] == pytest.approx(theta.sum().item() + 0.25 * s, abs=1e-5)
        assert d["f_minus"] == pytest.approx(theta.sum().item() - 0.25 * s, abs=1e-5)
        assert d["objective"] == pytest.approx(theta.sum().item(), abs=1e-5)
        assert d["grad"] == pytest.approx((s * u).tolist(), abs=1e-5)
        theta = torch.clamp(theta - 4.0 * s * u, min=0.5)
        assert d["theta"] == pytest.approx(theta.tolist(), abs=1e-5) and min(d["theta"]) >= 0.5


# ============================================================================ search_strength

def test_search_strength_reports_the_best_probe_so_far_on_a_hand_solved_objective():
    """f(s) = s from 1, eps 0.25, lr 0.5, min 0.125: theta goes 1 -> 0.5 -> 0.125; the last step
    would probe below min, so it probes 0.375 and 0.125 (forward difference), the best point."""
    config = ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.125, steps=3, tolerance=0.0, **LIN)
    got = [without_seconds(d) for d in search_strength(lambda s, seed: s, config)]
    assert got == [
        dict(step=1, theta=0.5, theta_before=1.0, theta_plus=1.25, theta_minus=0.75, f_plus=1.25, f_minus=0.75,
             grad=1.0, objective=1.0, seed=1, one_sided=False, best_strength=0.75, best_objective=0.75),
        dict(step=2, theta=0.125, theta_before=0.5, theta_plus=0.75, theta_minus=0.25, f_plus=0.75, f_minus=0.25,
             grad=1.0, objective=0.5, seed=2, one_sided=False, best_strength=0.25, best_objective=0.25),
        dict(step=3, theta=0.125, theta_before=0.125, theta_plus=0.375, theta_minus=0.125, f_plus=0.375,
             f_minus=0.125, grad=1.0, objective=0.25, seed=3, one_sided=True, best_strength=0.125,
             best_objective=0.125),
    ]


def test_search_strength_keeps_the_first_of_equally_good_probes():
    """From theta = 3 on |s - 3| both probes (3.25 and 2.75) give 0.25: the upper one, probed first, stays best."""
    config = ZOConfig(init=3.0, lr=0.5, eps=0.25, min=0.1, steps=2, tolerance=0.0, **LIN)
    got = [(d["best_strength"], d["best_objective"]) for d in search_strength(abs3, config)]
    assert got == [(3.25, 0.25), (3.25, 0.25)]


def test_search_strength_keeps_an_earlier_best_when_later_probes_are_worse():
    """From 1 with eps 0.25 and lr 1: step 1 probes 1.25 (0.5) and 0.75 (0.75), g = -0.5, theta 1.5;
    step 2 probes 1.75 (0.75) and 1.25 (0.5), g = 0.5, theta 1.0; step 3 repeats step 1.
    The best point stays the first probe at 1.25."""
    f = {1.25: 0.5, 0.75: 0.75, 1.75: 0.75}
    config = ZOConfig(init=1.0, lr=1.0, eps=0.25, min=0.1, steps=3, tolerance=0.0, **LIN)
    got = [(d["step"], d["theta"], d["best_strength"], d["best_objective"])
           for d in search_strength(lambda s, seed: f[s], config)]
    assert got == [(1, 1.5, 1.25, 0.5), (2, 1.0, 1.25, 0.5), (3, 1.5, 1.25, 0.5)]


def test_search_strength_honours_its_stop_event():
    event = threading.Event()
    out = []
    for d in search_strength(abs3, ZOConfig(init=1.0, lr=0.5, eps=0.25, steps=6, tolerance=0.0), stop_event=event):
        out.append(d["step"])
        event.set()
    assert out == [1]
