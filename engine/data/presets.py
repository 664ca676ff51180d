"""Presets: what to forget and what to keep, as YAML + JSONL data, validated on load.

A preset folder holds `preset.yaml` and `data/*.jsonl`. Every record is checked; the first bad
record raises `PresetError` naming the file and the line. This module knows nothing about
models: the known-facts filter that produced the probe files lives in scripts/.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .records import (MCQ, SPLITS, AttackRow, Concept, Passage, PresetError, Probe, PromptRecord,  # noqa: F401 (re-exported)
                      read_jsonl)

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
SIDES = ("forget", "retain")
FILES = {  # role -> (default path, record kind)
    "forget_prompts": ("data/forget_prompts.jsonl", "prompt"),
    "retain_prompts": ("data/retain_prompts.jsonl", "prompt"),
    "forget_probes": ("data/forget_probes.jsonl", "probe"),
    "retain_probes": ("data/retain_probes.jsonl", "probe"),
    "forget_corpus": ("data/forget_corpus.jsonl", "passage"),
    "retain_corpus": ("data/retain_corpus.jsonl", "passage"),
}


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
    attacks: list[AttackRow] = field(default_factory=list)  # descriptions and retain names for attacks

    def prompts(self, side: str, split: str | None = None) -> list[PromptRecord]:
        return self._rows(self.forget_prompts, self.retain_prompts, side, split)

    def probes(self, side: str, split: str | None = None) -> list[Probe]:
        return self._rows(self.forget_probes, self.retain_probes, side, split)

    def mcqs(self, side: str, split: str | None = None) -> list[MCQ]:
        return self._rows(self.forget_mcq, self.retain_mcq, side, split)

    @staticmethod
    def _rows(forget: list, retain: list, side: str, split: str | None) -> list:
        """One side's rows of one split (None or "all": every split); an unknown side is refused."""
        if side not in SIDES:
            raise ValueError(f"Unknown side {side!r}; known: {', '.join(SIDES)}.")
        return [r for r in (forget if side == "forget" else retain) if split in (None, "all") or r.split == split]

    def train_settings(self, method: str) -> dict:
        """The preset's own settings for the method's shipped adapter (preset.yaml `train:`), {}
        when it has none: scripts/ship_adapters.py trains with them, on top of the defaults."""
        return dict((self.meta.get("train") or {}).get(method) or {})

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
            "attack_rows": len(self.attacks),
        }


OPTIONAL_FILES = {"forget_mcq": "mcq", "retain_mcq": "mcq", "attacks": "attack",
                  "attacks_written": "attack"}  # role -> kind, read when listed
# read from here when present, even if not listed; attacks_written (hand-written descriptions) joins attacks
DEFAULT_OPTIONAL = {"attacks": "data/attacks.jsonl", "attacks_written": "data/attacks_written.jsonl"}




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
    train = meta.get("train") or {}
    if not isinstance(train, dict) or any(not isinstance(v, dict) for v in train.values()):
        raise PresetError(f"{label_root}/preset.yaml: 'train' must map a method (elm, sku) to its settings.")
    listed = meta.get("files") or {}
    if not isinstance(listed, dict):
        raise PresetError(f"{label_root}/preset.yaml: 'files' must be a mapping of role to path or dataset.")
    files = {**{k: v[0] for k, v in FILES.items()}, **listed}
    roles = [(role, kind) for role, (_, kind) in FILES.items()]
    files.update({role: path for role, path in DEFAULT_OPTIONAL.items()
                  if role not in listed and (folder / path).is_file()})
    roles += [(role, kind) for role, kind in OPTIONAL_FILES.items() if role in files]
    data, sources = {}, {}
    for role, kind in roles:
        source = files[role]
        if isinstance(source, dict):
            from .hf_sources import read_dataset

            data[role] = read_dataset(source, kind, folder, f"{label_root}/preset.yaml files.{role}", role)
            sources[role] = _rows_hash(data[role])
        elif isinstance(source, str):
            data[role] = read_jsonl(folder / source, kind, label=f"{label_root}/{source}")
        else:
            raise PresetError(f"{label_root}/preset.yaml: files.{role} must be a path or a dataset mapping.")
    if "attacks_written" in data:
        written = [replace(r, written=True) for r in data.pop("attacks_written")]
        data["attacks"] = data.get("attacks", []) + written
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
