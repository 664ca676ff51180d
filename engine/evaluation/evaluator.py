"""The evaluator: the workbench's evaluation verbs over the session's model and preset.

`evaluate` runs variants x metrics on a preset split (or a probes file); `capsule` freezes a
result with everything needed to re-run it; `replay` re-runs a capsule here and says whether the
numbers, the model, the preset data and the adapters are the same.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import checks
from ..data.presets import list_presets, load_preset, read_jsonl
from ..eco.gate import Gate
from ..eco.pipeline import ECOConfig
from ..methods.adapters import Adapters
from ..session import Session
from .capsules import check_capsule, compare_rows, make_capsule, weights_hash
from .runner import DEFAULT_METRICS, EvalResult, check_names, evaluate

ATTACK_CAPSULE = "lethe-attack"


class Evaluator:
    def __init__(self, session: Session, gate: Gate, adapters: Adapters):
        self.session, self.gate, self.adapters = session, gate, adapters

    def evaluate(self, variants=("original", "eco"), metrics=None, split: str = "test",
                 eco: ECOConfig | None = None, preset: str | None = None, probes_file: str | None = None,
                 batch_size: int = 32, on_progress=None, stop_event: threading.Event | None = None) -> EvalResult:
        """Variants x metrics on a preset split -> EvalResult (tidy DataFrame + per-example table)."""
        s = self.session
        metrics = list(metrics or DEFAULT_METRICS)
        check_names(variants, metrics)
        p = s.preset_for(preset)
        probes = None
        if probes_file:
            rows = read_jsonl(Path(probes_file), "probe", label=str(probes_file))
            probes = {"forget": rows, "retain": p.probes("retain", split)}
        needs_gate = any(str(v).startswith("eco") for v in variants) and (eco or ECOConfig.for_preset(p)).gate == "classifier"
        clf = self.gate.classifier(p.name) if needs_gate else None
        with s.lock:
            result = evaluate(s.model(), p, variants, metrics, split, eco, clf, batch_size, probes,
                              on_progress, stop_event, switch=s.switch())
        result.settings["preset"] = p.name
        result.settings["probes_file"] = probes_file
        result.settings["adapters"] = self.adapters.settings(variants, p.name)
        return result

    def attack(self, variants=("original", "eco"), attacks=("nameless",), split: str = "test",
               eco: ECOConfig | None = None, config=None, preset: str | None = None, batch_size: int = 32,
               on_progress=None, stop_event: threading.Event | None = None):
        """Every variant under every attack (clean first) -> AttackResult (see engine/attacks)."""
        from ..attacks import AttackConfig, get_attack, run_attacks

        s = self.session
        p = s.preset_for(preset)
        if split not in ("train", "test"):
            raise ValueError(f"Unknown split {split!r}; known: train, test.")
        if not variants or not attacks:
            raise ValueError("Pick at least one variant and one attack.")
        for v in variants:
            s.switch().resolve(v, p.name)  # an unknown variant or a missing adapter, in one sentence
        for name in attacks:
            get_attack(name)
        config = config if isinstance(config, AttackConfig) else AttackConfig.from_dict(config)
        needs_gate = any(str(v).startswith("eco") for v in variants) and (eco or ECOConfig.for_preset(p)).gate == "classifier"
        clf = self.gate.classifier(p.name) if needs_gate else None
        with s.lock:
            result = run_attacks(s.model(), p, variants, attacks, split, eco, clf, config, s.switch(), batch_size,
                                 on_progress, stop_event)
        result.settings["preset"] = p.name
        result.settings["adapters"] = self.adapters.settings(variants, p.name)
        return result

    def capsule(self, result, preset: str | None = None) -> dict:
        p = self.session.preset_for(result.settings.get("preset") or preset)
        clf = (self.gate.classifiers.get(p.name)
               if any(str(v).startswith("eco") for v in result.settings["variants"]) else None)
        capsule = make_capsule(self.session.model(), p, result, clf)
        if "attacks" in result.settings:
            capsule["kind"] = ATTACK_CAPSULE
        return capsule

    def replay(self, capsule: dict, names_only: bool = False) -> dict:
        """Re-run a capsule's evaluation here and compare: {same, rows: [...], warnings: [...]}.

        names_only (how the app replays a client's capsule): the preset must be one of the server's
        presets by name and a probes file one of that preset's own files, by name; a path is
        refused in one sentence that does not say whether it exists."""
        check_capsule(capsule)
        s = capsule["settings"]
        probes_file = s.get("probes_file")
        batch_size = checks.integer("batch_size", s.get("batch_size", 32), 1, 512)
        if names_only:
            preset = checks.plain_name("preset", s.get("preset") or capsule["preset"]["name"], list_presets())
            if s["eco"].get("token_model") is not None:  # a model name or path: not a client's to choose
                raise ValueError("A replayed capsule may not name a token-classification model (eco.token_model); "
                                 "replay it from the command line instead.")
            if probes_file is not None:
                data = load_preset(preset).root / "data"
                known = sorted(f.name for f in data.glob("*probes*.jsonl"))
                probes_file = str(data / checks.plain_name("probe file", probes_file, known))
        warnings = self._differences(capsule)
        p = self.session.preset_for(s.get("preset") or capsule["preset"]["name"])
        if capsule["kind"] == ATTACK_CAPSULE:
            result = self.attack(s["variants"], s["attacks"], s["split"], ECOConfig.from_dict(s["eco"]),
                                 s.get("config"), p.name, batch_size)
        else:
            result = self.evaluate(s["variants"], s["metrics"], s["split"], ECOConfig.from_dict(s["eco"]), p.name,
                                   probes_file, batch_size)
        rows = compare_rows(capsule["rows"], result.rows())
        return {"same": all(r["same"] for r in rows) and not warnings, "rows": rows, "warnings": warnings}

    def _differences(self, capsule: dict) -> list[str]:
        """Why this machine's model, preset data or adapters are not the capsule's, one line each."""
        warnings, lm = [], self.session.model()
        if "weights_sha256" not in lm.extras:
            lm.extras["weights_sha256"] = weights_hash(lm.model)
        if capsule["model"]["weights_sha256"] != lm.extras["weights_sha256"]:
            warnings.append("The loaded model's weights differ from the capsule's.")
        s = capsule["settings"]
        p = self.session.preset_for(s.get("preset") or capsule["preset"]["name"])
        if p.data_hash() != capsule["preset"]["data_sha256"]:
            warnings.append(f"The preset {p.name!r} data differ from the capsule's.")
        for key, want in (s.get("adapters") or {}).items():
            have = self.adapters.settings([key], p.name).get(key)
            if have is None:
                warnings.append(f"The capsule used a {key.upper()} adapter that is not loaded here.")
            elif have["weights_sha256"] != want.get("weights_sha256") or have["scale"] != want.get("scale"):
                warnings.append(f"The loaded {key.upper()} adapter differs from the capsule's.")
        return warnings
