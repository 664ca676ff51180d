"""SKU, Selective Knowledge negation Unlearning (arXiv 2402.10058): the stage-1 losses.

Stage 1 deliberately learns the unwanted knowledge into a LoRA adapter, per micro-iteration
(a batch of forget question/answer pairs and a batch of normal ones), in the reference's
"### Question: ...\\n ### Answer: ..." format, each pair tokenised as one text (`encode_pair`):
  guided_distortion        NLL of the forget answers given their questions (answer tokens only,
                           each example averaged over its answer tokens), x bad_weight;
  random_disassociation    NLL of each forget question paired with k answers drawn from the
                           OTHER forget answers, x random_weight; "faithful" scores from token 3
                           to the end, question included, as the reference's start index does
                           (FAITHFUL_RD_START), "fixed" scores the answer only;
  preservation_divergence  -KL(p_base || p_adapter) on normal pairs (padding masked), pushing
                           the harmful adapter AWAY from the base model on normal text so its
                           negation leaves normal behaviour alone, x normal_weight. The term is
                           unbounded below, so it is floored at -pd_floor (0 = no floor).
Stage 2 (negation) is no training at all: variants.py applies this adapter with scale -lambda
(`negation`), which equals theta_0 - lambda (theta_ft - theta_0) on the adapted weights.
Deviations, each a setting, with the faithful value in brackets: k = 2 [5] and 80 steps [1000]
for CPU time; lr 1e-3 [2e-4]; random_mode "fixed" ["faithful"]; pd_mode "preserve" (+KL, the sign
of SKU's code ancestor) ["diverge", -KL] with normal_weight 2.5 [1]; LoRA dropout 0.05 [0: the
reference sets none, so peft's default applies], kept because the shipped adapters were trained
with it (it acts only while training). The LoRA shape, r 16, alpha 8 on q_proj and v_proj of
every layer, is the reference's Llama-2-13B one (its 7B uses r 32, alpha 16; OPT is fully
fine-tuned). On the 135M default the faithful settings made the negated model lose retain facts
about as fast as forget facts (see the README's ELM/SKU figures); the PD floor and gradient
clipping are additions. One more difference is not a setting: the reference finds the answer
by tokenising the template alone, whose trailing space is a token of its own, so where that
space joins the answer's first word it skips that word's first token; Lethe scores every
answer token. Data come from the preset's prompts and answers (train split); `corpus_pairs`
adds every sentence of the corpora, cut into a question (its first 60 % of words) and an answer
(the rest): forget-corpus pairs are spread evenly among the forget prompts, retain-corpus pairs
join the normal ones; `chat` reads every pair as the chat turn the model answers in the
Playground, where the reference's "### Question:" template is plain text to an instruct model.
Both are Lethe's, not the reference's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..lm.models import format_chat
from .base import Method, TrainConfig, Trainer, interleave, padded

TEMPLATE = "### Question: {question}\n ### Answer: "
# The reference's random-disassociation start: len() of the tokenizer's output dict (2, its
# keys input_ids and attention_mask), used as a weight index over the shifted token losses, so
# the first token scored is index 3 of the sequence (after BOS and two template tokens with the
# reference's BOS-adding tokenizers; the first three template tokens without a BOS).
FAITHFUL_RD_START = 3


@dataclass
class SKUConfig(TrainConfig):
    steps: int = field(default=80, metadata={"help": "Optimiser steps.", "min": 1, "max": 5000})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (reference example: 2e-4).", "min": 1e-7, "max": 1e-1})
    batch_size: int = field(default=2, metadata={"help": "Forget and normal pairs per step.", "min": 1, "max": 64})
    linear_decay: bool = field(default=True, metadata={"help": "Decay the learning rate linearly to 0."})
    rank: int = field(default=16, metadata={"help": "LoRA rank r.", "min": 1, "max": 512})
    alpha: float = field(default=8.0, metadata={"help": "LoRA alpha (scale = alpha / r).", "min": 0.1, "max": 1024.0})
    targets: tuple[str, ...] = field(default=("q_proj", "v_proj"), metadata={"help": "Module names that get a LoRA."})
    bad_weight: float = field(default=2.5, metadata={"help": "Weight of guided distortion.", "min": 0.0, "max": 100.0})
    random_weight: float = field(default=2.5, metadata={"help": "Weight of random disassociation.", "min": 0.0, "max": 100.0})
    normal_weight: float = field(default=2.5, metadata={"help": "Weight of preservation divergence.", "min": 0.0, "max": 100.0})
    k_random: int = field(default=2, metadata={"help": "Random forget answers per question (reference: 5).", "min": 1, "max": 32})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (reference: 0, peft's default).", "min": 0.0, "max": 0.9})
    random_mode: str = field(default="fixed", metadata={"help": "faithful: score tokens 3.. to the end, question included, as the reference; fixed: the answer only."})
    pd_mode: str = field(default="preserve", metadata={"help": "diverge: -KL as the reference; preserve: +KL (keep normal text)."})
    pd_floor: float = field(default=5.0, metadata={"help": "Floor of -KL in diverge mode (0 = none).", "min": 0.0, "max": 1e6})
    negation: float = field(default=1.0, metadata={"help": "lambda: the adapter is applied with scale -lambda.", "min": 0.0, "max": 100.0})
    chat: bool = field(default=False, metadata={"help": "Read each pair as the model's chat turn (its chat template) instead of the reference's '### Question:' template (not in the reference)."})
    corpus_pairs: bool = field(default=False, metadata={"help": "Also learn from the corpora: every sentence of a forget passage becomes a (its first words -> the rest) pair, the retain corpus likewise for preservation (not in the reference)."})

    def validate(self) -> "SKUConfig":
        super().validate()
        if self.random_mode not in ("faithful", "fixed"):
            raise ValueError(f"Unknown random_mode {self.random_mode!r}; known: faithful, fixed.")
        if self.pd_mode not in ("diverge", "preserve"):
            raise ValueError(f"Unknown pd_mode {self.pd_mode!r}; known: diverge, preserve.")
        return self


def answer_nll(logits: torch.Tensor, ids: torch.Tensor, starts: list[int], lengths: list[int]) -> torch.Tensor:
    """Mean over examples of the mean NLL of tokens [start, end) of each row (right padded);
    `lengths` holds each row's end (exclusive).

    logits (B, T, V) from ids (B, T); token j is predicted by row j-1."""
    logp = F.log_softmax(logits.float(), dim=-1)
    losses = []
    for b, (s, n) in enumerate(zip(starts, lengths)):
        s = max(s, 1)
        target = ids[b, s:n].to(logp.device)
        losses.append(-logp[b, s - 1:n - 1].gather(-1, target[:, None]).mean())
    return torch.stack(losses).mean()


def encode_pair(tokenizer, question: str, answer: str, max_length: int,
                chat: bool = False) -> tuple[list[int], int, int]:
    """Ids of the question's template and the answer tokenised as ONE text (as the model reads
    it), cut to `max_length`, and the answer's tokens [start, end) in them.

    Tokenising the two parts apart would give a sequence the model never sees: the template ends
    in a space, which alone is one token, while in the joined text it starts the answer's first
    token (' Al'). The answer is found by character offsets instead: a token belongs to the
    answer when its characters reach past the template, so a token that straddles the boundary
    is an answer token. Tokens without characters (a BOS in front, an EOS behind) never are.
    A tokenizer without offsets (a slow one): the answer starts at the first token where the
    joint ids and the template's own ids part. An answer cut off by `max_length` keeps at least
    the row's last token. `chat`: the model's chat template (its rendering of the question as a
    user turn, ready to answer) instead of the reference's template."""
    prefix = format_chat(tokenizer, question) if chat else TEMPLATE.format(question=question)
    text = prefix + answer
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids = enc["input_ids"]
        inside = [i for i, (lo, hi) in enumerate(enc["offset_mapping"]) if hi > max(lo, len(prefix))]
    else:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        head = tokenizer(prefix, add_special_tokens=True)["input_ids"]
        shared = next((i for i, (x, y) in enumerate(zip(ids, head)) if x != y), min(len(ids), len(head)))
        special = set(tokenizer.all_special_ids)
        inside = [i for i in range(shared, len(ids)) if ids[i] not in special]
    start, end = (inside[0], inside[-1] + 1) if inside else (len(ids), len(ids))
    ids = ids[:max_length]
    start = min(start, len(ids) - 1)
    return ids, start, max(min(end, len(ids)), start + 1)


def sentence_pairs(passages: list[str], keep: float = 0.6) -> list[tuple[str, str]]:
    """Cloze-like pairs from passages: each sentence of 6 words or more is cut after `keep` of its
    words; the question is the head, the answer the tail (with its leading space). In passage
    order, deterministic."""
    pairs = []
    for text in passages:
        for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
            words = sentence.split()
            if len(words) < 6:
                continue
            cut = min(max(int(len(words) * keep), 3), len(words) - 2)
            pairs.append((" ".join(words[:cut]), " " + " ".join(words[cut:])))
    return pairs


def masked_kl(base_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over unmasked positions of KL(p_base || p) (B, T, V) -> scalar."""
    lp, lq = F.log_softmax(base_logits.float(), -1), F.log_softmax(logits.float(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)  # (B, T)
    m = mask.to(kl.device, kl.dtype)
    return (kl * m).sum() / m.sum().clamp_min(1)


class SKU(Method):
    name = "sku"

    def __init__(self, preset):
        self.preset = preset

    def prepare(self, t: Trainer) -> None:
        self.forget = [(r.prompt, r.answer) for r in self.preset.prompts("forget", "train") if r.answer]
        self.normal = [(r.prompt, r.answer) for r in self.preset.prompts("retain", "train") if r.answer]
        if t.config.corpus_pairs:
            self.forget = interleave(self.forget, sentence_pairs([p.text for p in self.preset.forget_corpus]))
            self.normal = self.normal + sentence_pairs([p.text for p in self.preset.retain_corpus])
        if len(self.forget) < 2 or not self.normal:
            raise ValueError(f"The preset {self.preset.name!r} needs forget and retain prompts with answers for SKU.")
        self.normal_order = list(range(len(self.normal)))
        t.rng.shuffle(self.normal_order)

    def batch(self, t: Trainer, pairs: list[tuple[str, str]], faithful_start: bool = False):
        """Right-padded ids (B, T), attention mask, and per row the scored tokens [start, end):
        the answer's tokens, or with `faithful_start` index FAITHFUL_RD_START to the row's end."""
        rows, starts, ends = [], [], []
        for q, a in pairs:
            row, start, end = encode_pair(t.tokenizer, q, a, t.config.max_length, t.config.chat)
            if faithful_start:
                start, end = min(FAITHFUL_RD_START, len(row) - 1), len(row)
            rows.append(row)
            starts.append(start)
            ends.append(end)
        ids, mask = padded(rows, t.tokenizer.pad_token_id)
        return ids, mask, starts, ends

    def terms(self, t: Trainer, i: int):
        c: SKUConfig = t.config
        b = c.batch_size
        forget = [self.forget[(i * b + j) % len(self.forget)] for j in range(b)]  # in order, as the reference
        normal = [self.normal[self.normal_order[(i * b + j) % len(self.normal)]] for j in range(b)]
        if c.bad_weight > 0:
            ids, mask, starts, lengths = self.batch(t, forget)
            yield "guided_distortion", c.bad_weight * answer_nll(t.logits(ids, mask), ids, starts, lengths)
        if c.random_weight > 0:
            answers = [a for _, a in self.forget]
            drawn = t.rng.sample(range(len(answers)), min(c.k_random + b, len(answers)))
            pairs = []
            for q, a in forget:
                others = [answers[k] for k in drawn if answers[k] != a][: c.k_random]
                pairs += [(q, other) for other in others]
            ids, mask, starts, lengths = self.batch(t, pairs, faithful_start=c.random_mode == "faithful")
            yield "random_disassociation", c.random_weight * answer_nll(t.logits(ids, mask), ids, starts, lengths)
        if c.normal_weight > 0:
            ids, mask, _, _ = self.batch(t, normal)
            with t.base():
                base = t.logits(ids, mask)
            kl = masked_kl(base, t.logits(ids, mask), mask)
            pd = kl if c.pd_mode == "preserve" else -kl
            if c.pd_mode == "diverge" and c.pd_floor > 0:
                pd = pd.clamp_min(-c.pd_floor)
            yield "preservation_divergence", c.normal_weight * pd


__all__ = ["FAITHFUL_RD_START", "SKU", "SKUConfig", "TEMPLATE", "answer_nll", "encode_pair", "masked_kl", "sentence_pairs"]
