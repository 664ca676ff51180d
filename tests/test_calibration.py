"""The gate's calibration against hand-computed truths: the held-out fold (records hashed by id), the
conformal threshold set on it, the test report, the lexicon's part in the bound, and the score cache.
A scripted classifier stands in for the encoder, so every number here is known in advance; the bound
itself is checked by simulation, against thresholds known to be wrong."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import statistics

import pytest
import torch

from engine.data.presets import load_preset
from engine.data.records import Passage, Probe, PromptRecord
from engine.eco import augment as A
from engine.eco import calibration as C
from engine.eco.augment import bucket, folds, gate_texts
from engine.eco.classifier import ClassifierConfig, PromptClassifier
from engine.eco.lexicon import lexicon_material


def rec(i, text, split):
    return PromptRecord(id=f"r{i}", prompt=text, answer="a", split=split)


@pytest.fixture(scope="module")
def tiny_preset():
    """Ten forget and twelve retain train prompts, a few test prompts, probes and a passage each side
    (the harry_potter attack data, for the attacked copies)."""
    hp = load_preset("harry_potter")
    forget = [rec(i, f"forget train question number {i}?", "train") for i in range(10)]
    forget += [rec(100 + i, f"forget test question {i}?", "test") for i in range(4)]
    retain = [rec(200 + i, f"retain train question number {i}?", "train") for i in range(12)]
    retain += [rec(300 + i, f"retain test question {i}?", "test") for i in range(5)]
    return dataclasses.replace(
        hp, forget_prompts=forget, retain_prompts=retain,
        forget_probes=[Probe("fp", "The forget probe prefix is", "x", ("y", "z", "w"), "train"),
                       Probe("fpt", "A forget test probe", "x", ("y", "z", "w"), "test")],
        retain_probes=[Probe("rp", "The retain probe prefix is", "x", ("y", "z", "w"), "train"),
                       Probe("rpt", "A retain test probe", "x", ("y", "z", "w"), "test")],
        forget_corpus=[Passage("fc", "The first forget sentence is long enough. Short one. Another forget sentence here.")],
        retain_corpus=[Passage("rc", "A retain corpus sentence that counts. And a second retain sentence too.")])


RETAIN = [(f"r{200 + i}", [f"retain train question number {i}?"]) for i in range(12)]  # (id, its texts)
RETAIN += [("rp", ["The retain probe prefix is"]),
           ("rc", ["A retain corpus sentence that counts.", "And a second retain sentence too."])]
FORGET = [f"forget train question number {i}?" for i in range(10)]
FORGET += ["The forget probe prefix is", "The first forget sentence is long enough.", "Another forget sentence here."]
TEST_TEXTS = [f"forget test question {i}?" for i in range(4)] + [f"retain test question {i}?" for i in range(5)]
TEST_TEXTS += ["A forget test probe", "A retain test probe"]


# ---------------------------------------------------------------------------- the held-out fold

def test_sentences_split_on_end_marks_before_a_capital_and_drop_short_pieces():
    text = "Harry lived under the stairs. He was small! Was it true? yes it was. Hagrid came at last."
    assert A.sentences(text) == ["Harry lived under the stairs.", "Was it true? yes it was.", "Hagrid came at last."]
    assert A.sentences("Exactly 15 long") == [] and A.sentences("Exactly 16 long!") == ["Exactly 16 long!"]


def test_entity_questions_follow_the_templates_and_ask_what_for_non_persons():
    assert [C._entity_question("Hagrid", "PERSON", i) for i in range(5)] == [
        "Who is Hagrid?", "Tell me about Hagrid.", "What do you know about Hagrid?", "Describe Hagrid.", "Who is Hagrid?"]
    assert C._entity_question("Hogwarts", "ORG", 0) == "What is Hogwarts?"
    assert C._entity_question("Hogwarts", "ORG", 1) == "Tell me about Hogwarts."


def test_the_tiny_presets_ids_put_questions_2_7_8_and_9_below_a_third():
    """The hand-computed thresholds below rest on these buckets (sha256 of "gate:<id>")."""
    assert [key for key, _ in RETAIN if bucket(key) < 0.34] == ["r202", "r207", "r208", "r209"]
    assert [key for key, _ in RETAIN if bucket(key) < 0.25] == ["r208"]
    assert 0.34 < bucket("rp") < 0.7 < bucket("rc") < 0.999


@pytest.mark.parametrize("fraction", [0.25, 0.34, 0.5, 0.7, 0.999])
def test_the_calibration_fold_is_the_retain_records_hashed_below_the_fraction(tiny_preset, fraction):
    data, calib = C.training_data(tiny_preset, fraction, augment=False)
    assert calib == [t for key, texts in RETAIN if bucket(key) < fraction for t in texts]
    kept = [t for key, texts in RETAIN if bucket(key) >= fraction for t in texts]
    assert data == [(t, 1) for t in FORGET] + [(t, 0) for t in kept]  # every forget train text is trained on


def test_the_fold_follows_the_ids_not_the_order_of_the_rows(tiny_preset):
    shuffled = dataclasses.replace(tiny_preset, retain_prompts=tiny_preset.retain_prompts[::-1],
                                   forget_prompts=tiny_preset.forget_prompts[::-1])
    for augment in (False, True):
        data, calib = C.training_data(tiny_preset, 0.34, augment=augment)
        data2, calib2 = C.training_data(shuffled, 0.34, augment=augment)
        assert set(calib2) == set(calib) and set(data2) == set(data)


def test_no_fold_is_held_out_when_the_fraction_is_zero(tiny_preset):
    data, calib = C.training_data(tiny_preset, 0.0, augment=False)
    assert calib == [] and sum(1 for _, label in data if label == 0) == 15


def test_entity_questions_leave_out_entities_both_corpora_name(tiny_preset):
    f_text, r_text = "Harry Potter met Albus Dumbledore in London.", "Frodo Baggins travelled to London with Samwise Gamgee."
    p = dataclasses.replace(tiny_preset, forget_corpus=[Passage("f", f_text)], retain_corpus=[Passage("r", r_text)])
    plain, _ = C.training_data(p, 0.0, augment=False)
    data, _ = C.training_data(p, 0.0, entity_questions=True, augment=False)
    forget = [t for t, label in plain if label == 1] + ["Who is Albus Dumbledore?", "Tell me about Harry Potter."]
    retain = [t for t, label in plain if label == 0] + ["Who is Frodo Baggins?", "What do you know about Samwise Gamgee?"]
    assert data == [(t, 1) for t in forget] + [(t, 0) for t in retain]  # London, named by both, is left out


@pytest.mark.parametrize("fraction", [0.34, 0.7])
def test_augmented_folds_keep_calibration_and_test_records_out_of_training(tiny_preset, fraction):
    """(a) no calibration text, nor any held-out record's question inside a longer text (few-shot,
    contrastive), is trained on; (b) no test prompt or probe is in training or calibration."""
    data, calib = C.training_data(tiny_preset, fraction, augment=True)
    _, clean = C.training_data(tiny_preset, fraction, augment=False)
    train = [t for t, _ in data]
    assert set(clean) < set(calib) and len(calib) >= 4 * len(clean)  # attacked copies are calibrated on too
    assert not set(calib) & set(train)
    assert not [t for t in train for c in clean if c in t]
    held = {key for key, _ in RETAIN if bucket(key) < fraction}
    assert {c for c in calib if c.startswith("Q: ")}  # few-shot copies: their shots are held-out questions only
    for c in calib:
        for key, texts in RETAIN:
            if key not in held:
                assert texts[0] not in c, (c, key)
    assert not [t for t in train + calib for x in TEST_TEXTS if x in t]
    assert len(train) > 4 * len(FORGET)


@pytest.mark.parametrize("fraction", [0.34, 0.7, 0.999])
def test_the_lexicon_is_built_from_the_training_fold_only(tiny_preset, monkeypatch, fraction):
    """(c) calibrate hands cached_lexicon a preset without any calibration or test record."""
    seen = []
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: seen.append(preset) or [])
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    C.calibrate(Scripted(rule), tiny_preset, ClassifierConfig(calibration_fraction=fraction, lexicon=True))
    (lex,) = seen
    held = {key for key, _ in RETAIN if bucket(key) < fraction}
    ids = {r.id for r in lex.retain_prompts + lex.retain_probes + lex.retain_corpus}
    assert ids == {key for key, _ in RETAIN} - held
    assert {r.id for r in lex.forget_prompts + lex.forget_probes} == {f"r{i}" for i in range(10)} | {"fp"}
    forget, retain = lexicon_material(lex)
    assert not [t for t in forget + retain for key, texts in RETAIN if key in held for x in texts if x in t]
    assert not [t for t in forget + retain for x in TEST_TEXTS if x in t]


# ---------------------------------------------------------------------------- calibrate

class Scripted(PromptClassifier):
    """A PromptClassifier whose p(forget) comes from a rule, so calibration's numbers are known."""

    def __init__(self, rule, half=False, tokenizer=None, report=None):
        self.rule, self.calls, self.max_length, self.name = rule, 0, 64, "scripted"
        self.threshold, self.segments = 0.5, False
        self.report = {"train_size": 7, "train_seconds": 1.5, "stale": True} if report is None else report
        self.tokenizer = tokenizer
        emb = torch.nn.Embedding(3, 2).to(torch.float16 if half else torch.float32)
        self.model = type("M", (), {"get_input_embeddings": lambda self: emb})()
        self.set_lexicon([])

    def classifier_score(self, prompts, batch_size=64):
        self.calls += 1
        return [self.rule(p) for p in prompts]


def rule(text: str) -> float:
    """Retain train questions score 0.0, 0.05, ... by their number; test prompts by a fixed table."""
    if text.startswith("retain train question number"):
        return int(text.split()[-1].rstrip("?")) / 20
    table = {"forget test question 0?": 0.9, "forget test question 1?": 0.2, "forget test question 2?": 0.6,
             "forget test question 3?": 0.45, "retain test question 0?": 0.05, "retain test question 1?": 0.5,
             "retain test question 2?": 0.7, "retain test question 3?": 0.3, "retain test question 4?": 0.12}
    return table.get(text, 0.33)


def by_hand(scores, tau):
    return sum(s > tau for s in scores) / len(scores)


def report(tau, forget, retain):
    return {"threshold": tau, "forget_recall": by_hand(forget, tau), "retain_fpr": by_hand(retain, tau),
            "n_forget": len(forget), "n_retain": len(retain)}


FORGET_TEST = [0.9, 0.2, 0.6, 0.45]  # rule() of the forget and retain test questions
RETAIN_TEST = [0.05, 0.5, 0.7, 0.3, 0.12]


@pytest.mark.parametrize("segments", [True, False])
def test_calibrate_sets_tau_on_the_fold_and_reports_the_test_split_by_hand(tiny_preset, segments):
    config = ClassifierConfig(calibration_fraction=0.34, alpha=0.5, lexicon=False, augment=False, segments=segments)
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    # the fold: retain train questions 2, 7, 8 and 9 score 0.1, 0.35, 0.4, 0.45; k = ceil(5 * 0.5) = 3
    assert math.ceil((4 + 1) * (1 - 0.5)) == 3 and clf.threshold == 0.4
    want = report(0.4, FORGET_TEST, RETAIN_TEST)
    assert clf.report["test"] == want == clf.report["test_classifier_only"]
    assert want["forget_recall"] == 0.75 and want["retain_fpr"] == 0.4
    assert clf.report["alpha"] == 0.5 and clf.report["calibration_size"] == 4 and clf.report["calibration_fpr"] == 0.25
    assert clf.report["train_size"] == 7 and clf.report["train_seconds"] == 1.5 and "stale" not in clf.report
    assert clf.report["lexicon_size"] == 0 and "retain_lexicon_size" not in clf.report
    assert clf.report["half_embeddings"] is False and clf.calls == 1 and clf.segments is segments
    assert C.calibrate(Scripted(rule, half=True), tiny_preset, config).report["half_embeddings"] is True


def test_a_forget_name_in_the_fold_scores_one_and_raises_tau(tiny_preset, monkeypatch):
    """(d) The lexicon takes part in tau: a hit counts as 1.0 in the fold, and nothing lowers a score."""
    config = ClassifierConfig(calibration_fraction=0.34, alpha=0.5, lexicon=True, augment=False)
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("question number 2", "PERSON"),
                                                            ("test question 3", "PERSON")])
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    # the fold: question 2 is a hit (1.0), 7, 8, 9 score 0.35, 0.4, 0.45; the 3rd smallest
    assert clf.threshold == 0.45  # without the lexicon it was 0.4
    assert clf.lexicon == ["question number 2", "test question 3"] and clf.report["lexicon_size"] == 2
    assert clf.report["calibration_fpr"] == 0.25 and clf.report["calibration_size"] == 4
    # "test question 3" names forget and retain test question 3: both score 1.0 through the gate
    assert clf.report["test"] == report(0.45, [0.9, 0.2, 0.6, 1.0], [0.05, 0.5, 0.7, 1.0, 0.12])
    assert clf.report["test_classifier_only"] == report(0.45, FORGET_TEST, RETAIN_TEST)
    assert clf.report["test"]["forget_recall"] == 0.75 and clf.report["test_classifier_only"]["forget_recall"] == 0.5


def test_when_the_kth_fold_score_is_a_hit_tau_stays_below_one_and_hits_still_fire(tiny_preset, monkeypatch):
    config = ClassifierConfig(calibration_fraction=0.34, alpha=0.5, lexicon=True, augment=False, see_through=False)
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("number 2", "PERSON"), ("number 7", "PERSON"),
                                                            ("test question 2", "PERSON")])
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    # the fold sorted: 0.4, 0.45, 1.0, 1.0 -> the 3rd smallest is a hit; tau is capped just below 1
    assert clf.threshold == C.MAX_THRESHOLD < 1.0 and clf.report["calibration_fpr"] == 0.5
    assert clf.report["test"] == report(C.MAX_THRESHOLD, [0, 0, 1, 0], [0, 0, 1, 0, 0])


def test_a_hit_in_augmented_calibration_texts_counts_too(tiny_preset, monkeypatch):
    """The attacked copies of a calibration question that names a lexicon entry are hits as well (the
    matcher sees through obfuscation), so each counts as 1.0 in the fold."""
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("question number 7", "PERSON")])
    config = ClassifierConfig(calibration_fraction=0.34, alpha=0.5, lexicon=True, augment=True)
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    _, calib = C.training_data(tiny_preset, 0.34, augment=True)
    hits = [c for c in calib if "number 7" in c.lower()]
    assert len(hits) >= 5 and all(clf.matches(c) == ["question number 7"] for c in hits)
    scores = [1.0 if c in hits else rule(c) for c in calib]
    assert clf.threshold == C.conformal_threshold(scores, 0.5)
    assert clf.report["calibration_fpr"] == by_hand(scores, clf.threshold)


def test_gate_report_counts_scores_strictly_above_the_threshold():
    clf = Scripted(lambda t: {"a": 0.9, "b": 0.5, "c": 0.2, "d": 0.5, "e": 0.8}[t])
    clf.threshold = 0.5
    got = C.gate_report(clf, ["a", "b", "c"], ["d", "e"])
    assert got == {"threshold": 0.5, "forget_recall": 1 / 3, "retain_fpr": 0.5, "n_forget": 3, "n_retain": 2}
    assert C.gate_report(clf, ["a", "b", "c"], ["d", "e"], threshold=0.1)["forget_recall"] == 1.0
    assert C.gate_report(clf, [], [])["forget_recall"] == 0.0


def test_scores_are_remembered_in_the_classifier_folder_by_texts(tmp_path):
    clf = Scripted(lambda t: len(t) / 10)
    assert C._probs(clf, ["ab", "abcd"], None) == [0.2, 0.4] and clf.calls == 1
    assert C._probs(clf, ["ab", "abcd"], tmp_path) == [0.2, 0.4] and clf.calls == 2
    saved = json.loads((tmp_path / "lethe_scores.json").read_text())
    assert saved["probs"] == [0.2, 0.4] and len(saved["key"]) == 64
    assert C._probs(clf, ["ab", "abcd"], tmp_path) == [0.2, 0.4] and clf.calls == 2  # read back, not scored
    assert C._probs(clf, ["abc"], tmp_path) == [0.3] and clf.calls == 3  # other texts: scored again
    assert C._probs(Scripted(lambda t: 0.7, half=True), ["abc"], tmp_path) == [0.7]  # other precision: too
    clf.segments = True
    assert C._probs(clf, ["abc"], tmp_path) == [0.3] and clf.calls == 4  # other windows: too
    (tmp_path / "lethe_scores.json").write_text("{not json")
    assert C._probs(clf, ["abc"], tmp_path) == [0.3] and clf.calls == 5
    assert not list(tmp_path.glob(".*tmp*"))
    assert C._probs(clf, ["x"], tmp_path / "missing") == [0.1] and not (tmp_path / "missing").exists()


# ---------------------------------------------------------------------------- the bound, simulated

def no_plus_one(scores, alpha):
    """Wrong: the plain (1-alpha) quantile, without split conformal's +1."""
    s = sorted(scores)
    return s[math.ceil(len(s) * (1 - alpha)) - 1]


def median(scores, alpha):
    return sorted(scores)[len(scores) // 2]


def mean_fpr(threshold, n, alpha, hits, trials=2000, fresh=100, seed=0):
    """(mean FPR, its standard error): n calibration scores and `fresh` new ones per trial, i.i.d.:
    1.0 (a lexicon hit) with probability `hits`, else uniform on [0, 0.98)."""
    r = random.Random(seed)

    def draw():
        return 1.0 if r.random() < hits else 0.98 * r.random()

    rates = []
    for _ in range(trials):
        tau = threshold([draw() for _ in range(n)], alpha)
        rates.append(sum(draw() > tau for _ in range(fresh)) / fresh)
    return statistics.fmean(rates), statistics.stdev(rates) / math.sqrt(trials)


@pytest.mark.parametrize("n,alpha,hits", [(20, 0.1, 0.03), (30, 0.1, 0.0), (60, 0.2, 0.05), (200, 0.05, 0.01)])
def test_the_conformal_tau_bounds_the_mean_false_positive_rate_and_wrong_ones_do_not(n, alpha, hits):
    mean, se = mean_fpr(C.conformal_threshold, n, alpha, hits)
    assert mean <= alpha + 3 * se, (mean, se)
    assert mean >= alpha - 0.03  # and not trivially conservative
    wrong, se_wrong = mean_fpr(no_plus_one, n, alpha, hits)
    assert wrong > alpha + 3 * se_wrong, (wrong, se_wrong)  # the test can fail
    assert mean_fpr(median, n, alpha, hits)[0] > 0.4


def test_too_small_a_fold_still_bounds_the_rate():
    """k = ceil(6 * 0.9) = 6 > 5 scores: tau is the cap, so only lexicon hits could fire (the largest
    score would give 1/6 > alpha)."""
    mean, se = mean_fpr(C.conformal_threshold, 5, 0.1, 0.0)
    assert mean <= 0.1 + 3 * se, (mean, se)
    assert C.conformal_threshold([0.1, 0.2, 0.3, 0.4, 0.5], 0.1) == C.MAX_THRESHOLD


def test_when_the_kth_fold_score_is_a_lexicon_hit_the_report_says_the_bound_does_not_hold(tiny_preset, monkeypatch):
    """Hits always fire (the cap keeps tau below 1), so a fold whose k-th score is a hit cannot bound
    them: with n = 19, alpha = 0.1 and a 9 % hit rate the mean rate is 0.120 by the binomial sum.
    calibrate says so in its report instead of claiming alpha."""
    mean, se = mean_fpr(C.conformal_threshold, 19, 0.1, 0.09)
    assert mean > 0.1 + 3 * se
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "unseen_names", lambda names, texts, see_through=True: names)
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("retain", "ORG")])  # every fold text is a hit
    config = ClassifierConfig(calibration_fraction=0.5, alpha=0.5, lexicon=True, augment=False)
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    assert clf.threshold == C.MAX_THRESHOLD and clf.report["alpha_bound_holds"] is False
    plain = C.calibrate(Scripted(rule), tiny_preset, dataclasses.replace(config, lexicon=False))
    assert plain.report["alpha_bound_holds"] is True


# ---------------------------------------------------------------------------- the bound, end to end

SYLLABLES = ("ka", "lo", "mi", "bu", "te", "ro", "sa", "ne", "di", "fu", "pe", "vo")


def synthetic(tag: str, n_retain: int, hits: float):
    """A preset of n_retain retain train records (prompt, probe and passage each), each from a
    generator seeded by its id; a record names "zorblax" with probability `hits`."""
    def words(r, k):
        return " ".join("".join(r.choice(SYLLABLES) for _ in range(3)) for _ in range(k))

    prompts, probes, corpus = [], [], []
    for i in range(n_retain):
        r = random.Random(f"{tag}-{i}")
        name = "zorblax " if r.random() < hits else ""
        prompts.append(PromptRecord(f"{tag}-p{i}", f"how does {name}{words(r, 3)} work?", "a", "train"))
        probes.append(Probe(f"{tag}-b{i}", f"the {words(r, 2)} is made of", "x", ("y", "z", "w"), "train"))
        corpus.append(Passage(f"{tag}-c{i}", f"The {words(r, 4)} grows slowly. It {name}{words(r, 3)} at night."))
    forget = [PromptRecord(f"{tag}-f{i}", f"what is the secret {words(random.Random(i), 2)}?", "a", "train")
              for i in range(8)]
    return dataclasses.replace(load_preset("harry_potter"), retain_prompts=prompts, retain_probes=probes,
                               retain_corpus=corpus, forget_prompts=forget, forget_probes=[], forget_corpus=[])


def hashed(salt: str):
    return lambda text: 0.98 * int(hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()[:12], 16) / 16**12


def end_to_end_fpr(monkeypatch, alpha, trials=8):
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    # keep the name although the training fold's retain texts use it, so hits reach the fold
    monkeypatch.setattr(C, "unseen_names", lambda names, texts, see_through=True: names)
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("Zorblax", "PERSON")])
    fresh = gate_texts(folds(synthetic("fresh", 150, 0.03), 1.0).calibration, 0)[1]
    config = ClassifierConfig(alpha=alpha, calibration_fraction=0.5)
    rates, sizes = [], []
    for t in range(trials):
        clf = C.calibrate(Scripted(hashed(f"s{t}")), synthetic(f"t{t}", 160, 0.03), config)
        sizes.append(clf.report["calibration_size"])
        rates.append(by_hand(clf.score(fresh), clf.threshold))
    assert min(sizes) > 250 and len(fresh) > 600 and 0 < sum(map(bool, map(clf.matches, fresh))) < alpha * len(fresh)
    return statistics.fmean(rates), statistics.stdev(rates) / math.sqrt(trials)


def test_a_name_the_training_folds_retain_texts_use_leaves_the_lexicon(monkeypatch):
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("Zorblax", "PERSON"), ("Quuxite", "PERSON")])
    clf = C.calibrate(Scripted(hashed("s")), synthetic("t", 160, 0.03), ClassifierConfig(calibration_fraction=0.5))
    assert clf.lexicon == ["Quuxite"]


def test_calibrate_bounds_the_false_positive_rate_on_fresh_retain_texts(monkeypatch):
    alpha = 0.1
    mean, se = end_to_end_fpr(monkeypatch, alpha)
    assert mean <= alpha + 3 * max(se, 0.003), (mean, se)
    monkeypatch.setattr(C, "conformal_threshold", median)  # the same harness catches a wrong tau
    assert end_to_end_fpr(monkeypatch, alpha)[0] > 0.4
