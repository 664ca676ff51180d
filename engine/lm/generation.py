"""Decoding: one routine for the UI, the CLI, evaluation, benchmarks and tests.

`decode()` streams one or many rows token by token with the model's KV cache: the prompts of an
evaluation batch (left-padded, one forward pass per token), or one prompt as several variants,
each under its own adapter scope. A row is token ids or prompt embeddings (`inputs_embeds`, how
ECO feeds a corrupted prompt). Greedy when temperature == 0, else sampling with temperature /
top-p from a seeded generator per row. `stream()` and `generate()` are `decode()` for one row.
It knows nothing about variants, adapters or presets: callers pass the scopes.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch

from .. import checks
from .models import format_chat


@dataclass
class GenerationConfig:
    max_new_tokens: int = field(default=96, metadata={"help": "Tokens to generate at most.", "min": 1, "max": 2048})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; above 0 samples.", "min": 0.0, "max": 2.0})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (sampling only).", "min": 0.05, "max": 1.0})
    seed: int = field(default=0, metadata={"help": "Seed for sampling and for ECO noise."})
    min_new_tokens: int = field(default=0, metadata={"help": "End-of-sequence is refused before this many tokens (benchmarks use it to time a fixed length).", "min": 0, "max": 2048})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "Strings that end the answer."})
    chat: bool = field(default=True, metadata={"help": "Wrap the prompt in the model's chat template."})

    def validate(self) -> "GenerationConfig":
        checks.integer("max_new_tokens", self.max_new_tokens, 1, 4096)
        checks.integer("min_new_tokens", self.min_new_tokens, 0, 4096)
        checks.finite("temperature", self.temperature, 0, 5)
        if not 0 < checks.finite("top_p", self.top_p, 0, 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        checks.seed(self.seed)
        for s in self.stop:
            checks.text("a stop string", s, 200)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationStats:
    text: str = ""
    new_tokens: int = 0
    seconds: float = 0.0
    stopped: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def encode_prompt(tokenizer, prompt: str, chat: bool = True, device=None) -> dict:
    """Token ids (1, T) and attention mask for one prompt, chat template applied when asked."""
    text = format_chat(tokenizer, prompt) if chat else prompt
    has_template = chat and bool(getattr(tokenizer, "chat_template", None))
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=not has_template)
    if device is not None:
        enc = {k: v.to(device) for k, v in enc.items()}
    return dict(enc)


def _trim_stops(text: str, stops) -> tuple[str, bool]:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def stream(model, tokenizer, config: GenerationConfig, input_ids: torch.Tensor | None = None,
           attention_mask: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
           stop_event: threading.Event | None = None, stats: GenerationStats | None = None) -> Iterator[str]:
    """One prompt through `decode()`: yield the answer so far, growing, until done, a stop string or
    `stop_event`. Closing the generator early sets `stop_event`."""
    if input_ids is None and inputs_embeds is None:
        raise ValueError("stream() needs input_ids or inputs_embeds.")
    stop_event = stop_event or threading.Event()
    row = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
    finished = False
    try:
        for texts in decode(model, tokenizer, config, [row], stop_event=stop_event,
                            stats=[stats if stats is not None else GenerationStats()]):
            yield texts[0]
        finished = True
    finally:
        if not finished:
            stop_event.set()


def generate(model, tokenizer, config: GenerationConfig, **inputs) -> GenerationStats:
    """Run `stream()` to the end and return the final text with its statistics."""
    stats = GenerationStats()
    for _ in stream(model, tokenizer, config, stats=stats, **inputs):
        pass
    return stats


def _eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen if isinstance(gen, (list, tuple)) else [gen])
    return {i for i in ids if i is not None}


def _next_token(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator) -> int:
    if config.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / config.temperature, -1).cpu()
    if config.top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < config.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class _Group:
    """Rows decoded together in one batch under one scope: left-padded, one KV cache."""

    def __init__(self, model, rows: list[int], inputs: list[dict], pad_id: int):
        self.rows, self.cache = rows, None
        if len(rows) == 1:
            inp = {k: v for k, v in inputs[0].items() if v is not None}
            width = (inp["input_ids"] if "input_ids" in inp else inp["inputs_embeds"]).shape[1]
            device = (inp.get("input_ids") if "input_ids" in inp else inp["inputs_embeds"]).device
            self.mask = inp.pop("attention_mask", None)
            if self.mask is None:
                self.mask = torch.ones((1, width), dtype=torch.long, device=device)
            self.first = inp
        else:  # different lengths or kinds: embed every row and pad on the left
            embed = model.get_input_embeddings()
            vecs = [(inp["inputs_embeds"] if inp.get("inputs_embeds") is not None else embed(inp["input_ids"]))[0]
                    for inp in inputs]
            width, device = max(v.shape[0] for v in vecs), vecs[0].device
            pad = embed(torch.tensor([pad_id], device=device))[0]
            self.first = {"inputs_embeds": torch.stack(
                [torch.cat([pad.expand(width - v.shape[0], -1), v]) for v in vecs])}
            self.mask = torch.tensor([[0] * (width - v.shape[0]) + [1] * v.shape[0] for v in vecs], device=device)
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)

    def forward(self, model, tokens: list[int] | None = None) -> torch.Tensor:
        """One forward pass: the prompts first, then one token per row; the last logits (B, V)."""
        if tokens is None:
            kw = dict(self.first, attention_mask=self.mask, position_ids=self.positions)
        else:
            device = self.mask.device
            self.mask = torch.cat([self.mask, self.mask.new_ones((len(tokens), 1))], dim=1)
            self.positions = self.positions[:, -1:] + 1
            kw = dict(input_ids=torch.tensor([[t] for t in tokens], device=device), attention_mask=self.mask,
                      position_ids=self.positions)
        out = model(past_key_values=self.cache, use_cache=True, **kw)
        self.cache = out.past_key_values
        return out.logits[:, -1]


def decode(model, tokenizer, config: GenerationConfig, inputs: list[dict], scopes: list | None = None,
           lock=None, stop_event: threading.Event | None = None,
           stats: list[GenerationStats] | None = None) -> Iterator[list[str]]:
    """The one decoding routine: yield the texts of every row so far, after each new token.

    `inputs[i]` holds one row's input_ids or inputs_embeds (1, T) and maybe its attention_mask: the
    prompts of an evaluation batch, or one prompt as several variants. `scopes[i]()` is a context
    manager putting the model in row i's state (adapter, scale) and restoring it; rows that share a
    scope decode as one left-padded batch, rows with different scopes take turns, one forward pass
    each per round, so variants needing different adapter states share one model. Every forward
    pass runs under `lock` (other requests may run between tokens). A row ends at an end-of-sequence
    token, a stop string, `max_new_tokens`, or when `stop_event` is set; when sampling, each row has
    its own generator seeded with `config.seed`, so its answer does not depend on its neighbours."""
    config.validate()
    lock = lock or threading.RLock()
    n = len(inputs)
    scopes = scopes or [contextlib.nullcontext] * n
    stats = stats if stats is not None else [GenerationStats() for _ in range(n)]
    eos = _eos_ids(model, tokenizer)
    eos_index = torch.tensor(sorted(eos), dtype=torch.long)
    pad_id = next(iter(sorted(eos)), 0) if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    groups: dict[int, list[int]] = {}
    for i, scope in enumerate(scopes):
        groups.setdefault(id(scope), []).append(i)
    gens = [torch.Generator().manual_seed(int(config.seed)) for _ in range(n)]
    new: list[list[int]] = [[] for _ in range(n)]
    texts, full, live, hit_stop = [""] * n, [""] * n, set(range(n)), [False] * n
    start = time.perf_counter()
    batches, logits = [], {}

    def step(g: _Group, tokens=None) -> None:
        with lock, scopes[g.rows[0]](), torch.inference_mode():
            last = g.forward(model, tokens)
        for j, i in enumerate(g.rows):
            logits[i] = last[j]

    for rows in groups.values():
        with lock, scopes[rows[0]](), torch.inference_mode():  # the prompt embeddings under the row's scope
            g = _Group(model, rows, [inputs[i] for i in rows], pad_id)
        batches.append(g)
        step(g)
    while live:
        for g in batches:
            if not live.intersection(g.rows):
                continue
            tokens = []
            for i in g.rows:
                if i in live and len(new[i]) < config.min_new_tokens:
                    logits[i] = logits[i].index_fill(0, eos_index.to(logits[i].device), float("-inf"))
                token = _next_token(logits[i], config, gens[i]) if i in live else pad_id
                if i in live and token in eos:
                    live.discard(i)
                elif i in live:
                    new[i].append(token)
                    full[i], hit_stop[i] = _trim_stops(tokenizer.decode(new[i], skip_special_tokens=True),
                                                       config.stop)
                    texts[i] = full[i].rstrip("\ufffd")  # a character still being spelled out in bytes
                    if hit_stop[i] or len(new[i]) >= config.max_new_tokens:
                        live.discard(i)
                        texts[i] = full[i]
                tokens.append(token)
            if live.intersection(g.rows):
                step(g, tokens)
        if stop_event is not None and stop_event.is_set():
            live.clear()
        if not live:
            texts = list(full)
        yield list(texts)
    seconds = time.perf_counter() - start
    for i, st in enumerate(stats):
        st.text, st.new_tokens, st.seconds = texts[i], len(new[i]), seconds
        st.stopped = hit_stop[i] or bool(stop_event is not None and stop_event.is_set())
