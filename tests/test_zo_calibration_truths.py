"""Zeroth-order search and gate calibration checked against hand-computed truths.

The optimiser runs on objectives whose every probe is known by hand (|theta - 3|, a linear
function, a first-coordinate objective), with step sizes that are exact in binary so each step
record can be compared field by field. ZOConfig's refusals are checked sentence by sentence at the
edges of each allowed range. Calibration uses a scripted classifier (its p(forget) comes from a
table) on small hand-built presets, so the fold, tau and the test report are known in advance.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading

import pytest
import torch

from engine.data.presets import load_preset
from engine.data.records import Passage, Probe, PromptRecord
from engine.eco import calibration as C
from engine.eco.augment import bucket, folds
from engine.eco.classifier import ClassifierConfig
from engine.eco.zo import ScalarZO, VectorZO, ZOConfig, run, search_strength
from tests.test_calibration import Scripted as RuleScripted

# ============================================================================ ZOConfig.validate

FINITE = "must be a finite number (>= 0 for lr and tolerance)"
POSITIVE = "ZO settings eps and max_step must be positive."
LIN = dict(space="linear", max_step=100.0)  # the plain central-difference update, no trust region


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

    opt = ScalarZO(ZOConfig(init=1.0, lr=4.0, eps=0.25, min=0.01, max_step=1.0))
    out = opt.step(lambda s, seed: -math.log(s))
    assert out["grad"] == pytest.approx(-1.0) and out["theta_plus"] == pytest.approx(math.exp(0.25))
    assert opt.theta == pytest.approx(math.e)


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


# ============================================================================ calibration

def make_preset(forget_test, retain_test, retain_probes=None, forget_corpus=None, retain_corpus=None):
    """Ten forget and twelve retain train questions, the given test prompts, one probe per side, a passage each."""
    rec = lambda i, text, split: PromptRecord(id=f"r{i}", prompt=text, answer="a", split=split)  # noqa: E731
    forget = [rec(i, f"forget train question number {i}?", "train") for i in range(10)]
    forget += [rec(100 + i, t, "test") for i, t in enumerate(forget_test)]
    retain = [rec(200 + i, f"retain train question number {i}?", "train") for i in range(12)]
    retain += [rec(300 + i, t, "test") for i, t in enumerate(retain_test)]
    return dataclasses.replace(
        load_preset("harry_potter"), forget_prompts=forget, retain_prompts=retain,
        forget_probes=[Probe("fp", "The forget probe prefix is", "x", ("y", "z", "w"), "train")],
        retain_probes=retain_probes or [Probe("rp", "The retain probe prefix is", "x", ("y", "z", "w"), "train")],
        forget_corpus=forget_corpus or [Passage("fc", "The first forget sentence is long enough.")],
        retain_corpus=retain_corpus or [Passage("rc", "A retain corpus sentence that counts.")])


class Scripted(RuleScripted):
    """A PromptClassifier whose p(forget) is i / 20 for retain train question i, else table.get(text, 0.33)."""

    def __init__(self, table, tokenizer=None, half=False):
        super().__init__(lambda p: int(p.split()[-1][:-1]) / 20 if p.startswith("retain train question number")
                         else table.get(p, 0.33), half=half, tokenizer=tokenizer, report={})


PLAIN = ClassifierConfig(calibration_fraction=0.3, alpha=0.5, lexicon=False, augment=False)
FOLD = [2, 8, 9]  # the retain train questions hashed below 0.3: they score 0.1, 0.4, 0.45; tau = 0.4
TRAIN_RETAIN = [f"retain train question number {i}?" for i in range(12) if i not in FOLD] + [
    "The retain probe prefix is", "A retain corpus sentence that counts."]


def test_the_fold_at_three_tenths_is_retain_questions_2_8_and_9_by_their_hashes():
    """bucket = sha256("gate:<id>"): only r202, r208, r209 fall below 0.3; the probe and passage do not."""
    assert [round(bucket(f"r{200 + i}"), 3) for i in range(12)] == [
        0.688, 0.479, 0.295, 0.408, 0.374, 0.717, 0.721, 0.326, 0.012, 0.275, 0.472, 0.727]
    assert [round(bucket(k), 3) for k in ("rp", "rc", "r")] == [0.675, 0.993, 0.381]
    data, calib = C.training_data(make_preset(["forget a?"], ["retain a?"]), 0.3, augment=False)
    assert calib == [f"retain train question number {i}?" for i in FOLD]
    assert [t for t, label in data if label == 0] == TRAIN_RETAIN and len(data) == 12 + len(TRAIN_RETAIN)


def test_training_data_takes_only_the_train_split_of_the_retain_probes():
    probes = [Probe("rp", "The retain probe prefix is", "x", ("y", "z", "w"), "train"),
              Probe("rpt", "A retain test probe prefix", "x", ("y", "z", "w"), "test")]
    data, calib = C.training_data(make_preset([], [], retain_probes=probes), 0.0, augment=False)
    retain = [f"retain train question number {i}?" for i in range(12)] + TRAIN_RETAIN[-2:]
    assert calib == [] and [t for t, label in data if label == 0] == retain


def test_scores_equal_to_tau_are_not_flagged_in_the_calibration_report():
    """The fold scores 0.1, 0.4, 0.45; alpha 0.5 gives k = ceil(4 * 0.5) = 2, tau 0.4: 0.4 does not count."""
    table = {"forget a?": 0.4, "forget b?": 0.9, "retain a?": 0.4, "retain b?": 0.05}
    clf = C.calibrate(Scripted(table), make_preset(["forget a?", "forget b?"], ["retain a?", "retain b?"]), PLAIN)
    want = {"threshold": 0.4, "forget_recall": 0.5, "retain_fpr": 0.0, "n_forget": 2, "n_retain": 2}
    assert clf.threshold == 0.4 and clf.report["calibration_size"] == 3 and clf.report["calibration_fpr"] == 1 / 3
    assert clf.report["test"] == want == clf.report["test_classifier_only"] and clf.report["alpha_bound_holds"]


def test_a_single_test_prompt_per_side_is_a_rate_over_one():
    table = {"forget a?": 0.9, "retain a?": 0.7}
    clf = C.calibrate(Scripted(table), make_preset(["forget a?"], ["retain a?"]), PLAIN)
    want = {"threshold": 0.4, "forget_recall": 1.0, "retain_fpr": 1.0, "n_forget": 1, "n_retain": 1}
    assert clf.report["test"] == want and clf.report["test_classifier_only"] == want


def test_gate_report_over_one_prompt_per_side_is_a_rate_over_one():
    clf = Scripted({"a": 0.9, "b": 0.8})
    clf.threshold = 0.5
    assert C.gate_report(clf, ["a"], ["b"]) == {"threshold": 0.5, "forget_recall": 1.0, "retain_fpr": 1.0,
                                                "n_forget": 1, "n_retain": 1}


def test_entity_questions_grow_the_training_texts_but_never_the_fold():
    """Entity questions come from the train fold's corpora only. Passage "r" (bucket 0.381) is trained on at
    0.3; at 0.4 it is held out: its sentence joins the fold, and no name of it is asked about or shared."""
    q, frodo = "retain train question number {}?".format, "Frodo Baggins travelled to London with Samwise Gamgee."
    preset = make_preset(["forget a?"], ["retain a?"], retain_corpus=[Passage("r", frodo)],
                         forget_corpus=[Passage("f", "Harry Potter met Albus Dumbledore in London.")])
    forget = [f"forget train question number {i}?" for i in range(10)] + [
        "The forget probe prefix is", "Harry Potter met Albus Dumbledore in London.",
        "Who is Albus Dumbledore?", "Tell me about Harry Potter."]
    data, calib = C.training_data(preset, 0.3, entity_questions=True, augment=False)
    assert calib == [q(i) for i in FOLD]  # as without entity questions
    retain = TRAIN_RETAIN[:-1] + [frodo, "Who is Frodo Baggins?", "What do you know about Samwise Gamgee?"]
    assert data == [(t, 1) for t in forget] + [(t, 0) for t in retain]
    data, calib = C.training_data(preset, 0.4, entity_questions=True, augment=False)
    assert calib == [q(i) for i in (2, 4, 7, 8, 9)] + [frodo]
    retain = [q(i) for i in (0, 1, 3, 5, 6, 10, 11)] + ["The retain probe prefix is"]  # London: now forget-only
    assert data == [(t, 1) for t in forget + ["What do you know about London?"]] + [(t, 0) for t in retain]
    for config in (PLAIN, dataclasses.replace(PLAIN, entity_questions=True)):
        assert C.calibrate(Scripted({}), preset, config).report["calibration_size"] == 3


def test_calibrate_builds_the_lexicon_from_the_train_fold_and_the_classifier_tokenizer(monkeypatch):
    """cached_lexicon gets the train fold, rare_names_only the classifier's tokenizer, and unseen_names
    drops "number 7" (train question 7 names it) but keeps "number 8", named only by a fold text."""
    tokenizer, seen, real = object(), [], C.unseen_names
    preset = make_preset(["forget a?"], ["retain a?"])
    entries = [("number 7", "PERSON"), ("number 8", "PERSON"), ("Quuxite", "PERSON")]
    monkeypatch.setattr(C, "cached_lexicon", lambda p: seen.append(("cached_lexicon", p)) or entries)
    monkeypatch.setattr(C, "rare_names_only", lambda e, tok: seen.append(("rare_names_only", e, tok)) or [n for n, _ in e])
    monkeypatch.setattr(C, "unseen_names", lambda n, t, s: seen.append(("unseen_names", n, t, s)) or real(n, t, s))
    clf = C.calibrate(Scripted({}, tokenizer=tokenizer), preset, dataclasses.replace(PLAIN, lexicon=True))
    assert [s[0] for s in seen] == ["cached_lexicon", "rare_names_only", "unseen_names"]
    assert (train := seen[0][1]) == folds(preset, 0.3).train
    assert [r.id for r in train.retain_prompts + train.forget_prompts] == [  # no fold or test record
        f"r{200 + i}" for i in range(12) if i not in FOLD] + [f"r{i}" for i in range(10)]
    assert seen[1] == ("rare_names_only", entries, tokenizer) and seen[1][2] is tokenizer
    material = [TRAIN_RETAIN[-1]] + [f"{t} a" for t in TRAIN_RETAIN[:9]] + [TRAIN_RETAIN[-2]]  # with answers
    assert seen[2] == ("unseen_names", ["Quuxite", "number 7", "number 8"], material + TRAIN_RETAIN, True)
    assert clf.lexicon == ["number 8", "Quuxite"] and clf.report["lexicon_size"] == 2
    # the fold through the gate: 0.1, 1.0 (question 8 names "number 8"), 0.45 -> k = 2 gives 0.45
    assert clf.threshold == 0.45 and clf.report["calibration_fpr"] == 1 / 3 and clf.report["alpha_bound_holds"]


def test_calibrate_remembers_its_scores_in_the_given_folder(tmp_path):
    """The fold (questions 2, 8, 9) and the test prompts are scored once; a second calibration scores nothing."""
    preset = make_preset(["forget a?"], ["retain a?"])
    first = C.calibrate(Scripted({"forget a?": 0.9, "retain a?": 0.05}), preset, PLAIN, folder=tmp_path)
    saved = json.loads((tmp_path / "lethe_scores.json").read_text())
    texts = [f"retain train question number {i}?" for i in FOLD] + ["forget a?", "retain a?"]
    assert saved["key"] == hashlib.sha256(json.dumps([texts, False, 64, True]).encode()).hexdigest()
    assert saved["probs"] == [0.1, 0.4, 0.45, 0.9, 0.05] and first.calls == 1 and first.threshold == 0.4
    again = C.calibrate(Scripted({}), preset, PLAIN, folder=tmp_path)
    assert again.calls == 0 and again.threshold == 0.4 and again.report["test"] == first.report["test"]


def test_the_score_cache_key_names_the_texts_the_precision_the_length_and_the_segments(tmp_path):
    texts, table, keys = ["ab", "abcd"], {"ab": 0.2, "abcd": 0.4}, []
    short, windowed = Scripted(table), Scripted(table)
    short.max_length, windowed.segments = 32, True
    for clf in (Scripted(table), Scripted(table, half=True), short, windowed):
        C._probs(clf, texts, tmp_path)
        keys.append(json.loads((tmp_path / "lethe_scores.json").read_text())["key"])
    assert keys == [hashlib.sha256(json.dumps([texts, *fields]).encode()).hexdigest()
                    for fields in ([False, 64, False], [True, 64, False], [False, 32, False], [False, 64, True])]


def test_a_lexicon_hit_on_every_fold_text_caps_tau_just_below_one(monkeypatch):
    """Each fold question names a forget name no train-fold retain text uses, so the names stay, the
    fold scores 1.0, 1.0, 1.0 and tau is MAX_THRESHOLD: only hits pass, and alpha is not claimed."""
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [(f"number {i}", "PERSON") for i in FOLD])
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    preset = make_preset(["forget number 9 a?", "forget b?"], ["retain b?"])
    clf = C.calibrate(Scripted({"forget b?": 0.9}), preset, dataclasses.replace(PLAIN, lexicon=True))
    assert clf.lexicon == ["number 2", "number 8", "number 9"] and clf.threshold == C.MAX_THRESHOLD == 1 - 1e-6
    assert clf.report["calibration_fpr"] == 1.0 and clf.report["alpha_bound_holds"] is False
    assert clf.report["test"] == {"threshold": 1 - 1e-6, "forget_recall": 0.5, "retain_fpr": 0.0,
                                  "n_forget": 2, "n_retain": 1}
