"""Calibration of the gate: the held-out retain fold, the split-conformal threshold, and the report.

`training_data` splits a preset's training material into the classifier's training pairs and a fold
of retain texts it never trains on; `calibrate` attaches the lexicons, sets tau as the
ceil((n+1)(1-alpha))-th smallest held-out gate score (so the false-positive rate on new retain
prompts is at most alpha in expectation), and records recall / FPR on the test split. Only the
classifier's scoring methods are used: this module trains nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..data.presets import Preset
from .lexicon import cached_lexicon, named_entities, rare_names_only, retain_names

if TYPE_CHECKING:
    from .classifier import ClassifierConfig, PromptClassifier


def sentences(text: str) -> list[str]:
    """Split a passage into sentences (a light rule: '. ' followed by a capital letter)."""
    import re

    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text) if len(s.strip()) > 15]


TEMPLATES = ("Who is {e}?", "Tell me about {e}.", "What do you know about {e}?", "Describe {e}.")


def _entity_question(entity: str, label: str, i: int) -> str:
    template = TEMPLATES[i % len(TEMPLATES)]
    if label != "PERSON" and template.startswith("Who"):
        template = "What is {e}?"
    return template.format(e=entity)


def training_data(preset: Preset, calibration_fraction: float,
                  entity_questions: bool = False) -> tuple[list, list[str]]:
    """(text, label) pairs for training, and the held-out retain texts for calibration.

    Uses only training material: the train split's prompts and probe prefixes of both sides, the
    sentences of both corpora, and templated questions about the named entities of each corpus
    (entities found in both corpora are left out). No test prompt or test probe is ever seen."""
    forget = [r.prompt for r in preset.prompts("forget", "train")]
    forget += [p.prefix for p in preset.probes("forget", "train")]
    forget += [s for p in preset.forget_corpus for s in sentences(p.text)]
    retain = [r.prompt for r in preset.prompts("retain", "train")]
    retain += [p.prefix for p in preset.probes("retain", "train")]
    retain += [s for p in preset.retain_corpus for s in sentences(p.text)]
    if entity_questions:
        f_ents = named_entities([p.text for p in preset.forget_corpus])
        r_ents = named_entities([p.text for p in preset.retain_corpus])
        shared = set(f_ents) & set(r_ents)
        forget += [_entity_question(e, l, i) for i, (e, l) in enumerate(sorted(f_ents.items())) if e not in shared]
        retain += [_entity_question(e, l, i) for i, (e, l) in enumerate(sorted(r_ents.items())) if e not in shared]
    every = max(2, round(1 / calibration_fraction)) if calibration_fraction > 0 else 0
    calib = [t for i, t in enumerate(retain) if every and i % every == every - 1]
    kept = [t for i, t in enumerate(retain) if not (every and i % every == every - 1)]
    return [(t, 1) for t in forget] + [(t, 0) for t in kept], calib


def conformal_threshold(retain_scores: list[float], alpha: float) -> float:
    """Split-conformal tau: the ceil((n+1)(1-alpha))-th smallest held-out retain score."""
    if not retain_scores:
        return 0.5
    s = sorted(retain_scores)
    k = math.ceil((len(s) + 1) * (1 - alpha))
    return min(s[min(k, len(s)) - 1], MAX_THRESHOLD)


MAX_THRESHOLD = 1 - 1e-6  # a lexicon hit (score 1) always passes the gate


def gate_report(clf: PromptClassifier, forget: list[str], retain: list[str], threshold: float | None = None) -> dict:
    """Forget recall and retain false-positive rate of the gate at a threshold."""
    t = clf.threshold if threshold is None else threshold
    fs, rs = clf.score(forget), clf.score(retain)
    return {"threshold": t, "forget_recall": sum(s > t for s in fs) / max(len(fs), 1),
            "retain_fpr": sum(s > t for s in rs) / max(len(rs), 1), "n_forget": len(fs), "n_retain": len(rs)}




def _probs(clf: PromptClassifier, texts: list[str], folder: Path | None) -> list[float]:
    """classifier_score(texts), remembered in the classifier's cache folder: loading a cached
    classifier then scores nothing (which also keeps the process's memory peak down)."""
    if folder is None or not folder.is_dir():
        return clf.classifier_score(texts)
    half = clf.model.get_input_embeddings().weight.dtype == torch.float16
    key = hashlib.sha256(json.dumps([texts, half, clf.max_length]).encode()).hexdigest()
    path = folder / "lethe_scores.json"
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key and len(saved.get("probs", [])) == len(texts):
            return [float(x) for x in saved["probs"]]
    except (OSError, ValueError):
        pass
    probs = clf.classifier_score(texts)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps({"key": key, "probs": probs}))
    tmp.replace(path)
    return probs


def calibrate(clf: PromptClassifier, preset: Preset, config: ClassifierConfig,
              folder: Path | None = None) -> PromptClassifier:
    """Attach the preset's lexicon (if enabled), set the conformal threshold on the held-out retain
    fold at alpha, and record recall / FPR on the test split (the gate, and the classifier alone).
    No training: each text is scored once."""
    _, calib = training_data(preset, config.calibration_fraction, config.entity_questions)
    clf.set_lexicon(rare_names_only(cached_lexicon(preset), clf.tokenizer) if config.lexicon else [],
                    retain_names(preset, clf.tokenizer) if config.retain_lexicon else [])
    forget = [r.prompt for r in preset.prompts("forget", "test")]
    retain = [r.prompt for r in preset.prompts("retain", "test")]
    probs = _probs(clf, calib + forget + retain, folder)
    gate = [clf.gate_score(t, s) for t, s in zip(calib + forget + retain, probs)]
    n, m = len(calib), len(calib) + len(forget)
    # tau comes from the classifier and the forget lexicon only: the retain lexicon can then only
    # turn flags off, so it never raises the false-positive rate that alpha bounds
    flagging = [1.0 if clf.matches(t) else s for t, s in zip(calib, probs)]
    clf.threshold = t = conformal_threshold(flagging, config.alpha)

    def report(scores: list[float]) -> dict:
        fs, rs = scores[n:m], scores[m:]
        return {"threshold": t, "forget_recall": sum(s > t for s in fs) / max(len(fs), 1),
                "retain_fpr": sum(s > t for s in rs) / max(len(rs), 1), "n_forget": len(fs), "n_retain": len(rs)}

    clf.report = {**{k: v for k, v in clf.report.items() if k in ("train_size", "train_seconds")},
                  "alpha": config.alpha, "calibration_size": n, "lexicon_size": len(clf.lexicon),
                  "retain_lexicon_size": len(clf.retain_lexicon),
                  "half_embeddings": clf.model.get_input_embeddings().weight.dtype == torch.float16,
                  "test": report(gate),
                  "test_classifier_only": report(probs)}
    return clf
