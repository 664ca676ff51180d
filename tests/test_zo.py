"""Zeroth-order optimisers converge on synthetic objectives and honour stop and tolerance."""
import threading

import pytest

from engine.eco.zo import ScalarZO, VectorZO, ZOConfig, run


def test_scalar_zo_reaches_the_target_of_a_monotone_objective():
    # metric falls with sigma (like forget accuracy); objective |metric - 0.25|
    metric = lambda s: 1.0 / (1.0 + s)  # noqa: E731
    opt = ScalarZO(ZOConfig(init=0.5, lr=2.0, eps=0.1, min=0.0, steps=200, tolerance=0.01))
    records = list(run(lambda s: abs(metric(s) - 0.25), opt))
    assert abs(metric(records[-1].theta) - 0.25) < 0.05
    assert records[-1].theta > 2.0


def test_scalar_step_matches_the_reference_update():
    opt = ScalarZO(ZOConfig(init=1.0, lr=10.0, eps=0.5, min=0.1))
    f_plus, f_minus, g = opt.step(lambda s: s * s)
    assert (f_plus, f_minus) == (2.25, 0.25) and g == pytest.approx(2.0)
    assert opt.theta == pytest.approx(max(1.0 - 10.0 * 2.0, 0.1))


def test_vector_zo_decreases_a_quadratic():
    target = [2.0, -1.0, 0.5]
    f = lambda th: sum((a - b) ** 2 for a, b in zip(th, target))  # noqa: E731
    opt = VectorZO(ZOConfig(init=0.0, lr=0.5, eps=0.01, min=-10.0, steps=300, tolerance=0.0), n=3)
    start = f(opt.theta.tolist())
    list(run(f, opt))
    assert f(opt.theta.tolist()) < start * 0.05


def test_stop_event_ends_the_run():
    event = threading.Event()
    opt = ScalarZO(ZOConfig(steps=100, tolerance=0.0))
    seen = []
    for rec in run(lambda s: s, opt, stop_event=event):
        seen.append(rec)
        event.set()
    assert len(seen) == 1


@pytest.mark.parametrize("bad", [dict(eps=0), dict(lr=float("nan")), dict(steps=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ZOConfig(**bad).validate()
