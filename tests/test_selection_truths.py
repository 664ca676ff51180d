"""Token selection against known truths: spaCy's entity character spans, a token-classification model's
records, Selection records, encoding with offsets under chat templates and special tokens, and the
selector's settings, fallbacks and manual positions."""
from __future__ import annotations

import re

import pytest

from engine.eco import selection as S
from engine.eco.pipeline import ECO, ECOConfig
from engine.eco.selection import TokenSelector, encode_with_offsets, find_entities

from tests.test_eco_pipeline_truths import (  # noqa: F401 (fixtures and helpers)
    OBAMA, OBAMA_TOKENS, OBAMA_ENTITY, OBAMA_SELECTED, templated, tok, fresh_tokenizer,
)


# ---------------------------------------------------------------------------- spaCy entities

def test_spacy_finds_person_and_place_with_their_character_spans():
    assert find_entities("Did Barack Obama live in Chicago?") == [
        {"start": 4, "end": 16, "label": "PERSON", "text": "Barack Obama"},
        {"start": 25, "end": 32, "label": "GPE", "text": "Chicago"}]
    assert find_entities(OBAMA) == [OBAMA_ENTITY]
    assert find_entities("what is the colour of the sky?") == []


# ---------------------------------------------------------------------------- token-classification model

class FakeTokenModel:
    """A token-classification pipeline returning Hugging Face's aggregated records."""

    def __init__(self, records):
        self.records, self.loaded, self.texts = records, [], []

    def load(self, name):
        self.loaded.append(name)
        return self

    def __call__(self, text):
        self.texts.append(text)
        return self.records


OWLS = "Tell me about owls."  # "owls" is characters 14..18


@pytest.fixture()
def owl_model(monkeypatch):
    import numpy as np

    fake = FakeTokenModel([{"entity_group": "ANIMAL", "score": np.float32(0.98), "word": "owls",
                            "start": np.int64(14), "end": np.int64(18)}])
    monkeypatch.setattr(S, "load_token_model", fake.load)
    return fake


def test_a_token_classification_model_gives_entities_in_the_spacy_record_format(owl_model):
    ents = find_entities(OWLS, "token_model", "my/ner-model")
    assert ents == [{"start": 14, "end": 18, "label": "ANIMAL", "text": "owls"}]
    assert [type(ents[0][k]) for k in ("start", "end", "label", "text")] == [int, int, str, str]
    assert owl_model.loaded == ["my/ner-model"] and owl_model.texts == [OWLS]


def test_token_model_mode_without_a_model_is_refused_before_loading_anything(owl_model):
    with pytest.raises(ValueError) as err:
        find_entities(OWLS, "token_model", None)
    assert str(err.value) == "Selection mode token_model needs a token-classification model id or path."
    assert owl_model.loaded == []


def test_the_default_entity_finder_is_spacy_not_the_token_model(owl_model):
    assert find_entities(OWLS) == [] and owl_model.loaded == []


def test_token_model_selection_marks_the_tokens_the_model_names(tiny_lm, tok, owl_model):
    sel = TokenSelector(mode="token_model", token_model="my/ner-model").select(tok, OWLS, chat=False)
    covering = [i for i, (s, e) in enumerate(sel.offsets) if s < 18 and e > 14]
    assert covering and sel.positions == covering
    assert [sel.labels[i] for i in covering] == ["ANIMAL"] * len(covering)
    assert not sel.fallback_used and owl_model.loaded == ["my/ner-model"]
    plan = ECO(tiny_lm).plan(OWLS, ECOConfig(gate="never", selection="token_model", token_model="my/ner-model"),
                             chat=False)
    assert plan.selection.positions == covering and owl_model.loaded[-1] == "my/ner-model"


# ---------------------------------------------------------------------------- Selection records

def test_selection_record_for_a_hand_checked_prompt(tok):
    sel = TokenSelector().select(tok, OBAMA, chat=False)
    assert sel.to_dict() == {"tokens": OBAMA_TOKENS, "selected": OBAMA_SELECTED,
                             "labels": [None, None] + ["PERSON"] * 7 + [None],
                             "positions": [2, 3, 4, 5, 6, 7, 8], "entities": [OBAMA_ENTITY],
                             "fallback_used": False}


def test_highlighted_pairs_are_exactly_the_prompt_tokens_with_their_labels(tok):
    sel = TokenSelector().select(tok, OBAMA)  # chat template: the prompt is tokens 4..13
    assert sel.highlighted() == [(t, "PERSON" if s else None) for t, s in zip(OBAMA_TOKENS, OBAMA_SELECTED)]
    everything = sel.highlighted(prompt_only=False)
    assert len(everything) == len(sel.tokens) == 21
    assert everything[:4] == [("<|im_start|>", None), ("us", None), ("er", None), ("\n", None)]


def test_tokens_selected_without_an_entity_are_highlighted_as_selected(tok):
    sel = TokenSelector(mode="prompt").select(tok, "Hello there")
    assert sel.highlighted() == [("H", "SELECTED"), ("ell", "SELECTED"), ("o", "SELECTED"),
                                 (" the", "SELECTED"), ("re", "SELECTED")]


# ---------------------------------------------------------------------------- encoding with offsets

def test_encoding_defaults_to_the_chat_template_and_no_suffix(tok):
    ids, offsets, text, span = encode_with_offsets(tok, "Hello there")
    assert text == templated("Hello there")
    assert span == (17, 28)  # len("<|im_start|>user\n") == 17, len("Hello there") == 11
    assert ids == tok(text)["input_ids"] and len(offsets) == len(ids)


def test_the_prompt_span_is_the_last_occurrence_of_the_prompt(tok):
    """The template itself contains "user"; the user's own "user" is the one after it."""
    _, _, text, span = encode_with_offsets(tok, "user")
    assert text == templated("user") and span == (17, 21)


def test_a_suffix_is_appended_after_the_prompt_span(tok):
    sel = TokenSelector(mode="prompt").select(tok, "Barack Obama was born in", chat=False, suffix=" Hawaii")
    assert sel.text == "Barack Obama was born in Hawaii"
    assert sel.input_ids == tok("Barack Obama was born in Hawaii")["input_ids"]
    assert sel.prompt_span == (0, 24)
    assert all(sel.offsets[i][0] < 24 for i in sel.positions)
    assert not sel.selected[-1]


def test_selection_defaults_to_the_chat_template(tok):
    sel = TokenSelector(mode="prompt").select(tok, "Hello there")
    assert sel.text == templated("Hello there")
    assert sel.positions == [4, 5, 6, 7, 8]  # the template's "\n" ends where the prompt starts: not selected


def test_special_tokens_are_added_for_raw_text_but_not_inside_a_chat_template(tiny_model_dir):
    from tests.conftest import CHAT_TEMPLATE

    t = fresh_tokenizer(tiny_model_dir, CHAT_TEMPLATE, bos=True)
    bos = t.convert_tokens_to_ids("<|endoftext|>")
    plain = t("Hello there", add_special_tokens=False)["input_ids"]
    ids, offsets, _, span = encode_with_offsets(t, "Hello there", chat=False)
    assert ids == [bos] + plain and span == (0, 11)
    ids, _, text, _ = encode_with_offsets(t, "Hello there", chat=True)
    assert ids == t(text, add_special_tokens=False)["input_ids"] and ids[0] != bos
    no_template = fresh_tokenizer(tiny_model_dir, None, bos=True)
    ids, _, text, span = encode_with_offsets(no_template, "Hello there", chat=True)
    assert text == "Hello there" and ids == [bos] + plain and span == (0, 11)


class WordTokenizer:
    """A whitespace tokenizer with no chat_template attribute at all."""

    def __init__(self):
        self.special = []

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        self.special.append(add_special_tokens)
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


def test_a_tokenizer_without_a_chat_template_attribute_encodes_the_raw_prompt():
    t = WordTokenizer()
    ids, offsets, text, span = encode_with_offsets(t, "hello big world", chat=True)
    assert (ids, offsets, text, span) == ([0, 1, 2], [(0, 5), (6, 9), (10, 15)], "hello big world", (0, 15))
    assert t.special == [True]


def test_a_prompt_at_the_very_start_of_the_template_keeps_its_spaces(tiny_model_dir):
    t = fresh_tokenizer(tiny_model_dir, "{{ messages[-1]['content'] }}\nAnswer:")
    _, _, text, span = encode_with_offsets(t, "  hi there  ")
    assert text == "  hi there  \nAnswer:" and span == (0, 12)


TRIM = ("<|im_start|>user\n{{ messages[-1]['content'] | trim }}<|im_end|>\n"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("prompt, span", [
    ("  Who is Barack Obama?  ", (17, 37)),
    (" user ", (17, 21)),  # the stripped text also occurs in the template: the user's is the last one
])
def test_a_template_that_strips_the_prompt_gets_the_span_of_the_stripped_text(tiny_model_dir, prompt, span):
    t = fresh_tokenizer(tiny_model_dir, TRIM)
    _, _, text, got = encode_with_offsets(t, prompt)
    assert text == templated(prompt.strip()) and got == span


def test_a_stripped_prompt_at_the_start_of_the_text_starts_at_zero(tiny_model_dir):
    t = fresh_tokenizer(tiny_model_dir, "{{ messages[-1]['content'] | trim }}\nAnswer:")
    _, _, text, span = encode_with_offsets(t, "  hi  ")
    assert text == "hi\nAnswer:" and span == (0, 2)
    upper = fresh_tokenizer(tiny_model_dir, "{{ messages[-1]['content'] | upper }}\nAnswer:")
    _, _, text, span = encode_with_offsets(upper, "hi")  # rewritten text: no occurrence at all
    assert text == "HI\nAnswer:" and span == (0, 2)


# ---------------------------------------------------------------------------- selector settings

def test_unknown_selector_settings_get_exact_sentences():
    with pytest.raises(ValueError) as err:
        TokenSelector(mode="everything")
    assert str(err.value) == "Unknown selection mode 'everything'; known: ner, token_model, prompt, all_but_last, manual."
    with pytest.raises(ValueError) as err:
        TokenSelector(fallback="random")
    assert str(err.value) == "Unknown fallback 'random'; known: prompt, all_but_last, none."


def test_fallback_none_selects_nothing_and_is_not_counted_as_a_fallback(tok):
    sel = TokenSelector(fallback="none").select(tok, "what is the colour of the sky?", chat=False)
    assert (sel.positions, sel.fallback_used, sel.entities) == ([], False, [])
    abl = TokenSelector(fallback="all_but_last").select(tok, "what is the colour of the sky?", chat=False)
    assert (abl.positions, abl.fallback_used) == (list(range(12)), True)


def test_a_manual_index_equal_to_the_token_count_is_refused(tok):
    with pytest.raises(ValueError) as err:
        TokenSelector(mode="manual").select(tok, OBAMA, chat=False, manual=[10])
    assert str(err.value) == "Token index 10 is outside the prompt's 10 tokens."
    with pytest.raises(ValueError) as err:
        TokenSelector(mode="manual").select(tok, OBAMA, chat=False, manual=[-1])
    assert str(err.value) == "Token index -1 is outside the prompt's 10 tokens."
    assert TokenSelector(mode="manual").select(tok, OBAMA, chat=False, manual=[9]).positions == [9]


class MarkerTokenizer:
    """Each word is preceded by a zero-width marker token (offsets (s, s)), as some tokenizers
    emit for word boundaries: such a token holds no character of the text."""

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        ids, offsets = [], []
        for k, m in enumerate(re.finditer(r"\S+", text)):
            ids += [0, k + 1]
            offsets += [(m.start(), m.start()), (m.start(), m.end())]
        self.words = {k + 1: m.group() for k, m in enumerate(re.finditer(r"\S+", text))}
        return {"input_ids": ids, "offset_mapping": offsets}

    def decode(self, ids):
        return "".join("" if i == 0 else self.words[i] for i in ids)


def test_zero_width_tokens_are_never_selected():
    """Words at 0..3, 4..6, 7..13, 14..20: the marker inside "Barack Obama" sits at (14, 14)."""
    t = MarkerTokenizer()
    ner = TokenSelector().select(t, OBAMA, chat=False)
    assert ner.tokens == ["", "Who", "", "is", "", "Barack", "", "Obama?"]
    assert ner.positions == [5, 7] and ner.entities == [OBAMA_ENTITY]
    prompt = TokenSelector(mode="prompt").select(t, OBAMA, chat=False)
    assert prompt.positions == [1, 3, 5, 7]
