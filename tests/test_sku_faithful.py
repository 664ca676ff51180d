"""SKU's losses see the token sequences the model sees: the question and answer tokenised as one
text, the answer found by character offsets, and the faithful random-disassociation start at
the reference's index. Run on the tiny random Llama's tokenizer, as it is (no BOS) and with a
BOS token added in front of every text, since the reference's tokenizers (OPT, Llama-2) add one."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from engine.data.presets import load_preset
from engine.methods import sku as sku_module
from engine.methods.sku import SKU, TEMPLATE, SKUConfig, encode_pair


class Probe:
    """What SKU reads from its Trainer; `logits` records every batch the model is run on."""

    def __init__(self, lm, tokenizer, **settings):
        self.lm, self.tokenizer = lm, tokenizer
        self.config = SKUConfig(**settings).validate()
        self.rng = random.Random(0)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def logits(self, ids, attention_mask=None):
        self.seen.append((ids.clone(), attention_mask.clone()))
        with torch.no_grad():
            return self.lm.model(input_ids=ids, attention_mask=attention_mask).logits.float()


def with_bos(tokenizer):
    """A copy of `tokenizer` that puts its BOS token in front of every text."""
    from tokenizers.processors import TemplateProcessing

    out = copy.deepcopy(tokenizer)
    bos = out.bos_token
    out.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, out.bos_token_id)])
    assert out("Harry")["input_ids"][0] == out.bos_token_id
    return out


@pytest.fixture(params=["no_bos", "bos"])
def tokenizer(request, tiny_lm):
    return tiny_lm.tokenizer if request.param == "no_bos" else with_bos(tiny_lm.tokenizer)


def nll_by_hand(lm, ids: list[int], start: int, end: int) -> float:
    """Mean NLL of tokens [start, end) of one unpadded row, each predicted by the row before it."""
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits.float()[0], -1)
    return -torch.stack([logp[j - 1, ids[j]] for j in range(start, end)]).mean().item()


def answer_span(tokenizer, question: str, answer: str) -> tuple[list[int], int, int]:
    """The joint tokenisation of prefix + answer and its answer tokens [start, end): every token
    whose characters reach past the prefix (one that straddles the boundary belongs to the answer)."""
    prefix = TEMPLATE.format(question=question)
    enc = tokenizer(prefix + answer, return_offsets_mapping=True)
    inside = [i for i, (_, e) in enumerate(enc["offset_mapping"]) if e > len(prefix)]
    return enc["input_ids"], inside[0], inside[-1] + 1


def rows(probe: Probe) -> list[list[int]]:
    ids, mask = probe.seen[-1]
    return [r[m.bool()].tolist() for r, m in zip(ids, mask)]


def test_sku_scores_exactly_the_answer_tokens_of_the_jointly_tokenised_text(tiny_lm, tokenizer, monkeypatch):
    spans, answer_nll = [], sku_module.answer_nll

    def recording_nll(logits, ids, starts, lengths):
        spans.extend(zip(starts, lengths))
        return answer_nll(logits, ids, starts, lengths)

    monkeypatch.setattr("engine.methods.sku.answer_nll", recording_nll)
    t = Probe(tiny_lm, tokenizer, batch_size=8, bad_weight=1.0, random_weight=0.0, normal_weight=0.0)
    sku = SKU(load_preset("harry_potter"))
    sku.prepare(t)
    [(name, loss)] = list(sku.terms(t, 0))
    assert name == "guided_distortion"
    want, split_differs = [], 0
    for row, span, (q, a) in zip(rows(t), spans, sku.forget[:8]):
        ids, start, end = answer_span(tokenizer, q, a)
        assert row == ids  # the model sees the joint tokenisation, nothing else
        assert span == (start, end)  # and the loss scores exactly the answer's tokens
        assert end == len(ids)  # the answer ends the row
        assert tokenizer.decode(ids[start:end]).strip() == a  # and the span is the whole answer
        separate = (tokenizer(TEMPLATE.format(question=q))["input_ids"]
                    + tokenizer(a, add_special_tokens=False)["input_ids"])
        split_differs += separate != ids
        want.append(nll_by_hand(tiny_lm, ids, start, end))
    assert split_differs > 0  # on this data tokenising the two parts apart really differs
    assert loss.item() == pytest.approx(sum(want) / len(want), abs=1e-4)


@pytest.mark.parametrize("mode", ["faithful", "fixed"])
def test_sku_faithful_random_disassociation_scores_from_token_3_like_the_reference(tiny_lm, tokenizer, mode):
    """The reference's start is 2 (the length of the tokenizer's output dict, two keys), and its
    weights apply to the shifted losses, so its first scored token is index 3; fixed: the answer."""
    t = Probe(tiny_lm, tokenizer, batch_size=2, k_random=2, bad_weight=0.0, random_weight=1.0,
              normal_weight=0.0, random_mode=mode)
    sku = SKU(load_preset("harry_potter"))
    sku.prepare(t)
    [(name, loss)] = list(sku.terms(t, 0))
    assert name == "random_disassociation"
    want = []
    for row in rows(t):
        if mode == "faithful":  # from index 3 to the row's end, question tokens included
            want.append(nll_by_hand(tiny_lm, row, 3, len(row)))
            continue
        text = tokenizer.decode(row, skip_special_tokens=True)
        q, a = text[len("### Question: "):].split("\n ### Answer: ", 1)
        ids, start, end = answer_span(tokenizer, q, a)
        assert row == ids
        want.append(nll_by_hand(tiny_lm, ids, start, end))
    assert len(want) == 4
    assert loss.item() == pytest.approx(sum(want) / len(want), abs=1e-4)


class NoOffsets:
    """`tokenizer` as a slow tokenizer looks to SKU: ids, special ids, no character offsets."""

    is_fast = False

    def __init__(self, tokenizer):
        self.tokenizer, self.all_special_ids = tokenizer, tokenizer.all_special_ids

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]}


def test_a_tokenizer_without_offsets_finds_the_same_answer_span(tokenizer):
    pairs = [(r.prompt, r.answer) for r in load_preset("harry_potter").prompts("forget", "train") if r.answer]
    for q, a in pairs[:20]:
        want = answer_span(tokenizer, q, a)
        assert encode_pair(NoOffsets(tokenizer), q, a, 128) == encode_pair(tokenizer, q, a, 128) == want


def test_an_answer_cut_by_max_length_keeps_the_rows_last_token(tokenizer):
    q, a = "Who is Harry Potter?", "Harry Potter is a wizard."
    ids, start, _ = answer_span(tokenizer, q, a)
    assert encode_pair(tokenizer, q, a, start + 2) == (ids[:start + 2], start, start + 2)
    assert encode_pair(tokenizer, q, a, start - 1) == (ids[:start - 1], start - 2, start - 1)


def test_chat_pairs_score_exactly_the_answer_after_the_chat_templates_rendering(tiny_lm):
    from engine.lm.models import format_chat

    tok = tiny_lm.tokenizer
    question, answer = "Who is Albus Dumbledore?", "Albus Dumbledore is the headmaster of Hogwarts."
    ids, start, end = encode_pair(tok, question, answer, 256, chat=True)
    prefix = format_chat(tok, question)
    assert prefix != TEMPLATE.format(question=question) and question in prefix
    assert ids == tok(prefix + answer, add_special_tokens=True)["input_ids"]
    assert tok.decode(ids[start:end]).strip() == answer
    assert question not in tok.decode(ids[start:end])
