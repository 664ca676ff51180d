"""The workbench's research verbs: ELM/SKU adapters, evaluation and run capsules, probe sweeps
and zeroth-order search. A mixin of `Workbench`, which supplies the model, the preset, the
variants, the classifiers and the lock; it is split out only to keep each file readable.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator

from . import checks
from .eco import zo
from .eco.pipeline import ECO, ECOConfig, probe_summary
from .methods.variants import AdapterError, WEIGHT_METHODS

SHIPPED_ADAPTERS = "adapters"  # presets/<name>/adapters/<method>/


class Experiments:
    """Adapters, evaluation, capsules, sweeps and ZO over the workbench's model (see Workbench)."""

    # ------------------------------------------------------------------ adapters: ELM and SKU
    def load_shipped_adapters(self) -> list[str]:
        """Load presets/<preset>/adapters/<method>/ made for this model; note why any is skipped."""
        import json

        p, vs, notes = self._preset(), self._lm_variants(), []
        for method in WEIGHT_METHODS:
            folder = p.root / SHIPPED_ADAPTERS / method
            record_file = folder / "lethe_adapter.json"
            if not record_file.is_file() or method in vs.current.get(p.name, {}):
                continue
            record = json.loads(record_file.read_text())
            made_for = record.get("base_model", {}).get("name")
            if made_for != self._lm().info.name:
                notes.append(f"The shipped {method.upper()} adapter for {p.name} was trained on {made_for}, "
                             f"not {self._lm().info.name}; train one for this model.")
                continue
            try:
                vs.load(folder, method, method, preset=p.name)
            except AdapterError as e:
                notes.append(str(e))
        self.adapter_notes = notes
        return notes

    def adapters(self, preset: str | None = None) -> dict:
        """The weight variants ready for the preset, their records, and the memory they add."""
        vs = self._lm_variants()
        return {"variants": vs.names(self._preset_name(preset)), "adapters": vs.describe(self._preset_name(preset)),
                "adapter_bytes": vs.adapter_bytes(), "base_bytes": self._lm().info.memory_bytes,
                "notes": list(self.adapter_notes)}

    def load_adapter(self, source: str, key: str | None = None, method: str | None = None,
                     preset: str | None = None) -> dict:
        """Load a peft LoRA adapter (folder or Hub id) as a variant of the current preset."""
        with self.lock:
            a = self._lm_variants().load(source, key, method, preset=self._preset_name(preset))
        return a.to_dict()

    def set_negation(self, lam: float, preset: str | None = None) -> dict:
        """SKU's lambda: the SKU adapter is applied with scale -lambda (0 = Original, 1 = the paper)."""
        if not (lam == lam) or not 0 <= float(lam) <= 100:
            raise ValueError(f"lambda must be between 0 and 100, got {lam}.")
        with self.lock:
            self._lm_variants().set_scale("sku", -float(lam), self._preset_name(preset))
        return {"negation": float(lam)}

    def train(self, method: str, settings: dict | None = None, preset: str | None = None,
              on_step=None, stop_event: threading.Event | None = None, out_dir: str | None = None) -> dict:
        """Train an ELM or SKU adapter on the preset; it becomes the preset's `method` variant at
        once (and is saved to `out_dir` when given). Stop discards it and keeps the old one."""
        from .methods import Trainer, TrainingStopped, get_method, make_config
        from .evaluation.capsules import versions

        cls, _ = get_method(method)
        config = make_config(method, settings)
        p, vs, lm = self._preset(preset), self._lm_variants(), self._lm()
        name = vs.new_name(cls.name)
        trainer = Trainer(lm, vs, cls(p), config, name, lock=self.lock)
        start = time.perf_counter()
        history = trainer.run(on_step=on_step, stop_event=stop_event)
        record = {
            "method": cls.name, "preset": p.name, "preset_data_sha256": p.data_hash(),
            "base_model": {"name": lm.info.name, "parameters": lm.info.parameters, "dtype": lm.info.dtype},
            "settings": config.to_dict(), "negation": getattr(config, "negation", None),
            "seconds": round(time.perf_counter() - start, 1), "final": history[-1] if history else {},
            "history": history, "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        scale = -config.negation if cls.name == "sku" else 1.0
        with self.lock:
            if stop_event is not None and stop_event.is_set():  # stopped after the last step: still discarded
                vs.delete(name)
                raise TrainingStopped("Training was stopped; the unfinished adapter was discarded.")
            vs.register(cls.name, name, cls.name, record, out_dir, scale, preset=p.name)
            if out_dir:
                vs.save(name, out_dir, record)
        return {k: v for k, v in record.items() if k != "history"} | {"steps_run": len(history), "path": out_dir}

    # ------------------------------------------------------------------ evaluation and capsules
    def evaluate(self, variants=("original", "eco"), metrics=None, split: str = "test",
                 eco: ECOConfig | None = None, preset: str | None = None, probes_file: str | None = None,
                 batch_size: int = 32, on_progress=None, stop_event: threading.Event | None = None):
        """Variants x metrics on a preset split -> EvalResult (tidy DataFrame + per-example table)."""
        from .evaluation.runner import DEFAULT_METRICS, check_names, evaluate
        from .data.presets import read_jsonl

        metrics = list(metrics or DEFAULT_METRICS)
        check_names(variants, metrics)
        p = self._preset(preset)
        probes = None
        if probes_file:
            from pathlib import Path

            rows = read_jsonl(Path(probes_file), "probe", label=str(probes_file))
            probes = {"forget": rows, "retain": p.probes("retain", split)}
        needs_gate = any(str(v).startswith("eco") for v in variants) and (eco or ECOConfig()).gate == "classifier"
        clf = self.classifier(p.name) if needs_gate else None
        with self.lock:
            result = evaluate(self._lm(), p, variants, metrics, split, eco, clf, batch_size, probes,
                              on_progress, stop_event, switch=self._lm_variants())
        result.settings["preset"] = p.name
        result.settings["probes_file"] = probes_file
        result.settings["adapters"] = self._adapter_settings(variants, p.name)
        return result

    def _adapter_settings(self, variants, preset: str) -> dict:
        """Every ELM/SKU setting behind the evaluated weight variants (for the run capsule)."""
        vs, out = self._lm_variants(), {}
        for v in variants:
            key = str(v).split("+")[-1]
            if key in vs.current.get(preset, {}):
                a = vs.adapters[vs.current[preset][key]]
                out[key] = {"scale": a.scale, "path": a.path, "weights_sha256": vs.adapter_hash(a.name),
                            **{k: a.record.get(k) for k in ("method", "settings", "negation", "created", "preset")}}
        return out

    def capsule(self, result, preset: str | None = None) -> dict:
        from .evaluation.capsules import make_capsule

        p = self._preset(result.settings.get("preset") or preset)
        clf = (self.classifiers.get(p.name) if any(str(v).startswith("eco") for v in result.settings["variants"])
               else None)
        return make_capsule(self._lm(), p, result, clf)

    def replay(self, capsule: dict, names_only: bool = False) -> dict:
        """Re-run a capsule's evaluation here and compare: {same, rows: [...], warnings: [...]}.

        names_only (how the app replays a client's capsule): the preset must be one of the server's
        presets by name and a probes file one of that preset's own files, by name; a path is
        refused in one sentence that does not say whether it exists."""
        from .evaluation.capsules import check_capsule, compare_rows, weights_hash

        check_capsule(capsule)
        s = capsule["settings"]
        probes_file = s.get("probes_file")
        batch_size = checks.integer("batch_size", s.get("batch_size", 32), 1, 512)
        if names_only:
            from .data.presets import list_presets, load_preset

            preset = checks.plain_name("preset", s.get("preset") or capsule["preset"]["name"], list_presets())
            if s["eco"].get("token_model") is not None:  # a model name or path: not a client's to choose
                raise ValueError("A replayed capsule may not name a token-classification model (eco.token_model); "
                                 "replay it from the command line instead.")
            if probes_file is not None:
                data = load_preset(preset).root / "data"
                known = sorted(f.name for f in data.glob("*probes*.jsonl"))
                probes_file = str(data / checks.plain_name("probe file", probes_file, known))

        warnings = []
        lm = self._lm()
        if "weights_sha256" not in lm.extras:
            lm.extras["weights_sha256"] = weights_hash(lm.model)
        if capsule["model"]["weights_sha256"] != lm.extras["weights_sha256"]:
            warnings.append("The loaded model's weights differ from the capsule's.")
        p = self._preset(s.get("preset") or capsule["preset"]["name"])
        if p.data_hash() != capsule["preset"]["data_sha256"]:
            warnings.append(f"The preset {p.name!r} data differ from the capsule's.")
        for key, want in (s.get("adapters") or {}).items():
            have = self._adapter_settings([key], p.name).get(key)
            if have is None:
                warnings.append(f"The capsule used a {key.upper()} adapter that is not loaded here.")
            elif have["weights_sha256"] != want.get("weights_sha256") or have["scale"] != want.get("scale"):
                warnings.append(f"The loaded {key.upper()} adapter differs from the capsule's.")
        result = self.evaluate(s["variants"], s["metrics"], s["split"], ECOConfig.from_dict(s["eco"]), p.name,
                               probes_file, batch_size)
        rows = compare_rows(capsule["rows"], result.rows())
        return {"same": all(r["same"] for r in rows) and not warnings, "rows": rows, "warnings": warnings}

    # ------------------------------------------------------------------ probes, sweeps, ZO
    def probe_accuracy(self, side: str, split: str = "test", eco: ECOConfig | None = None,
                       preset: str | None = None) -> dict:
        """{accuracy, logprob, n} on a preset's cloze probes, Original (eco=None) or with ECO."""
        p = self._preset(preset)
        with self.lock:
            e = self._eco(p.name, eco) if eco is not None else ECO(self._lm())
            return probe_summary(e.probe_choice_logprobs(p.probes(side, split), eco))

    def sweep(self, strengths: list[float], eco: ECOConfig | None = None, dims: list[int] | None = None,
              split: str = "test", preset: str | None = None, on_point=None,
              stop_event: threading.Event | None = None) -> list[dict]:
        """Forget/retain probe accuracy and mean log-prob at each strength (x dims): a dose-response."""
        eco = (eco or ECOConfig()).validate(self._lm().model.config.hidden_size)
        strengths = checks.number_list("strengths", strengths, 0, 1e9)
        dims = checks.number_list("dims", dims, 0, self._lm().model.config.hidden_size, whole=True) if dims else None
        base = {s: self.probe_accuracy(s, split, None, preset) for s in ("forget", "retain")}
        points = []
        for d in (dims or [eco.dims]):
            for strength in strengths:
                if stop_event is not None and stop_event.is_set():
                    return points
                cfg = ECOConfig.from_dict({**eco.to_dict(), "strength": float(strength), "dims": int(d)})
                f = self.probe_accuracy("forget", split, cfg, preset)
                r = self.probe_accuracy("retain", split, cfg, preset)
                point = {"strength": float(strength), "dims": int(d), "forget_accuracy": f["accuracy"],
                         "retain_accuracy": r["accuracy"], "forget_logprob": f["logprob"],
                         "retain_logprob": r["logprob"], "original_forget_accuracy": base["forget"]["accuracy"],
                         "original_retain_accuracy": base["retain"]["accuracy"], "n_forget": f["n"],
                         "n_retain": r["n"]}
                points.append(point)
                if on_point:
                    on_point(point)
        return points

    def optimize(self, eco: ECOConfig | None = None, zo_config: zo.ZOConfig | None = None,
                 metric: str = "forget_probe_accuracy", target: float = 0.25, split: str = "train",
                 preset: str | None = None, stop_event: threading.Event | None = None) -> Iterator[dict]:
        """Zeroth-order search of ECO's strength minimising |metric(sigma) - target| on `split`
        (train by default, so the reported test split stays unseen). Yields one record per step."""
        if metric not in ("forget_probe_accuracy", "forget_probe_logprob"):
            raise ValueError(f"Unknown ZO metric {metric!r}; known: forget_probe_accuracy, forget_probe_logprob.")
        eco = eco or ECOConfig()
        key = "accuracy" if metric == "forget_probe_accuracy" else "logprob"

        def objective(sigma: float) -> float:
            return abs(self.probe_accuracy("forget", split, eco.with_strength(sigma), preset)[key] - target)

        opt = zo.ScalarZO(zo_config or zo.ZOConfig())
        best = None
        for rec in zo.run(objective, opt, stop_event=stop_event):
            d = rec.to_dict()
            for sigma, f in ((rec.theta_before + opt.c.eps, rec.f_plus),
                             (max(rec.theta_before - opt.c.eps, 1e-8), rec.f_minus)):
                if best is None or f < best[1]:
                    best = (sigma, f)
            d.update(best_strength=best[0], best_objective=best[1], metric=metric, target=target, split=split)
            yield d
