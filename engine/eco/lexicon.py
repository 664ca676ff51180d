"""The gate's two lexicons: rare names known only from one side of a preset's training material.

A prompt that names a forget-only name is flagged outright (PromptClassifier scores it 1); one
that names a retain-only name and no forget-only name passes (scored 0), so a neighbour the
classifier confuses with the topic ("Frodo", "the Eiffel Tower") is not corrupted. The lexicons
are built with spaCy NER over the training material only (no test record), cleaned of NER
fragments, cut of anything that occurs on the other side, and cached per material.
`rare_names_only` then keeps the names uncommon enough to mean their side, judged by the
encoder's vocabulary.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading

from ..lm.models import cache_dir
from ..data.presets import Preset

ENTITY_TYPES = ("PERSON", "ORG", "GPE", "LOC", "FAC", "WORK_OF_ART", "PRODUCT", "EVENT", "NORP")


def lexicon_material(preset: Preset) -> tuple[list[str], list[str]]:
    """(forget texts, retain texts) of the training material: both corpora, the train-split
    prompts with their answers and the train probe prefixes. No test record is ever read."""
    def material(side: str, corpus) -> list[str]:
        texts = [p.text for p in corpus]
        texts += [f"{r.prompt} {r.answer}" for r in preset.prompts(side, "train")]
        return texts + [p.prefix for p in preset.probes(side, "train")]

    return material("forget", preset.forget_corpus), material("retain", preset.retain_corpus)


def forget_lexicon(forget_texts: list[str], retain_texts: list[str]) -> list[tuple[str, str]]:
    """(name, spaCy label) of the entities in the forget texts that never occur in the retain texts.

    Names are cleaned first (a leading "the" dropped; both edge words must be capitalised, which
    removes NER fragments such as "the Order of" or "Harry kills"). An entity is dropped if spaCy
    finds it on the retain side or if its text occurs there at all, so a shared first name
    ("Harry" in retain's "Harry Houdini") never becomes a trigger."""
    import re

    def clean(e: str) -> str | None:
        e = re.sub(r"^(?:the|The)\s+", "", e.strip())
        words = e.split()
        if len(e) < 4 or not words or not (words[0][:1].isupper() and words[-1][:1].isupper()):
            return None
        return e

    forget = {c: label for e, label in named_entities(forget_texts).items() if (c := clean(e))}
    retain = {c for e in named_entities(retain_texts) if (c := clean(e))}
    joined = "\n".join(retain_texts)
    return [(e, forget[e]) for e in sorted(set(forget) - retain)
            if not re.search(rf"(?<!\w){re.escape(e)}(?!\w)", joined)]


PLACE_TYPES = ("GPE", "LOC", "NORP")


def rare_names_only(entries: list[tuple[str, str]], tokenizer) -> list[str]:
    """Keep the names that are rare enough to mean the forget topic. A word is common when it is a
    single token of the encoder's vocabulary. A name with a rare word stays ("Dumbledore",
    "Felix Felicis"); an all-common one-word name goes ("Order", "Ireland", "Bill"), and so does an
    all-common place ("United Kingdom", "West End"); all-common multi-word names of people,
    organisations and works stay ("Sirius Black", "Ministry of Magic")."""
    def rare(word: str) -> bool:
        return len(tokenizer.tokenize(word)) > 1

    keep = []
    for name, label in entries:
        words = name.split()
        if any(rare(w) for w in words) or (len(words) > 1 and label not in PLACE_TYPES):
            keep.append(name)
    return keep


def rare_name_words(names: list[str], other_texts: list[str], tokenizer) -> list[str]:
    """The rare capitalised words of multi-word names that never occur in the other side's texts
    ("Frodo" and "Baggins" of "Frodo Baggins"), so a prompt that says only "Frodo" still matches."""
    import re

    joined, words = "\n".join(other_texts), set()
    for name in names:
        parts = name.split()
        for w in parts if len(parts) > 1 else ():
            if (len(w) > 3 and w[:1].isupper() and len(tokenizer.tokenize(w)) > 1
                    and not re.search(rf"(?<!\w){re.escape(w)}(?!\w)", joined)):
                words.add(w)
    return sorted(words)


def retain_names(preset: Preset, tokenizer) -> list[str]:
    """The retain-side lexicon: rare names known only from the retain training material, and the
    rare words of those names that the forget material never uses."""
    forget, _ = lexicon_material(preset)
    names = rare_names_only(cached_lexicon(preset, side="retain"), tokenizer)
    return sorted(set(names) | set(rare_name_words(names, forget, tokenizer)))


def names_pattern(names: list[str]):
    """A regex matching any of the names as whole words, case-sensitively (None for no names)."""
    import re

    body = "|".join(re.escape(e) for e in names)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)") if body else None


def found_names(pattern, text: str) -> list[str]:
    """The names a text mentions, in order of appearance, each once."""
    return list(dict.fromkeys(m.group(0) for m in pattern.finditer(text))) if pattern is not None else []


def named_entities(texts: list[str]) -> dict[str, str]:
    """Named entities of some texts (spaCy), name -> label."""
    from .selection import load_spacy

    found = {}
    for doc in load_spacy().pipe(texts):
        for ent in doc.ents:
            if ent.label_ in ENTITY_TYPES and len(ent.text) > 2:
                found.setdefault(ent.text.removesuffix("'s").strip(), ent.label_)
    return found


LEXICON_VERSION = 3  # bump when forget_lexicon's rules change: the cache is keyed by it


def cached_lexicon(preset: Preset, side: str = "forget") -> list[tuple[str, str]]:
    """(name, label) known only from one side's training material (`forget_lexicon` with the sides
    swapped for "retain"), cached per material (spaCy takes a few seconds)."""
    if side not in ("forget", "retain"):
        raise ValueError(f"Unknown side {side!r}; known: forget, retain.")
    forget, retain = lexicon_material(preset)
    own, other = (forget, retain) if side == "forget" else (retain, forget)
    digest = hashlib.sha256(json.dumps([LEXICON_VERSION, own, other]).encode()).hexdigest()[:16]
    path = cache_dir() / "classifiers" / f"lexicon-{preset.name}-{side}-{digest}.json"
    if path.is_file():
        try:
            return [tuple(e) for e in json.loads(path.read_text())]
        except (OSError, ValueError):
            pass
    lexicon = forget_lexicon(own, other)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(lexicon, ensure_ascii=False))
    tmp.replace(path)
    return lexicon
