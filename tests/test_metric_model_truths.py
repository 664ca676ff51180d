"""Evaluation metrics on the tiny model against the same numbers computed by hand from direct forward
passes: retain KL, output perplexity (with and without the chat template), the quick Compare metrics,
greedy generation for the generation metrics, and those metrics' rows; plus the word diff."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

import engine.evaluation.metrics as M
from engine.data.records import PromptRecord
from engine.eco.pipeline import ECO, ECOConfig
from engine.evaluation.metrics import EvalContext
from engine.lm.models import LoadedModel, format_chat

from tests.test_metric_truths import NEVER, prompt, star_wars  # noqa: F401 (fixture)


# ---------------------------------------------------------------------------- the tiny model by hand

@pytest.fixture(scope="module")
def bos_tokenizer(tiny_model_dir):
    """The tiny tokenizer with a BOS token added whenever special tokens are asked for."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    bos = tok.convert_tokens_to_ids("<|endoftext|>")
    tok._tokenizer.post_processor = TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A $B",
                                                      special_tokens=[("<|endoftext|>", bos)])
    assert tok("hi", add_special_tokens=True)["input_ids"][0] == bos
    assert bos not in tok("hi", add_special_tokens=False)["input_ids"]
    return tok


@pytest.fixture(scope="module")
def shifted_model(tiny_lm):
    """The tiny model with seeded noise added to its second layer: a different set of weights."""
    model = copy.deepcopy(tiny_lm.model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.model.layers[1].parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def last_logprobs(model, tokenizer, text):
    ids = tokenizer(format_chat(tokenizer, text), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)


def kl(p, q):
    return float((p.exp() * (p - q)).sum())


@pytest.fixture()
def kl_setup(tiny_lm, star_wars, bos_tokenizer, shifted_model):
    retain = [PromptRecord("t1", "Who founded Rome?", "Romulus.", "train"),
              PromptRecord("r1", "What is the capital of France?", "Paris.", "test"),
              PromptRecord("r2", "Name a prime number.", "Seven.", "test")]
    preset = dataclasses.replace(star_wars, retain_prompts=retain)
    base = LoadedModel(model=tiny_lm.model, tokenizer=bos_tokenizer, info=tiny_lm.info)
    variant = LoadedModel(model=shifted_model, tokenizer=bos_tokenizer, info=tiny_lm.info)
    want = {r.id: kl(last_logprobs(tiny_lm.model, bos_tokenizer, r.prompt),
                     last_logprobs(shifted_model, bos_tokenizer, r.prompt)) for r in retain}
    return preset, base, variant, want


def test_retain_kl_of_a_weight_variant_equals_the_kl_by_hand(kl_setup):
    """KL(base || variant) of the next-token distribution after the chat-formatted prompt (as the
    template renders it, no extra BOS), one row per retain prompt of the split."""
    preset, base, variant, want = kl_setup
    assert min(want.values()) > 1e-3
    ctx = EvalContext(lm=variant, preset=preset, split="test", eco=None, weights=True, base_lm=base)
    mv = M.retain_kl(ctx)
    assert mv.n == 2 and mv.rows == [{"id": "r1", "kl": pytest.approx(want["r1"], rel=1e-4)},
                                     {"id": "r2", "kl": pytest.approx(want["r2"], rel=1e-4)}]
    assert mv.value == pytest.approx((want["r1"] + want["r2"]) / 2, rel=1e-4)
    one = M.retain_kl(EvalContext(lm=variant, preset=preset, split="train", eco=None, weights=True, base_lm=base))
    assert one.n == 1 and one.value == pytest.approx(want["t1"], rel=1e-4)


def test_retain_kl_is_zero_when_neither_prompt_nor_weights_change(kl_setup):
    """No ECO and weights=False: the variant is the base model itself, KL exactly 0."""
    preset, base, variant, _ = kl_setup
    mv = M.retain_kl(EvalContext(lm=variant, preset=preset, split="test", eco=None, weights=False, base_lm=base))
    assert mv.value == 0.0 and mv.rows == [{"id": "r1", "kl": 0.0}, {"id": "r2", "kl": 0.0}]


def test_retain_kl_of_an_eco_variant_whose_gate_never_fires_is_zero(tiny_lm, kl_setup):
    preset, *_ = kl_setup
    mv = M.retain_kl(EvalContext(lm=tiny_lm, preset=preset, split="test", eco=NEVER))
    assert mv.n == 2 and all(abs(r["kl"]) < 1e-6 for r in mv.rows)


def test_unique_token_ratio_counts_only_the_texts_own_tokens(bos_tokenizer):
    ids = bos_tokenizer("the the the", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and len(set(ids)) == 3  # "t", "he", " the", " the"
    assert M.unique_token_ratio(bos_tokenizer, "the the the") == pytest.approx(3 / 4)


def mean_logprob(model, tokenizer, prefix, cont):
    """Mean log-prob of `cont`'s tokens after `prefix` (prefix with special tokens, as scoring does)."""
    p = tokenizer(prefix, add_special_tokens=True)["input_ids"]
    c = tokenizer(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
    return sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)) / len(c)


@pytest.fixture()
def scorer_spy(monkeypatch):
    """Records the batch size of every teacher-forced scoring call."""
    import engine.lm.scoring as scoring

    sizes, real = [], scoring.continuation_logprobs

    def spy(model, tokenizer, prefixes, conts, batch_size=32, *args, **kwargs):
        sizes.append(batch_size)
        return real(model, tokenizer, prefixes, conts, batch_size, *args, **kwargs)

    monkeypatch.setattr(scoring, "continuation_logprobs", spy)
    return sizes


def test_output_perplexity_by_hand_with_and_without_the_chat_template(tiny_lm, scorer_spy):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prompts = ["Who is Yoda?", "Name a planet.", "Who is Leia?"]
    outs = [" A small green Jedi master.", "  ", "A princess of Alderaan."]
    chat = M.output_perplexity(tiny_lm, prompts, outs, batch_size=2)
    assert chat[0] == pytest.approx(math.exp(-mean_logprob(model, tok, format_chat(tok, prompts[0]), outs[0])), rel=1e-4)
    assert chat[2] == pytest.approx(math.exp(-mean_logprob(model, tok, format_chat(tok, prompts[2]), outs[2])), rel=1e-4)
    assert math.isnan(chat[1])  # a blank answer has no perplexity
    raw = M.output_perplexity(tiny_lm, prompts, outs, batch_size=3, chat=False)
    assert raw[0] == pytest.approx(math.exp(-mean_logprob(model, tok, prompts[0], outs[0])), rel=1e-4)
    assert raw[2] == pytest.approx(math.exp(-mean_logprob(model, tok, prompts[2], outs[2])), rel=1e-4)
    assert raw[0] != pytest.approx(chat[0], rel=1e-3)
    assert scorer_spy == [2, 3]


def test_output_metrics_score_one_answer_at_a_time(tiny_lm, scorer_spy):
    """Per answer: perplexity (None for an empty answer), unique-token ratio (None when empty), and
    the forget keywords it names; answers are scored in batches of one."""
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    texts = ["Yoda is a Jedi master.", "", "the the the"]
    keywords = ["Yoda", "Jedi", "Sith"]
    for chat in (True, False):
        prefix = format_chat(tok, "Who is Yoda?") if chat else "Who is Yoda?"
        rows = M.output_metrics(tiny_lm, "Who is Yoda?", texts, chat, keywords)
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        assert rows == [
            {"perplexity": pytest.approx(math.exp(-mean_logprob(model, tok, prefix, texts[0])), rel=1e-4),
             "unique_token_ratio": pytest.approx(len(set(ids[0])) / len(ids[0])), "keywords": ["Yoda", "Jedi"]},
            {"perplexity": None, "unique_token_ratio": None, "keywords": []},
            {"perplexity": pytest.approx(math.exp(-mean_logprob(model, tok, prefix, texts[2])), rel=1e-4),
             "unique_token_ratio": pytest.approx(len(set(ids[2])) / len(ids[2])), "keywords": []},
        ]
    assert scorer_spy == [1, 1]


# ---------------------------------------------------------------------------- word diff

def test_token_diff_keeps_multi_word_pieces_whole():
    assert M.token_diff("a b c d", "a b x d") == [("a b", None), (" c", "removed"), (" x", "added"), (" d", None)]
    assert M.token_diff("a b c d e", "a d e") == [("a", None), (" b c", "removed"), (" d e", None)]
    assert M.token_diff("a e", "a b c e") == [("a", None), (" b c", "added"), (" e", None)]
    assert M.token_diff("one two", "one two three four") == [("one two", None), (" three four", "added")]


def test_token_diff_matches_frequent_words_in_long_texts():
    """A long answer repeating one word still lines up word by word with its reference."""
    ref, text = "one" + " the" * 250, "two" + " the" * 250
    assert M.token_diff(ref, text) == [("one", "removed"), ("two", "added"), (" the" * 250, None)]


# ---------------------------------------------------------------------------- greedy generation

def greedy_by_hand(model, tokenizer, embeds, n):
    """Greedy decoding by full forward passes from prompt embeddings (1, T, D): up to n new tokens,
    stopping at end-of-sequence; the decoded answer, stripped."""
    emb, eos, new = model.get_input_embeddings(), {tokenizer.eos_token_id, model.generation_config.eos_token_id}, []
    with torch.no_grad():
        for _ in range(n):
            x = torch.cat([embeds, emb(torch.tensor([new], dtype=torch.long))], 1) if new else embeds
            t = int(model(inputs_embeds=x).logits[0, -1].argmax())
            if t in eos:
                break
            new.append(t)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


GEN_PROMPTS = ["Who is Luke Skywalker?", "Tell me about Darth Vader.", "What is the Force?"]


def chat_embeds(lm, text):
    ids = lm.tokenizer(format_chat(lm.tokenizer, text), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return lm.model.get_input_embeddings()(torch.tensor([ids]))


def test_generate_batch_gives_the_greedy_chat_answer_of_every_prompt(tiny_lm, star_wars):
    want = [greedy_by_hand(tiny_lm.model, tiny_lm.tokenizer, chat_embeds(tiny_lm, p), 4) for p in GEN_PROMPTS]
    assert len(set(want)) > 1
    ctx = EvalContext(lm=tiny_lm, preset=star_wars, split="test", eco=None, batch_size=2)
    assert M.generate_batch(ctx, GEN_PROMPTS, max_new_tokens=4) == want
    never = EvalContext(lm=tiny_lm, preset=star_wars, split="test", eco=NEVER, batch_size=2)
    assert M.generate_batch(never, GEN_PROMPTS, max_new_tokens=4) == want


def test_generate_batch_under_eco_answers_the_corrupted_prompt(tiny_lm, star_wars):
    eco = ECOConfig(gate="always", selection="prompt", strength=100.0, dims=16, seed=2)
    ecoe = ECO(tiny_lm)
    want = [greedy_by_hand(tiny_lm.model, tiny_lm.tokenizer, ecoe.plan(p, eco).inputs_embeds, 4) for p in GEN_PROMPTS]
    clean = [greedy_by_hand(tiny_lm.model, tiny_lm.tokenizer, chat_embeds(tiny_lm, p), 4) for p in GEN_PROMPTS]
    assert want != clean
    ctx = EvalContext(lm=tiny_lm, preset=star_wars, split="test", eco=eco, batch_size=2)
    assert M.generate_batch(ctx, GEN_PROMPTS, max_new_tokens=4) == want


# ---------------------------------------------------------------------------- generation metrics

GEN_OUTPUTS = {"Question f1?": "the dog runs home", "Question f2?": "Skywalker was a Jedi", "Question f4?": "",
               "Question f3?": "Darth Vader returns", "Question r1?": "Kirk commands the ship",
               "Question r2?": "a train answer"}


@pytest.fixture()
def gen_preset(star_wars):
    return dataclasses.replace(
        star_wars, forget_keywords=["Skywalker", "Jedi", "Vader"],
        forget_prompts=[prompt("f1", "test", "The dogs were running home"), prompt("f2", "test", "Luke Skywalker is a Jedi"),
                        prompt("f4", "test", "Luke Skywalker is a Jedi"), prompt("f3", "train", "Vader")],
        retain_prompts=[prompt("r1", "test", "Captain Kirk commands the Enterprise"), prompt("r2", "train")])


@pytest.fixture()
def scripted_generations(monkeypatch):
    """generate_batch answering each prompt from GEN_OUTPUTS; the prompts of every call recorded."""
    calls = []

    def fake(ctx, prompts, max_new_tokens=M.GEN_TOKENS):
        calls.append(list(prompts))
        return [GEN_OUTPUTS[p] for p in prompts]

    monkeypatch.setattr(M, "generate_batch", fake)
    return calls


def test_rouge_l_recall_rows_use_stemmed_words(tiny_lm, gen_preset, scripted_generations):
    """Recall of the reference's longest common subsequence, words stemmed: 'dogs running' matches
    'dog runs' (4 of 5 words), 'Skywalker ... a Jedi' 3 of 5, an empty answer 0."""
    ctx = EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None)
    mv = M.forget_rouge_l_recall(ctx)
    assert mv.n == 3 and mv.rows == [
        {"id": "f1", "rouge_l_recall": pytest.approx(0.8), "output": "the dog runs home"},
        {"id": "f2", "rouge_l_recall": pytest.approx(0.6), "output": "Skywalker was a Jedi"},
        {"id": "f4", "rouge_l_recall": 0.0, "output": ""}]
    assert mv.value == pytest.approx(1.4 / 3)
    retain = M.retain_rouge_l_recall(ctx)
    assert (retain.value, retain.n) == (pytest.approx(0.6), 1)
    assert retain.rows == [{"id": "r1", "rouge_l_recall": pytest.approx(0.6), "output": "Kirk commands the ship"}]
    assert scripted_generations == [["Question f1?", "Question f2?", "Question f4?"], ["Question r1?"]]


def test_keyword_leak_rate_is_the_share_of_answers_naming_a_forget_keyword(tiny_lm, gen_preset, scripted_generations):
    mv = M.keyword_leak_rate(EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None))
    assert (mv.value, mv.n) == (pytest.approx(1 / 3), 3)
    assert mv.rows == [{"id": "f1", "keywords": [], "output": GEN_OUTPUTS["Question f1?"]},
                       {"id": "f2", "keywords": ["Skywalker", "Jedi"], "output": GEN_OUTPUTS["Question f2?"]},
                       {"id": "f4", "keywords": [], "output": GEN_OUTPUTS["Question f4?"]}]
    one = M.keyword_leak_rate(EvalContext(lm=tiny_lm, preset=gen_preset, split="train", eco=None))
    assert (one.value, one.n, one.rows) == (1.0, 1, [{"id": "f3", "keywords": ["Vader"],
                                                      "output": GEN_OUTPUTS["Question f3?"]}])


def test_forget_unique_token_ratio_averages_over_non_empty_answers(tiny_lm, gen_preset, scripted_generations):
    tok = tiny_lm.tokenizer

    def ratio(text):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return len(set(ids)) / len(ids)

    mv = M.forget_unique_token_ratio(EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None))
    r1, r2 = ratio("the dog runs home"), ratio("Skywalker was a Jedi")
    assert mv.n == 2 and mv.value == pytest.approx((r1 + r2) / 2)
    assert [r["id"] for r in mv.rows] == ["f1", "f2", "f4"]
    assert mv.rows[:2] == [{"id": "f1", "unique_token_ratio": pytest.approx(r1)},
                           {"id": "f2", "unique_token_ratio": pytest.approx(r2)}]
    assert math.isnan(mv.rows[2]["unique_token_ratio"])
    one = M.forget_unique_token_ratio(EvalContext(lm=tiny_lm, preset=gen_preset, split="train", eco=None))
    assert one.n == 1 and one.value == pytest.approx(ratio("Darth Vader returns"))


def test_forget_output_perplexity_is_the_geometric_mean_under_the_base_model(tiny_lm, shifted_model, gen_preset,
                                                                             scripted_generations, scorer_spy):
    base = tiny_lm
    variant = LoadedModel(model=shifted_model, tokenizer=tiny_lm.tokenizer, info=tiny_lm.info)
    tok = base.tokenizer
    ppl = [math.exp(-mean_logprob(base.model, tok, format_chat(tok, f"Question {i}?"), GEN_OUTPUTS[f"Question {i}?"]))
           for i in ("f1", "f2")]
    ctx = EvalContext(lm=variant, preset=gen_preset, split="test", eco=None, batch_size=3, weights=True, base_lm=base)
    mv = M.forget_output_perplexity(ctx)
    assert mv.n == 2 and mv.value == pytest.approx(math.sqrt(ppl[0] * ppl[1]), rel=1e-4)
    assert mv.rows[:2] == [{"id": "f1", "perplexity": pytest.approx(ppl[0], rel=1e-4)},
                           {"id": "f2", "perplexity": pytest.approx(ppl[1], rel=1e-4)}]
    assert list(mv.rows[2]) == ["id", "perplexity"] and mv.rows[2]["id"] == "f4" and math.isnan(mv.rows[2]["perplexity"])
    assert scorer_spy == [3]


def test_forget_output_perplexity_of_only_empty_answers_is_nan(tiny_lm, gen_preset, monkeypatch):
    monkeypatch.setattr(M, "generate_batch", lambda ctx, prompts, max_new_tokens=M.GEN_TOKENS: [""] * len(prompts))
    mv = M.forget_output_perplexity(EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None))
    assert math.isnan(mv.value) and mv.n == 0 and len(mv.rows) == 3
