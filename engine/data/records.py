"""Preset records: the typed rows of a preset's JSONL files and their validation.

Every record is checked as it is parsed; the first bad one raises `PresetError` naming the
file and the 1-based line. Shared by the preset loader and the Hugging Face dataset sources.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "test")
KINDS = ("question", "statement")


class PresetError(ValueError):
    """A preset is missing, malformed or breaks the schema; the message names file and line."""


@dataclass(frozen=True)
class PromptRecord:
    id: str
    prompt: str
    answer: str
    split: str
    kind: str = "question"
    boundary: bool = False
    paraphrase: str | None = None  # the answer reworded (truth ratio)
    perturbed: tuple[str, ...] = ()  # plausible wrong answers (truth ratio)


@dataclass(frozen=True)
class MCQ:
    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    split: str = "test"


@dataclass(frozen=True)
class Probe:
    id: str
    prefix: str
    answer: str
    distractors: tuple[str, ...]
    split: str = "test"

    @property
    def choices(self) -> tuple[str, ...]:
        """The answer first, then the distractors."""
        return (self.answer, *self.distractors)


@dataclass(frozen=True)
class Passage:
    id: str
    text: str


@dataclass(frozen=True)
class AttackRow:
    """One row of a preset's attack data: a description of a forget name (or of a retain-only name),
    or a retain-only name."""
    id: str
    kind: str  # description | retain_description | retain_name
    text: str
    split: str
    name: str = ""  # the name a description stands for
    written: bool = False  # written by hand (data/attacks_written.jsonl), not mined from the corpus


ATTACK_KINDS = ("description", "retain_description", "retain_name")


@dataclass
class Concept:
    """ELM's concept descriptions: what to erase and its harmless counterpart."""
    name: str
    description: str
    counterpart: str
    expert_prefix: str
    novice_prefix: str


# ---------------------------------------------------------------------------- record parsing

def _text(rec: dict, key: str, where: str) -> str:
    if key not in rec:
        raise PresetError(f"{where}: missing field '{key}'.")
    val = rec[key]
    if not isinstance(val, str) or not val.strip():
        raise PresetError(f"{where}: field '{key}' must be a non-empty string.")
    return val


def _split(rec: dict, where: str, default: str | None = None) -> str:
    split = rec.get("split", default)
    if split not in SPLITS:
        raise PresetError(f"{where}: field 'split' must be one of {', '.join(SPLITS)}, got {split!r}.")
    return split


def parse_prompt(rec: dict, where: str) -> PromptRecord:
    kind = rec.get("kind", "question")
    if kind not in KINDS:
        raise PresetError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}.")
    boundary = rec.get("boundary", False)
    if not isinstance(boundary, bool):
        raise PresetError(f"{where}: field 'boundary' must be true or false.")
    paraphrase = rec.get("paraphrase")
    if paraphrase is not None and (not isinstance(paraphrase, str) or not paraphrase.strip()):
        raise PresetError(f"{where}: field 'paraphrase' must be a non-empty string.")
    perturbed = rec.get("perturbed", [])
    if not isinstance(perturbed, list) or not all(isinstance(x, str) and x.strip() for x in perturbed):
        raise PresetError(f"{where}: field 'perturbed' must be a list of non-empty strings.")
    return PromptRecord(
        id=_text(rec, "id", where), prompt=_text(rec, "prompt", where), answer=_text(rec, "answer", where),
        split=_split(rec, where), kind=kind, boundary=boundary, paraphrase=paraphrase, perturbed=tuple(perturbed),
    )


def parse_mcq(rec: dict, where: str) -> MCQ:
    choices = rec.get("choices")
    if not isinstance(choices, list) or len(choices) != 4 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise PresetError(f"{where}: field 'choices' must be a list of 4 non-empty strings.")
    answer = rec.get("answer")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer <= 3:
        raise PresetError(f"{where}: field 'answer' must be the index (0-3) of the correct choice.")
    return MCQ(id=_text(rec, "id", where), question=_text(rec, "question", where), choices=tuple(choices),
               answer=answer, split=_split(rec, where, default="test"))


def parse_probe(rec: dict, where: str) -> Probe:
    answer = _text(rec, "answer", where)
    dis = rec.get("distractors")
    if not isinstance(dis, list) or len(dis) != 3 or not all(isinstance(d, str) and d.strip() for d in dis):
        raise PresetError(f"{where}: field 'distractors' must be a list of 3 non-empty strings.")
    if len({answer, *dis}) != 4:
        raise PresetError(f"{where}: the answer and the 3 distractors must all differ.")
    return Probe(id=_text(rec, "id", where), prefix=_text(rec, "prefix", where), answer=answer,
                 distractors=tuple(dis), split=_split(rec, where, default="test"))


def parse_passage(rec: dict, where: str) -> Passage:
    return Passage(id=_text(rec, "id", where), text=_text(rec, "text", where))


def parse_attack(rec: dict, where: str) -> AttackRow:
    kind = rec.get("kind")
    if kind not in ATTACK_KINDS:
        raise PresetError(f"{where}: field 'kind' must be one of {', '.join(ATTACK_KINDS)}, got {kind!r}.")
    name = _text(rec, "name", where) if kind != "retain_name" else ""
    return AttackRow(id=_text(rec, "id", where), kind=kind, text=_text(rec, "text", where),
                     split=_split(rec, where), name=name, written=bool(rec.get("written", False)))


PARSERS = {"prompt": parse_prompt, "probe": parse_probe, "passage": parse_passage, "mcq": parse_mcq, "attack": parse_attack}


def read_jsonl(path: Path, kind: str, label: str | None = None) -> list:
    """Parse and validate one JSONL file; errors name the file and the 1-based line."""
    label = label or str(path)
    if not path.is_file():
        raise PresetError(f"{label}: file not found.")
    rows, seen = [], set()
    parse = PARSERS[kind]
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{label} line {n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PresetError(f"{where}: not valid JSON ({exc.msg}).") from None
            if not isinstance(rec, dict):
                raise PresetError(f"{where}: each line must be a JSON object.")
            row = parse(rec, where)
            if row.id in seen:
                raise PresetError(f"{where}: duplicate id {row.id!r}.")
            seen.add(row.id)
            rows.append(row)
    if not rows:
        raise PresetError(f"{label}: no records.")
    return rows
