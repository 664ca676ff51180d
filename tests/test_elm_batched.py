"""ELM's erase loss runs the base model once on a right-padded batch of the plain, expert and
novice texts; it must equal the loss from three separate forward passes."""
from __future__ import annotations

import contextlib
import random

import torch
import torch.nn.functional as F

from engine.data.presets import load_preset
from engine.methods.base import padded
from engine.methods.elm import ELM, ELMConfig, erase_target, soft_cross_entropy


class Stub:
    """What ELM.erase_loss reads from its Trainer (no adapter: the student is the base model)."""

    def __init__(self, lm, **settings):
        self.lm, self.model, self.tokenizer = lm, lm.model, lm.tokenizer
        self.config = ELMConfig(**settings).validate()
        self.rng = random.Random(0)

    @contextlib.contextmanager
    def base(self):
        with torch.no_grad():
            yield self.model

    def encode(self, text, add_special_tokens=True):
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"][: self.config.max_length]

    def logits(self, ids, attention_mask=None):
        return self.model(input_ids=ids, attention_mask=attention_mask).logits.float()


def erase_loss_one_row_at_a_time(t: Stub, elm: ELM, passage: str) -> torch.Tensor:
    c = t.config
    text = t.encode(passage, add_special_tokens=False)
    n = len(text)
    plain = t.encode("", add_special_tokens=True) + text
    expert = t.encode(elm.persona(t, elm.expert), add_special_tokens=True) + text
    novice = t.encode(elm.persona(t, elm.novice), add_special_tokens=True) + text
    with torch.no_grad():
        rows = [F.log_softmax(t.model(input_ids=torch.tensor([ids])).logits[0, -n:].float() / c.temperature, -1)
                for ids in (plain, expert, novice)]
    target = erase_target(rows[0], rows[1], rows[2], c.eta, c.topk)
    return soft_cross_entropy(t.logits(torch.tensor([plain]))[0, -n:], target)


def test_padded_rows_give_each_rows_own_logits(tiny_lm):
    rows = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]
    ids, mask = padded(rows, None)
    assert ids.tolist() == [[5, 6, 7, 0, 0], [8, 9, 10, 11, 12], [13, 0, 0, 0, 0]]
    assert mask.sum(1).tolist() == [3, 5, 1]
    with torch.no_grad():
        batch = tiny_lm.model(input_ids=ids, attention_mask=mask).logits
        for k, r in enumerate(rows):
            alone = tiny_lm.model(input_ids=torch.tensor([r])).logits[0]
            torch.testing.assert_close(batch[k, :len(r)], alone, rtol=1e-4, atol=1e-5)


def test_the_batched_erase_loss_equals_three_separate_passes(tiny_lm):
    preset = load_preset("harry_potter")
    passages = [p.text for p in preset.forget_corpus[:3]]
    settings = {"max_length": 48, "consistency_scale": 0.0}
    batched, separate = Stub(tiny_lm, **settings), Stub(tiny_lm, **settings)
    elm_a, elm_b = ELM(preset), ELM(preset)
    elm_a.prepare(batched)
    elm_b.prepare(separate)
    for passage in passages:  # both stubs draw the same personas from the same seed
        a = elm_a.erase_loss(batched, passage)
        b = erase_loss_one_row_at_a_time(separate, elm_b, passage)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_prompt_pairs_add_the_prompts_as_chat_turns_and_only_when_asked(tiny_lm):
    from engine.methods.base import interleave
    from engine.methods.elm import chat_turns
    from engine.lm.models import format_chat

    preset = load_preset("harry_potter")
    off, on = ELM(preset), ELM(preset)
    off.prepare(Stub(tiny_lm, consistency_scale=0.0))
    on.prepare(Stub(tiny_lm, consistency_scale=0.0, prompt_pairs=True))
    first = preset.prompts("forget", "train")[0]
    turns = chat_turns(tiny_lm.tokenizer, preset.prompts("forget", "train"))
    assert turns[0] == format_chat(tiny_lm.tokenizer, first.prompt) + first.answer
    assert first.answer in turns[0] and first.prompt in turns[0]
    assert on.forget == interleave(off.forget, turns) and len(on.forget) == len(off.forget) + len(turns)
    assert on.passages == off.passages == off.forget  # the consistency pool still reads the corpus
    assert len(on.retain) > len(off.retain)
