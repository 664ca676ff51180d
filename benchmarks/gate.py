"""The gate under attack. Two modes, measured in one run each:

`python gate.py --dev [designs...]`: design choice. A dev fold (20 % of the harry_potter train
prompts and probes, by id hash) is held out; each design is trained on the rest, calibrated as
shipped, and scored on the dev fold clean and under every prompt attack (train-split templates,
seed 1). No test record is read. Designs: MiniLM fine-tuned as a classifier, without and with the
attack data, the lexicon seeing through disguises and clause scoring; MiniLM's frozen sentence
embeddings with a k-nearest-neighbour head; and a logistic regression on the default LLM's own
middle-layer states (mean over the prompt) trained on the same data.

`python gate.py [presets...]`: the shipped gate on each preset's test split: clean, then every
prompt attack with the test split's templates, descriptions and names (seed 0); forget recall per
family and pooled, retain FPR on the clean test retain prompts, on all attacked retain prompts and
on the attacked near-boundary ones; and the gate's cost per prompt. Writes results.json sections
"gate_dev" and "gate_test".
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import time

from common import write

from engine.attacks import PROMPT_ATTACKS
from engine.attacks.base import AttackConfig
from engine.data.presets import load_preset
from engine.eco.augment import FAMILIES, folds
from engine.eco.calibration import calibrate, conformal_threshold, training_data
from engine.eco.classifier import ClassifierConfig, PromptClassifier, preset_classifier, train_classifier
from engine.lm.models import cache_dir

DEV_FRACTION, CALIBRATION = 0.2, 0.25
FT = dict(head="finetune")
DESIGNS = {  # fine-tuned designs sharing training settings share one trained classifier, calibrated per design
    "finetune": ClassifierConfig(**FT, augment=False, see_through=False, segments=False),
    "finetune+see_through+segments": ClassifierConfig(**FT, augment=False),
    "finetune+attacks": ClassifierConfig(**FT, see_through=False, segments=False),
    "finetune+attacks+see_through": ClassifierConfig(**FT, segments=False),
    "finetune+attacks+see_through+segments": ClassifierConfig(**FT),
    "finetune+attacks+see_through+segments, alpha 0.02": ClassifierConfig(**FT, alpha=0.02),
    "neighbours k=1+attacks+see_through+segments": ClassifierConfig(k=1),
    "neighbours k=3+attacks+see_through+segments": ClassifierConfig(k=3),
    "neighbours k=10+attacks+see_through+segments (shipped)": ClassifierConfig(),
    "neighbours k=10, no attack data": ClassifierConfig(augment=False),
    "llm_states+attacks+see_through": ClassifierConfig(),
}


def attacked_sets(preset, split: str, seed: int) -> dict[str, dict[str, list]]:
    """{family: {forget: [prompt], retain: [prompt], boundary: [prompt]}}, "clean" first."""
    out = {"clean": {"forget": [r.prompt for r in preset.prompts("forget", split)],
                     "retain": [r.prompt for r in preset.prompts("retain", split)],
                     "boundary": [r.prompt for r in preset.prompts("retain", split) if r.boundary]}}
    for name in FAMILIES:
        try:
            a = PROMPT_ATTACKS[name].attack_preset(preset, split, AttackConfig(seed=seed))
        except ValueError:
            continue
        out[name] = {"forget": [r.prompt for r in a.prompts("forget", split)],
                     "retain": [r.prompt for r in a.prompts("retain", split)],
                     "boundary": [r.prompt for r in a.prompts("retain", split) if r.boundary]}
    return out


def measure(score, threshold: float, sets: dict) -> dict:
    """Recall / FPR per family and pooled over the attacks (clean apart)."""
    rows, pooled = {}, {"forget": [], "retain": [], "boundary": []}
    for fam, s in sets.items():
        flags = {k: [x > threshold for x in score(v)] if v else [] for k, v in s.items()}
        rows[fam] = {"recall": _rate(flags["forget"]), "n_forget": len(flags["forget"]),
                     "fpr": _rate(flags["retain"]), "n_retain": len(flags["retain"]),
                     "boundary_fpr": _rate(flags["boundary"]), "n_boundary": len(flags["boundary"])}
        if fam != "clean":
            for k in pooled:
                pooled[k] += flags[k]
    rows["attacks_pooled"] = {"recall": _rate(pooled["forget"]), "n_forget": len(pooled["forget"]),
                              "fpr": _rate(pooled["retain"]), "n_retain": len(pooled["retain"]),
                              "boundary_fpr": _rate(pooled["boundary"]), "n_boundary": len(pooled["boundary"])}
    rows["worst_family_recall"] = min(r["recall"] for f, r in rows.items() if f not in ("clean", "attacks_pooled")
                                      and r["n_forget"])
    return rows


def _rate(flags: list[bool]):
    return round(sum(flags) / len(flags), 3) if flags else None


def without_dev(preset):
    """The preset with its dev fold and its test split removed (the dev experiment sees neither)."""
    dev = folds(preset, CALIBRATION, DEV_FRACTION).dev
    ids = {r.id for r in dev.prompts("forget") + dev.prompts("retain") + dev.probes("forget") + dev.probes("retain")}
    keep = lambda rows: [r for r in rows if r.split == "train" and r.id not in ids]  # noqa: E731
    return dataclasses.replace(preset, forget_prompts=keep(preset.forget_prompts),
                               retain_prompts=keep(preset.retain_prompts), forget_probes=keep(preset.forget_probes),
                               retain_probes=keep(preset.retain_probes)), dev


class LLMStates:
    """p(forget) from a logistic regression on the default LLM's middle-layer states (prompt mean)."""

    def __init__(self, preset, config: ClassifierConfig, lexicon):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from engine.lm.models import load_model

        self.lm = load_model()
        t0 = time.perf_counter()
        data, calib = training_data(preset, CALIBRATION, augment=config.augment, seed=config.seed)
        X = self.features([t for t, _ in data])
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
        self.model.fit(X, [y for _, y in data])
        self.train_seconds = time.perf_counter() - t0
        from engine.eco.lexicon import NameMatcher

        self.lexicon = NameMatcher(*lexicon)  # the MiniLM gate's lexicon as calibrated just before
        self.threshold = conformal_threshold(self.score(calib), config.alpha)

    def features(self, texts: list[str]):
        import torch

        from engine.attacks.probe import _captured, layer_of

        tok, model = self.lm.tokenizer, self.lm.model
        layer = layer_of(self.lm, -1)
        out = []
        with torch.inference_mode(), _captured(model, layer) as seen:
            for i in range(0, len(texts), 32):
                enc = tok(texts[i:i + 32], return_tensors="pt", padding=True, truncation=True, max_length=128)
                seen.clear()
                model(**enc)
                h, m = seen[-1].float(), enc["attention_mask"].unsqueeze(-1).float()
                out.append(((h * m).sum(1) / m.sum(1)).numpy())
        import numpy as np

        return np.concatenate(out)

    def score(self, texts: list[str]) -> list[float]:
        p = self.model.predict_proba(self.features(texts))[:, 1]
        return [1.0 if self.lexicon.find(t) else float(x) for t, x in zip(texts, p)]


def per_prompt_ms(score, prompts: list[str]) -> float:
    times = []
    for p in prompts[:30]:
        t0 = time.perf_counter()
        score([p])
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def dev(designs: list[str]) -> None:
    preset = load_preset("harry_potter")
    held, dev_fold = without_dev(preset)
    sets = attacked_sets(dev_fold, "train", seed=1)
    results, trained, lexicon = {}, {}, None
    for name in designs:
        config = DESIGNS[name]
        t0 = time.perf_counter()
        if name.startswith("llm_states"):
            if lexicon is None:
                raise SystemExit("llm_states reuses the lexicon of a MiniLM design: list one before it.")
            gate = LLMStates(held, config, lexicon)
            score, threshold = gate.score, gate.threshold
        elif config.head == "neighbours":
            clf = train_classifier(held, config)
            seconds = time.perf_counter() - t0
            score, threshold, lexicon = clf.score, clf.threshold, (clf.lexicon, clf.see_through)
        else:
            key = (config.augment, config.epochs, config.lr)
            if key not in trained:
                saved = cache_dir() / "classifiers" / ("gate-dev-%d" % config.augment if key[1:] == (4, 6e-5)
                                                       else "gate-dev-%d-%d-%g" % key)
                if (saved / "lethe_classifier.json").is_file():
                    clf = PromptClassifier.load(str(saved))
                    seconds = clf.report.get("train_seconds", 0.0)
                else:
                    clf = train_classifier(held, config)
                    seconds = time.perf_counter() - t0
                    clf.save(saved)
                trained[key] = (clf, seconds)
            clf, seconds = trained[key]
            calibrate(clf, held, config)
            score, threshold, lexicon = clf.score, clf.threshold, (clf.lexicon, clf.see_through)
        seconds = seconds if not name.startswith("llm_states") else time.perf_counter() - t0
        results[name] = {"train_seconds": round(seconds, 1), "threshold": round(threshold, 4),
                         "ms_per_prompt": per_prompt_ms(score, sets["clean"]["forget"]),
                         **measure(score, threshold, sets)}
        print(name, results[name], flush=True)
    write("gate_dev", {"preset": "harry_potter", "dev_fraction": DEV_FRACTION, "attack_seed": 1,
                       "n_dev": {f: {k: len(v) for k, v in s.items()} for f, s in sets.items()},
                       "designs": results})


def test(presets: list[str]) -> None:
    results = {}
    for name in presets:
        preset = load_preset(name)
        t0 = time.perf_counter()
        clf = preset_classifier(preset)
        sets = attacked_sets(preset, "test", seed=0)
        results[name] = {"train_or_load_seconds": round(time.perf_counter() - t0, 1), "threshold": clf.threshold,
                         "calibration_size": clf.report.get("calibration_size"),
                         "calibration_fpr": clf.report.get("calibration_fpr"),
                         "ms_per_prompt": per_prompt_ms(clf.score, sets["clean"]["forget"]),
                         **measure(clf.score, clf.threshold, sets)}
        print(name, results[name], flush=True)
    write("gate_test", {"config": dataclasses.asdict(ClassifierConfig()), "attack_seed": 0, "presets": results})


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--dev":
        dev(args[1:] or list(DESIGNS))
    else:
        test(args or ["harry_potter", "star_wars", "chemistry"])
