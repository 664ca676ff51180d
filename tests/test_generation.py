"""Generation on the tiny model: greedy, sampling with a seed, embeddings input, stops, streaming."""
import threading

from engine.lm.generation import GenerationConfig, GenerationStats, encode_prompt, generate, stream


def run(lm, prompt="Who is Merlin?", **cfg):
    inputs = encode_prompt(lm.tokenizer, prompt)
    return generate(lm.model, lm.tokenizer, GenerationConfig(**cfg), **inputs)


def test_greedy_generation_is_deterministic_and_respects_max_new_tokens(tiny_lm):
    a = run(tiny_lm, max_new_tokens=12)
    b = run(tiny_lm, max_new_tokens=12)
    assert a.text == b.text and a.text
    assert 1 <= a.new_tokens <= 12


def test_sampling_is_reproducible_with_a_seed_and_varies_across_seeds(tiny_lm):
    same = [run(tiny_lm, max_new_tokens=16, temperature=1.0, seed=7).text for _ in range(2)]
    assert same[0] == same[1]
    others = {run(tiny_lm, max_new_tokens=16, temperature=1.0, seed=s).text for s in range(1, 5)}
    assert len(others | {same[0]}) > 1


def test_inputs_embeds_give_the_same_greedy_answer_as_token_ids(tiny_lm):
    inputs = encode_prompt(tiny_lm.tokenizer, "Tell me about owls.")
    cfg = GenerationConfig(max_new_tokens=10)
    by_ids = generate(tiny_lm.model, tiny_lm.tokenizer, cfg, **inputs)
    embeds = tiny_lm.model.get_input_embeddings()(inputs["input_ids"])
    by_embeds = generate(tiny_lm.model, tiny_lm.tokenizer, cfg, inputs_embeds=embeds,
                         attention_mask=inputs["attention_mask"])
    assert by_embeds.text == by_ids.text
    assert by_embeds.new_tokens == by_ids.new_tokens


def test_stream_yields_growing_prefixes_of_the_final_text(tiny_lm):
    inputs = encode_prompt(tiny_lm.tokenizer, "Describe a kiln.")
    stats = GenerationStats()
    pieces = list(stream(tiny_lm.model, tiny_lm.tokenizer, GenerationConfig(max_new_tokens=16), stats=stats,
                         **inputs))
    assert len(pieces) >= 2
    assert all(b.startswith(a) for a, b in zip(pieces, pieces[1:]))
    assert pieces[-1] == stats.text and stats.seconds > 0


def test_stop_string_cuts_the_answer(tiny_lm):
    full = run(tiny_lm, max_new_tokens=24).text
    k = next(i for i in range(1, len(full) - 2) if full[i:i + 2].strip() and full.find(full[i:i + 2]) == i)
    cut = run(tiny_lm, max_new_tokens=24, stop=(full[k:k + 2],))
    assert cut.text == full[:k]
    assert cut.stopped


def test_stop_event_ends_generation_early(tiny_lm):
    inputs = encode_prompt(tiny_lm.tokenizer, "Explain pottery.")
    event, stats = threading.Event(), GenerationStats()
    for i, _ in enumerate(stream(tiny_lm.model, tiny_lm.tokenizer, GenerationConfig(max_new_tokens=200),
                                 stop_event=event, stats=stats, **inputs)):
        if i == 2:
            event.set()
    assert stats.stopped and stats.new_tokens < 50


def test_abandoning_the_stream_stops_the_worker(tiny_lm):
    inputs = encode_prompt(tiny_lm.tokenizer, "Explain pottery.")
    event = threading.Event()
    gen = stream(tiny_lm.model, tiny_lm.tokenizer, GenerationConfig(max_new_tokens=300), stop_event=event, **inputs)
    next(gen)
    gen.close()
    assert event.is_set()
    assert not any(t.name == "lethe-generate" and t.is_alive() for t in threading.enumerate())


def test_bad_settings_are_refused_in_one_sentence():
    import pytest

    for cfg, word in [(dict(max_new_tokens=0), "max_new_tokens"), (dict(temperature=float("nan")), "temperature"),
                      (dict(top_p=0), "top_p")]:
        with pytest.raises(ValueError, match=word):
            GenerationConfig(**cfg).validate()


def test_min_new_tokens_refuses_the_end_of_sequence_until_reached(tiny_lm):
    from engine.lm.generation import decode

    inputs = encode_prompt(tiny_lm.tokenizer, "Hi")
    eos = tiny_lm.tokenizer.eos_token_id
    free = generate(tiny_lm.model, tiny_lm.tokenizer, GenerationConfig(max_new_tokens=40), **inputs)
    held = generate(tiny_lm.model, tiny_lm.tokenizer, GenerationConfig(max_new_tokens=40, min_new_tokens=40), **inputs)
    assert held.new_tokens == 40 and free.new_tokens <= 40
    stats = [GenerationStats(), GenerationStats()]  # two rows in one batch: each keeps its own count
    for _ in decode(tiny_lm.model, tiny_lm.tokenizer, GenerationConfig(max_new_tokens=12, min_new_tokens=12),
                    [inputs, encode_prompt(tiny_lm.tokenizer, "A much longer prompt than the other one")],
                    stats=stats):
        pass
    assert [s.new_tokens for s in stats] == [12, 12] and eos is not None
