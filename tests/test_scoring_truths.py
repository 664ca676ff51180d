"""Teacher-forced scoring against hand computations: batching and padding of prefix/continuation pairs,
mean continuation log-probs on a bigram table model whose log-probabilities are known in plain floats,
corrupted positions through the embed function, and rank_choices against both and against the tiny Llama."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from engine.lm.scoring import _pairs_to_batch, continuation_logprobs, rank_choices



# ---------------------------------------------------------------------------- _pairs_to_batch

ALPHABET = "abcdefgh"


class CharTokenizer:
    """One token per letter (a=2, b=3, ...); BOS=1 is added only when special tokens are asked for."""

    def __init__(self, pad_token_id=None):
        self.pad_token_id = pad_token_id

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [ALPHABET.index(ch) + 2 for ch in text]}


def test_pairs_to_batch_puts_bos_before_the_prefix_only_and_pads_right_with_the_pad_token():
    ids, attn, mask, spans = _pairs_to_batch(CharTokenizer(pad_token_id=7), ["ab", "c"], ["c", "de"])
    assert ids.dtype == torch.long and attn.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[1, 2, 3, 4], [1, 4, 5, 6]]
    ids, attn, mask, spans = _pairs_to_batch(CharTokenizer(pad_token_id=7), ["abc", "a"], ["d", "b"])
    assert ids.tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 7, 7]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert spans == [(4, 5), (2, 3)]
    assert not mask.any()


def test_pairs_to_batch_pads_with_zero_when_the_tokenizer_has_no_pad_token():
    ids, attn, _, _ = _pairs_to_batch(CharTokenizer(pad_token_id=None), ["abc", "a"], ["d", "b"])
    assert ids.tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_pairs_to_batch_marks_positions_inside_each_row_and_ignores_those_past_its_end():
    """Row 1 has 3 tokens: its position 3 (the first padding slot) stays unmarked; position 5 of
    row 0 (5 tokens, the batch width) is ignored rather than an error."""
    _, _, mask, _ = _pairs_to_batch(CharTokenizer(), ["abc", "a"], ["d", "b"], positions=[[0, 2, 5], [1, 3]])
    assert mask.tolist() == [[True, False, True, False, False], [False, True, False, False, False]]


def test_an_empty_continuation_is_refused():
    with pytest.raises(ValueError) as err:
        _pairs_to_batch(CharTokenizer(), ["ab"], [""])
    assert str(err.value) == "The continuation '' has no tokens."


# ---------------------------------------------------------------------------- a bigram table model

V = 10  # vocabulary: BOS=1, letters a..h = 2..9, 0 unused


class BigramLM(torch.nn.Module):
    """The logits after token t are row t of a fixed table (the embedding is the table itself):
    log p(next | history) = log_softmax(TABLE[last token])[next], computable by hand. Every call's
    batch is recorded."""

    def __init__(self):
        super().__init__()
        table = torch.tensor([[float((3 * i + 5 * j) % 7) for j in range(V)] for i in range(V)])
        self.emb = torch.nn.Embedding.from_pretrained(table)
        self.calls = []

    def get_input_embeddings(self):
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):
        self.calls.append({"ids": None if input_ids is None else input_ids.tolist(), "embeds": inputs_embeds is not None,
                           "attention_mask": None if attention_mask is None else attention_mask.tolist(),
                           "attention_dtype": None if attention_mask is None else attention_mask.dtype})
        return SimpleNamespace(logits=inputs_embeds if inputs_embeds is not None else self.emb(input_ids))


def table_logp(prev: int, nxt: int) -> float:
    """log softmax of row `prev` of the table at `nxt`, in plain floats; prev=None is a zeroed
    (corrupted) embedding: the uniform distribution."""
    if prev is None:
        return -math.log(V)
    row = [float((3 * prev + 5 * j) % 7) for j in range(V)]
    return row[nxt] - math.log(sum(math.exp(x) for x in row))


def by_hand(prefix: str, cont: str, corrupt=()) -> float:
    seq = [1] + [ALPHABET.index(ch) + 2 for ch in prefix + cont]
    start = 1 + len(prefix)
    lps = [table_logp(None if t - 1 in corrupt else seq[t - 1], seq[t]) for t in range(start, len(seq))]
    return sum(lps) / len(lps)


def zero_marked(model):
    def embed(ids, mask):
        return model.get_input_embeddings()(ids) * (~mask)[..., None]
    return embed


def test_continuation_logprobs_on_a_bigram_table_equal_the_hand_computed_means():
    model, tok = BigramLM(), CharTokenizer(pad_token_id=0)
    pairs = [("abc", "d"), ("a", "bcd"), ("hg", "fe")]
    got = continuation_logprobs(model, tok, [p for p, _ in pairs], [c for _, c in pairs], batch_size=2)
    assert got == pytest.approx([by_hand(p, c) for p, c in pairs], abs=1e-6)


def test_continuation_logprobs_passes_the_padding_mask_to_the_model():
    model = BigramLM()
    continuation_logprobs(model, CharTokenizer(pad_token_id=0), ["abc", "a"], ["d", "b"])
    assert model.calls == [{"ids": [[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]], "embeds": False,
                            "attention_mask": [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "attention_dtype": torch.long}]


def test_continuation_logprobs_scores_corrupted_positions_through_embed():
    """Position 0 (BOS) of pair 0 and position 2 of pair 1 are zeroed: the next token is then
    predicted uniformly, -log 10."""
    model, tok = BigramLM(), CharTokenizer(pad_token_id=0)
    got = continuation_logprobs(model, tok, ["", "ab"], ["ab", "cd"], embed=zero_marked(model),
                                positions=[[0], [2]])
    assert got == pytest.approx([by_hand("", "ab", {0}), by_hand("ab", "cd", {2})], abs=1e-6)
    assert got[0] != pytest.approx(by_hand("", "ab"), abs=1e-3)
    assert [c["embeds"] for c in model.calls] == [True]


def test_continuation_logprobs_default_batch_is_32_pairs():
    model = BigramLM()
    sizes = []

    def embed(ids, mask):
        sizes.append(ids.shape[0])
        return model.get_input_embeddings()(ids)

    continuation_logprobs(model, CharTokenizer(pad_token_id=0), ["a"] * 33, ["b"] * 33, embed=embed)
    assert sizes == [32, 1]


def test_continuation_logprobs_refuses_lists_of_different_lengths():
    with pytest.raises(ValueError) as err:
        continuation_logprobs(BigramLM(), CharTokenizer(), ["a", "b"], ["c"])
    assert str(err.value) == "prefixes and continuations must have the same length."


# ---------------------------------------------------------------------------- rank_choices

GROUPS = [("abc", ["d", "ef", "g"]), ("h", ["a"]), ("ba", ["cd", "e"]), ("", ["hh", "a", "b", "c"])]


def test_rank_choices_on_a_bigram_table_equal_the_hand_computed_means():
    model, tok = BigramLM(), CharTokenizer(pad_token_id=0)
    got = rank_choices(model, tok, GROUPS, batch_size=3)
    assert [len(g) for g in got] == [3, 1, 2, 4]
    for (prefix, choices), values in zip(GROUPS, got):
        assert values == pytest.approx([by_hand(prefix, c) for c in choices], abs=1e-6)


def test_rank_choices_shares_each_prefix_positions_across_its_choices():
    model, tok = BigramLM(), CharTokenizer(pad_token_id=0)
    positions = [[1, 3], [], [0], [0]]
    got = rank_choices(model, tok, GROUPS, batch_size=5, embed=zero_marked(model), positions=positions)
    for (prefix, choices), pos, values in zip(GROUPS, positions, got):
        assert values == pytest.approx([by_hand(prefix, c, set(pos)) for c in choices], abs=1e-6)
    assert all(c["embeds"] for c in model.calls)


def test_rank_choices_uses_embed_without_positions_and_batches_32_by_default():
    model = BigramLM()
    sizes = []

    def embed(ids, mask):
        sizes.append(ids.shape[0])
        assert not mask.any()
        return model.get_input_embeddings()(ids)

    groups = [("ab", ["c", "d", "e"])] * 11  # 33 pairs
    got = rank_choices(model, CharTokenizer(pad_token_id=0), groups, embed=embed)
    assert sizes == [32, 1]
    assert got == [pytest.approx([by_hand("ab", c) for c in "cde"], abs=1e-6)] * 11


def tiny_by_hand(model, tok, prefix, cont, corrupt=()):
    p = tok(prefix, add_special_tokens=True)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.no_grad():
        emb = model.get_input_embeddings()(ids).clone()
        for i in corrupt:
            emb[0, i] = 0.0
        logp = torch.log_softmax(model(inputs_embeds=emb).logits[0].float(), -1)
    return sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)) / len(c)


TINY_GROUPS = [("The sky is", [" blue", " green and grey", " red"]), ("Luke", [" Skywalker"]),
               ("A much longer prefix that needs padding", [" and more words", " now"])]


def test_rank_choices_on_the_tiny_model_match_pairwise_scoring_and_a_full_log_softmax(tiny_lm):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    got = rank_choices(model, tok, TINY_GROUPS, batch_size=4)
    assert [len(g) for g in got] == [3, 1, 2]
    for (prefix, choices), values in zip(TINY_GROUPS, got):
        assert values == pytest.approx([tiny_by_hand(model, tok, prefix, c) for c in choices], abs=1e-4)
        assert values == pytest.approx(continuation_logprobs(model, tok, [prefix] * len(choices), choices), abs=1e-5)


def test_rank_choices_on_the_tiny_model_with_corrupted_prefix_tokens(tiny_lm):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    positions = [[0, 2], [0], [1, 3]]
    got = rank_choices(model, tok, TINY_GROUPS, batch_size=4, embed=zero_marked(model), positions=positions)
    for (prefix, choices), pos, values in zip(TINY_GROUPS, positions, got):
        want = [tiny_by_hand(model, tok, prefix, c, pos) for c in choices]
        assert values == pytest.approx(want, abs=1e-4)
        assert values != pytest.approx([tiny_by_hand(model, tok, prefix, c) for c in choices], abs=1e-3)
