"""`nameless`: every forget name is replaced by a description of it, so no name is left to match.

The descriptions come from the preset's attack data (mined from its own corpus by
scripts/make_attack_data.py, and hand-written ones in data/attacks_written.jsonl); a prompt without a
described forget name, or whose name opens a title or compound ("Hogwarts School", "Jedi Council"),
cannot be attacked cleanly and is left out. A retain row is rewritten the same way where the split
has descriptions of retain-only names ("Gandalf" -> "the grey wizard who guides the hobbits"): the
near-boundary question a gate must still let through; without them retain rows are not attacked.
"""
from __future__ import annotations

import re

from .base import Context, PromptAttack, name_pattern

ARTICLE = re.compile(r"(a|an|the)\s", re.IGNORECASE)
TITLE = re.compile(r"\s+[A-Z]")


class Nameless(PromptAttack):
    name = "nameless"
    definition = "Forget names replaced by descriptions from the preset's corpus (no name left to match)."
    needs = ("descriptions",)

    def prompt(self, text: str, key: str, ctx: Context) -> str | None:
        descriptions = ctx.data.descriptions if ctx.side == "forget" else ctx.data.retain_descriptions
        names = name_pattern(descriptions)
        if names is None or not names.search(text):
            return None
        r = ctx.rng(self.name, key)
        # an article before the name ("a Horcrux") gives way to the description's own ("a the ...")
        pat = re.compile(r"(?:(?<!\w)(a|an|the)\s+)?" + names.pattern, re.IGNORECASE)

        def describe(m: re.Match) -> str:
            text = r.choice(descriptions[m.group(2).lower()])
            if m.group(1) and not ARTICLE.match(text):
                text = f"{m.group(1)} {text}"
            return text

        if any(TITLE.match(text, m.end()) for m in names.finditer(text)):
            return None  # the name opens a title or compound ("Hogwarts School", "Jedi Council"): no clean rewrite
        out = pat.sub(describe, text)
        leftover = name_pattern(ctx.data.forget_names)
        # a name without a description (or one inside a description) would leave the row half attacked
        return None if leftover is not None and leftover.search(out) else _sentence_case(out, text)


def _sentence_case(out: str, clean: str) -> str:
    """A description that opens the text starts with a capital, like the name it replaced."""
    return out[:1].upper() + out[1:] if clean[:1].isupper() else out
