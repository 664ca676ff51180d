"""The gate's forget lexicon: rare names known only from the forget side of the training material.

A prompt that names a forget-only name is flagged outright (PromptClassifier scores it 1). The
lexicon can only raise a score, so no text an attacker adds can use it to pass a forget question.
It is built with spaCy NER over the gate's training fold only (no test record and no calibration
record), cleaned of NER fragments, cut of anything that occurs on the retain side, and cached per
material; `rare_names_only` then keeps the names uncommon enough to mean the topic, judged by the
encoder's vocabulary. `NameMatcher` finds the names as written and also as an attacker disguises
them: any case, leetspeak digits, letters spaced or hyphenated apart, a plural or singular form,
or one typo in a long word.
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


def names_pattern(names: list[str]):
    """A regex matching any of the names as whole words, case-sensitively (None for no names)."""
    import re

    body = "|".join(re.escape(e) for e in names)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)") if body else None


def found_names(pattern, text: str) -> list[str]:
    """The names a text mentions, in order of appearance, each once."""
    return list(dict.fromkeys(m.group(0) for m in pattern.finditer(text))) if pattern is not None else []


LEET = str.maketrans({"0": "o", "4": "a", "@": "a", "3": "e", "1": "i", "5": "s", "$": "s", "7": "t"})
FUZZY_MIN = 7  # a word this long may carry one typo (a shorter one would meet real words: Snape/shape)
FUZZY_MIN_IN_NAME = 4  # in a multi-word name every word must match, so shorter words may carry one


def canonical(text: str) -> str:
    """Lower case, possessive 's dropped, leetspeak digits inside words read as letters, hyphens and
    apostrophes inside words dropped, and runs of single letters written apart joined
    ("H a r r y" -> "harry")."""
    import re

    text = re.sub(r"(?<=\w)['\u2019]s(?!\w)", "", text.lower())
    text = re.sub(r"(?<=\w)[-'\u2019](?=\w)", "", text)
    for _ in range(2):  # a digit between two digits is read once its neighbour is a letter
        text = re.sub(r"(?<=[a-z])[0-9@$]|[0-9@$](?=[a-z])", lambda m: m.group(0).translate(LEET), text)
    return re.sub(r"(?<!\w)\w(?: \w)+(?!\w)", lambda m: m.group(0).replace(" ", ""), text)


def one_edit(a: str, b: str) -> bool:
    """Whether b is a with at most one letter changed, added or dropped, or two neighbours swapped."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    return (a[i + 1:] == b[i + 1:] or a[i + 1:] == b[i:] or a[i:] == b[i + 1:]
            or (a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1]))


class NameMatcher:
    """Finds lexicon names in a text: exactly (case-sensitive, whole words), and with `see_through`
    also in the text's canonical form, word by word, where a word may take or drop a plural ending
    ("Jawas" for "Jawa", "Horcrux" for "Horcruxes"), a word of FUZZY_MIN letters or more may carry
    one typo (in a multi-word name, whose every word must match, one of FUZZY_MIN_IN_NAME), and a
    multi-word name may be written as one run ("siriusblack", exactly).
    Known gap: a one-letter word right after spaced-out letters joins their run ("H a g r i d a")."""

    def __init__(self, names: list[str], see_through: bool = True):
        import re

        self.names = sorted(set(names), key=lambda e: (-len(e), e))
        self.pattern, self.see_through = names_pattern(self.names), see_through
        self.forms: list[tuple[list[str], str]] = []
        self.joined: set[tuple[str, str]] = set()  # a multi-word name written as one run: exact only
        for name in self.names:
            words = re.findall(r"\w+", canonical(name))
            if words:
                self.forms.append((words, name))
                if len(words) > 1 and min(map(len, words)) >= 2:  # "siriusblack"; not "owl" of O.W.L.
                    self.joined.add(("".join(words), name))
        self.by_first: dict[str, list[tuple[list[str], str]]] = {}
        for words, name in self.forms:
            self.by_first.setdefault(words[0], []).append((words, name))
        self.by_deletion: dict[str, list[tuple[list[str], str]]] = {}  # one letter dropped -> forms
        for words, name in self.forms:
            if len(words[0]) >= (FUZZY_MIN if len(words) == 1 else FUZZY_MIN_IN_NAME):
                for key in _deletions(words[0]):
                    self.by_deletion.setdefault(key, []).append((words, name))

    def find(self, text: str) -> list[str]:
        """The names a text mentions, each once: those written as they are, then disguised ones."""
        import re

        found = found_names(self.pattern, text)
        if not self.see_through or not self.forms:
            return found
        words = re.findall(r"\w+", canonical(text))
        runs = set(words)
        found += [name for joined, name in sorted(self.joined) if joined in runs and name not in found]
        for i, w in enumerate(words):
            candidates = [c for form in number_forms(w) for c in self.by_first.get(form, ())]
            if len(w) >= FUZZY_MIN_IN_NAME - 1:
                candidates += [c for k in _deletions(w) for c in self.by_deletion.get(k, ())
                               if one_edit(c[0][0], w) and c not in candidates]
            for name_words, name in candidates:
                if name not in found and all(i + k < len(words) and _same(nw, words[i + k], len(name_words))
                                             for k, nw in enumerate(name_words)):
                    found.append(name)
        return found


def coined_words(forget_texts: list[str], retain_texts: list[str], tokenizer) -> list[str]:
    """Capitalised words the forget material uses as names that spaCy does not tag ("Expelliarmus",
    "Niffler", "Hogwarts"): five letters or more, capitalised at least once in mid-sentence (so
    "Summarize" opening a question is not one), split into three or more pieces by the encoder's
    vocabulary (rare), never written in lower case by the forget material itself (so "Broomsticks" of
    a pub's name is not one where the same texts fly on broomsticks: the matcher sees through case),
    and absent, in any case, from the retain material."""
    import re

    mid = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{4,})(?![\w'-])")
    candidates = {m.group(1) for t in forget_texts for m in mid.finditer(t)}
    ordinary = set(re.findall(r"(?<![\w'-])[a-z]+(?![\w'-])", "\n".join(forget_texts)))
    retain = set(re.findall(r"\w+", "\n".join(retain_texts).lower()))
    return sorted(w for w in candidates if w.lower() not in retain | ordinary and len(tokenizer.tokenize(w)) >= 3)


def unseen_names(names: list[str], texts: list[str], see_through: bool = True) -> list[str]:
    """The names the matcher finds in none of the texts (the retain side of the training fold):
    a name that fires on retain training text, disguised or not, would fire on retain prompts."""
    matcher, seen = NameMatcher(names, see_through), set()
    for text in texts:
        seen.update(matcher.find(text))
    return [n for n in names if n not in seen]


def _deletions(word: str) -> set[str]:
    """The word and every form of it with one letter dropped (two words within one edit share one)."""
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


def number_forms(word: str) -> set[str]:
    """The word and its regular plural or singular: "jawa" <-> "jawas", "horcrux" <-> "horcruxes"
    ("es" only after s, x, z, ch or sh, so "rey" is not "reyes"). A stem keeps three letters."""
    sibilant = ("s", "x", "z", "ch", "sh")
    forms = {word, word + "s"} | ({word + "es"} if word.endswith(sibilant) else set())
    if word.endswith("es") and word[:-2].endswith(sibilant) and len(word) >= 5:
        forms.add(word[:-2])
    elif word.endswith("s") and not word.endswith("ss") and len(word) >= 4:
        forms.add(word[:-1])
    return forms


def _same(name_word: str, word: str, n_words: int = 1) -> bool:
    shortest = FUZZY_MIN if n_words == 1 else FUZZY_MIN_IN_NAME
    return word in number_forms(name_word) or (len(name_word) >= shortest and one_edit(name_word, word))


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
