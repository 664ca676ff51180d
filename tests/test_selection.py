"""NER spans -> LLM token positions, on tricky strings, with real spaCy."""
import pytest

from engine.eco.selection import TokenSelector


def picked(sel):
    return "".join(sel.tokens[i] for i in sel.positions).strip()


def test_entity_tokens_are_selected_with_their_label(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "Who is Barack Obama?")
    assert "Barack" in picked(sel) and "Obama" in picked(sel)
    assert {sel.labels[i] for i in sel.positions} == {"PERSON"}
    assert not sel.fallback_used
    # only tokens inside the user's text, never the chat template
    a, b = sel.prompt_span
    assert all(sel.offsets[i][0] >= a and sel.offsets[i][1] <= b for i in sel.positions)


def test_possessive_entity_keeps_its_tokens(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "What is Barack Obama's favourite food?")
    assert "Obama" in picked(sel)


def test_entity_split_across_many_tokens_is_selected_whole(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "Tell me about Zanzibarqwerty Street in Paris.")
    text = picked(sel)
    assert "Paris" in text


def test_unicode_and_emoji_do_not_break_alignment(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "¿Dónde vive Angela Merkel? 🧙‍♂️ Berlin!")
    assert "Merkel" in picked(sel)
    assert len(sel.tokens) == len(sel.selected) == len(sel.labels) == len(sel.input_ids)


def test_no_entity_falls_back_to_the_prompt_tokens(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "what is the colour of the sky?")
    assert sel.fallback_used
    assert picked(sel).replace(" ", "") == "whatisthecolourofthesky?"
    none = TokenSelector(fallback="none").select(tiny_lm.tokenizer, "what is the colour of the sky?")
    assert none.positions == []


def test_entity_type_filter(tiny_lm):
    sel = TokenSelector(entity_types=("GPE",)).select(tiny_lm.tokenizer, "Did Barack Obama live in Chicago?")
    assert "Chicago" in picked(sel) and "Obama" not in picked(sel)


def test_all_but_last_and_manual_modes(tiny_lm):
    sel = TokenSelector(mode="all_but_last").select(tiny_lm.tokenizer, "Hello there")
    assert sel.selected == [True] * (len(sel.tokens) - 1) + [False]
    man = TokenSelector(mode="manual").select(tiny_lm.tokenizer, "Hello there", manual=[0, 2])
    assert man.positions == [0, 2]
    with pytest.raises(ValueError, match="outside the prompt"):
        TokenSelector(mode="manual").select(tiny_lm.tokenizer, "Hello", manual=[999])


def test_highlighted_pairs_cover_only_the_prompt(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "Who is Barack Obama?")
    pairs = sel.highlighted()
    assert "".join(t for t, _ in pairs).strip() == "Who is Barack Obama?"
    assert any(label == "PERSON" for _, label in pairs)


def test_raw_text_mode_matches_the_scoring_tokenization(tiny_lm):
    sel = TokenSelector().select(tiny_lm.tokenizer, "Barack Obama was born in", chat=False)
    assert sel.input_ids == tiny_lm.tokenizer("Barack Obama was born in")["input_ids"]
    assert sel.prompt_span == (0, len("Barack Obama was born in"))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="known: ner"):
        TokenSelector(mode="everything")
