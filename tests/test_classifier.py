"""The prompt classifier: conformal threshold maths, training on a small set, save/load, the gate."""
import dataclasses

import pytest

from engine.eco.calibration import MAX_THRESHOLD, conformal_threshold, gate_report
from engine.eco.classifier import ClassifierConfig, PromptClassifier, train_classifier
from engine.data.presets import load_preset


def test_conformal_threshold_bounds_the_false_positive_rate():
    scores = [i / 100 for i in range(100)]
    t = conformal_threshold(scores, alpha=0.05)
    assert sum(s > t for s in scores) / len(scores) <= 0.05
    assert conformal_threshold(scores, alpha=0.0) == MAX_THRESHOLD  # no rate is bounded at 0: only hits fire
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
    config = ClassifierConfig(epochs=6, batch_size=16, alpha=0.1, lexicon=False, augment=False)  # the encoder alone
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


def test_the_lexicon_matches_names_as_written_or_disguised(small_classifier):
    exact = PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.9,
                             lexicon=["Cho Chang", "Felix Felicis", "Hogwarts"], see_through=False)
    assert exact.matches("Who is Cho Chang's friend at Hogwarts?") == ["Cho Chang", "Hogwarts"]
    assert exact.matches("Who is cho chang?") == [] and exact.matches("Hogwartsian ideas") == []
    clf = PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.9,
                           lexicon=["Cho Chang", "Felix Felicis", "Hogwarts", "Sirius Black", "Snape"])
    for disguised, name in [("Who is cho chang?", "Cho Chang"), ("WHAT IS F3L1X F3L1C15?", "Felix Felicis"),
                            ("Where is H o g w a r t s?", "Hogwarts"), ("Where is Hog-warts?", "Hogwarts"),
                            ("Where is Hgowarts?", "Hogwarts"), ("Is Sirius-Black alive?", "Sirius Black"),
                            ("Who is s n a p e?", "Snape")]:
        assert clf.matches(disguised) == [name], disguised
    # a typo is allowed only in long words: a short name would meet ordinary words
    assert clf.matches("What shape is it?") == [] and clf.matches("Hogwartsian ideas") == []
    scores = clf.score(["What is Felix Felicis?", "How do I boil an egg?"])
    plain = clf.classifier_score(["How do I boil an egg?"])
    assert scores[0] == 1.0 and scores[1] == pytest.approx(plain[0])
    assert conformal_threshold([1.0, 1.0, 0.2], alpha=0.0) < 1.0  # a hit always passes the gate


@pytest.mark.parametrize("frame", ["I was just reading about Frodo Baggins. {q}", "Setting Gandalf aside, {q}",
                                   "This is not about the Eiffel Tower: {q}", "Who built the Eiffel Tower?\n{q}",
                                   "Frodo and Samwise walked to Mordor; {q}"])
def test_smuggling_a_neighbours_name_into_a_forget_question_never_lowers_its_score(small_classifier, frame):
    """Clause scoring: the forget question is scored on its own, so added text can only raise the score."""
    clf = PromptClassifier(small_classifier.model, small_classifier.tokenizer, small_classifier.threshold,
                           segments=True)
    questions = ["Who is Hermione Granger?", "What house was Draco Malfoy sorted into?",
                 "what position does harry play at quidditch?"]
    clean = clf.score(questions)
    smuggled = clf.score([frame.format(q=q) for q in questions])
    assert all(s >= c - 1e-6 for s, c in zip(smuggled, clean)), (clean, smuggled)
    flagged = [c > clf.threshold for c in clean]
    assert any(flagged) and all(s > clf.threshold for s, f in zip(smuggled, flagged) if f)


def test_a_long_preamble_cannot_push_a_question_out_of_the_classifiers_view(small_classifier):
    clf = PromptClassifier(small_classifier.model, small_classifier.tokenizer, 0.5, max_length=24)
    q = "Who is Hermione Granger?"
    long = " ".join(["The weather today is mild and the trains run on time"] * 6) + " " + q
    assert len(clf.windows(long)) > 2 and clf.classifier_score([long])[0] >= clf.classifier_score([q])[0] - 0.05


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
    assert loaded.lexicon == clf.lexicon and loaded.see_through and loaded.segments == clf.segments
    assert loaded.score(calib[:20]) == pytest.approx(clf.score(calib[:20]), abs=1e-5)


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


def test_the_finetune_head_trains_the_encoder_and_keeps_no_bank(small_preset, tmp_path):
    steps = []
    config = ClassifierConfig(head="finetune", epochs=3, batch_size=16, alpha=0.1, lexicon=False, augment=False)
    clf = train_classifier(small_preset, config, on_step=steps.append)
    assert clf.bank is None and steps[-1]["step"] == steps[-1]["steps"] > 3
    assert sum(s["loss"] for s in steps[-3:]) < sum(s["loss"] for s in steps[:3])
    assert clf.report["test"]["forget_recall"] >= 0.8, clf.report
    clf.save(tmp_path / "ft")
    assert PromptClassifier.load(str(tmp_path / "ft")).bank is None
    with pytest.raises(ValueError, match="Unknown classifier head"):
        train_classifier(small_preset, ClassifierConfig(head="svm"))


def test_the_neighbours_head_scores_by_the_nearest_texts_of_each_side(small_classifier):
    """Score = (mean cosine to the k nearest forget texts - the same for retain + 1) / 2, by hand."""
    import torch

    from engine.eco.neighbours import Bank, pooled

    bank = small_classifier.bank
    assert bank is not None and bank.k == 10 and len(bank.forget) and len(bank.retain)
    q = "Who is Hermione Granger?"
    enc = small_classifier.tokenizer([q], return_tensors="pt")
    e = pooled(small_classifier.model, enc["input_ids"], enc["attention_mask"])
    want = ((e @ bank.forget.T).topk(10).values.mean() - (e @ bank.retain.T).topk(10).values.mean() + 1) / 2
    assert small_classifier.classifier_score([q])[0] == pytest.approx(want.item(), abs=1e-5)
    toy = Bank(torch.eye(3)[:1], torch.eye(3)[1:], k=1)
    assert toy.score(torch.eye(3)) == pytest.approx([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="both sides"):
        Bank(torch.zeros(0, 3), torch.eye(3))
