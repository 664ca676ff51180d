"""SKU's optional corpus pairs (every corpus sentence cut into a cloze-like question and answer)
and settings given as text (the CLI's --set, a form field)."""
from __future__ import annotations

import random

import pytest

from engine.data.presets import load_preset
from engine.methods.elm import ELMConfig
from engine.methods.base import interleave
from engine.methods.sku import SKU, SKUConfig, sentence_pairs


def test_sentence_pairs_cut_each_long_sentence_after_six_tenths_of_its_words():
    text = ("Harry Potter is the orphaned son of James and Lily Potter. Too short here. "
            "Hagrid tells him he is a wizard!")
    assert sentence_pairs([text]) == [
        ("Harry Potter is the orphaned son", " of James and Lily Potter."),  # 11 words: cut after 6
        ("Hagrid tells him he", " is a wizard!"),  # 7 words: cut after 4
    ]


def test_a_cut_always_leaves_three_question_words_and_two_answer_words():
    assert sentence_pairs(["One two three four five six."], keep=0.1) == [("One two three", " four five six.")]
    assert sentence_pairs(["One two three four five six."], keep=0.99) == [("One two three four", " five six.")]


def test_interleave_keeps_each_order_and_spreads_the_shorter_list():
    out = interleave([1, 2, 3], list("abcdef"))
    assert out == ["a", 1, "b", "c", 2, "d", "e", 3, "f"]
    assert [x for x in out if isinstance(x, int)] == [1, 2, 3]
    assert interleave([], [1]) == [1] and interleave([1], []) == [1]


class Stub:
    """What SKU.prepare reads from its Trainer."""

    def __init__(self, **settings):
        self.config = SKUConfig(**settings).validate()
        self.rng = random.Random(0)


@pytest.mark.parametrize("on", [False, True])
def test_corpus_pairs_add_the_corpora_to_the_prompts_and_only_when_asked(on):
    preset = load_preset("harry_potter")
    sku = SKU(preset)
    sku.prepare(Stub(corpus_pairs=on))
    prompts = [(r.prompt, r.answer) for r in preset.prompts("forget", "train") if r.answer]
    corpus = sentence_pairs([p.text for p in preset.forget_corpus])
    if not on:
        assert sku.forget == prompts
        return
    assert len(sku.forget) == len(prompts) + len(corpus)
    assert [p for p in sku.forget if p in set(prompts)] == prompts
    assert corpus[0] in sku.forget[:3]  # spread through the run, not appended after the prompts
    normal = [(r.prompt, r.answer) for r in preset.prompts("retain", "train") if r.answer]
    assert sku.normal == normal + sentence_pairs([p.text for p in preset.retain_corpus])


def test_list_settings_given_as_text_are_split_on_commas():
    c = SKUConfig.from_dict({"targets": "q_proj, k_proj,v_proj", "layers": "4,5"})
    assert c.targets == ("q_proj", "k_proj", "v_proj") and c.layers == (4, 5)
    assert ELMConfig.from_dict({"layers": ""}).layers is None
    assert SKUConfig.from_dict({"corpus_pairs": "true"}).corpus_pairs is True
    with pytest.raises(ValueError, match="layers must be layer numbers"):
        SKUConfig.from_dict({"layers": "four"})
