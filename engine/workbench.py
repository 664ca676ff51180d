"""Workbench: the one object the UI, the CLI and notebooks hold.

It owns the loaded model, its tokenizer and the active preset, and offers a handful of
verbs that take plain values or config dataclasses and return plain data. Every verb that
touches the model runs under one re-entrant lock, so requests from several users are
serialised and none of them leaves state on the shared model. It knows nothing about Gradio.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator

from . import generation, zo
from .classifier import ClassifierConfig, PromptClassifier, gate_report, preset_classifier
from .eco import ECO, ECOConfig, ECOPlan, probe_summary
from .generation import GenerationConfig, GenerationStats
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .presets import Preset, list_presets, load_preset
from .variants import AdapterError, Variants, WEIGHT_METHODS

SHIPPED_ADAPTERS = "adapters"  # presets/<name>/adapters/<method>/

MAX_PROMPT_CHARS = 8000


def check_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Return the prompt, or raise ValueError with one sentence saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("The prompt is empty: type a question or a sentence to continue.")
    if len(prompt) > max_chars:
        raise ValueError(f"The prompt has {len(prompt):,} characters; the limit is {max_chars:,}.")
    if "\x00" in prompt:
        raise ValueError("The prompt contains a NUL character; remove it and try again.")
    return prompt


class Workbench:
    """Load a model and a preset, then generate, (later) corrupt, train and evaluate."""

    def __init__(
        self,
        model: str | None = DEFAULT_MODEL,
        preset: str | None = "harry_potter",
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
    ):
        self.lock = threading.RLock()
        self.device, self.dtype, self.trust_remote_code = device, dtype, trust_remote_code
        self.max_prompt_chars = max_prompt_chars
        self.lm: LoadedModel | None = None
        self.variants: Variants | None = None
        self.adapter_notes: list[str] = []  # why a shipped adapter was not loaded
        self.preset: Preset | None = load_preset(preset) if preset else None
        self.classifiers: dict[str, PromptClassifier] = {}  # preset name -> gate classifier
        self._classifier_lock = threading.Lock()
        if model:
            self.load_model(model)

    @classmethod
    def from_loaded(cls, lm: LoadedModel, preset: str | Preset | None = None) -> "Workbench":
        """Wrap an already loaded model (tests, notebooks)."""
        wb = cls(model=None, preset=None)
        wb.lm, wb.variants = lm, Variants(lm)
        wb.preset = load_preset(preset) if isinstance(preset, str) else preset
        return wb

    # ------------------------------------------------------------------ model and preset
    def load_model(self, name: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None,
                   trust_remote_code: bool | None = None) -> dict:
        """Load (or replace) the model; the previous one stays if loading fails."""
        lm = load_model(
            name, device=device or self.device, dtype=dtype or self.dtype,
            trust_remote_code=self.trust_remote_code if trust_remote_code is None else trust_remote_code,
        )
        with self.lock:
            self.lm, self.variants = lm, Variants(lm)
            if self.preset is not None:
                self.load_shipped_adapters()
        return lm.info.to_dict()

    def model_info(self) -> dict:
        return self._lm().info.to_dict()

    def presets(self) -> list[str]:
        return list_presets()

    def load_preset(self, name: str) -> dict:
        preset = load_preset(name)
        with self.lock:
            self.preset = preset
            if self.lm is not None:
                self.load_shipped_adapters()
        return preset.summary()

    def _preset(self, name: str | None = None) -> Preset:
        if name and (self.preset is None or self.preset.name != name):
            return load_preset(name)
        if self.preset is None:
            raise RuntimeError("No preset is loaded: pick one (Model tab or --preset).")
        return self.preset

    # ------------------------------------------------------------------ classifier
    def classifier(self, preset: str | None = None, on_step=None, stop_event=None,
                   config: ClassifierConfig | None = None) -> PromptClassifier:
        """The preset's gate classifier: from memory, the cache, or trained now (once)."""
        p = self._preset(preset)
        with self._classifier_lock:
            if p.name not in self.classifiers:
                clf = preset_classifier(p, config, on_step=on_step, stop_event=stop_event)
                if clf is None:
                    raise RuntimeError("Classifier training was stopped; nothing was saved.")
                self.classifiers[p.name] = clf
            return self.classifiers[p.name]

    def use_classifier(self, name_or_path: str, preset: str | None = None, threshold: float | None = None) -> dict:
        """Gate with an external Hugging Face sequence classifier instead of the trained one."""
        clf = PromptClassifier.load(name_or_path, threshold)
        self.classifiers[self._preset(preset).name] = clf
        return clf.info()

    def classify(self, prompts: list[str], preset: str | None = None, threshold: float | None = None) -> dict:
        """{threshold, results: [{prompt, score, flagged}]} for each prompt."""
        for p in prompts:
            check_prompt(p, self.max_prompt_chars)
        clf = self.classifier(preset)
        t = clf.threshold if threshold is None else float(threshold)
        scores = clf.score(prompts)
        return {"threshold": t, "classifier": clf.name,
                "results": [{"prompt": p, "score": s, "flagged": s > t} for p, s in zip(prompts, scores)]}

    def gate_report(self, preset: str | None = None, split: str = "test") -> dict:
        p = self._preset(preset)
        clf = self.classifier(p.name)
        return gate_report(clf, [r.prompt for r in p.prompts("forget", split)],
                           [r.prompt for r in p.prompts("retain", split)])

    # ------------------------------------------------------------------ ECO
    def _eco(self, preset: str | None, config: ECOConfig) -> ECO:
        clf = self.classifier(preset) if config.gate == "classifier" else None
        return ECO(self._lm(), clf)

    def select_tokens(self, prompt: str, config: ECOConfig | None = None, manual: list[int] | None = None,
                      chat: bool = True) -> dict:
        """The prompt's LLM tokens with the selected ones and their entity labels."""
        check_prompt(prompt, self.max_prompt_chars)
        config = (config or ECOConfig()).validate(self._lm().model.config.hidden_size)
        eco = ECO(self._lm())
        sel = eco.selector(config).select(self._lm().tokenizer, prompt, chat=chat, manual=manual)
        return {**sel.to_dict(), "highlighted": sel.highlighted(), "prompt_span": list(sel.prompt_span),
                "offsets": [list(o) for o in sel.offsets]}

    def eco_plan(self, prompt: str, config: ECOConfig, preset: str | None = None,
                 manual: list[int] | None = None, chat: bool = True) -> ECOPlan:
        check_prompt(prompt, self.max_prompt_chars)
        with self.lock:
            return self._eco(preset, config).plan(prompt, config, chat=chat, manual=manual)
    def _lm(self) -> LoadedModel:
        if self.lm is None:
            raise RuntimeError("No model is loaded: load one first (Model tab or --model).")
        return self.lm

    # ------------------------------------------------------------------ generation
    def stream(self, prompt: str, config: GenerationConfig | None = None,
               stop_event: threading.Event | None = None, stats: GenerationStats | None = None,
               variant: str = "original", eco: ECOConfig | None = None, preset: str | None = None,
               manual: list[int] | None = None, plan_out: list | None = None,
               negation: float | None = None) -> Iterator[str]:
        """Yield a variant's answer so far, growing, until it is complete.

        variant "original" is the base model; "eco" corrupts the prompt when the gate fires (the
        ECOPlan is appended to `plan_out` when given); "elm", "sku", "eco+elm", "eco+sku" use the
        preset's adapters. The lock is taken per forward pass, never across a yield."""
        stats_out: list = []
        for texts in self.stream_many(prompt, [(variant, eco)], config, stop_event, preset, plan_out, stats_out,
                                      manual, negation):
            yield texts[0]
        if stats is not None:
            stats.__dict__.update(stats_out[0].__dict__)

    def _inputs(self, prompt: str, config: GenerationConfig, use_eco: bool, eco: ECOConfig | None,
                preset: str | None, manual, plan_out, lm=None) -> dict:
        """The model inputs for one prompt: token ids, or ECO's (maybe corrupted) embeddings."""
        lm = lm or self._lm()
        if not use_eco:
            return generation.encode_prompt(lm.tokenizer, prompt, chat=config.chat, device=lm.device)
        eco = eco or ECOConfig(seed=config.seed)
        plan = self._eco(preset, eco).plan(prompt, eco, chat=config.chat, manual=manual)
        if plan_out is not None:
            plan_out.append(plan)
        return ({"inputs_embeds": plan.inputs_embeds, "attention_mask": plan.attention_mask}
                if plan.flagged else {"input_ids": plan.input_ids, "attention_mask": plan.attention_mask})

    def _preset_name(self, preset: str | None = None) -> str | None:
        return preset or (self.preset.name if self.preset else None)

    def _lm_variants(self) -> Variants:
        self._lm()
        return self.variants

    def generate(self, prompt: str, config: GenerationConfig | None = None, variant: str = "original",
                 eco: ECOConfig | None = None, preset: str | None = None, negation: float | None = None) -> dict:
        """The whole answer with timing: {text, model, seconds, new_tokens, tokens_per_second}
        (plus the gate score and decision for variant "eco")."""
        stats, plans = GenerationStats(), []
        start = time.perf_counter()
        for _ in self.stream(prompt, config, stats=stats, variant=variant, eco=eco, preset=preset,
                             plan_out=plans, negation=negation):
            pass
        out = {
            "text": stats.text,
            "model": self._lm().info.name,
            "variant": variant,
            "seconds": round(time.perf_counter() - start, 3),
            "new_tokens": stats.new_tokens,
            "tokens_per_second": round(stats.tokens_per_second, 2),
        }
        if plans:
            out.update(score=plans[0].score, flagged=plans[0].flagged, threshold=plans[0].threshold,
                       selected_tokens=[plans[0].selection.tokens[i] for i in plans[0].selection.positions])
        return out

    def stream_many(self, prompt: str, variants: list[tuple[str, ECOConfig | None]],
                    config: GenerationConfig | None = None, stop_event: threading.Event | None = None,
                    preset: str | None = None, plan_out: list | None = None,
                    stats_out: list | None = None, manual: list[int] | None = None,
                    negation: float | None = None) -> Iterator[list[str]]:
        """Stream several variants of one prompt together, token by token in turn, each under its
        own adapter state (one shared model); yields the list of texts so far."""
        check_prompt(prompt, self.max_prompt_chars)
        config = (config or GenerationConfig()).validate()
        if negation is not None and (not (negation == negation) or not 0 <= float(negation) <= 100):
            raise ValueError(f"lambda must be between 0 and 100, got {negation}.")
        stats = [GenerationStats() for _ in variants]
        if stats_out is not None:
            stats_out.extend(stats)
        inputs, scopes = [], []
        with self.lock:
            vs, lm = self._lm_variants(), self._lm()
            for name, eco in variants:
                use_eco, adapter, vlm = vs.resolve(name, self._preset_name(preset))
                if vlm is not lm:
                    if len(variants) > 1:
                        raise ValueError(f"{name!r} is a separate full model; stream it on its own.")
                    lm = vlm
                inputs.append(self._inputs(prompt, config, use_eco, eco, preset, manual, plan_out, vlm))
                scopes.append(lambda a=adapter: vs.use(a, negation=negation))
        yield from generation.stream_interleaved(lm.model, lm.tokenizer, config, inputs, scopes, lock=self.lock,
                                                 stop_event=stop_event, stats=stats)

    def compare(self, prompt: str, variants=("original", "eco", "elm", "sku"), config: GenerationConfig | None = None,
                eco: ECOConfig | None = None, preset: str | None = None,
                stop_event: threading.Event | None = None, negation: float | None = None) -> Iterator[dict]:
        """Stream the variants side by side; the last record adds quick metrics and a diff per column.

        Yields {"variants", "texts", "done": False} while decoding, then {"...", "done": True,
        "metrics": [...], "diffs": [...]}. Variants with no adapter yet are reported, not streamed."""
        available = set(self._lm_variants().names(self._preset_name(preset)))
        run = [v for v in variants if v in available]
        missing = [v for v in variants if v not in available]
        eco = eco or ECOConfig(seed=(config.seed if config else 0))
        plans, stats = [], []
        texts = [""] * len(run)
        for texts in self.stream_many(prompt, [(v, eco) for v in run], config, stop_event, preset, plans, stats,
                                      negation=negation):
            yield {"variants": run, "missing": missing, "texts": texts, "done": False}
        from .metrics import output_metrics, token_diff

        gate = {"score": plans[0].score, "flagged": plans[0].flagged, "threshold": plans[0].threshold} if plans else None
        with self.lock:
            quick = output_metrics(self, prompt, texts, config or GenerationConfig(), self._preset(preset))
        for name, row, st in zip(run, quick, stats):
            row.update(variant=name, new_tokens=st.new_tokens, gate_score=gate["score"] if gate else None,
                       gated=bool(gate and gate["flagged"] and name.startswith("eco")))
        diffs = [token_diff(texts[0], t) for t in texts] if run else []
        yield {"variants": run, "missing": missing, "texts": texts, "done": True, "metrics": quick,
               "diffs": diffs, "gate": gate, "seconds": stats[0].seconds if stats else 0.0}

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
        from .methods import Trainer, get_method, make_config
        from .runs import versions

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
            vs.register(cls.name, name, cls.name, record, out_dir, scale, preset=p.name)
            if out_dir:
                vs.save(name, out_dir, record)
        return {k: v for k, v in record.items() if k != "history"} | {"steps_run": len(history), "path": out_dir}

    # ------------------------------------------------------------------ evaluation and capsules
    def evaluate(self, variants=("original", "eco"), metrics=None, split: str = "test",
                 eco: ECOConfig | None = None, preset: str | None = None, probes_file: str | None = None,
                 batch_size: int = 32, on_progress=None, stop_event: threading.Event | None = None):
        """Variants x metrics on a preset split -> EvalResult (tidy DataFrame + per-example table)."""
        from .evaluation import DEFAULT_METRICS, check_names, evaluate
        from .presets import read_jsonl

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
        from .runs import make_capsule

        p = self._preset(result.settings.get("preset") or preset)
        clf = (self.classifiers.get(p.name) if any(str(v).startswith("eco") for v in result.settings["variants"])
               else None)
        return make_capsule(self._lm(), p, result, clf)

    def replay(self, capsule: dict) -> dict:
        """Re-run a capsule's evaluation here and compare: {same, rows: [...], warnings: [...]}."""
        from .runs import compare_rows, weights_hash

        warnings = []
        lm = self._lm()
        if "weights_sha256" not in lm.extras:
            lm.extras["weights_sha256"] = weights_hash(lm.model)
        if capsule["model"]["weights_sha256"] != lm.extras["weights_sha256"]:
            warnings.append("The loaded model's weights differ from the capsule's.")
        s = capsule["settings"]
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
                               s.get("probes_file"), s.get("batch_size", 32))
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
        eco = eco or ECOConfig()
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
