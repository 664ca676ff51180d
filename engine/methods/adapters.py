"""Adapters: the ELM and SKU LoRA adapters of the session's model, by preset.

Loads the ones shipped with a preset (when they were made for this model), loads others from a
folder or the Hub, trains new ones (which become the preset's variant at once), sets SKU's λ,
and describes what is loaded, for the UI and for run capsules.
"""
from __future__ import annotations

import json
import threading
import time

from .. import checks
from ..session import Session
from .variants import AdapterError, WEIGHT_METHODS

SHIPPED_ADAPTERS = "adapters"  # presets/<name>/adapters/<method>/


class Adapters:
    def __init__(self, session: Session):
        self.session = session
        self.notes: list[str] = []  # why a shipped adapter was not loaded

    def load_shipped(self) -> list[str]:
        """Load presets/<preset>/adapters/<method>/ made for this model; note why any is skipped."""
        s = self.session
        p, vs, lm, notes = s.preset_for(), s.switch(), s.model(), []
        for method in WEIGHT_METHODS:
            folder = p.root / SHIPPED_ADAPTERS / method
            record_file = folder / "lethe_adapter.json"
            if not record_file.is_file() or method in vs.current.get(p.name, {}):
                continue
            made_for = json.loads(record_file.read_text()).get("base_model", {}).get("name")
            if made_for != lm.info.name:
                notes.append(f"The shipped {method.upper()} adapter for {p.name} was trained on {made_for}, "
                             f"not {lm.info.name}; train one for this model.")
                continue
            try:
                vs.load(folder, method, method, preset=p.name)
            except AdapterError as e:
                notes.append(str(e))
        self.notes = notes
        return notes

    def describe(self, preset: str | None = None) -> dict:
        """The weight variants ready for the preset, their records, and the memory they add."""
        s = self.session
        vs, name = s.switch(), s.preset_name(preset)
        return {"variants": vs.names(name), "adapters": vs.describe(name), "adapter_bytes": vs.adapter_bytes(),
                "base_bytes": s.model().info.memory_bytes, "notes": list(self.notes)}

    def load(self, source: str, key: str | None = None, method: str | None = None,
             preset: str | None = None) -> dict:
        """Load a peft LoRA adapter (folder or Hub id) as a variant of the current preset."""
        with self.session.lock:
            a = self.session.switch().load(source, key, method, preset=self.session.preset_name(preset))
        return a.to_dict()

    def set_negation(self, lam: float, preset: str | None = None) -> dict:
        """SKU's lambda: the SKU adapter is applied with scale -lambda (0 = Original, 1 = the paper)."""
        lam = checks.negation(lam)
        with self.session.lock:
            self.session.switch().set_scale("sku", -lam, self.session.preset_name(preset))
        return {"negation": lam}

    def train(self, method: str, settings: dict | None = None, preset: str | None = None,
              on_step=None, stop_event: threading.Event | None = None, out_dir: str | None = None) -> dict:
        """Train an ELM or SKU adapter on the preset; it becomes the preset's `method` variant at
        once (and is saved to `out_dir` when given). Stop discards it and keeps the old one."""
        from ..evaluation.capsules import versions
        from . import Trainer, TrainingStopped, get_method, make_config

        s = self.session
        cls, _ = get_method(method)
        config = make_config(method, settings)
        p, vs, lm = s.preset_for(preset), s.switch(), s.model()
        name = vs.new_name(cls.name)
        trainer = Trainer(lm, vs, cls(p), config, name, lock=s.lock)
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
        scale = -config.negation if cls.name == "sku" else float(getattr(config, "scale", 1.0))
        with s.lock:
            if stop_event is not None and stop_event.is_set():  # stopped after the last step: still discarded
                vs.delete(name)
                raise TrainingStopped("Training was stopped; the unfinished adapter was discarded.")
            vs.register(cls.name, name, cls.name, record, out_dir, scale, preset=p.name)
            if out_dir:
                vs.save(name, out_dir, record)
        return {k: v for k, v in record.items() if k != "history"} | {"steps_run": len(history), "path": out_dir}

    def settings(self, variants, preset: str) -> dict:
        """Every ELM/SKU setting behind the given weight variants (for the run capsule)."""
        vs, out = self.session.switch(), {}
        for v in variants:
            key = str(v).split("+")[-1]
            if key in vs.current.get(preset, {}):
                a = vs.adapters[vs.current[preset][key]]
                out[key] = {"scale": a.scale, "path": a.path, "weights_sha256": vs.adapter_hash(a.name),
                            **{k: a.record.get(k) for k in ("method", "settings", "negation", "created", "preset")}}
        return out
