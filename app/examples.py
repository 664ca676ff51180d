"""The prompts a first-time visitor is offered, and that the Showcase runs.

A preset may hold `showcase.json` next to its preset.yaml: a forget prompt, a forget prompt
disguised by one of the engine's prompt attacks, and a retain prompt near the boundary
(tests/test_showcase.py checks each against the preset's data and the attack). A preset without
it offers its first forget prompt and its first near-boundary retain prompt. This module reads
files and the preset's records only; it runs nothing on the model.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from engine import resolve_preset_dir

from . import texts

FILE = "showcase.json"


def _root(preset) -> Path | None:
    root = getattr(preset, "root", None)
    return Path(root) if root else resolve_preset_dir(preset.name)


def read_showcase(path: Path) -> list[dict]:
    """The prompts of one showcase.json; ValueError naming the file when an entry is malformed."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a showcase file ({e}).") from None
    for i, row in enumerate(rows):
        if row.get("kind") not in texts.EXAMPLE_KINDS or not str(row.get("prompt") or "").strip():
            raise ValueError(f"{path}: prompt {i + 1} needs a kind ({', '.join(texts.EXAMPLE_KINDS)}) "
                             f"and a prompt.")
    return [dict(row) for row in rows]


def derived(preset) -> list[dict]:
    """A preset without a showcase file: its first forget prompt and first near-boundary retain one."""
    out = [{"kind": "forget", "id": r.id, "prompt": r.prompt} for r in preset.forget_prompts[:1]]
    boundary = next((r for r in preset.retain_prompts if r.boundary), None)
    if boundary is not None:
        out.append({"kind": "boundary", "id": boundary.id, "prompt": boundary.prompt})
    return out


def showcase(preset) -> list[dict]:
    """The preset's showcase prompts ({kind, prompt, ...}); [] without a preset."""
    if preset is None:
        return []
    root = _root(preset)
    if root is not None and (root / FILE).is_file():
        return read_showcase(root / FILE)
    return derived(preset)


def first_prompt(workbench) -> str:
    """A prompt box starts with the preset's first showcase prompt: one click shows something."""
    rows = showcase(workbench.preset)
    return rows[0]["prompt"] if rows else ""


def kind_label(row: dict) -> str:
    return texts.EXAMPLE_KINDS[row["kind"]].format(attack=row.get("attack", "attack"))


def samples(preset) -> tuple[list[list[str]], list[str]]:
    """(samples, labels) for a gr.Examples / gr.Dataset over one prompt box."""
    rows = showcase(preset)
    return [[r["prompt"]] for r in rows], [f"{kind_label(r)}: {r['prompt']}" for r in rows]


def prompt_examples(workbench, textbox, elem_id: str) -> gr.Examples | None:
    """The preset's showcase prompts under a prompt box (a click fills the box); None without any."""
    rows, labels = samples(workbench.preset)
    if not rows:
        return None
    return gr.Examples(rows, [textbox], label=texts.EXAMPLES, example_labels=labels, elem_id=elem_id,
                       api_visibility="private")


def refreshed(preset) -> gr.Dataset:
    """The examples of another preset, as an update of the Examples' dataset."""
    rows, labels = samples(preset)
    return gr.Dataset(samples=rows, sample_labels=labels)
