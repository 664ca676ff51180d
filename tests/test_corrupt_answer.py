"""Reference scoring (`ECOConfig.corrupt_answer=True`): the answer is part of the selectable text in
every selection mode, the selected positions index the prefix + answer row exactly as the scorer
builds it (prefix and answer tokenized separately), and without the flag nothing changes."""
from __future__ import annotations

import pytest
import torch

from engine.eco import pipeline as P
from engine.eco import selection as S
from engine.eco.pipeline import ECO, ECOConfig
from engine.eco.selection import TokenSelector
from engine.lm.scoring import continuation_logprobs

from tests.test_eco_pipeline_truths import fresh_tokenizer, templated

# "Harry's best friend is" + " Ron Weasley" in the tiny BPE vocabulary:
#   H arry 's | b est | f ri end | is || R on | Weasley      (prefix: 9 tokens, answer: 3)
# spaCy on the joined text finds "Harry" (0..5) and "Ron Weasley" (23..34), both PERSON.
RON = ("Harry's best friend is", " Ron Weasley")
# "The boy who lived is called" + " Harry Potter": spaCy finds no entity in the prefix alone, and
# "Harry Potter" (tokens 11 and 12 of the joined row) in the joined text.
BOY = ("The boy who lived is called", " Harry Potter")
# Tokenized jointly "Harry Potter" is H | arry | Potter (3 tokens); scored, the answer is tokenized on
# its own: H | arry || P | ot | ter (5 tokens).
SPLIT = ("Harry Pot", "ter")


@pytest.fixture(scope="module")
def tok(tiny_lm):
    return tiny_lm.tokenizer


def scored_row(tokenizer, prefix, cont):
    """The token ids continuation_logprobs scores for one pair."""
    return tokenizer(prefix)["input_ids"] + tokenizer(cont, add_special_tokens=False)["input_ids"]


def run(tiny_lm, pair, **settings):
    """(answer log-prob, corrupted positions) of one pair under ECO with the gate open."""
    calls = []
    cfg = ECOConfig(gate="always", **settings)
    eco = ECO(tiny_lm)
    real = P.continuation_logprobs

    def recording(model, tokenizer, prefixes, conts, batch_size, embed=None, positions=None):
        calls.append(positions)
        return real(model, tokenizer, prefixes, conts, batch_size, embed, positions)

    P.continuation_logprobs = recording
    try:
        lp = eco.pair_logprobs([pair[0]], [pair[1]], cfg)[0]
    finally:
        P.continuation_logprobs = real
    return lp, calls[0][0]


# ---------------------------------------------------------------------------- ner and token_model

def test_ner_with_corrupt_answer_selects_the_entity_inside_the_answer(tiny_lm):
    lp_ref, pos_ref = run(tiny_lm, RON, selection="ner", corrupt_answer=True)
    lp_own, pos_own = run(tiny_lm, RON, selection="ner")
    assert pos_own == [0, 1]  # "Harry" only
    assert pos_ref == [0, 1, 9, 10, 11]  # "Harry" and the answer's "Ron Weasley"
    assert lp_ref != pytest.approx(lp_own, abs=1e-4)


def test_ner_runs_over_prefix_and_answer_so_an_answer_only_entity_is_found(tiny_lm):
    """No entity in the prefix: without the flag (and no fallback) nothing is corrupted; with it the
    answer's "Harry Potter" is, and the answer's log-prob moves."""
    lp_ref, pos_ref = run(tiny_lm, BOY, selection="ner", fallback="none", corrupt_answer=True)
    lp_own, pos_own = run(tiny_lm, BOY, selection="ner", fallback="none")
    assert pos_own == [] and pos_ref == [11, 12]
    clean = continuation_logprobs(tiny_lm.model, tiny_lm.tokenizer, [BOY[0]], [BOY[1]])[0]
    assert lp_own == pytest.approx(clean, abs=1e-6)
    assert lp_ref != pytest.approx(clean, abs=1e-4)


def test_token_model_reads_prefix_and_answer_as_one_text(tiny_lm, tok, monkeypatch):
    import numpy as np

    class Fake:
        texts = []

        def __call__(self, text):
            self.texts.append(text)
            return [{"entity_group": "ANIMAL", "score": np.float32(0.9), "word": "owls",
                     "start": np.int64(14), "end": np.int64(18)}]

    fake = Fake()
    monkeypatch.setattr(S, "load_token_model", lambda name: fake)
    prefix, cont = "Tell me about", " owls."
    _, pos = run(tiny_lm, (prefix, cont), selection="token_model", token_model="my/ner", corrupt_answer=True)
    assert fake.texts == ["Tell me about owls."]
    n = len(tok(prefix)["input_ids"])
    row = scored_row(tok, prefix, cont)
    assert pos and all(n <= i < len(row) for i in pos)  # "owls" lies in the answer only
    assert "".join(tok.decode([row[i]]) for i in pos) == " owls"


# ---------------------------------------------------------------------------- prompt

def test_prompt_mode_with_corrupt_answer_selects_every_prefix_and_answer_token(tiny_lm, tok):
    lp_ref, pos_ref = run(tiny_lm, RON, selection="prompt", corrupt_answer=True)
    lp_own, pos_own = run(tiny_lm, RON, selection="prompt")
    assert pos_own == list(range(9))
    assert pos_ref == list(range(len(scored_row(tok, *RON)))) == list(range(12))
    assert lp_ref != pytest.approx(lp_own, abs=1e-4)


def test_prompt_mode_marks_user_text_and_answer_but_not_the_chat_template(tok):
    sel = TokenSelector(mode="prompt").select(tok, "Hello there", suffix=" Hi there", suffix_selectable=True)
    assert sel.text == templated("Hello there") + " Hi there"
    n = len(tok(templated("Hello there"), add_special_tokens=False)["input_ids"])
    answer = list(range(n, len(sel.input_ids)))
    assert answer and sel.positions == [4, 5, 6, 7, 8] + answer  # the assistant header stays clean


def test_an_entity_split_between_prompt_and_answer_is_found_whole_under_a_template(tok):
    sel = TokenSelector(mode="ner").select(tok, "Who is Barack Obam", suffix="a?", suffix_selectable=True)
    assert [e["text"] for e in sel.entities] == ["Barack Obama"]
    assert "".join(sel.tokens[i] for i in sel.positions) == " Barack Obama"


# ---------------------------------------------------------------------------- positions index the scored row

@pytest.mark.parametrize("mode, expected", [("prompt", [0, 1, 2, 3, 4]), ("ner", [0, 1, 2, 3, 4]),
                                            ("all_but_last", [0, 1, 2, 3])])
def test_positions_index_the_row_as_scored_when_joint_tokenization_differs(tiny_lm, tok, mode, expected):
    assert tok(SPLIT[0] + SPLIT[1])["input_ids"] != scored_row(tok, *SPLIT)  # the case this checks
    assert len(scored_row(tok, *SPLIT)) == 5
    _, pos = run(tiny_lm, SPLIT, selection=mode, corrupt_answer=True)
    assert pos == expected


@pytest.mark.parametrize("bos", [False, True])
def test_the_selection_encodes_the_answer_on_its_own_like_the_scorer(tiny_model_dir, bos):
    t = fresh_tokenizer(tiny_model_dir, None, bos=bos)
    sel = TokenSelector(mode="prompt").select(t, SPLIT[0], chat=False, suffix=SPLIT[1], suffix_selectable=True)
    assert sel.input_ids == scored_row(t, *SPLIT)
    assert sel.positions == list(range(int(bos), len(sel.input_ids)))  # a BOS token has no text


# ---------------------------------------------------------------------------- without the flag

@pytest.mark.parametrize("mode, expected", [("ner", [0, 1]), ("prompt", list(range(9))),
                                            ("all_but_last", list(range(8)))])
def test_without_corrupt_answer_scoring_corrupts_the_prefix_selection_exactly(tiny_lm, mode, expected):
    """corrupt_answer=False: the positions are the prefix's own selection, and the score is the
    scorer's with exactly those positions corrupted by the seeded noise."""
    lp, pos = run(tiny_lm, RON, selection=mode)
    assert pos == expected
    assert TokenSelector(mode=mode).select(tiny_lm.tokenizer, RON[0], chat=False).positions == expected
    eco, cfg = ECO(tiny_lm), ECOConfig(gate="always", selection=mode)
    gen = torch.Generator().manual_seed(0)
    emb = tiny_lm.model.get_input_embeddings()
    by_hand = continuation_logprobs(tiny_lm.model, tiny_lm.tokenizer, [RON[0]], [RON[1]], 32,
                                    lambda ids, mask: eco.corrupt(emb(ids), mask, cfg, gen), [expected])[0]
    assert lp == by_hand
