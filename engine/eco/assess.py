"""The gate measured under attack: on a preset's test split, and, for design work, on a dev fold.

`assess_gate(preset)`: the gate as configured on the split's clean prompts and under every prompt
attack (the split's own templates, descriptions and names): forget recall per family and pooled,
retain FPR on clean, attacked and attacked near-boundary retain prompts, and the cost per prompt.
`compare_gate_designs(preset, designs)`: each design built without a dev fold of the train split
(and without the test split), calibrated as shipped, and measured on that fold clean and under the
attacks made with train-split templates, and, apart, under `nameless` with the preset's hand-written
descriptions (`written_nameless`). A design named "llm_states..." is a logistic regression on
the loaded LLM's middle-layer states (mean over the prompt), with the lexicon of the design before
it. benchmarks/gate.py runs both.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

from ..data.presets import Preset
from .augment import FAMILIES, bucket, folds
from .calibration import calibrate, conformal_threshold, training_data
from .classifier import ClassifierConfig, PromptClassifier, preset_classifier, train_classifier

DEV_FRACTION, CALIBRATION = 0.2, 0.25


def attacked_sets(preset, split: str, seed: int) -> dict[str, dict[str, list]]:
    """{family: {forget: [prompt], retain: [prompt], boundary: [prompt]}}, "clean" first."""
    out = {"clean": {"forget": [r.prompt for r in preset.prompts("forget", split)],
                     "retain": [r.prompt for r in preset.prompts("retain", split)],
                     "boundary": [r.prompt for r in preset.prompts("retain", split) if r.boundary]}}
    from ..attacks import PROMPT_ATTACKS
    from ..attacks.base import AttackConfig

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


def without_dev(preset, calibration: float = CALIBRATION, dev_fraction: float = DEV_FRACTION):
    """The preset with its dev fold and its test split removed (the dev experiment sees neither).
    The train split's descriptions are cut too, as the test split's are new descriptions of known
    names: about DEV_DESCRIPTIONS of each name's descriptions (by id hash; never its last one) attack
    the dev fold only, the rest are all the gate may learn from."""
    dev = folds(preset, calibration, dev_fraction).dev
    ids = {r.id for r in dev.prompts("forget") + dev.prompts("retain") + dev.probes("forget") + dev.probes("retain")}
    keep = lambda rows: [r for r in rows if r.split == "train" and r.id not in ids]  # noqa: E731
    held_attacks, dev_attacks = split_descriptions([r for r in preset.attacks if r.split == "train"])
    return dataclasses.replace(preset, forget_prompts=keep(preset.forget_prompts),
                               retain_prompts=keep(preset.retain_prompts), forget_probes=keep(preset.forget_probes),
                               retain_probes=keep(preset.retain_probes), attacks=held_attacks), \
        dataclasses.replace(dev, attacks=dev_attacks)


DEV_DESCRIPTIONS = 0.3


def split_descriptions(rows: list) -> tuple[list, list]:
    """(held, dev) attack rows: a name's descriptions with an id hash under DEV_DESCRIPTIONS go to dev,
    but never the one with the highest hash, so every name keeps one to learn from; names (smuggle's)
    go to both."""
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        if r.kind != "retain_name":
            groups.setdefault((r.kind, r.name.lower()), []).append(r)
    dev_ids = set()
    for group in groups.values():
        ranked = sorted(group, key=lambda r: bucket(r.id, "dev-descriptions"))
        dev_ids |= {r.id for r in ranked[:-1] if bucket(r.id, "dev-descriptions") < DEV_DESCRIPTIONS}
    names = [r for r in rows if r.kind == "retain_name"]
    return [r for r in rows if r.id not in dev_ids], [r for r in rows if r.id in dev_ids] + names


WRITTEN_SEEDS = (1, 2, 3, 4)


def written_nameless(preset, dev_fold, seeds=WRITTEN_SEEDS) -> dict[str, list] | None:
    """The dev fold's prompts rewritten by `nameless` with the preset's hand-written descriptions
    (data/attacks_written.jsonl), one draw per seed, deduplicated: {forget, retain, boundary}. They
    describe the names in other words than the corpus the mined descriptions come from, and a design
    with `written=False` never learns from them, so they measure descriptions it has never seen.
    None when the preset has none."""
    from ..attacks import PROMPT_ATTACKS
    from ..attacks.base import AttackConfig

    rows = [r for r in preset.attacks if r.split == "train" and (r.written or r.kind == "retain_name")]
    if not any(r.written for r in rows):
        return None
    fold, out = dataclasses.replace(dev_fold, attacks=rows), {"forget": [], "retain": [], "boundary": []}
    for seed in seeds:
        a = PROMPT_ATTACKS["nameless"].attack_preset(fold, "train", AttackConfig(seed=seed))
        out["forget"] += [r.prompt for r in a.prompts("forget", "train")]
        out["retain"] += [r.prompt for r in a.prompts("retain", "train")]
        out["boundary"] += [r.prompt for r in a.prompts("retain", "train") if r.boundary]
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


class LLMStates:
    """p(forget) from a logistic regression on the default LLM's middle-layer states (prompt mean)."""

    def __init__(self, preset, config: ClassifierConfig, lexicon):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from ..lm.models import load_model

        self.lm = load_model()
        t0 = time.perf_counter()
        data, calib = training_data(preset, CALIBRATION, augment=config.augment, seed=config.seed)
        X = self.features([t for t, _ in data])
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
        self.model.fit(X, [y for _, y in data])
        self.train_seconds = time.perf_counter() - t0
        from .lexicon import NameMatcher

        self.lexicon = NameMatcher(*lexicon)  # the MiniLM gate's lexicon as calibrated just before
        self.threshold = conformal_threshold(self.score(calib), config.alpha)

    def features(self, texts: list[str]):
        import torch

        from ..attacks.probe import _captured, layer_of

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


def assess_gate(preset: Preset, config: ClassifierConfig | None = None, split: str = "test", seed: int = 0) -> dict:
    """The preset's gate (cached, or built now) on the split, clean and under every prompt attack."""
    t0 = time.perf_counter()
    clf = preset_classifier(preset, config)
    sets = attacked_sets(preset, split, seed=seed)
    return {"train_or_load_seconds": round(time.perf_counter() - t0, 1), "threshold": clf.threshold,
            "calibration_size": clf.report.get("calibration_size"),
            "calibration_fpr": clf.report.get("calibration_fpr"),
            "alpha_bound_holds": clf.report.get("alpha_bound_holds"),
            "ms_per_prompt": per_prompt_ms(clf.score, sets["clean"]["forget"]),
            **measure(clf.score, clf.threshold, sets)}


def compare_gate_designs(preset: Preset, designs: dict[str, ClassifierConfig], seed: int = 1,
                         cache: Path | None = None, on_design=None) -> dict:
    """{design: measures} on the dev fold (see the module docstring). Fine-tuned designs with the same
    training settings share one trained classifier (kept in `cache` when given)."""
    held, dev_fold = without_dev(preset)
    sets = attacked_sets(dev_fold, "train", seed=seed)
    written = written_nameless(preset, dev_fold)
    results, trained, lexicon = {}, {}, None
    for name, config in designs.items():
        t0 = time.perf_counter()
        if name.startswith("llm_states"):
            if lexicon is None:
                raise ValueError("llm_states reuses the lexicon of a MiniLM design: list one before it.")
            gate = LLMStates(held, config, lexicon)
            score, threshold = gate.score, gate.threshold
        elif config.head == "neighbours":
            clf = train_classifier(held, config)
            seconds = time.perf_counter() - t0
            score, threshold, lexicon = clf.score, clf.threshold, (clf.lexicon, clf.see_through)
        else:
            key = (config.augment, config.epochs, config.lr)
            if key not in trained:
                saved = Path(cache) / ("gate-dev-%d-%d-%g" % key) if cache else None
                if saved is not None and (saved / "lethe_classifier.json").is_file():
                    clf = PromptClassifier.load(str(saved))
                    seconds = clf.report.get("train_seconds", 0.0)
                else:
                    clf = train_classifier(held, config)
                    seconds = time.perf_counter() - t0
                    if saved is not None:
                        clf.save(saved)
                trained[key] = (clf, seconds)
            clf, seconds = trained[key]
            calibrate(clf, held, config)
            score, threshold, lexicon = clf.score, clf.threshold, (clf.lexicon, clf.see_through)
        seconds = seconds if not name.startswith("llm_states") else time.perf_counter() - t0
        results[name] = {"train_seconds": round(seconds, 1), "threshold": round(threshold, 4),
                         "ms_per_prompt": per_prompt_ms(score, sets["clean"]["forget"]),
                         **measure(score, threshold, sets)}
        if written is not None:  # apart from the pooled figures; only where the design never learnt them
            results[name]["nameless_written"] = None if config.written else \
                measure(score, threshold, {"nameless_written": written})["nameless_written"]
        if on_design:
            on_design(name, results[name])
    n_dev = {f: {k: len(v) for k, v in s.items()}
             for f, s in {**sets, **({"nameless_written": written} if written else {})}.items()}
    return {"preset": preset.name, "dev_fraction": DEV_FRACTION, "attack_seed": seed,
            "written_seeds": list(WRITTEN_SEEDS) if written else [], "n_dev": n_dev, "designs": results}
