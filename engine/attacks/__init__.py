"""Attacks on unlearning: prompt attacks rewrite the inputs, weight attacks change the weights.

Each attack is a small module registered here by name, like corruptions and metrics; the runner
(runner.py) measures every variant under each. Prompt attacks: nameless, obfuscate, jailbreak,
smuggle, translate, few_shot. Weight attacks: relearn, relearn_retain, quantize, probe.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import AttackConfig, PromptAttack
from .few_shot import FewShot
from .jailbreak import Jailbreak
from .nameless import Nameless
from .obfuscate import Obfuscate
from .smuggle import Smuggle
from .translate import Translate


@dataclass(frozen=True)
class WeightAttack:
    name: str
    definition: str
    family: str = "weight"


PROMPT_ATTACKS: dict[str, PromptAttack] = {a.name: a for a in (Nameless(), Obfuscate(), Jailbreak(), Smuggle(),
                                                                Translate(), FewShot())}
WEIGHT_ATTACKS: dict[str, WeightAttack] = {a.name: a for a in (
    WeightAttack("relearn", "A fresh LoRA trained a few steps on a few forget passages, on top of the variant."),
    WeightAttack("relearn_retain", "The same LoRA trained on unrelated retain passages instead."),
    WeightAttack("quantize", "Every linear weight rounded to a few bits per weight (int8 by default)."),
    WeightAttack("probe", "A linear probe on a middle layer, trained on train probes to pick the true answer."),
)}
CLEAN = "clean"
ATTACKS = (CLEAN, *PROMPT_ATTACKS, *WEIGHT_ATTACKS)


def get_attack(name: str):
    """The attack object for a name (None for "clean"); an unknown name lists the known ones."""
    if name == CLEAN:
        return None
    if name in PROMPT_ATTACKS:
        return PROMPT_ATTACKS[name]
    if name in WEIGHT_ATTACKS:
        return WEIGHT_ATTACKS[name]
    raise ValueError(f"Unknown attack {name!r}; known: {', '.join(ATTACKS)}.")


def list_attacks() -> dict[str, dict]:
    """name -> {family, definition}, clean first."""
    out = {CLEAN: {"family": "clean", "definition": "No attack: the split as it is."}}
    for table in (PROMPT_ATTACKS, WEIGHT_ATTACKS):
        out.update({n: {"family": a.family, "definition": a.definition} for n, a in table.items()})
    return out


from .runner import AttackResult, run_attacks  # noqa: E402 (the runner looks attacks up here)

__all__ = ["ATTACKS", "AttackConfig", "AttackResult", "PROMPT_ATTACKS", "WEIGHT_ATTACKS", "get_attack",
           "list_attacks", "run_attacks"]
