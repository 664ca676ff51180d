"""The gate's training and calibration data: record folds, attacked copies and contrastive pairs.

The gate is trained on the attacks it must withstand. Every prompt attack of `engine.attacks`
(nameless, obfuscate, jailbreak, smuggle, translate, few_shot) rewrites the train split's prompts
and probe prefixes with the train split's templates, descriptions and names: a forget row's
attacked copy is labelled forget, a retain row's (near-boundary ones included) retain. Contrastive
pairs teach that a forget question stays a forget question beside a neighbour's: a retain prompt
followed by a forget prompt is labelled forget, while the retain prompt alone (and smuggle's retain
names on retain rows) stays retain. The test split's templates, descriptions and names are never
read, so the attacks a gate is measured on are ones it never saw.

Records are split into folds by a hash of their id, never by position: `fold` keeps the calibration
fold (retain records the classifier and the lexicons never see, which set tau) and, for design work,
a dev fold of the train split. Everything is deterministic in the seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re

from ..data.presets import Preset

FAMILIES = ("nameless", "obfuscate", "jailbreak", "smuggle", "translate", "few_shot")


def bucket(key: str, salt: str = "gate") -> float:
    """A record's place in [0, 1), from a hash of its id: stable, order-free."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 16**8


@dataclasses.dataclass
class Folds:
    """A preset cut into the records the gate trains on, the retain records that calibrate it,
    and (for design work only) a dev fold of train records of both sides."""
    train: Preset
    calibration: Preset
    dev: Preset | None


def folds(preset: Preset, calibration_fraction: float, dev_fraction: float = 0.0) -> Folds:
    """Train-split records only. Calibration takes `calibration_fraction` of the retain prompts,
    probes and corpus passages; dev takes `dev_fraction` of the remaining prompts and probes of both
    sides. A test record is never in any fold."""
    c, d = calibration_fraction, dev_fraction

    def keep(rows, test):
        return [r for r in rows if test(bucket(r.id))]

    def fold(retain, forget, retain_corpus, forget_corpus: bool) -> Preset:
        return dataclasses.replace(
            preset, retain_prompts=keep(preset.prompts("retain", "train"), retain),
            retain_probes=keep(preset.probes("retain", "train"), retain),
            forget_prompts=keep(preset.prompts("forget", "train"), forget),
            forget_probes=keep(preset.probes("forget", "train"), forget),
            retain_corpus=keep(preset.retain_corpus, retain_corpus),
            forget_corpus=list(preset.forget_corpus) if forget_corpus else [])

    def in_dev(b: float) -> bool:
        return c <= b < c + d

    never = lambda b: False  # noqa: E731  (a fold without these records)
    parts = {"train": fold(lambda b: b >= c + d, lambda b: not in_dev(b), lambda b: b >= c, True),
             "calibration": fold(lambda b: b < c, never, lambda b: b < c, False),
             "dev": fold(in_dev, in_dev, never, False)}
    return Folds(parts["train"], parts["calibration"], parts["dev"] if d > 0 else None)


def sentences(text: str) -> list[str]:
    """Split a passage into sentences (a light rule: '. ' followed by a capital letter)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text) if len(s.strip()) > 15]


def texts(preset: Preset, side: str, answers: bool = False) -> list[str]:
    """A fold's own texts of one side: its prompts, probe prefixes and corpus sentences, and with
    `answers` the sentences of its prompts' reference answers."""
    corpus = preset.forget_corpus if side == "forget" else preset.retain_corpus
    out = [r.prompt for r in preset.prompts(side, "train")] + [p.prefix for p in preset.probes(side, "train")]
    out += [s for r in preset.prompts(side, "train") for s in sentences(r.answer)] if answers else []
    return out + [s for p in corpus for s in sentences(p.text)]


def attacked(preset: Preset, seed: int, families=FAMILIES, nameless_copies: int = 1) -> dict[str, list[str]]:
    """{side: texts}: each family's train-split rewrite of the fold's prompts and probe prefixes;
    `nameless` `nameless_copies` times, each with its own seed (so with its own draw of descriptions)."""
    from ..attacks import PROMPT_ATTACKS
    from ..attacks.base import AttackConfig

    out = {"forget": [], "retain": []}
    for name in families:
        attack = PROMPT_ATTACKS[name]
        for copy in range(nameless_copies if name == "nameless" else 1):
            try:
                rewritten = attack.attack_preset(preset, "train", AttackConfig(seed=seed + COPY_SEED * copy))
            except ValueError:  # the preset lacks this family's attack data: nothing to learn from it
                break
            for side in out:
                out[side] += [r.prompt for r in rewritten.prompts(side, "train")]
                out[side] += [p.prefix for p in rewritten.probes(side, "train")]
    return out


COPY_SEED = 7919  # seed offset between the copies of one family's rewrite


def attack_data(preset: Preset, written: bool = True) -> Preset:
    """The preset with (or without) its hand-written attack data (data/attacks_written.jsonl)."""
    return preset if written else dataclasses.replace(preset, attacks=[r for r in preset.attacks if not r.written])


def contrastive(preset: Preset, seed: int) -> list[str]:
    """Forget questions asked right after a retain question ("<retain prompt> <forget prompt>"),
    each pair drawn with a seeded generator per retain row: labelled forget."""
    from ..attacks.base import rng

    forget = sorted(preset.prompts("forget", "train"), key=lambda r: r.id)
    if not forget:
        return []
    out = []
    for r in sorted(preset.prompts("retain", "train"), key=lambda r: r.id):
        f = rng(seed, "contrastive", r.id).choice(forget)
        out.append(f"{r.prompt} {f.prompt}")
    return out


def gate_texts(preset: Preset, seed: int, augment: bool = True, nameless_copies: int = 1,
               frames: bool = False, answers: bool = False) -> tuple[list[str], list[str]]:
    """(forget texts, retain texts) of one fold: its own texts (`texts`) and, with `augment`, their
    attacked copies (and, for forget, the contrastive pairs); with `frames` too, the attacks' frames
    alone (`frame_clauses`) as retain texts. Duplicates are dropped, order is kept."""
    forget, retain = texts(preset, "forget", answers), texts(preset, "retain", answers)
    if augment:
        extra = attacked(preset, seed, nameless_copies=nameless_copies)
        forget += extra["forget"] + contrastive(preset, seed)
        retain += extra["retain"] + (frame_clauses(extra["forget"], extra["retain"]) if frames else [])
    return list(dict.fromkeys(forget)), list(dict.fromkeys(retain))


SEGMENT = re.compile(r"(?<=[.!?:;,])\s+|\s*\n+\s*")  # where the gate cuts a prompt into clauses


def clauses(text: str) -> list[str]:
    """The clauses of two words or more the gate scores on their own (PromptClassifier.windows)."""
    return [c for c in SEGMENT.split(text) if len(c.split()) >= 2]


def frame_clauses(forget: list[str], retain: list[str]) -> list[str]:
    """Clauses found in attacked copies of both sides: the attacks' own frames ("My late grandmother
    used to tell me about this at bedtime.", "Setting Walter Brattain aside for a moment,"), which
    say nothing about either topic. The gate scores every clause alone, so a frame learnt only
    inside whole copies of both labels scores wherever it falls, the same on every copy it wraps;
    on the calibration fold one frame's score is then shared by a dozen copies and sets tau.
    Labelled retain alone, a frame scores lower (harry_potter's grandmother frame: 0.587 -> 0.555),
    and a wrapped forget question keeps its own clause's score."""
    seen = {c for t in forget for c in clauses(t)}
    return [c for t in retain for c in clauses(t) if c in seen]
