"""Presets: what to forget and what to keep, as YAML + JSONL data, validated on load.

A preset folder holds `preset.yaml` and `data/*.jsonl`. Every record is checked; the first bad
record raises `PresetError` naming the file and the line. This module knows nothing about
models: the known-facts filter that produced the probe files lives in scripts/.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
SPLITS = ("train", "test")
KINDS = ("question", "statement")
FILES = {  # role -> (default path, record kind)
    "forget_prompts": ("data/forget_prompts.jsonl", "prompt"),
    "retain_prompts": ("data/retain_prompts.jsonl", "prompt"),
    "forget_probes": ("data/forget_probes.jsonl", "probe"),
    "retain_probes": ("data/retain_probes.jsonl", "probe"),
    "forget_corpus": ("data/forget_corpus.jsonl", "passage"),
    "retain_corpus": ("data/retain_corpus.jsonl", "passage"),
}


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


@dataclass
class Concept:
    """ELM's concept descriptions: what to erase and its harmless counterpart."""
    name: str
    description: str
    counterpart: str
    expert_prefix: str
    novice_prefix: str


@dataclass
class Preset:
    name: str
    title: str
    description: str
    root: Path
    forget_keywords: list[str]
    concept: Concept
    forget_prompts: list[PromptRecord]
    retain_prompts: list[PromptRecord]
    forget_probes: list[Probe]
    retain_probes: list[Probe]
    forget_corpus: list[Passage]
    retain_corpus: list[Passage]
    meta: dict = field(default_factory=dict)
    forget_mcq: list[MCQ] = field(default_factory=list)
    retain_mcq: list[MCQ] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # role -> hash of rows read from a dataset

    def prompts(self, side: str, split: str | None = None) -> list[PromptRecord]:
        rows = self.forget_prompts if side == "forget" else self.retain_prompts
        return [r for r in rows if split in (None, "all") or r.split == split]

    def probes(self, side: str, split: str | None = None) -> list[Probe]:
        rows = self.forget_probes if side == "forget" else self.retain_probes
        return [r for r in rows if split in (None, "all") or r.split == split]

    def mcqs(self, side: str, split: str | None = None) -> list[MCQ]:
        rows = self.forget_mcq if side == "forget" else self.retain_mcq
        return [r for r in rows if split in (None, "all") or r.split == split]

    def data_hash(self) -> str:
        """sha256 over every data file and preset.yaml: a capsule names the exact data it used."""
        import hashlib

        h = hashlib.sha256()
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and (path.suffix in (".jsonl", ".yaml") and "adapters" not in path.parts):
                h.update(path.relative_to(self.root).as_posix().encode())
                h.update(path.read_bytes())
        for role, digest in sorted(self.sources.items()):
            h.update(f"{role}:{digest}".encode())
        return h.hexdigest()

    def summary(self) -> dict:
        count = lambda rows, s: sum(1 for r in rows if r.split == s)  # noqa: E731
        return {
            "name": self.name,
            "title": self.title,
            "forget_prompts": {s: count(self.forget_prompts, s) for s in SPLITS},
            "retain_prompts": {s: count(self.retain_prompts, s) for s in SPLITS},
            "forget_probes": {s: count(self.forget_probes, s) for s in SPLITS},
            "retain_probes": {s: count(self.retain_probes, s) for s in SPLITS},
            "forget_corpus": len(self.forget_corpus),
            "retain_corpus": len(self.retain_corpus),
            "forget_mcq": len(self.forget_mcq),
            "retain_mcq": len(self.retain_mcq),
        }


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


PARSERS = {"prompt": parse_prompt, "probe": parse_probe, "passage": parse_passage, "mcq": parse_mcq}
OPTIONAL_FILES = {"forget_mcq": "mcq", "retain_mcq": "mcq"}  # role -> record kind, read when listed


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


# ---------------------------------------------------------------------------- presets

def list_presets(root: Path = PRESETS_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/preset.yaml"))


def resolve_preset_dir(name_or_path: str | Path, root: Path = PRESETS_DIR) -> Path:
    path = Path(name_or_path).expanduser()
    if (path / "preset.yaml").is_file():
        return path
    if (root / str(name_or_path) / "preset.yaml").is_file():
        return root / str(name_or_path)
    known = ", ".join(list_presets(root)) or "none"
    raise PresetError(f"Unknown preset {str(name_or_path)!r}; known presets: {known}.")


def load_preset(name_or_path: str | Path, root: Path = PRESETS_DIR) -> Preset:
    folder = resolve_preset_dir(name_or_path, root)
    yaml_path = folder / "preset.yaml"
    label_root = folder.name
    try:
        meta = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PresetError(f"{label_root}/preset.yaml: not valid YAML ({exc}).") from None
    if not isinstance(meta, dict):
        raise PresetError(f"{label_root}/preset.yaml: must be a mapping.")
    for key in ("name", "title", "description", "forget_keywords", "concept"):
        if key not in meta:
            raise PresetError(f"{label_root}/preset.yaml: missing field '{key}'.")
    c = meta["concept"]
    ckeys = ("name", "description", "counterpart", "expert_prefix", "novice_prefix")
    if not isinstance(c, dict) or any(not isinstance(c.get(k), str) for k in ckeys):
        raise PresetError(f"{label_root}/preset.yaml: 'concept' needs string fields {', '.join(ckeys)}.")
    listed = meta.get("files") or {}
    if not isinstance(listed, dict):
        raise PresetError(f"{label_root}/preset.yaml: 'files' must be a mapping of role to path or dataset.")
    files = {**{k: v[0] for k, v in FILES.items()}, **listed}
    roles = [(role, kind) for role, (_, kind) in FILES.items()]
    roles += [(role, kind) for role, kind in OPTIONAL_FILES.items() if role in listed]
    data, sources = {}, {}
    for role, kind in roles:
        source = files[role]
        if isinstance(source, dict):
            from engine.hf_sources import read_dataset

            data[role] = read_dataset(source, kind, folder, f"{label_root}/preset.yaml files.{role}", role)
            sources[role] = _rows_hash(data[role])
        elif isinstance(source, str):
            data[role] = read_jsonl(folder / source, kind, label=f"{label_root}/{source}")
        else:
            raise PresetError(f"{label_root}/preset.yaml: files.{role} must be a path or a dataset mapping.")
    return Preset(
        name=str(meta["name"]), title=str(meta["title"]), description=str(meta["description"]),
        root=folder, forget_keywords=[str(k) for k in meta["forget_keywords"]],
        concept=Concept(**{k: c[k] for k in ckeys}), meta=meta, sources=sources, **data,
    )


def _rows_hash(rows: list) -> str:
    """sha256 of the parsed rows of a dataset source: the capsule pins the data, not just its name."""
    import dataclasses
    import hashlib

    blob = json.dumps([dataclasses.asdict(r) for r in rows], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
