"""Weight attacks on a variant: a frozen copy of its weights, then relearning or quantisation.

`frozen_copy` merges the variant's adapter (at its scale, so SKU's negation too) into a deep copy
of the model and strips the LoRA layers: a plain model whose weights are the variant's, as an
attacker who downloaded them would hold. Every weight attack works on that copy, so the shared
model, its adapters and the switch's state are never touched (the copy costs one more set of
weights while the attack runs). ECO's weights are the Original's: for a weights holder the gate
does not exist, so its rows under a weight attack are the Original's, and they say so.

- `relearn`: a fresh LoRA on the copy, trained `relearn_steps` steps on `relearn_passages` seeded
  forget-corpus passages (next-token loss); `relearn_retain` trains it on retain passages instead
  (does unrelated fine-tuning bring the topic back?).
- `quantize`: every linear layer but the output head rounded to `quantize_bits` bits per weight,
  symmetric and per output channel (quantise, then dequantise: what weight-only int8/int4
  kernels compute), a known way to undo small unlearning updates.
"""
from __future__ import annotations

import copy
import dataclasses

import torch

from ..methods.base import Method, TrainConfig, Trainer
from ..methods.variants import Variants
from .base import AttackConfig, order


def frozen_copy(lm, switch, adapter: str | None):
    """A LoadedModel holding a plain deep copy of the weights `adapter` gives (None = the base)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if switch is not None:
        with switch.use(adapter):
            model = copy.deepcopy(lm.model)
    else:
        model = copy.deepcopy(lm.model)
    tuners = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    with torch.no_grad():
        for name, m in tuners:
            if adapter is not None and (adapter in getattr(m, "lora_A", {}) or adapter in getattr(m, "lora_embedding_A", {})):
                m.merge(adapter_names=[adapter])
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, m.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    model._hf_peft_config_loaded = False
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return dataclasses.replace(lm, model=model, extras={})


def quantize_(model, bits: int) -> int:
    """Round every linear weight (not the output head) to `bits` bits, per output channel; returns
    the number of layers quantised."""
    qmax = 2 ** (bits - 1) - 1
    head = model.get_output_embeddings()
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m is not head:
                w = m.weight.float()
                scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
                m.weight.copy_((w / scale).round().clamp(-qmax, qmax) * scale)
                n += 1
    return n


class Relearn(Method):
    """Next-token loss on a few passages: the adversary's fine-tuning."""
    name = "relearn"

    def __init__(self, texts: list[str]):
        self.texts = texts

    def prepare(self, t: Trainer) -> None:
        self.rows = [t.encode(x) for x in self.texts]

    def terms(self, t: Trainer, i: int):
        b = t.config.batch_size
        rows = [self.rows[(i * b + j) % len(self.rows)] for j in range(b)]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)], mask[k, : len(r)] = torch.tensor(r), 1
        logits = t.logits(ids, mask)[:, :-1]
        target, keep = ids[:, 1:].to(logits.device), mask[:, 1:].to(logits.device).float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        yield "nll", (nll * keep).sum() / keep.sum().clamp_min(1)


def passages(preset, side: str, config: AttackConfig) -> list[str]:
    corpus = preset.forget_corpus if side == "forget" else preset.retain_corpus
    by_id = {p.id: p.text for p in corpus}
    return [by_id[i] for i in order(config.seed, by_id)[: config.relearn_passages]]


def relearn_(frozen, texts: list[str], config: AttackConfig, on_step=None, stop_event=None):
    """Train a fresh LoRA on the frozen copy; returns (its Variants switch, adapter name, history)."""
    switch = Variants(frozen)
    train = TrainConfig(steps=config.relearn_steps, lr=config.relearn_lr, batch_size=min(4, len(texts)),
                        max_length=128, seed=config.seed, rank=8, alpha=16.0, dropout=0.0)
    name = switch.new_name("relearn")
    history = Trainer(frozen, switch, Relearn(texts), train, name).run(on_step=on_step, stop_event=stop_event)
    return switch, name, history


__all__ = ["Relearn", "frozen_copy", "passages", "quantize_", "relearn_"]
