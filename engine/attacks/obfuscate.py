"""`obfuscate`: the names in a text are written so that exact matching misses them.

Each target is rewritten by one seeded operation: leetspeak (o->0, a->4, e->3, i->1, s->5),
a typo (two neighbouring letters swapped, or one doubled), spacing (a space between letters) or
hyphenation (a hyphen inside the word); the whole text may also change case. Targets are the
forget names in the text; in a text without one (every retain row), its capitalised words
(other than the first) or else its longest word, so retain rows are transformed the same way.
A probe prefix keeps its last word, which its answer continues.
"""
from __future__ import annotations

import random
import re

from .base import Context, PromptAttack, name_pattern

LEET = str.maketrans({"o": "0", "O": "0", "a": "4", "A": "4", "e": "3", "E": "3", "i": "1", "I": "1",
                      "s": "5", "S": "5"})
OPS = ("leet", "typo", "spacing", "hyphen")


def leet(word: str, r: random.Random) -> str:
    out = word.translate(LEET)
    return out if out != word else typo(word, r)


def typo(word: str, r: random.Random) -> str:
    letters = [i for i in range(len(word) - 1) if word[i].isalpha() and word[i + 1].isalpha()
               and word[i].lower() != word[i + 1].lower()]
    if letters:
        i = r.choice(letters)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    i = r.randrange(len(word))
    return word[:i] + word[i] + word[i:]  # a doubled letter


def spacing(word: str, r: random.Random) -> str:
    return " ".join(word)


def hyphen(word: str, r: random.Random) -> str:
    if len(word) < 2:
        return word + "-"
    i = r.randrange(1, len(word))
    return word[:i] + "-" + word[i:]


def obfuscate_word(word: str, r: random.Random) -> str:
    op = r.choice(OPS)
    return {"leet": leet, "typo": typo, "spacing": spacing, "hyphen": hyphen}[op](word, r)


def targets(text: str, ctx: Context, protect: int) -> list[tuple[int, int]]:
    """(start, end) spans to rewrite, none reaching past `protect` (the protected tail starts there)."""
    pat = name_pattern(ctx.data.forget_names)
    spans = [m.span() for m in pat.finditer(text)] if pat else []
    if not spans:
        words = [m for m in re.finditer(r"[A-Za-z][\w'-]*", text)]
        caps = [m for m in words[1:] if m.group(0)[0].isupper() and len(m.group(0)) >= 4]
        spans = [m.span() for m in caps] or ([max(words, key=lambda m: len(m.group(0))).span()] if words else [])
    return [s for s in spans if s[1] <= protect]


class Obfuscate(PromptAttack):
    name = "obfuscate"
    definition = "Names written in leetspeak, with typos, spaced or hyphenated letters, maybe in another case."

    def rewrite(self, text: str, key: str, ctx: Context, protect: int) -> str | None:
        r = ctx.rng(self.name, key)
        spans = targets(text, ctx, protect)
        if not spans:
            return None
        out, last = [], 0
        for a, b in spans:
            out += [text[last:a], " ".join(obfuscate_word(w, r) for w in text[a:b].split(" "))]
            last = b
        body, tail = "".join(out) + text[last:protect], text[protect:]
        case = r.choice(("keep", "keep", "upper", "lower"))
        body = body.upper() if case == "upper" else body.lower() if case == "lower" else body
        return body + tail

    def prompt(self, text: str, key: str, ctx: Context) -> str | None:
        return self.rewrite(text, key, ctx, len(text))

    def prefix(self, text: str, key: str, ctx: Context) -> str | None:
        cut = text.rstrip().rfind(" ")
        return self.rewrite(text, key, ctx, max(cut, 0)) if cut > 0 else None
