"""What every attack shares: its settings, the preset's attack data, and seeded randomness.

A *prompt attack* rewrites a preset's forget prompts, probe prefixes and retain rows into attacked
ones (`PromptAttack.attack_preset`), deterministically from a seed and the row's id, so a row's
attacked text does not depend on which other rows are attacked or in what order. A row the attack
cannot change (no forget name to hide, say) is left out, so every reported n counts attacked rows
only. A *weight attack* (relearn, quantize, probe) works on a variant's weights instead; those live
in weights.py and probe.py.

The attack data of a preset (`data/attacks.jsonl`, made by scripts/make_attack_data.py from the
preset's own data) holds descriptions of the forget names and retain-only names, each with a
split: an attack on the test split draws only test-split data and templates, so a gate trained on
the train split's attacks is measured on attacks it never saw.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from dataclasses import dataclass, field, fields

from ..data.presets import Preset


@dataclass
class AttackConfig:
    """The settings of every attack; a capsule records them so a run replays exactly."""
    seed: int = field(default=0, metadata={"help": "Seed of every attack's choices.", "min": 0, "max": 2**31 - 1})
    limit: int = field(default=24, metadata={"help": "Forget prompts generated per attack (0 = all).", "min": 0, "max": 100000})
    shots: int = field(default=3, metadata={"help": "Q/A pairs few_shot prepends.", "min": 1, "max": 16})
    relearn_steps: int = field(default=20, metadata={"help": "Optimiser steps of the relearning LoRA.", "min": 1, "max": 2000})
    relearn_passages: int = field(default=8, metadata={"help": "Passages the relearning LoRA trains on.", "min": 1, "max": 1000})
    relearn_lr: float = field(default=5e-4, metadata={"help": "Learning rate of the relearning LoRA.", "min": 1e-7, "max": 1e-1})
    quantize_bits: int = field(default=8, metadata={"help": "Bits per weight of the quantize attack.", "min": 2, "max": 8})
    probe_layer: int = field(default=-1, metadata={"help": "Hidden layer the linear probe reads (-1 = the middle one).", "min": -1, "max": 1000})

    def validate(self) -> "AttackConfig":
        for f in fields(self):
            value, lo, hi = getattr(self, f.name), f.metadata["min"], f.metadata["max"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value == value) \
                    or not lo <= value <= hi:
                raise ValueError(f"{f.name} must be a number between {lo:g} and {hi:g}, got {value!r}.")
            if isinstance(f.default, int) and float(value) != int(value):
                raise ValueError(f"{f.name} must be a whole number, got {value!r}.")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "AttackConfig":
        d, names = dict(d or {}), {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown attack setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}.")
        out = {}
        for f in fields(cls):
            if f.name in d and d[f.name] is not None:
                if isinstance(d[f.name], bool):
                    raise ValueError(f"{f.name} must be a number, got {d[f.name]!r}.")
                try:
                    value = float(d[f.name])
                    out[f.name] = int(value) if isinstance(f.default, int) and value.is_integer() else value
                except (TypeError, ValueError):
                    raise ValueError(f"{f.name} must be a number, got {d[f.name]!r}.") from None
        return cls(**out).validate()


def rng(seed: int, attack: str, key: str) -> random.Random:
    """A generator private to one (seed, attack, row): order-independent and stable across runs."""
    digest = hashlib.sha256(f"{seed}:{attack}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def order(seed: int, ids) -> list:
    """ids in a seeded order that does not depend on their input order (the limit takes a prefix)."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


# ---------------------------------------------------------------------------- names in text

def name_pattern(names) -> re.Pattern | None:
    """One regex matching any of the names as whole words, longest first, case-insensitive."""
    names = sorted({n for n in names if n.strip()}, key=lambda n: (-len(n), n))
    if not names:
        return None
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)


def find_names(text: str, names) -> list[str]:
    pat = name_pattern(names)
    return [m.group(0) for m in pat.finditer(text)] if pat else []


@dataclass
class AttackData:
    """A preset's attack data of one split: descriptions of forget names, retain-only names."""
    descriptions: dict[str, list[str]]  # forget name (lower case) -> descriptions
    retain_names: list[str]
    forget_names: list[str]  # every name the gate should hide: the keywords and the described names
    retain_descriptions: dict[str, list[str]] = field(default_factory=dict)  # retain-only name -> descriptions

    @classmethod
    def of(cls, preset: Preset, split: str) -> "AttackData":
        rows = [r for r in getattr(preset, "attacks", []) if split in (None, "all") or r.split == split]
        desc: dict[str, dict[str, list[str]]] = {"description": {}, "retain_description": {}}
        for r in rows:
            if r.kind in desc:
                desc[r.kind].setdefault(r.name.lower(), []).append(r.text)
        described = sorted({r.name for r in getattr(preset, "attacks", []) if r.kind == "description"})
        return cls(descriptions=desc["description"], retain_names=[r.text for r in rows if r.kind == "retain_name"],
                   forget_names=sorted(set(preset.forget_keywords) | set(described)),
                   retain_descriptions=desc["retain_description"])

    def require(self, what: str, preset: Preset, split: str) -> None:
        have = self.descriptions if what == "descriptions" else self.retain_names
        if not have:
            raise ValueError(f"The preset {preset.name!r} has no {what.replace('_', ' ')} for the {split} split "
                             f"(data/attacks.jsonl); make them with `python scripts/make_attack_data.py {preset.name}`.")


# ---------------------------------------------------------------------------- prompt attacks

@dataclass
class Context:
    """What one attack on one split needs: the preset, its attack data, the split, the settings."""
    preset: Preset
    split: str
    config: AttackConfig
    data: AttackData
    side: str = "forget"

    def rng(self, attack: str, key: str) -> random.Random:
        return rng(self.config.seed, attack, f"{self.side}:{key}")


class PromptAttack:
    """Rewrites prompts and probe prefixes; None means "this row cannot be attacked", and it is dropped."""
    name = "prompt"
    family = "prompt"
    definition = ""
    needs: tuple[str, ...] = ()  # attack data it requires: "descriptions", "retain_names"

    def prompt(self, text: str, key: str, ctx: Context) -> str | None:
        raise NotImplementedError

    def prefix(self, text: str, key: str, ctx: Context) -> str | None:
        """A probe prefix: the attacked text must still end with the clean prefix's last word,
        so the probe's answer still continues it."""
        return self.prompt(text, key, ctx)

    def attack_preset(self, preset: Preset, split: str, config: AttackConfig) -> Preset:
        data = AttackData.of(preset, split)
        for what in self.needs:
            data.require(what, preset, split)
        out = {}
        for side in ("forget", "retain"):
            ctx = Context(preset, split, config, data, side)
            prompts, probes = [], []
            for r in preset.prompts(side, split):
                text = self.prompt(r.prompt, r.id, ctx)
                if text is not None and text != r.prompt:
                    prompts.append(dataclasses.replace(r, prompt=text))
            for p in preset.probes(side, split):
                text = self.prefix(p.prefix, p.id, ctx)
                if text is not None and text != p.prefix and _last_word(text) == _last_word(p.prefix):
                    probes.append(dataclasses.replace(p, prefix=text))
            out[f"{side}_prompts"], out[f"{side}_probes"] = prompts, probes
        return dataclasses.replace(preset, **out)


def _last_word(text: str) -> str:
    words = text.split()
    return words[-1] if words else ""


__all__ = ["AttackConfig", "AttackData", "Context", "PromptAttack", "find_names", "name_pattern", "order", "rng"]
