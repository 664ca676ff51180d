"""Calibration of the gate: the held-out retain fold, the split-conformal threshold, and the report.

`training_data` splits a preset's training material (augment.py) into the classifier's training
pairs and a calibration fold of retain texts that neither the classifier nor the forget lexicon is
built from; `calibrate` attaches the lexicon, sets tau as the ceil((n+1)(1-alpha))-th smallest
gate score of that fold, and records recall / FPR on the test split. Because the fold is scored by
the gate exactly as shipped (classifier, lexicon, windows), alpha bounds the gate's false-positive
rate in expectation on new retain texts exchangeable with the fold: the retain split's prompts,
probe prefixes and corpus sentences, clean or rewritten by the train split's attacks. Only the
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
from .augment import attack_data, folds, gate_texts
from .lexicon import (cached_lexicon, coined_words, lexicon_material, named_entities, rare_names_only,
                      unseen_names)

if TYPE_CHECKING:
    from .classifier import ClassifierConfig, PromptClassifier


TEMPLATES = ("Who is {e}?", "Tell me about {e}.", "What do you know about {e}?", "Describe {e}.")


def _entity_question(entity: str, label: str, i: int) -> str:
    template = TEMPLATES[i % len(TEMPLATES)]
    if label != "PERSON" and template.startswith("Who"):
        template = "What is {e}?"
    return template.format(e=entity)


def training_data(preset: Preset, calibration_fraction: float, entity_questions: bool = False,
                  augment: bool = True, seed: int = 0, written: bool = False,
                  **material) -> tuple[list, list[str]]:
    """(text, label) pairs for training, and the calibration fold's retain texts.

    Uses only training material (augment.folds): the train fold's prompts, probe prefixes and corpus
    sentences of both sides, with `augment` their train-split attacked copies and contrastive pairs
    (`material`: gate_texts' settings: more nameless copies, the attacks' frames alone labelled
    retain, the answers' sentences; `written`: the hand-written descriptions too),
    and optionally templated questions about the named entities of each corpus (entities found in
    both corpora are left out). The calibration fold is built the same way from retain records held
    out of training. No test prompt or test probe is ever seen."""
    parts = folds(attack_data(preset, written), calibration_fraction)
    forget, retain = gate_texts(parts.train, seed, augment, **material)
    if entity_questions:
        f_ents = named_entities([p.text for p in parts.train.forget_corpus])
        r_ents = named_entities([p.text for p in parts.train.retain_corpus])
        shared = set(f_ents) & set(r_ents)
        forget += [_entity_question(e, l, i) for i, (e, l) in enumerate(sorted(f_ents.items())) if e not in shared]
        retain += [_entity_question(e, l, i) for i, (e, l) in enumerate(sorted(r_ents.items())) if e not in shared]
    shared = {k: v for k, v in material.items() if k != "frames"}  # frames train the gate, never calibrate it
    calib = gate_texts(parts.calibration, seed, augment, **shared)[1] if calibration_fraction > 0 else []
    held = set(calib)  # a text two records share (a translated question about one name) stays held out
    return [(t, 1) for t in forget if t not in held] + [(t, 0) for t in retain if t not in held], calib


def conformal_threshold(retain_scores: list[float], alpha: float) -> float:
    """Split-conformal tau: the ceil((n+1)(1-alpha))-th smallest held-out retain score."""
    if not retain_scores:
        return 0.5
    s = sorted(retain_scores)
    k = math.ceil((len(s) + 1) * (1 - alpha))
    if k > len(s):  # too few scores to bound the rate at alpha: only lexicon hits pass the gate
        return MAX_THRESHOLD
    return min(s[k - 1], MAX_THRESHOLD)


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
    key = hashlib.sha256(json.dumps([texts, half, clf.max_length, clf.segments]).encode()).hexdigest()
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
    """Attach the forget lexicon of the training fold (if enabled), set the conformal threshold on
    the calibration fold's gate scores at alpha, and record recall / FPR on the test split (the
    gate, and the classifier alone). No training: each text is scored once."""
    parts = folds(attack_data(preset, config.written), config.calibration_fraction)
    shared = {k: v for k, v in config.material().items() if k != "frames"}
    calib = gate_texts(parts.calibration, config.seed, config.augment, **shared)[1] \
        if config.calibration_fraction else []
    train_fold, names = parts.train, []
    if config.lexicon:
        forget_material, retain_material = lexicon_material(train_fold)
        names = sorted(set(rare_names_only(cached_lexicon(train_fold), clf.tokenizer))
                       | set(coined_words(forget_material, retain_material, clf.tokenizer)))
        if names:  # drop a name that fires, as written or disguised, on the fold's own retain texts
            retain_texts = retain_material + gate_texts(train_fold, config.seed, config.augment, **shared)[1]
            names = unseen_names(names, retain_texts, config.see_through)
    clf.set_lexicon(names, see_through=config.see_through)
    clf.segments = config.segments
    forget = [r.prompt for r in preset.prompts("forget", "test")]
    retain = [r.prompt for r in preset.prompts("retain", "test")]
    probs = _probs(clf, calib + forget + retain, folder)
    gate = [clf.gate_score(t, s) for t, s in zip(calib + forget + retain, probs)]
    n, m = len(calib), len(calib) + len(forget)
    clf.threshold = t = conformal_threshold(gate[:n], config.alpha)
    k = math.ceil((n + 1) * (1 - config.alpha))
    # alpha bounds the gate when tau is the k-th fold score; not when there are too few scores or
    # when that score is a lexicon hit (hits always fire, so the rate is then the hit rate)
    bound = k <= n and sorted(gate[:n])[k - 1] < 1.0

    def report(scores: list[float]) -> dict:
        fs, rs = scores[n:m], scores[m:]
        return {"threshold": t, "forget_recall": sum(s > t for s in fs) / max(len(fs), 1),
                "retain_fpr": sum(s > t for s in rs) / max(len(rs), 1), "n_forget": len(fs), "n_retain": len(rs)}

    clf.report = {**{k: v for k, v in clf.report.items() if k in ("train_size", "train_seconds")},
                  "alpha": config.alpha, "calibration_size": n, "lexicon_size": len(clf.lexicon),
                  "calibration_fpr": sum(s > t for s in gate[:n]) / max(n, 1), "alpha_bound_holds": bound,
                  "half_embeddings": clf.model.get_input_embeddings().weight.dtype == torch.float16,
                  "test": report(gate),
                  "test_classifier_only": report(probs)}
    return clf
