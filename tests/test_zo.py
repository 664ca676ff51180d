"""Zeroth-order optimisers converge on synthetic objectives, estimate the gradient without bias
at the lower bound, share their noise between the two probes of a step, and honour stop and
tolerance."""
import threading

import pytest

from engine.eco.zo import ScalarZO, VectorZO, ZOConfig, run, search_strength


def test_scalar_zo_reaches_the_target_of_a_monotone_objective_in_log_space():
    # metric falls with sigma over decades (like forget accuracy); objective |metric - 0.25|
    metric = lambda s: 1.0 / (1.0 + s)  # noqa: E731
    opt = ScalarZO(ZOConfig(init=0.1, lr=4.0, eps=0.25, min=0.01, steps=10, tolerance=0.05))
    records = list(run(lambda s, seed: abs(metric(s) - 0.25), opt))
    assert len(records) <= 10
    assert abs(metric(records[-1].theta_plus) - 0.25) <= 0.05 or abs(metric(records[-1].theta) - 0.25) <= 0.05


def test_the_adaptive_rule_crosses_a_flat_decade_that_stalls_the_gradient_rule():
    """Like ECO's forget accuracy: flat near 1 for decades of sigma, then a drop to a floor of 0.3 around
    sigma 10. Target 0.4 from sigma 0.1: the slope at the start is ~1e-4, so lr x slope never moves;
    the sign does, and the adaptive rule has both probes within 0.05 of the target inside 10 steps."""
    import math

    metric = lambda s: 0.3 + 0.7 / (1 + math.exp(1.5 * (math.log(s) - math.log(10))))  # noqa: E731
    objective = lambda s, seed: abs(metric(s) - 0.4)  # noqa: E731
    adaptive = list(run(objective, ScalarZO(ZOConfig(init=0.1, min=0.01, steps=10, tolerance=0.05))))
    assert len(adaptive) < 10 and max(adaptive[-1].f_plus, adaptive[-1].f_minus) <= 0.05
    gradient = list(run(objective, ScalarZO(ZOConfig(init=0.1, min=0.01, steps=10, tolerance=0.05, rule="gradient"))))
    assert len(gradient) == 10 and gradient[-1].theta < 0.11


def test_linear_step_matches_the_central_difference_away_from_the_bound():
    opt = ScalarZO(ZOConfig(init=1.0, lr=10.0, eps=0.5, min=0.1, space="linear", max_step=100.0, rule="gradient"))
    out = opt.step(lambda s, seed: s * s)
    assert (out["f_plus"], out["f_minus"]) == (2.25, 0.25) and out["grad"] == pytest.approx(2.0)
    assert not out["one_sided"] and opt.theta == pytest.approx(0.1)


@pytest.mark.parametrize("theta", [0.1, 0.3])
def test_the_gradient_is_unbiased_when_the_lower_probe_would_cross_the_bound(theta):
    # f(sigma) = 2 sigma: the slope is 2 everywhere. Clipping the lower probe to the bound and still
    # dividing by 2 eps gave 1.2 at sigma 0.1 and 1.6 at 0.3; the one-sided difference gives 2.
    opt = ScalarZO(ZOConfig(init=theta, lr=0.0, eps=0.5, min=0.1, space="linear"))
    out = opt.step(lambda s, seed: 2 * s)
    assert out["one_sided"] and out["grad"] == pytest.approx(2.0)
    assert out["theta_minus"] >= 0.1


def test_log_space_gradient_is_the_slope_in_log_sigma_at_the_bound():
    import math

    opt = ScalarZO(ZOConfig(init=0.01, lr=0.0, eps=0.25, min=0.01))
    out = opt.step(lambda s, seed: math.log(s) * 3)
    assert out["one_sided"] and out["grad"] == pytest.approx(3.0)


def test_moves_are_clipped_to_max_step_and_theta_stays_above_min():
    opt = ScalarZO(ZOConfig(init=1.0, lr=1e6, eps=0.1, min=0.5, max_step=1.0))
    opt.step(lambda s, seed: -s)  # a huge gradient towards larger sigma: one step is at most x e
    assert opt.theta == pytest.approx(2.718281828, rel=1e-6)
    opt.step(lambda s, seed: s * 1e6)
    assert opt.theta >= 0.5


def test_both_probes_of_a_step_share_one_seed_and_steps_use_new_ones():
    seen = []

    def f(s, seed):
        seen.append(seed)
        return s

    list(run(f, ScalarZO(ZOConfig(steps=3, tolerance=0.0, seed=7))))
    assert seen == [8, 8, 9, 9, 10, 10]


def test_common_random_numbers_cancel_the_noise_of_a_noisy_objective():
    # f = sigma + noise(seed): with the seed shared by both probes the estimate is exact
    import random

    noise = lambda seed: random.Random(seed).gauss(0, 5)  # noqa: E731
    opt = ScalarZO(ZOConfig(init=4.0, lr=0.0, eps=0.5, min=0.1, space="linear"))
    for seed in range(5):
        assert opt.step(lambda s, sd: s + noise(sd), seed)["grad"] == pytest.approx(1.0)


def test_vector_zo_decreases_a_quadratic():
    target = [2.0, -1.0, 0.5]
    f = lambda th, seed: sum((a - b) ** 2 for a, b in zip(th, target))  # noqa: E731
    opt = VectorZO(ZOConfig(init=0.0, lr=0.5, eps=0.01, min=-10.0, steps=300, tolerance=0.0, space="linear"), n=3)
    start = f(opt.theta.tolist(), 0)
    list(run(f, opt))
    assert f(opt.theta.tolist(), 0) < start * 0.05


def test_search_strength_reports_the_best_probe():
    recs = list(search_strength(lambda s, seed: abs(s - 5.0), ZOConfig(init=1.0, steps=6, tolerance=0.0)))
    best = recs[-1]
    probed = [(r["theta_plus"], r["f_plus"]) for r in recs] + [(r["theta_minus"], r["f_minus"]) for r in recs]
    assert best["best_objective"] == min(f for _, f in probed)
    assert abs(best["best_strength"] - 5.0) == pytest.approx(best["best_objective"])


def test_stop_event_ends_the_run():
    event = threading.Event()
    opt = ScalarZO(ZOConfig(steps=100, tolerance=0.0))
    seen = []
    for rec in run(lambda s, seed: s, opt, stop_event=event):
        seen.append(rec)
        event.set()
    assert len(seen) == 1


@pytest.mark.parametrize("bad", [dict(eps=0), dict(lr=float("nan")), dict(steps=0), dict(space="cubic"),
                                 dict(min=0.0), dict(draws=0), dict(max_step=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ZOConfig(**bad).validate()
