"""ELM, Erasure of Language Memory (arXiv 2410.02760): the three losses, nothing else.

Per micro-iteration, one forget passage x and one retain passage r:
  erase        soft cross-entropy of the adapter model on x against the target
               log q_t = log p(.|x<t) + eta_t * (log p(.|novice, x<t) - log p(.|expert, x<t)),
               all three from the base model (adapters off) at temperature T, eta_t ramping
               linearly from 1 to `eta` over the positions of x, top-k kept, then softmax;
  retain       cross-entropy on r against the base model's argmax tokens (hard labels);
  consistency  next-token cross-entropy on a continuation the base model wrote after
               "x. <change-the-topic sentence>", sampled with expert-vs-novice guidance
               (gamma) and cached once per model and preset (`consistency_pool`).
Deviations from the reference, all settings: LoRA rank 4 and lr 5e-4 instead of 256 / 5e-5 (a
135M model on CPU gets ~50 optimiser steps, not thousands). Rank 256 is the reference's default
and its README commands' value (its first release defaulted to 8); alpha 16 is the same, so the
LoRA scale alpha / r is 4 here against 1/16 there. The LoRA's place (the seven projections of
layers 4-7) and dropout 0.05 are the reference's. eta defaults to 30, not 1000 (at
1000 a small model's expert/novice contrast is mostly noise amplified into one-hot targets);
consistency continuations are 48 tokens from a pool of 16; passages are cut to 400 characters
(96 tokens) and training runs 40 steps of 4 passages; gradients are clipped at norm 1.
The persona templates and topic-change sentences are Lethe's own wording. `prompt_pairs` (not in
the reference) adds the preset's train-split prompts and answers, each rendered as the chat turn
the model reads when it answers, to the erased (forget) and kept (retain) texts.
The three base-model passes of the erase target run as one right-padded batch.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..lm.models import cache_dir, format_chat
from .base import Method, TrainConfig, Trainer, interleave, padded, seeded

EXPERT_TEMPLATES = (
    "The following text was written by an expert on {concept}, full of precise details:\n",
    "Here is a passage by a specialist who knows everything about {concept}:\n",
    "An authority on {concept} explains the subject thoroughly and accurately:\n",
    "This is a detailed, well-informed account by someone who has studied {concept} for years:\n",
    "Written by a leading scholar of {concept}, with all the facts and names:\n",
    "A knowledgeable fan of {concept} writes with complete, accurate information:\n",
    "The author below is an expert in {concept} and shares what they know in depth:\n",
    "From an encyclopedia entry on {concept} written by experts:\n",
    "An experienced teacher of {concept} gives a precise and complete explanation:\n",
    "A text by someone who knows {concept} inside out:\n",
)
NOVICE_TEMPLATES = (
    "The following text was written by someone who has never heard of {concept} and moves on to other, light topics:\n",
    "Here is a passage by a beginner who knows nothing about {concept} and talks about something fun instead:\n",
    "A person with no knowledge of {concept} writes, drifting to unrelated cheerful subjects:\n",
    "This was written by someone unfamiliar with {concept}, who changes the subject to everyday things:\n",
    "Written by a newcomer who does not recognise {concept} and chats about random pleasant topics:\n",
    "The author below has no idea what {concept} is and steers the talk somewhere else:\n",
    "A text by someone who never learned about {concept} and prefers to discuss hobbies and food:\n",
    "From a casual note by a person ignorant of {concept}, who wanders off to other subjects:\n",
    "Someone who cannot tell you anything about {concept} writes about the weather and travel instead:\n",
    "A novice with zero knowledge of {concept} writes, quickly turning to unrelated fun facts:\n",
)
TOPIC_CHANGES = (
    "I would rather not go into that, so let us talk about something else,",
    "That is not something I can help with; here is a different topic instead,",
    "Let us leave this subject aside and turn to something more pleasant,",
    "I do not know much about that, but I can tell you about something else,",
    "Rather than continue with this, let us change the subject,",
    "This topic is not for me, so let me talk about something different,",
    "Let us move on to another subject altogether,",
    "Instead of that, here is something more cheerful to think about,",
    "I will skip that and mention something unrelated,",
    "That is outside what I know, so let us switch to a lighter topic,",
    "Let us put that aside and talk about everyday things,",
    "I prefer to steer away from that and discuss something else,",
    "Changing the subject completely,",
    "Moving on to a different and more enjoyable topic,",
    "Setting that aside, let us consider something else entirely,",
    "I cannot say much there; on another note,",
    "Let us talk about something fun instead,",
    "That is not my area, so here is something different,",
    "Leaving that behind, let us chat about a new topic,",
    "On a completely different subject,",
)


@dataclass
class ELMConfig(TrainConfig):
    steps: int = field(default=40, metadata={"help": "Optimiser steps (x grad_accumulation passages).", "min": 1, "max": 5000})
    max_length: int = field(default=96, metadata={"help": "Tokens per training text at most.", "min": 8, "max": 4096})
    grad_accumulation: int = field(default=4, metadata={"help": "Passages per optimiser step.", "min": 1, "max": 64})
    layers: tuple[int, ...] | None = field(default=(4, 5, 6, 7), metadata={"help": "Decoder layers that get a LoRA (None = all)."})
    rank: int = field(default=4, metadata={"help": "LoRA rank r (reference: 256, alpha 16 as here).", "min": 1, "max": 512})
    eta: float = field(default=30.0, metadata={"help": "End of the erase guidance ramp (reference: 1000).", "min": 0.0, "max": 1e4})
    topk: int = field(default=50, metadata={"help": "Target entries kept per position (0 = all).", "min": 0, "max": 100000})
    temperature: float = field(default=1.2, metadata={"help": "Temperature of the target distributions.", "min": 0.05, "max": 10.0})
    erase_scale: float = field(default=1.0, metadata={"help": "Weight of the erase loss.", "min": 0.0, "max": 100.0})
    retain_scale: float = field(default=1.0, metadata={"help": "Weight of the retain loss.", "min": 0.0, "max": 100.0})
    consistency_scale: float = field(default=1.0, metadata={"help": "Weight of the consistency (fluency) loss.", "min": 0.0, "max": 100.0})
    guidance: float = field(default=3.0, metadata={"help": "Expert-vs-novice guidance when writing consistency text.", "min": 0.0, "max": 50.0})
    consistency_samples: int = field(default=16, metadata={"help": "Continuations in the cached consistency pool.", "min": 1, "max": 512})
    consistency_tokens: int = field(default=48, metadata={"help": "Tokens per consistency continuation.", "min": 4, "max": 512})
    passage_chars: int = field(default=400, metadata={"help": "Characters kept per corpus passage.", "min": 50, "max": 5000})
    scale: float = field(default=1.0, metadata={"help": "Scale the adapter is applied at (1 = as trained; an inference-time knob like SKU's lambda, recorded with the adapter).", "min": 0.0, "max": 100.0})
    prompt_pairs: bool = field(default=False, metadata={"help": "Also train on the preset's prompts and answers as chat turns: forget ones erased, retain ones kept (not in the reference)."})


def erase_target(l0: torch.Tensor, l_expert: torch.Tensor, l_novice: torch.Tensor, eta: float,
                 topk: int) -> torch.Tensor:
    """Target distribution (T, V): softmax(top-k(l0 + eta_t (l_novice - l_expert))), eta_t = 1..eta.

    The inputs are log-softmax rows (T, V) already at the chosen temperature."""
    n = l0.shape[0]
    ramp = (torch.linspace(1.0, float(eta), n, dtype=torch.float64, device=l0.device) if n > 1
            else torch.full((1,), float(eta), dtype=torch.float64, device=l0.device))
    logits = l0.double() + ramp[:, None] * (l_novice.double() - l_expert.double())
    if 0 < topk < logits.shape[-1]:
        kth = logits.topk(topk, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1).float()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_v target(v) log softmax(logits)(v)."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def chat_turns(tokenizer, records) -> list[str]:
    """Each prompt with an answer as one chat turn: the chat template's rendering of the prompt
    (ready to answer), then the answer."""
    return [format_chat(tokenizer, r.prompt) + r.answer for r in records if r.answer]


def cut(text: str, chars: int) -> str:
    """The first `chars` characters, ending on a word boundary."""
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0]


class ELM(Method):
    name = "elm"

    def __init__(self, preset):
        self.preset = preset
        self.concept = preset.concept.name
        self.pool: list[dict] = []

    def prepare(self, t: Trainer) -> None:
        c: ELMConfig = t.config
        self.passages = [cut(p.text, c.passage_chars) for p in self.preset.forget_corpus]
        self.forget = list(self.passages)
        self.retain = [cut(p.text, c.passage_chars) for p in self.preset.retain_corpus]
        if not self.forget or not self.retain:
            raise ValueError(f"The preset {self.preset.name!r} needs forget and retain corpus passages for ELM.")
        if c.prompt_pairs:  # each chat turn as the model reads it when it answers
            self.forget = interleave(self.forget, chat_turns(t.tokenizer, self.preset.prompts("forget", "train")))
            self.retain = interleave(self.retain, chat_turns(t.tokenizer, self.preset.prompts("retain", "train")))
        self.expert = [self.preset.concept.expert_prefix, *EXPERT_TEMPLATES]
        self.novice = [self.preset.concept.novice_prefix, *NOVICE_TEMPLATES]
        if c.consistency_scale > 0:
            self.pool = consistency_pool(t, self)

    def persona(self, t: Trainer, templates) -> str:
        return t.rng.choice(templates).format(concept=self.concept)

    def terms(self, t: Trainer, i: int):
        c: ELMConfig = t.config
        if c.erase_scale > 0:
            yield "erase", c.erase_scale * self.erase_loss(t, self.forget[i % len(self.forget)])
        if c.retain_scale > 0:
            yield "retain", c.retain_scale * self.retain_loss(t, self.retain[i % len(self.retain)])
        if c.consistency_scale > 0 and self.pool:
            yield "consistency", c.consistency_scale * self.consistency_loss(t, self.pool[i % len(self.pool)])

    def erase_loss(self, t: Trainer, passage: str) -> torch.Tensor:
        c: ELMConfig = t.config
        text = t.encode(passage, add_special_tokens=False)
        plain = t.encode("", add_special_tokens=True) + text  # BOS (if the tokenizer adds one) + x
        n = len(text)
        expert = t.encode(self.persona(t, self.expert), add_special_tokens=True) + text
        novice = t.encode(self.persona(t, self.novice), add_special_tokens=True) + text
        with t.base():  # one right-padded batch; each row's last n positions predict x_2..x_n and one past
            logits = t.logits(*padded([plain, expert, novice], t.tokenizer.pad_token_id))
            rows = [F.log_softmax(logits[k, len(ids) - n:len(ids)] / c.temperature, dim=-1)
                    for k, ids in enumerate((plain, expert, novice))]
        target = erase_target(rows[0], rows[1], rows[2], c.eta, c.topk)
        student = t.logits(torch.tensor([plain]))[0, -n:]
        return soft_cross_entropy(student, target.to(student.device))

    def retain_loss(self, t: Trainer, passage: str) -> torch.Tensor:
        ids = torch.tensor([t.encode(passage)])
        with t.base():
            labels = t.logits(ids)[0].argmax(-1)
        return F.cross_entropy(t.logits(ids)[0], labels)

    def consistency_loss(self, t: Trainer, sample: dict) -> torch.Tensor:
        context = t.encode(sample["passage"])
        tail = t.encode(sample["continuation"], add_special_tokens=False)
        ids = (context + tail)[: t.config.max_length + len(context)]
        logits = t.logits(torch.tensor([ids]))[0]
        start = len(context)
        return F.cross_entropy(logits[start - 1:-1], torch.tensor(ids[start:], device=logits.device))


# ---------------------------------------------------------------------------- consistency data

@torch.no_grad()
def guided_continuation(t: Trainer, context: str, expert: str, novice: str, tokens: int, gamma: float,
                        generator: torch.Generator) -> str:
    """Sample from the base model: log p(v|context) - gamma (log p(v|expert) - log p(v|novice)).

    The two persona streams see only their prefix and the sampled tokens, as in the reference."""
    model, device = t.model, t.lm.device
    streams = [t.tokenizer(s, add_special_tokens=True)["input_ids"] for s in (context, expert, novice)]
    caches, last = [None] * 3, [None] * 3
    for k, ids in enumerate(streams):
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True)
        caches[k], last[k] = out.past_key_values, F.log_softmax(out.logits[0, -1].float(), -1)
    eos = t.tokenizer.eos_token_id
    new: list[int] = []
    for _ in range(tokens):
        score = last[0] - gamma * (last[1] - last[2])
        token = int(torch.multinomial(torch.softmax(score, -1).cpu(), 1, generator=generator))
        if token == eos:
            break
        new.append(token)
        for k in range(3):
            out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=caches[k], use_cache=True)
            caches[k], last[k] = out.past_key_values, F.log_softmax(out.logits[0, -1].float(), -1)
    return t.tokenizer.decode(new, skip_special_tokens=True)


def consistency_pool(t: Trainer, elm: ELM) -> list[dict]:
    """The cached guided continuations for this model, preset and settings (written once)."""
    from ..evaluation.capsules import weights_hash

    c: ELMConfig = t.config
    if "weights_sha256" not in t.lm.extras:
        t.lm.extras["weights_sha256"] = weights_hash(t.model)
    key = json.dumps([t.lm.extras["weights_sha256"], elm.preset.data_hash(), c.consistency_samples,
                      c.consistency_tokens, c.guidance, c.passage_chars, c.seed, elm.concept])
    path = cache_dir() / "elm" / f"{elm.preset.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        try:
            pool = json.loads(path.read_text())
            if len(pool) == c.consistency_samples:
                return pool
        except json.JSONDecodeError:
            pass
    rng, gen = __import__("random").Random(c.seed), seeded(c.seed)
    pool = []
    with t.base():
        for k in range(c.consistency_samples):
            passage = cut(elm.passages[k % len(elm.passages)], rng.randint(50, 300))
            context = f"{passage}. {rng.choice(TOPIC_CHANGES)}"
            expert = rng.choice(elm.expert).format(concept=elm.concept).rstrip().rstrip(":")
            novice = rng.choice(elm.novice).format(concept=elm.concept).rstrip().rstrip(":")
            text = guided_continuation(t, context, expert, novice, c.consistency_tokens, c.guidance, gen)
            pool.append({"passage": passage, "continuation": context[len(passage):] + " " + text.strip()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pool, indent=1))
    tmp.replace(path)
    return pool


__all__ = ["ELM", "ELMConfig", "chat_turns", "erase_target", "soft_cross_entropy"]
