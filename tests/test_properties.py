"""Laws checked on generated inputs (hypothesis): NER spans map to exactly the LLM tokens that
cover them, and run capsules survive a save and load unchanged."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.eco.selection import TokenSelector

NAMES = ["Barack Obama", "Paris", "Angela Merkel", "London", "Harry Potter", "Microsoft", "Tokyo", "Marie Curie"]
WORDS = ["who", "is", "the", "in", "did", "live", "tell", "me", "about", "and", "of", "visit", "what", "city",
         "café", "naïve", "🧙", "—", "it's", "a", "big"]


@st.composite
def prompts(draw):
    parts = draw(st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(NAMES)), min_size=1, max_size=10))
    tail = draw(st.sampled_from(["?", ".", "!", "", "'s"]))
    return " ".join(parts) + tail


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=prompts(), chat=st.booleans())
def test_ner_spans_map_to_exactly_the_tokens_that_cover_them(tiny_lm, prompt, chat):
    sel = TokenSelector(fallback="none").select(tiny_lm.tokenizer, prompt, chat=chat)
    a, _ = sel.prompt_span
    spans = [(e["start"] + a, e["end"] + a) for e in sel.entities]
    assert sel.text[a:a + len(prompt)] == prompt
    for e in sel.entities:  # the entity offsets point at the entity's own text
        assert prompt[e["start"]:e["end"]] == e["text"]
    covering = {i for i, (s, e) in enumerate(sel.offsets) if e > s and any(s < b and e > a_ for a_, b in spans)}
    assert set(sel.positions) == covering
    for a_, b in spans:  # every character of every span lies in a selected token
        for c in range(a_, b):
            if not sel.text[c].isspace():
                assert any(sel.offsets[i][0] <= c < sel.offsets[i][1] for i in sel.positions), (prompt, c)
    for i in sel.positions:
        assert sel.labels[i] in {e["label"] for e in sel.entities}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@st.composite
def capsules(draw):
    rows = draw(st.lists(st.fixed_dictionaries({
        "variant": st.sampled_from(["original", "eco", "elm", "sku"]),
        "metric": st.sampled_from(["forget_probe_accuracy", "retain_kl"]),
        "value": st.floats(allow_nan=False, allow_infinity=False), "n": st.integers(0, 500)}), max_size=6))
    return {"format": 1, "kind": "lethe-evaluation", "created": draw(st.text(max_size=19)),
            "model": {"name": draw(st.text(max_size=30)), "weights_sha256": draw(st.text("0123456789abcdef",
                                                                                          min_size=64, max_size=64))},
            "preset": {"name": draw(st.sampled_from(["harry_potter", "star_wars"])), "data_sha256": "ab" * 32},
            "settings": {"variants": ["original"], "metrics": ["forget_probe_accuracy"], "split": "test",
                         "eco": draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
                         "extra": draw(json_values)},
            "rows": rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=capsules())
def test_capsules_round_trip_through_a_file(tmp_path, cap):
    from engine.evaluation.capsules import load_capsule, save_capsule

    path = save_capsule(cap, tmp_path / "run.json")
    back = load_capsule(path)
    assert back == cap
    assert load_capsule(path.read_bytes()) == back
