"""The gate's word head: tf-idf words, a class-balanced logistic regression, the blend, JSON save/load."""
import dataclasses
import json
import math

import pytest

from engine.data.presets import load_preset
from engine.eco.classifier import ClassifierConfig, PromptClassifier, train_classifier
from engine.eco.words import WORDS_FILE, WordHead, counts

FORGET = ["the summoning charm pulls the broom", "a charm cast by the young wizard", "the wizard casts a charm",
          "which charm summons a broom", "the wizard school has a charm class"]
RETAIN = ["the recipe needs two eggs", "bake the eggs in the oven", "the oven is hot", "a recipe for bread",
          "bread rises in the oven", "the eggs and the bread"]


@pytest.fixture(scope="module")
def head():
    return WordHead.fit(FORGET + RETAIN, [1] * len(FORGET) + [0] * len(RETAIN), weight=0.3)


def test_words_are_lower_case_runs_of_two_or_more_characters():
    assert counts("The Charm, the CHARM; a b 42") == {"the": 2, "charm": 2, "42": 1}


def test_the_head_learns_which_side_writes_a_word(head):
    coef = dict(zip(head.vocab, head.coef))
    assert coef["charm"] > 0 > coef["oven"] and "school" not in coef  # seen once: below MIN_DF
    hi, lo, unknown = head.score(["tell me about the charm", "preheat the oven", "zzz qqq"])
    assert hi > 0.5 > lo and unknown == pytest.approx(1 / (1 + math.exp(-head.intercept)))


def test_the_vector_is_sublinear_tf_idf_of_unit_length(head):
    v = head.vector("charm charm charm oven")
    assert sum(x * x for x in v.values()) == pytest.approx(1.0)
    i, j = head.index["charm"], head.index["oven"]
    assert v[i] / v[j] == pytest.approx((1 + math.log(3)) * head.idf[i] / head.idf[j])
    assert head.vector("") == {} and head.vector("nothing known") == {}


def test_the_blend_weighs_the_two_heads(head):
    words = head.score(["the charm"])[0]
    assert head.blend([0.2], ["the charm"]) == [pytest.approx(0.7 * 0.2 + 0.3 * words)]


def test_the_head_is_saved_as_json_and_loads_to_the_same_scores(head, tmp_path):
    head.save(tmp_path)
    assert set(json.loads((tmp_path / WORDS_FILE).read_text())) == {"vocab", "idf", "coef", "intercept", "weight"}
    back = WordHead.load(tmp_path)
    texts = ["the charm of the wizard", "bread and eggs"]
    assert back.score(texts) == head.score(texts) and back.weight == 0.3
    assert WordHead.load(tmp_path / "missing") is None


def test_one_label_is_refused():
    with pytest.raises(ValueError, match="both labels"):
        WordHead.fit(FORGET, [1] * len(FORGET), weight=0.3)


@pytest.fixture(scope="module")
def small_preset():
    hp = load_preset("harry_potter")
    retain = [r for r in hp.retain_prompts if not r.boundary]
    return dataclasses.replace(
        hp, forget_prompts=hp.prompts("forget", "train")[:40] + hp.prompts("forget", "test")[:10],
        retain_prompts=[r for r in retain if r.split == "train"][:50] + [r for r in retain if r.split == "test"][:10],
        forget_probes=[], retain_probes=[], forget_corpus=hp.forget_corpus[:10], retain_corpus=hp.retain_corpus[:10])


def test_the_gate_blends_the_word_head_into_every_window_and_keeps_it(small_preset, tmp_path):
    config = ClassifierConfig(alpha=0.1, lexicon=False, augment=False, words=0.3)  # (the small preset is harry_potter)
    clf = train_classifier(small_preset, config)
    assert clf.words is not None and clf.words.weight == 0.3
    prompt = "Who taught Potions at Hogwarts?"
    blended = clf.classifier_score([prompt])[0]
    words, clf.words = clf.words, None
    alone = clf.classifier_score([prompt])[0]
    clf.words = words
    decoded = clf.tokenizer.decode(clf.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert blended == pytest.approx(0.7 * alone + 0.3 * words.score([decoded])[0], abs=1e-6)
    clf.save(tmp_path / "clf")
    back = PromptClassifier.load(str(tmp_path / "clf"))
    assert back.words is not None and back.score([prompt]) == pytest.approx(clf.score([prompt]), abs=1e-5)
    assert train_classifier(small_preset, dataclasses.replace(config, words=0.0)).words is None


def test_a_preset_turns_the_word_head_on_in_its_gate_block():
    hp, chem = load_preset("harry_potter"), load_preset("chemistry")
    assert ClassifierConfig.for_preset(hp).words == 0.3 and ClassifierConfig().words == 0.0
    assert ClassifierConfig.for_preset(chem) == ClassifierConfig() == ClassifierConfig.for_preset(None)
    bad = dataclasses.replace(chem, meta={**chem.meta, "gate": {"word": 0.3}})
    with pytest.raises(ValueError, match=r"'gate' must map gate settings; unknown: \['word'\]"):
        ClassifierConfig.for_preset(bad)
