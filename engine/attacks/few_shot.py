"""`few_shot`: questions and answers of the same side, from the train split, come first.

In-context examples of the topic can revive what the weights were made to hide. A prompt gets
`shots` Q/A pairs of the train split's prompts of its side (never itself), a probe prefix gets
`shots` completed train probes of its side, each drawn with the row's own seed from the pool in id
order (so the shots do not depend on the order of the preset's rows).
"""
from __future__ import annotations

from .base import Context, PromptAttack


class FewShot(PromptAttack):
    name = "few_shot"
    definition = "Train-split Q/A pairs of the same side prepended (in-context relearning)."

    def prompt(self, text: str, key: str, ctx: Context) -> str | None:
        pool = sorted((r for r in ctx.preset.prompts(ctx.side, "train") if r.id != key), key=lambda r: r.id)
        if not pool:
            return None
        shots = ctx.rng(self.name, key).sample(pool, min(ctx.config.shots, len(pool)))
        lines = [f"Q: {r.prompt}\nA: {r.answer}" for r in shots]
        return "\n\n".join([*lines, f"Q: {text}"])

    def prefix(self, text: str, key: str, ctx: Context) -> str | None:
        pool = sorted((p for p in ctx.preset.probes(ctx.side, "train") if p.id != key), key=lambda p: p.id)
        if not pool:
            return None
        shots = ctx.rng(self.name, key).sample(pool, min(ctx.config.shots, len(pool)))
        return "\n".join(f"{p.prefix}{p.answer}." for p in shots) + "\n" + text
