"""The gate's calibration against hand-computed truths: the held-out fold, the conformal threshold set
on it, the test report, the lexicon's part, and the score cache. A scripted classifier stands in
for the encoder, so every number here is known in advance."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from engine.data.presets import load_preset
from engine.data.records import Passage, Probe, PromptRecord
from engine.eco import calibration as C
from engine.eco.classifier import ClassifierConfig, PromptClassifier


def rec(i, text, split):
    return PromptRecord(id=f"r{i}", prompt=text, answer="a", split=split)


@pytest.fixture(scope="module")
def tiny_preset():
    """Ten forget and twelve retain train prompts, a few test prompts, one probe and one passage each."""
    hp = load_preset("harry_potter")
    forget = [rec(i, f"forget train question number {i}?", "train") for i in range(10)]
    forget += [rec(100 + i, f"forget test question {i}?", "test") for i in range(4)]
    retain = [rec(200 + i, f"retain train question number {i}?", "train") for i in range(12)]
    retain += [rec(300 + i, f"retain test question {i}?", "test") for i in range(5)]
    return dataclasses.replace(
        hp, forget_prompts=forget, retain_prompts=retain,
        forget_probes=[Probe("fp", "The forget probe prefix is", "x", ("y", "z", "w"), "train"),
                       Probe("fpt", "A forget test probe", "x", ("y", "z", "w"), "test")],
        retain_probes=[Probe("rp", "The retain probe prefix is", "x", ("y", "z", "w"), "train")],
        forget_corpus=[Passage("fc", "The first forget sentence is long enough. Short one. Another forget sentence here.")],
        retain_corpus=[Passage("rc", "A retain corpus sentence that counts. And a second retain sentence too.")])


# ---------------------------------------------------------------------------- the held-out fold

def test_sentences_split_on_end_marks_before_a_capital_and_drop_short_pieces():
    text = "Harry lived under the stairs. He was small! Was it true? yes it was. Hagrid came at last."
    assert C.sentences(text) == ["Harry lived under the stairs.", "Was it true? yes it was.", "Hagrid came at last."]
    assert C.sentences("Exactly 15 long") == [] and C.sentences("Exactly 16 long!") == ["Exactly 16 long!"]


def test_entity_questions_follow_the_templates_and_ask_what_for_non_persons():
    assert [C._entity_question("Hagrid", "PERSON", i) for i in range(5)] == [
        "Who is Hagrid?", "Tell me about Hagrid.", "What do you know about Hagrid?", "Describe Hagrid.", "Who is Hagrid?"]
    assert C._entity_question("Hogwarts", "ORG", 0) == "What is Hogwarts?"
    assert C._entity_question("Hogwarts", "ORG", 1) == "Tell me about Hogwarts."


@pytest.mark.parametrize("fraction,every", [(0.25, 4), (0.2, 5), (0.9, 2), (0.34, 3)])
def test_the_calibration_fold_is_every_nth_retain_text_and_never_trained_on(tiny_preset, fraction, every):
    data, calib = C.training_data(tiny_preset, fraction)
    retain = [f"retain train question number {i}?" for i in range(12)]
    retain += ["The retain probe prefix is", "A retain corpus sentence that counts.", "And a second retain sentence too."]
    forget = [f"forget train question number {i}?" for i in range(10)]
    forget += ["The forget probe prefix is", "The first forget sentence is long enough.", "Another forget sentence here."]
    assert calib == retain[every - 1::every]
    held = set(range(every - 1, len(retain), every))
    assert data == [(t, 1) for t in forget] + [(t, 0) for i, t in enumerate(retain) if i not in held]


def test_no_fold_is_held_out_when_the_fraction_is_zero(tiny_preset):
    data, calib = C.training_data(tiny_preset, 0.0)
    assert calib == [] and sum(1 for _, label in data if label == 0) == 15


def test_entity_questions_leave_out_entities_both_corpora_name(tiny_preset):
    f_text, r_text = "Harry Potter met Albus Dumbledore in London.", "Frodo Baggins travelled to London with Samwise Gamgee."
    p = dataclasses.replace(tiny_preset, forget_corpus=[Passage("f", f_text)], retain_corpus=[Passage("r", r_text)])
    plain, _ = C.training_data(p, 0.0)
    data, _ = C.training_data(p, 0.0, entity_questions=True)
    forget = [t for t, label in plain if label == 1] + ["Who is Albus Dumbledore?", "Tell me about Harry Potter."]
    retain = [t for t, label in plain if label == 0] + ["Who is Frodo Baggins?", "What do you know about Samwise Gamgee?"]
    assert data == [(t, 1) for t in forget] + [(t, 0) for t in retain]  # London, named by both, is left out


# ---------------------------------------------------------------------------- calibrate

class Scripted(PromptClassifier):
    """A PromptClassifier whose p(forget) comes from a rule, so calibration's numbers are known."""

    def __init__(self, rule, half=False, tokenizer=None, report=None):
        self.rule, self.calls, self.max_length, self.name = rule, 0, 64, "scripted"
        self.threshold = 0.5
        self.report = {"train_size": 7, "train_seconds": 1.5, "stale": True} if report is None else report
        self.tokenizer = tokenizer
        emb = torch.nn.Embedding(3, 2).to(torch.float16 if half else torch.float32)
        self.model = type("M", (), {"get_input_embeddings": lambda self: emb})()
        self.set_lexicon([])

    def classifier_score(self, prompts, batch_size=64):
        self.calls += 1
        return [self.rule(p) for p in prompts]


def rule(text: str) -> float:
    """Retain train questions score 0.0, 0.1, ... by their number; test prompts by a fixed table."""
    if text.startswith("retain train question number"):
        return int(text.split()[-1].rstrip("?")) / 20
    table = {"forget test question 0?": 0.9, "forget test question 1?": 0.2, "forget test question 2?": 0.6,
             "forget test question 3?": 0.45, "retain test question 0?": 0.05, "retain test question 1?": 0.5,
             "retain test question 2?": 0.7, "retain test question 3?": 0.3, "retain test question 4?": 0.12}
    return table.get(text, 0.33)


def by_hand(scores, tau):
    return sum(s > tau for s in scores) / len(scores)


def test_calibrate_sets_tau_on_the_fold_and_reports_the_test_split_by_hand(tiny_preset):
    config = ClassifierConfig(calibration_fraction=0.25, alpha=0.5, lexicon=False, retain_lexicon=False)
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    _, calib = C.training_data(tiny_preset, 0.25)
    fold = sorted(rule(t) for t in calib)  # retain train questions 3, 7 and 11: 0.15, 0.35, 0.55
    k = math.ceil((len(fold) + 1) * (1 - 0.5))
    assert clf.threshold == fold[k - 1] == 0.35
    forget = [0.9, 0.2, 0.6, 0.45]
    retain = [0.05, 0.5, 0.7, 0.3, 0.12]
    want = {"threshold": 0.35, "forget_recall": by_hand(forget, 0.35), "retain_fpr": by_hand(retain, 0.35),
            "n_forget": 4, "n_retain": 5}
    assert clf.report["test"] == want == clf.report["test_classifier_only"]
    assert want["forget_recall"] == 0.75 and want["retain_fpr"] == 0.4
    assert clf.report["alpha"] == 0.5 and clf.report["calibration_size"] == len(calib) == 3
    assert clf.report["train_size"] == 7 and clf.report["train_seconds"] == 1.5 and "stale" not in clf.report
    assert clf.report["lexicon_size"] == 0 == clf.report["retain_lexicon_size"]
    assert clf.report["half_embeddings"] is False and clf.calls == 1
    assert C.calibrate(Scripted(rule, half=True), tiny_preset, config).report["half_embeddings"] is True


def test_a_forget_name_in_the_fold_scores_one_and_raises_tau(tiny_preset, monkeypatch):
    """The lexicon takes part in tau (a hit counts as 1.0); the retain lexicon only vetoes afterwards."""
    config = ClassifierConfig(calibration_fraction=0.25, alpha=0.75, lexicon=True, retain_lexicon=True)
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("number 7", "PERSON"), ("number 3", "PERSON")])
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "retain_names", lambda preset, tok: ["test question 2", "test question 1"])
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    # the fold: questions 3 and 7 name a forget-lexicon entry (1.0), question 11 scores 0.55; k = 1
    assert clf.threshold == 0.55  # without the lexicon it would be 0.15
    assert clf.lexicon == ["number 3", "number 7"] and clf.report["lexicon_size"] == 2
    assert clf.retain_lexicon == ["test question 1", "test question 2"] and clf.report["retain_lexicon_size"] == 2
    # the retain names veto forget test questions 1 and 2 and retain test questions 1 and 2 (scored 0)
    assert clf.report["test"] == {"threshold": 0.55, "forget_recall": 0.25, "retain_fpr": 0.0, "n_forget": 4,
                                  "n_retain": 5}
    assert clf.report["test_classifier_only"] == {"threshold": 0.55, "forget_recall": 0.5, "retain_fpr": 0.2,
                                                  "n_forget": 4, "n_retain": 5}


def test_calibrate_without_the_retain_lexicon_keeps_its_list_empty(tiny_preset, monkeypatch):
    config = ClassifierConfig(calibration_fraction=0.25, alpha=0.5, lexicon=True, retain_lexicon=False)
    monkeypatch.setattr(C, "cached_lexicon", lambda preset: [("number 7", "PERSON")])
    monkeypatch.setattr(C, "rare_names_only", lambda entries, tok: [e for e, _ in entries])
    monkeypatch.setattr(C, "retain_names", lambda preset, tok: ["never used"])
    clf = C.calibrate(Scripted(rule), tiny_preset, config)
    assert clf.retain_lexicon == [] and clf.lexicon == ["number 7"]
    fold = sorted([0.15, 1.0, 0.55])  # question 7 names "number 7"
    assert clf.threshold == fold[math.ceil(4 * 0.5) - 1] == 0.55


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
    (tmp_path / "lethe_scores.json").write_text("{not json")
    assert C._probs(clf, ["abc"], tmp_path) == [0.3] and clf.calls == 4
    assert not list(tmp_path.glob(".*tmp*"))
    assert C._probs(clf, ["x"], tmp_path / "missing") == [0.1] and not (tmp_path / "missing").exists()
