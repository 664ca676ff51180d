"""The one training loop behind every weight-space method: LoRA on the shared base model.

A method (elm.py, sku.py) states its losses only: `prepare()` builds its data once, and
`terms(step)` yields `(name, weighted loss)` pairs for one micro-iteration. This module owns
everything else: the LoRA adapter (peft, injected into the loaded model under a fresh name),
AdamW, gradient accumulation, an optional linear decay, seeds, a per-step record for
`on_step`, and the stop event. The reference model for a teacher or KL term is the same
weights with adapters disabled (`Trainer.base()`), never a copy.

Each micro-iteration runs under the caller's lock inside `Variants.use(..., train=True)`, so
other users can generate between steps and every change to the model restores itself.
Stopping (or an error) deletes the half-trained adapter: earlier variants are untouched.
It knows nothing about presets' files, the UI or saving (variants.py saves adapters).
"""
from __future__ import annotations

import abc
import contextlib
import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Iterator

import torch

Step = dict  # {"step", "steps", "seconds", "lr", "loss", <term>: value, ...}


class TrainingStopped(RuntimeError):
    """Training was stopped; the half-trained adapter was discarded."""


@dataclass
class TrainConfig:
    """What every method shares: LoRA shape, optimiser and loop settings."""
    steps: int = field(default=50, metadata={"help": "Optimiser steps.", "min": 1, "max": 5000})
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate.", "min": 1e-7, "max": 1e-1})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay.", "min": 0.0, "max": 1.0})
    grad_accumulation: int = field(default=1, metadata={"help": "Micro-iterations per optimiser step.", "min": 1, "max": 64})
    batch_size: int = field(default=1, metadata={"help": "Examples per micro-iteration.", "min": 1, "max": 64})
    max_length: int = field(default=128, metadata={"help": "Tokens per training text at most.", "min": 8, "max": 4096})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the gradient norm (0 = off).", "min": 0.0, "max": 1e6})
    linear_decay: bool = field(default=False, metadata={"help": "Decay the learning rate linearly to 0."})
    seed: int = field(default=0, metadata={"help": "Seed for data order, dropout and sampling."})
    rank: int = field(default=4, metadata={"help": "LoRA rank r.", "min": 1, "max": 512})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale = alpha / r).", "min": 0.1, "max": 1024.0})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout.", "min": 0.0, "max": 0.9})
    targets: tuple[str, ...] = field(default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                     metadata={"help": "Module names that get a LoRA."})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "Decoder layers that get a LoRA (None = all)."})

    def validate(self) -> "TrainConfig":
        for f in fields(self):
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            value = getattr(self, f.name)
            if lo is None or isinstance(value, bool):
                continue
            if not (value == value) or not lo <= value <= hi:  # NaN fails the first test
                raise ValueError(f"{f.name} must be between {lo:g} and {hi:g}, got {value}.")
        if not self.targets:
            raise ValueError("targets is empty: name at least one module for the LoRA (e.g. q_proj).")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        d["layers"] = list(self.layers) if self.layers is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}.")
        d = dict(d)
        defaults = cls()
        for f in fields(cls):  # numbers and switches may arrive as text (CLI --set, JSON)
            value, default = d.get(f.name), getattr(defaults, f.name)
            if f.name not in d or value is None or isinstance(default, (tuple, type(None))):
                continue
            try:
                if isinstance(default, bool):
                    d[f.name] = value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    d[f.name] = int(float(value)) if float(value) == float(value) else float(value)
                elif isinstance(default, float):
                    d[f.name] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{f.name} must be a number, got {value!r}.") from None
        for name in ("targets", "layers"):  # text from the CLI or a form: "q_proj,v_proj", "4,5"
            if isinstance(d.get(name), str):
                d[name] = [x.strip() for x in d[name].split(",") if x.strip()] or None
        if "targets" in d:
            d["targets"] = tuple(d["targets"] or ())
        if d.get("layers") is not None:
            try:
                d["layers"] = tuple(int(x) for x in d["layers"])
            except (TypeError, ValueError):
                raise ValueError(f"layers must be layer numbers, got {d['layers']!r}.") from None
        return cls(**d)


def interleave(a: list, b: list) -> list:
    """a and b merged so that each is spread evenly over the result (a's order and b's kept)."""
    if not a or not b:
        return list(a or b)
    keys = [((i + 0.5) / len(a), 0, x) for i, x in enumerate(a)] + [((j + 0.5) / len(b), 1, x) for j, x in enumerate(b)]
    return [x for _, _, x in sorted(keys, key=lambda k: (k[0], k[1]))]


def padded(rows: list[list[int]], pad_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and attention mask for rows of different lengths. Pads come after
    each row's tokens, so a causal model computes the real positions as for the row alone."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id if pad_id is not None else 0, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return ids, mask


def lora_config(config: TrainConfig, n_layers: int):
    """The peft LoraConfig for a TrainConfig; layers beyond the model are dropped (all if none remain)."""
    from peft import LoraConfig

    layers = None
    if config.layers is not None:
        layers = [i for i in config.layers if 0 <= i < n_layers] or None
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.targets), layers_to_transform=layers, bias="none",
                      task_type="CAUSAL_LM")


class Method(abc.ABC):
    """A weight-space method: its name, how it prepares data and which losses it yields."""
    name = "method"

    def prepare(self, trainer: "Trainer") -> None:
        """Build data (once, before the first step). May use trainer.base() and the tokenizer."""

    @abc.abstractmethod
    def terms(self, trainer: "Trainer", iteration: int) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, weighted loss) for one micro-iteration; each is back-propagated at once."""


class Trainer:
    """Runs one method on one loaded model, into one new LoRA adapter."""

    def __init__(self, lm, variants, method: Method, config: TrainConfig, adapter: str,
                 lock: threading.RLock | None = None):
        self.lm, self.variants, self.method, self.config = lm, variants, method, config.validate()
        self.adapter = adapter
        self.lock = lock or threading.RLock()
        self.rng = random.Random(config.seed)

    @property
    def model(self):
        return self.lm.model

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @contextlib.contextmanager
    def base(self):
        """The base model (every adapter off, eval mode, no grad), restored afterwards."""
        with self.variants.use(None), torch.no_grad():
            yield self.model

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        return ids[: self.config.max_length]

    def logits(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) in float32 for ids (B, T) under the current adapter state."""
        return self.model(input_ids=ids.to(self.lm.device), attention_mask=None if attention_mask is None
                          else attention_mask.to(self.lm.device)).logits.float()

    def run(self, on_step: Callable[[Step], None] | None = None,
            stop_event: threading.Event | None = None) -> list[Step]:
        """Train; return the step records. Raises TrainingStopped (adapter discarded) on stop."""
        c = self.config
        torch.manual_seed(c.seed)
        n_layers = getattr(self.model.config, "num_hidden_layers", 0)
        with self.lock:
            self.variants.create(self.adapter, lora_config(c, n_layers))
        history: list[Step] = []
        try:
            with self.lock:
                self.method.prepare(self)
            params = self.variants.parameters(self.adapter)
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
            start, iteration = time.perf_counter(), 0
            for step in range(c.steps):
                lr = c.lr * (1 - step / c.steps) if c.linear_decay else c.lr
                for group in opt.param_groups:
                    group["lr"] = lr
                totals: dict[str, float] = {}
                for _ in range(c.grad_accumulation):
                    if stop_event is not None and stop_event.is_set():
                        raise TrainingStopped("Training was stopped; the unfinished adapter was discarded.")
                    with self.lock, self.variants.use(self.adapter, train=True):
                        for name, loss in self.method.terms(self, iteration):
                            if not torch.isfinite(loss):
                                raise FloatingPointError(f"The {name} loss became {loss.item()}; lower the "
                                                         "learning rate or the loss scales.")
                            loss.backward()
                            totals[name] = totals.get(name, 0.0) + loss.item() / c.grad_accumulation
                    iteration += 1
                with self.lock:
                    if c.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                record = {"step": step + 1, "steps": c.steps, "seconds": round(time.perf_counter() - start, 3),
                          "lr": lr, "loss": sum(totals.values()), **totals}
                history.append(record)
                if on_step:
                    on_step(record)
        except BaseException:
            with self.lock:
                self.variants.delete(self.adapter)
            raise
        return history


def seeded(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


__all__ = ["Method", "Step", "TrainConfig", "Trainer", "TrainingStopped", "interleave", "lora_config", "padded", "seeded"]
