"""Gate calibration checked against hand-computed truths: a scripted classifier (its p(forget)
comes from a table) on small hand-built presets, so the fold, tau and the test report are known in
advance.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json


from engine.data.presets import load_preset
from engine.data.records import Passage, Probe, PromptRecord
from engine.eco import calibration as C
from engine.eco.augment import attack_data, bucket, folds
from engine.eco.classifier import ClassifierConfig
from tests.test_calibration import Scripted as RuleScripted


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
    assert (train := seen[0][1]) == folds(attack_data(preset, written=False), 0.3).train  # the gate's own fold
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
