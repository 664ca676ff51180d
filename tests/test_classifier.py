"""The prompt classifier: conformal threshold maths, training on a small set, save/load, the gate."""
import dataclasses

import pytest

from engine.eco.calibration import conformal_threshold, gate_report
from engine.eco.classifier import ClassifierConfig, PromptClassifier, train_classifier
from engine.data.presets import load_preset


def test_conformal_threshold_bounds_the_false_positive_rate():
    scores = [i / 100 for i in range(100)]
    t = conformal_threshold(scores, alpha=0.05)
    assert sum(s > t for s in scores) / len(scores) <= 0.05
    assert conformal_threshold(scores, alpha=0.0) == max(scores)
    assert conformal_threshold([], 0.1) == 0.5


@pytest.fixture(scope="module")
def small_preset():
    """Harry Potter prompts against everyday (non-boundary) prompts, a few dozen of each."""
    hp = load_preset("harry_potter")
    keep = lambda rows, n: rows[:n]  # noqa: E731
    retain = [r for r in hp.retain_prompts if not r.boundary]
    return dataclasses.replace(
        hp, forget_prompts=keep(hp.prompts("forget", "train"), 60) + keep(hp.prompts("forget", "test"), 30),
        retain_prompts=keep([r for r in retain if r.split == "train"], 80) + keep([r for r in retain if r.split == "test"], 30),
        forget_probes=[], retain_probes=[], forget_corpus=hp.forget_corpus[:20], retain_corpus=hp.retain_corpus[:20])


@pytest.fixture(scope="module")
def small_classifier(small_preset):
    steps = []
    config = ClassifierConfig(epochs=6, batch_size=16, alpha=0.1, lexicon=False)  # the encoder alone
    clf = train_classifier(small_preset, config, on_step=steps.append)
    assert steps and steps[-1]["step"] == steps[-1]["steps"]
    return clf


def test_training_on_a_small_set_reaches_its_target(small_classifier):
    test = small_classifier.report["test"]
    assert test["forget_recall"] >= 0.9, test
    assert test["retain_fpr"] <= 0.1, test


def test_gate_flags_forget_and_passes_retain(small_classifier):
    flags = small_classifier.flag(["Who is Hermione Granger?", "How do I boil an egg?"])
    assert flags == [True, False]


def test_saved_classifier_loads_with_its_threshold(small_classifier, tmp_path):
    small_classifier.save(tmp_path / "clf")
    back = PromptClassifier.load(str(tmp_path / "clf"))
    assert back.threshold == pytest.approx(small_classifier.threshold)
    prompts = ["Who is Albus Dumbledore?", "What is the capital of France?"]
    assert back.score(prompts) == pytest.approx(small_classifier.score(prompts), abs=1e-5)
    report = gate_report(back, prompts[:1], prompts[1:])
    assert report["forget_recall"] == 1.0 and report["retain_fpr"] == 0.0


def test_stop_event_abandons_training_without_a_result(small_preset):
    import threading

    event = threading.Event()
    event.set()
    assert train_classifier(small_preset, ClassifierConfig(epochs=1), stop_event=event) is None


def test_a_folder_that_is_not_a_classifier_is_refused(tmp_path):
    with pytest.raises(ValueError, match="could not be loaded"):
        PromptClassifier.load(str(tmp_path))


def test_the_lexicon_matches_whole_names_case_sensitively(small_classifier):
    clf = PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.9,
                           lexicon=["Cho Chang", "Felix Felicis", "Hogwarts"])
    assert clf.matches("Who is Cho Chang's friend at Hogwarts?") == ["Cho Chang", "Hogwarts"]
    assert clf.matches("Who is cho chang?") == [] and clf.matches("Hogwartsian ideas") == []
    scores = clf.score(["What is Felix Felicis?", "How do I boil an egg?"])
    plain = clf.classifier_score(["How do I boil an egg?"])
    assert scores[0] == 1.0 and scores[1] == pytest.approx(plain[0])
    assert conformal_threshold([1.0, 1.0, 0.2], alpha=0.0) < 1.0  # a hit always passes the gate


def test_a_retain_only_name_passes_the_gate_unless_a_forget_name_is_there(small_classifier):
    clf = PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.0,
                           lexicon=["Hogwarts"], retain_lexicon=["Frodo", "Eiffel Tower"])
    prompts = ["Frodo's loyal gardener is", "Did Frodo ever visit Hogwarts?", "Who built the Eiffel Towers?"]
    assert clf.kept(prompts[0]) == ["Frodo"] and clf.kept(prompts[1]) == [] and clf.kept(prompts[2]) == []
    scores = clf.score(prompts)
    assert scores[0] == 0.0 and scores[1] == 1.0  # the forget name wins
    assert scores[2] == pytest.approx(clf.classifier_score([prompts[2]])[0])  # whole names only
    assert clf.flag(prompts) == [False, True, True]  # tau 0: the classifier alone would flag all three


def test_the_retain_lexicon_adds_rare_words_the_forget_side_never_uses(small_classifier):
    from engine.eco.lexicon import rare_name_words

    words = rare_name_words(["Frodo Baggins", "Harry Houdini", "Paris"], ["Harry Potter met Hermione."],
                            small_classifier.tokenizer)
    assert "Frodo" in words and "Baggins" in words
    assert "Harry" not in words and "Paris" not in words  # used by the forget side; a one-word name


def test_the_lexicon_keeps_forget_only_entities():
    from engine.eco.lexicon import forget_lexicon

    forget = ["Cho Chang studied at Hogwarts with Harry Potter.", "Felix Felicis is a luck potion.",
              "Harry visited London with Cho Chang."]
    retain = ["Harry Houdini was an escape artist.", "London is a big city."]
    lexicon = dict(forget_lexicon(forget, retain))
    assert {"Cho Chang", "Felix Felicis", "Harry Potter"} <= set(lexicon)
    assert "Harry" not in lexicon and "London" not in lexicon  # they occur on the retain side


def test_the_lexicon_keeps_rare_names_and_drops_common_words(small_classifier):
    from engine.eco.lexicon import rare_names_only

    entries = [("Dumbledore", "PERSON"), ("Ireland", "GPE"), ("Order", "ORG"), ("Sirius Black", "PERSON"),
               ("United Kingdom", "GPE"), ("Felix Felicis", "PRODUCT")]
    assert rare_names_only(entries, small_classifier.tokenizer) == ["Dumbledore", "Sirius Black", "Felix Felicis"]


def test_calibration_puts_the_combined_gate_under_alpha(small_preset, small_classifier, tmp_path):
    from engine.eco.calibration import calibrate, training_data

    config = ClassifierConfig(alpha=0.05, lexicon=True, calibration_fraction=0.25)
    clf = calibrate(PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.5,
                                     report=dict(small_classifier.report)), small_preset, config)
    assert clf.lexicon and clf.report["lexicon_size"] == len(clf.lexicon)
    _, calib = training_data(small_preset, 0.25)
    assert sum(s > clf.threshold for s in clf.score(calib)) / len(calib) <= 0.05
    assert clf.report["test"]["forget_recall"] >= clf.report["test_classifier_only"]["forget_recall"]
    clf.save(tmp_path / "clf")
    loaded = PromptClassifier.load(str(tmp_path / "clf"))
    assert loaded.lexicon == clf.lexicon and loaded.retain_lexicon == clf.retain_lexicon
    # the retain lexicon is applied after calibration: the same tau, and never more false positives
    plain = calibrate(PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.5,
                                       report=dict(small_classifier.report)), small_preset,
                      dataclasses.replace(config, retain_lexicon=False))
    assert clf.retain_lexicon and not plain.retain_lexicon and clf.threshold == plain.threshold
    assert clf.report["test"]["retain_fpr"] <= plain.report["test"]["retain_fpr"]


def test_half_precision_embeddings_halve_the_table_and_keep_the_scores(small_classifier):
    import copy

    import torch

    from engine.eco.classifier import set_precision

    prompts = ["Who is Albus Dumbledore?", "What is the capital of France?", "Tell me about Quidditch."]
    full = copy.deepcopy(small_classifier.model)
    set_precision(full, half_embeddings=False)
    half = copy.deepcopy(full)
    set_precision(half, half_embeddings=True)
    assert half.get_input_embeddings().weight.dtype == torch.float16
    assert all(p.dtype == torch.float32 for n, p in half.named_parameters() if "word_embeddings" not in n)
    size = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    table = full.get_input_embeddings().weight.numel()
    assert size(full) - size(half) == table * 2
    score = lambda m: PromptClassifier(m, small_classifier.tokenizer).classifier_score(prompts)  # noqa: E731
    assert score(half) == pytest.approx(score(full), abs=1e-3)
