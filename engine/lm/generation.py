"""Streaming generation: one code path for the UI, the CLI, benchmarks and tests.

`stream()` runs `model.generate` in a worker thread and yields the text generated so far
after every new piece (TextIteratorStreamer). It takes either token ids or prompt
embeddings (`inputs_embeds`, how ECO feeds a corrupted prompt). Greedy when
temperature == 0, else sampling with temperature / top-p from a seeded RNG.
It knows nothing about variants, adapters or presets: callers prepare the model.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from .. import checks
from .models import format_chat


@dataclass
class GenerationConfig:
    max_new_tokens: int = field(default=96, metadata={"help": "Tokens to generate at most.", "min": 1, "max": 2048})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; above 0 samples.", "min": 0.0, "max": 2.0})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (sampling only).", "min": 0.05, "max": 1.0})
    seed: int = field(default=0, metadata={"help": "Seed for sampling and for ECO noise."})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "Strings that end the answer."})
    chat: bool = field(default=True, metadata={"help": "Wrap the prompt in the model's chat template."})

    def validate(self) -> "GenerationConfig":
        checks.integer("max_new_tokens", self.max_new_tokens, 1, 4096)
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


class _EventStop(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        done = self.event.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


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


def stream(
    model,
    tokenizer,
    config: GenerationConfig,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    stop_event: threading.Event | None = None,
    stats: GenerationStats | None = None,
) -> Iterator[str]:
    """Yield the answer text so far, growing, until done, a stop string or `stop_event`."""
    config.validate()
    if input_ids is None and inputs_embeds is None:
        raise ValueError("stream() needs input_ids or inputs_embeds.")
    stop_event = stop_event or threading.Event()
    stats = stats if stats is not None else GenerationStats()
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    sample = config.temperature > 0
    kwargs = dict(
        attention_mask=attention_mask,
        max_new_tokens=int(config.max_new_tokens),
        do_sample=sample,
        temperature=float(config.temperature) if sample else None,
        top_p=float(config.top_p) if sample else None,
        top_k=None,
        streamer=streamer,
        stopping_criteria=StoppingCriteriaList([_EventStop(stop_event)]),
        pad_token_id=tokenizer.pad_token_id,
    )
    if config.stop:
        kwargs.update(stop_strings=list(config.stop), tokenizer=tokenizer)
    if inputs_embeds is not None:
        kwargs["inputs_embeds"] = inputs_embeds
        prompt_len = 0
    else:
        kwargs["input_ids"] = input_ids
        prompt_len = input_ids.shape[1]
    failure: list[BaseException] = []
    out: list[torch.Tensor] = []

    def work():
        try:
            torch.manual_seed(int(config.seed))
            with torch.inference_mode():
                out.append(model.generate(**kwargs))
        except BaseException as exc:  # surfaced in the caller's thread below
            failure.append(exc)
            streamer.end()

    start = time.perf_counter()
    worker = threading.Thread(target=work, name="lethe-generate", daemon=True)
    worker.start()
    text, finished = "", False
    try:
        for piece in streamer:
            text += piece
            shown, hit = _trim_stops(text, config.stop)
            yield shown
            if hit:
                stop_event.set()
        finished = True
    finally:
        if not finished:  # the caller walked away (closed the generator): stop the worker
            stop_event.set()
        worker.join()
    if failure:
        raise failure[0]
    stats.text, stats.stopped = _trim_stops(text, config.stop)
    stats.stopped = stats.stopped or stop_event.is_set()
    stats.new_tokens = int(out[0].shape[1] - prompt_len) if out else 0
    stats.seconds = time.perf_counter() - start


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


def stream_interleaved(model, tokenizer, config: GenerationConfig, inputs: list[dict], scopes: list,
                       lock=None, stop_event: threading.Event | None = None,
                       stats: list[GenerationStats] | None = None) -> Iterator[list[str]]:
    """Decode several variants of one prompt token by token, in turn, each under its own scope.

    `inputs[i]` holds input_ids or inputs_embeds (1, T) (+ attention_mask); `scopes[i]()` is a
    context manager putting the model in variant i's state (adapter, scale) and restoring it.
    Every forward pass runs under `lock` inside its scope, so variants that need different
    adapter states share one model, and other requests can run between tokens. Yields the
    list of texts so far after each round. Each variant keeps its own KV cache and, when
    sampling, its own generator seeded with `config.seed`."""
    config.validate()
    lock = lock or threading.RLock()
    n = len(inputs)
    stats = stats if stats is not None else [GenerationStats() for _ in range(n)]
    eos = _eos_ids(model, tokenizer)
    gens = [torch.Generator().manual_seed(int(config.seed)) for _ in range(n)]
    caches, last, lengths = [None] * n, [None] * n, [0] * n
    new: list[list[int]] = [[] for _ in range(n)]
    texts, live = [""] * n, list(range(n))
    start = time.perf_counter()

    def forward(i: int, **kw) -> None:
        with lock, scopes[i](), torch.inference_mode():
            out = model(past_key_values=caches[i], use_cache=True, **kw)
        caches[i], last[i] = out.past_key_values, out.logits[0, -1]

    for i, inp in enumerate(inputs):
        lengths[i] = (inp.get("input_ids") if inp.get("input_ids") is not None else inp["inputs_embeds"]).shape[1]
        forward(i, **{k: v for k, v in inp.items() if v is not None})
    while live:
        for i in list(live):
            token = _next_token(last[i], config, gens[i])
            if token in eos:
                live.remove(i)
                continue
            new[i].append(token)
            texts[i], hit = _trim_stops(tokenizer.decode(new[i], skip_special_tokens=True), config.stop)
            if hit or len(new[i]) >= config.max_new_tokens:
                live.remove(i)
                continue
            lengths[i] += 1
            device = last[i].device
            forward(i, input_ids=torch.tensor([[token]], device=device),
                    attention_mask=torch.ones((1, lengths[i]), dtype=torch.long, device=device))
        if stop_event is not None and stop_event.is_set():
            live = []
        yield list(texts)
    seconds = time.perf_counter() - start
    for i, st in enumerate(stats):
        st.text, st.new_tokens, st.seconds = texts[i], len(new[i]), seconds
        st.stopped = bool(stop_event is not None and stop_event.is_set())
