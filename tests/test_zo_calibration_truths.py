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
from engine.eco.classifier import ClassifierConfig
from engine.eco.zo import ScalarZO, VectorZO, ZOConfig, run, search_strength
from tests.test_calibration import Scripted as RuleScripted

# ============================================================================ ZOConfig.validate

FINITE = "must be a finite number (>= 0 for lr and tolerance)"


@pytest.mark.parametrize("bad,message", [
    (dict(lr=-1.0), f"ZO setting lr {FINITE}, got -1.0."),
    (dict(tolerance=-0.5), f"ZO setting tolerance {FINITE}, got -0.5."),
    (dict(init=float("nan")), f"ZO setting init {FINITE}, got nan."),
    (dict(min=float("-inf")), f"ZO setting min {FINITE}, got -inf."),
    (dict(eps=float("inf")), f"ZO setting eps {FINITE}, got inf."),
    (dict(lr=float("inf")), f"ZO setting lr {FINITE}, got inf."),
    (dict(eps=0.0), "ZO setting eps must be positive."),
    (dict(eps=-0.5), "ZO setting eps must be positive."),
    (dict(steps=0), "ZO steps must be between 1 and 1000, got 0."),
    (dict(steps=1001), "ZO steps must be between 1 and 1000, got 1001."),
    (dict(steps=-3), "ZO steps must be between 1 and 1000, got -3."),
    (dict(lr=-2.0, eps=0.0, steps=0), f"ZO setting lr {FINITE}, got -2.0."),  # the first bad field is named
])
def test_each_bad_zo_setting_is_refused_with_its_own_sentence(bad, message):
    with pytest.raises(ValueError) as err:
        ZOConfig(**bad).validate()
    assert str(err.value) == message


@pytest.mark.parametrize("good", [dict(steps=1), dict(steps=1000), dict(lr=0.0, tolerance=0.0),
                                  dict(init=-1.0, min=-2.0), dict(eps=1e-9)])
def test_settings_at_the_edges_of_their_ranges_are_accepted(good):
    """steps may be 1 or 1000; lr and tolerance may be 0; only lr and tolerance must be >= 0."""
    config = ZOConfig(**good)
    assert config.validate() is config


def test_both_optimisers_validate_their_config():
    with pytest.raises(ValueError, match="^ZO steps must be between 1 and 1000, got 1001.$"):
        ScalarZO(ZOConfig(steps=1001))
    with pytest.raises(ValueError, match="^ZO setting eps must be positive.$"):
        VectorZO(ZOConfig(eps=0.0), n=2)


# ============================================================================ ScalarZO and run

def test_a_scalar_step_divides_the_difference_by_twice_eps():
    """f(s) = s*s from 1 with eps 0.25: f(1.25) - f(0.75) = 1.0, so g = 1.0 / 0.5 = 2."""
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.25, eps=0.25, min=0.0))
    assert opt.step(lambda s: s * s) == (1.5625, 0.5625, 2.0)
    assert opt.theta == 0.5


def test_a_scalar_step_probes_a_small_floor_below_zero_and_stops_at_min():
    seen = []
    opt = ScalarZO(ZOConfig(init=0.125, lr=1.0, eps=0.25, min=0.0625))
    f_plus, f_minus, g = opt.step(lambda s: seen.append(s) or s)
    assert seen == [0.375, 1e-8] and (f_plus, f_minus) == (0.375, 1e-8)
    assert g == (0.375 - 1e-8) / 0.5 and opt.theta == 0.0625


def abs3(s):
    return abs(s - 3.0)


# |theta - 3| from 1 with eps 0.25 and lr 0.5: the slope is -1 until theta reaches 3, so theta climbs by
# 0.5 a step; at 3 both probes give 0.25 and the gradient is 0.
ABS3_STEPS = [
    dict(step=1, theta=1.5, theta_before=1.0, f_plus=1.75, f_minus=2.25, grad=-1.0, objective=2.0),
    dict(step=2, theta=2.0, theta_before=1.5, f_plus=1.25, f_minus=1.75, grad=-1.0, objective=1.5),
    dict(step=3, theta=2.5, theta_before=2.0, f_plus=0.75, f_minus=1.25, grad=-1.0, objective=1.0),
    dict(step=4, theta=3.0, theta_before=2.5, f_plus=0.25, f_minus=0.75, grad=-1.0, objective=0.5),
    dict(step=5, theta=3.0, theta_before=3.0, f_plus=0.25, f_minus=0.25, grad=0.0, objective=0.25),
    dict(step=6, theta=3.0, theta_before=3.0, f_plus=0.25, f_minus=0.25, grad=0.0, objective=0.25),
]


def without_seconds(d: dict) -> dict:
    assert isinstance(d["seconds"], float) and 0.0 <= d["seconds"] < 5.0
    return {k: v for k, v in d.items() if k != "seconds"}


def test_run_records_every_field_of_each_step_on_a_hand_solved_objective():
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.0))
    records = [r.to_dict() for r in run(abs3, opt)]
    assert [list(d) for d in records] == [
        ["step", "theta", "theta_before", "f_plus", "f_minus", "grad", "objective", "seconds"]] * 6
    assert [without_seconds(d) for d in records] == ABS3_STEPS


def test_run_stops_once_both_probes_are_at_or_below_the_tolerance():
    """At step 5 both probes give exactly 0.25: a tolerance of 0.25 ends the run there."""
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=50, tolerance=0.25))
    assert [without_seconds(r.to_dict()) for r in run(abs3, opt)] == ABS3_STEPS[:5]


def test_the_tolerance_argument_overrides_the_configured_one():
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.0))
    assert [r.step for r in run(abs3, opt, tolerance=0.75)] == [1, 2, 3, 4]  # step 4: f+ .25, f- .75
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.75))
    assert [r.step for r in run(abs3, opt, tolerance=0.0)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("configured,given,want", [(3, None, [1, 2, 3]), (8, 2, [1, 2]), (1, 4, [1, 2, 3, 4])])
def test_run_numbers_its_steps_from_one_and_takes_exactly_the_steps_asked(configured, given, want):
    calls = []
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=configured, tolerance=0.0))
    steps = [r.step for r in run(lambda s: calls.append(s) or abs3(s), opt, steps=given)]
    assert steps == want and len(calls) == 2 * len(want)


def test_a_stop_event_set_before_the_run_means_no_step_and_no_evaluation():
    event, calls = threading.Event(), []
    event.set()
    opt = ScalarZO(ZOConfig(steps=5, tolerance=0.0))
    assert list(run(lambda s: calls.append(s) or s, opt, stop_event=event)) == []
    assert calls == [] and opt.theta == 1.0


def test_a_stop_event_set_during_the_run_ends_it_before_the_next_step():
    event = threading.Event()
    opt = ScalarZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.1, steps=6, tolerance=0.0))
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
    opt = VectorZO(ZOConfig(init=1.0, lr=0.5, eps=0.25, min=-10.0, seed=7), n=3)
    torch.manual_seed(999)
    u = unit_direction(7, 3)
    f_plus, f_minus, g = opt.step(lambda x: x[0])
    assert f_plus == pytest.approx(1.0 + 0.25 * u[0].item(), abs=1e-6)
    assert f_minus == pytest.approx(1.0 - 0.25 * u[0].item(), abs=1e-6)
    assert g == pytest.approx((u[0] * u).tolist(), abs=1e-6)
    assert opt.theta.tolist() == pytest.approx((1.0 - 0.5 * u[0] * u).tolist(), abs=1e-6)


def test_vector_runs_with_the_same_seed_agree_and_other_seeds_differ():
    f = lambda x: sum((a - b) ** 2 for a, b in zip(x, [2.0, -1.0, 0.5]))  # noqa: E731

    def thetas(seed, noise):
        opt = VectorZO(ZOConfig(init=0.0, lr=0.5, eps=0.125, min=-10.0, steps=4, tolerance=0.0, seed=seed), n=3)
        torch.manual_seed(noise)
        return [r.theta for r in run(f, opt)]

    assert thetas(3, 0) == thetas(3, 1)
    assert thetas(3, 0) != thetas(4, 0)


def test_a_vector_run_records_lists_and_clamps_at_min():
    """f(x) = x[0] + x[1]: both probes move along u, and theta never drops below min."""
    opt = VectorZO(ZOConfig(init=1.0, lr=4.0, eps=0.25, min=0.5, steps=2, tolerance=0.0, seed=1), n=2)
    gen = torch.Generator().manual_seed(1)
    theta = torch.full((2,), 1.0)
    records = [r.to_dict() for r in run(lambda x: x[0] + x[1], opt)]
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
    """f(s) = s from 1, eps 0.25, lr 0.5, min 0.125: theta goes 1 -> 0.5 -> 0.125, and the last step
    probes 0.375 and the floor 1e-8 (0.125 - 0.25 < 0), which is the best point."""
    config = ZOConfig(init=1.0, lr=0.5, eps=0.25, min=0.125, steps=3, tolerance=0.0)
    got = [without_seconds(d) for d in search_strength(lambda s: s, config)]
    assert got == [
        dict(step=1, theta=0.5, theta_before=1.0, f_plus=1.25, f_minus=0.75, grad=1.0, objective=1.0,
             best_strength=0.75, best_objective=0.75),
        dict(step=2, theta=0.125, theta_before=0.5, f_plus=0.75, f_minus=0.25, grad=1.0, objective=0.5,
             best_strength=0.25, best_objective=0.25),
        dict(step=3, theta=0.125, theta_before=0.125, f_plus=0.375, f_minus=1e-8, grad=(0.375 - 1e-8) / 0.5,
             objective=(0.375 + 1e-8) / 2, best_strength=1e-8, best_objective=1e-8),
    ]


def test_search_strength_keeps_the_first_of_equally_good_probes():
    """From theta = 3 on |s - 3| both probes (3.25 and 2.75) give 0.25: the upper one, probed first, stays best."""
    config = ZOConfig(init=3.0, lr=0.5, eps=0.25, min=0.1, steps=2, tolerance=0.0)
    got = [(d["best_strength"], d["best_objective"]) for d in search_strength(abs3, config)]
    assert got == [(3.25, 0.25), (3.25, 0.25)]


def test_search_strength_keeps_an_earlier_best_when_later_probes_are_worse():
    """From 1 with eps 0.25 and lr 1: step 1 probes 1.25 (0.5) and 0.75 (0.75), g = -0.5, theta 1.5;
    step 2 probes 1.75 (0.75) and 1.25 (0.5), g = 0.5, theta 1.0; step 3 repeats step 1.
    The best point stays the first probe at 1.25."""
    f = {1.25: 0.5, 0.75: 0.75, 1.75: 0.75}
    config = ZOConfig(init=1.0, lr=1.0, eps=0.25, min=0.1, steps=3, tolerance=0.0)
    got = [(d["step"], d["theta"], d["best_strength"], d["best_objective"]) for d in search_strength(f.get, config)]
    assert got == [(1, 1.5, 1.25, 0.5), (2, 1.0, 1.25, 0.5), (3, 1.5, 1.25, 0.5)]


def test_search_strength_honours_its_stop_event():
    event = threading.Event()
    out = []
    for d in search_strength(abs3, ZOConfig(init=1.0, lr=0.5, eps=0.25, steps=6, tolerance=0.0), stop_event=event):
        out.append(d["step"])
        event.set()
    assert out == [1]


# ============================================================================ calibration

def rec(i, text, split):
    return PromptRecord(id=f"r{i}", prompt=text, answer="a", split=split)


def make_preset(forget_test, retain_test, retain_probes=None, forget_corpus=None, retain_corpus=None):
    """Ten forget and twelve retain train questions, the given test prompts, one probe per side, a passage each."""
    hp = load_preset("harry_potter")
    forget = [rec(i, f"forget train question number {i}?", "train") for i in range(10)]
    forget += [rec(100 + i, t, "test") for i, t in enumerate(forget_test)]
    retain = [rec(200 + i, f"retain train question number {i}?", "train") for i in range(12)]
    retain += [rec(300 + i, t, "test") for i, t in enumerate(retain_test)]
    return dataclasses.replace(
        hp, forget_prompts=forget, retain_prompts=retain,
        forget_probes=[Probe("fp", "The forget probe prefix is", "x", ("y", "z", "w"), "train")],
        retain_probes=retain_probes or [Probe("rp", "The retain probe prefix is", "x", ("y", "z", "w"), "train")],
        forget_corpus=forget_corpus or [Passage("fc", "The first forget sentence is long enough.")],
        retain_corpus=retain_corpus or [Passage("rc", "A retain corpus sentence that counts.")])


class Scripted(RuleScripted):
    """A scripted PromptClassifier reading p(forget) from a table (retain train question i: i / 20,
    anything else not in the table: 0.33)."""

    def __init__(self, table, tokenizer=None, half=False):
        def rule(p):
            if p.startswith("retain train question number"):
                return int(p.split()[-1].rstrip("?")) / 20
            return table.get(p, 0.33)

        super().__init__(rule, half=half, tokenizer=tokenizer, report={})


PLAIN = ClassifierConfig(calibration_fraction=0.25, alpha=0.5, lexicon=False, retain_lexicon=False)


def test_training_data_takes_only_the_train_split_of_the_retain_probes():
    probes = [Probe("rp", "The retain probe prefix is", "x", ("y", "z", "w"), "train"),
              Probe("rpt", "A retain test probe prefix", "x", ("y", "z", "w"), "test")]
    data, calib = C.training_data(make_preset([], [], retain_probes=probes), 0.0)
    retain = [f"retain train question number {i}?" for i in range(12)]
    retain += ["The retain probe prefix is", "A retain corpus sentence that counts."]
    assert calib == [] and [t for t, label in data if label == 0] == retain


def test_scores_equal_to_tau_are_not_flagged_in_the_calibration_report():
    """The fold is retain train questions 3, 7 and 11 (0.15, 0.35, 0.55); alpha 0.5 gives k = 2, tau 0.35.
    A test prompt scoring exactly 0.35 does not count."""
    table = {"forget a?": 0.35, "forget b?": 0.9, "retain a?": 0.35, "retain b?": 0.05}
    clf = C.calibrate(Scripted(table), make_preset(["forget a?", "forget b?"], ["retain a?", "retain b?"]), PLAIN)
    want = {"threshold": 0.35, "forget_recall": 0.5, "retain_fpr": 0.0, "n_forget": 2, "n_retain": 2}
    assert clf.threshold == 0.35
    assert clf.report["test"] == want and clf.report["test_classifier_only"] == want


def test_a_single_test_prompt_per_side_is_a_rate_over_one():
    table = {"forget a?": 0.9, "retain a?": 0.7}
    clf = C.calibrate(Scripted(table), make_preset(["forget a?"], ["retain a?"]), PLAIN)
    want = {"threshold": 0.35, "forget_recall": 1.0, "retain_fpr": 1.0, "n_forget": 1, "n_retain": 1}
    assert clf.report["test"] == want and clf.report["test_classifier_only"] == want


def test_gate_report_over_one_prompt_per_side_is_a_rate_over_one():
    clf = Scripted({"a": 0.9, "b": 0.8})
    clf.threshold = 0.5
    assert C.gate_report(clf, ["a"], ["b"]) == {"threshold": 0.5, "forget_recall": 1.0, "retain_fpr": 1.0,
                                                "n_forget": 1, "n_retain": 1}


def test_calibrate_asks_for_entity_questions_when_configured():
    """With entity questions the retain texts grow from 14 to 16, so the fold (every 4th) holds 4, not 3."""
    preset = make_preset(["forget a?"], ["retain a?"],
                         forget_corpus=[Passage("f", "Harry Potter met Albus Dumbledore in London.")],
                         retain_corpus=[Passage("r", "Frodo Baggins travelled to London with Samwise Gamgee.")])
    config = dataclasses.replace(PLAIN, entity_questions=True)
    _, calib = C.training_data(preset, 0.25, entity_questions=True)
    assert calib[-1] == "What do you know about Samwise Gamgee?" and len(calib) == 4
    assert C.calibrate(Scripted({}), preset, config).report["calibration_size"] == 4
    assert C.calibrate(Scripted({}), preset, PLAIN).report["calibration_size"] == 3


def test_calibrate_builds_both_lexicons_from_its_preset_and_the_classifier_tokenizer(monkeypatch):
    tokenizer, seen = object(), []
    preset = make_preset(["forget a?"], ["retain a?"])

    def cached_lexicon(p):
        seen.append(("cached_lexicon", p))
        return [("number 7", "PERSON")]

    def rare_names_only(entries, tok):
        seen.append(("rare_names_only", entries, tok))
        return [e for e, _ in entries]

    def retain_names(p, tok):
        seen.append(("retain_names", p, tok))
        return ["retain a"]

    monkeypatch.setattr(C, "cached_lexicon", cached_lexicon)
    monkeypatch.setattr(C, "rare_names_only", rare_names_only)
    monkeypatch.setattr(C, "retain_names", retain_names)
    config = dataclasses.replace(PLAIN, lexicon=True, retain_lexicon=True)
    clf = C.calibrate(Scripted({}, tokenizer=tokenizer), preset, config)
    assert len(seen) == 3
    assert seen[0][0] == "cached_lexicon" and seen[0][1] is preset
    assert seen[1] == ("rare_names_only", [("number 7", "PERSON")], tokenizer)
    assert seen[2][0] == "retain_names" and seen[2][1] is preset and seen[2][2] is tokenizer
    assert clf.lexicon == ["number 7"] and clf.retain_lexicon == ["retain a"]


def test_calibrate_remembers_its_scores_in_the_given_folder(tmp_path):
    """Fold (questions 3, 7, 11), then the forget and retain test prompts, scored once and saved;
    a second calibration from the same folder scores nothing."""
    table = {"forget a?": 0.9, "retain a?": 0.05}
    preset = make_preset(["forget a?"], ["retain a?"])
    first = C.calibrate(Scripted(table), preset, PLAIN, folder=tmp_path)
    saved = json.loads((tmp_path / "lethe_scores.json").read_text())
    assert saved["probs"] == [0.15, 0.35, 0.55, 0.9, 0.05] and first.calls == 1
    again = C.calibrate(Scripted({}), preset, PLAIN, folder=tmp_path)
    assert again.calls == 0 and again.threshold == 0.35 and again.report["test"] == first.report["test"]


def test_the_score_cache_key_names_the_texts_the_precision_and_the_length(tmp_path):
    texts = ["ab", "abcd"]
    C._probs(Scripted({"ab": 0.2, "abcd": 0.4}), texts, tmp_path)
    key = json.loads((tmp_path / "lethe_scores.json").read_text())["key"]
    assert key == hashlib.sha256(json.dumps([texts, False, 64]).encode()).hexdigest()
    C._probs(Scripted({"ab": 0.2, "abcd": 0.4}, half=True), texts, tmp_path)
    key = json.loads((tmp_path / "lethe_scores.json").read_text())["key"]
    assert key == hashlib.sha256(json.dumps([texts, True, 64]).encode()).hexdigest()


def test_a_lexicon_hit_in_the_fold_caps_tau_just_below_one(monkeypatch):
    """Every fold text names a forget entity, so each counts as 1.0 and tau is MAX_THRESHOLD."""
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("question", "PERSON")])
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    config = dataclasses.replace(PLAIN, lexicon=True)
    clf = C.calibrate(Scripted({}), make_preset(["forget question a?", "forget b?"], ["retain b?"]), config)
    assert clf.threshold == C.MAX_THRESHOLD == 1 - 1e-6
    assert clf.report["test"] == {"threshold": 1 - 1e-6, "forget_recall": 0.5, "retain_fpr": 0.0,
                                  "n_forget": 2, "n_retain": 1}
