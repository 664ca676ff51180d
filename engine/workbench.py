"""Workbench: the one object the UI, the CLI and notebooks hold.

It loads the model and the preset into a `Session` and composes the parts that work on them,
each readable alone: the `Gate` (eco/gate.py: the prompt classifier per preset), `Answers`
(answers.py: prompts to streamed variant answers), `Adapters` (methods/adapters.py: ELM and SKU)
and the `Evaluator` (evaluation/evaluator.py: evaluation, capsules, replay). The workbench's own
verbs are the ECO probe measurements, the strength sweep, the zeroth-order search and the sweep of
an adapter's scale (evaluation/scale_front.py). Every verb that touches the model runs under the
session's re-entrant lock, so requests from several users are serialised and none leaves state on
the shared model. It knows nothing about Gradio.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Iterator

from . import checks
from .answers import Answers, Decoding
from .data.presets import list_presets, load_preset
from .eco import tuning, zo
from .eco.gate import Gate
from .eco.pipeline import ECO, ECOConfig, probe_summary
from .evaluation import scale_front
from .evaluation.evaluator import Evaluator
from .lm.generation import GenerationConfig
from .lm.models import DEFAULT_MODEL, LoadedModel, load_model
from .methods.adapters import Adapters
from .session import MAX_PROMPT_CHARS, Session

ZO_METRICS = {"forget_probe_accuracy": "accuracy", "forget_probe_logprob": "logprob"}


class Workbench:
    """Load a model and a preset, then generate, corrupt, train and evaluate."""

    def __init__(self, model: str | None = DEFAULT_MODEL, preset: str | None = "harry_potter",
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 max_prompt_chars: int = MAX_PROMPT_CHARS):
        self.device, self.dtype, self.trust_remote_code = device, dtype, trust_remote_code
        self.session = Session(load_preset(preset) if preset else None, max_prompt_chars)
        self.gate = Gate(self.session)
        self.answers = Answers(self.session, self.gate)
        self.adapter_store = Adapters(self.session)
        self.evaluator = Evaluator(self.session, self.gate, self.adapter_store)
        if model:
            self.load_model(model)

    @classmethod
    def from_loaded(cls, lm: LoadedModel, preset=None) -> "Workbench":
        """Wrap an already loaded model (tests, notebooks)."""
        wb = cls(model=None, preset=None)
        wb.session.use_model(lm)
        wb.session.preset = load_preset(preset) if isinstance(preset, str) else preset
        return wb

    # the session's state, read-only from outside
    lm = property(lambda self: self.session.lm)
    variants = property(lambda self: self.session.variants)
    preset = property(lambda self: self.session.preset)
    lock = property(lambda self: self.session.lock)
    classifiers = property(lambda self: self.gate.classifiers)
    adapter_notes = property(lambda self: self.adapter_store.notes)

    @property
    def max_prompt_chars(self) -> int:
        return self.session.max_prompt_chars

    @max_prompt_chars.setter
    def max_prompt_chars(self, value: int) -> None:
        self.session.max_prompt_chars = int(value)


    # ------------------------------------------------------------------ model and preset
    def load_model(self, name: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None,
                   trust_remote_code: bool | None = None) -> dict:
        """Load (or replace) the model; the previous one stays if loading fails."""
        lm = load_model(
            name, device=device or self.device, dtype=dtype or self.dtype,
            trust_remote_code=self.trust_remote_code if trust_remote_code is None else trust_remote_code,
        )
        with self.session.lock:
            self.session.use_model(lm)
            if self.session.preset is not None:
                self.adapter_store.load_shipped()
        return lm.info.to_dict()

    def model_info(self) -> dict:
        return self.session.model().info.to_dict()

    def presets(self) -> list[str]:
        return list_presets()

    def load_preset(self, name: str) -> dict:
        preset = load_preset(name)
        with self.session.lock:
            self.session.preset = preset
            if self.session.lm is not None:
                self.adapter_store.load_shipped()
        return preset.summary()

    # ------------------------------------------------------------------ the gate
    def classifier(self, preset: str | None = None, on_step=None, stop_event=None, config=None):
        return self.gate.classifier(preset, on_step, stop_event, config)

    def use_classifier(self, name_or_path: str, preset: str | None = None, threshold: float | None = None) -> dict:
        return self.gate.use(name_or_path, preset, threshold)

    def classify(self, prompts: list[str], preset: str | None = None, threshold: float | None = None) -> dict:
        return self.gate.classify(prompts, preset, threshold)

    def gate_report(self, preset: str | None = None, split: str = "test") -> dict:
        return self.gate.report(preset, split)

    # ------------------------------------------------------------------ answers
    def select_tokens(self, prompt: str, config: ECOConfig | None = None, manual: list[int] | None = None,
                      chat: bool = True) -> dict:
        return self.answers.select_tokens(prompt, config, manual, chat)

    def eco_plan(self, prompt: str, config: ECOConfig, preset: str | None = None,
                 manual: list[int] | None = None, chat: bool = True):
        return self.answers.eco_plan(prompt, config, preset, manual, chat)

    def stream(self, prompt: str, config: GenerationConfig | None = None, stop_event: threading.Event | None = None,
               variant: str = "original", eco: ECOConfig | None = None, preset: str | None = None,
               manual: list[int] | None = None, negation: float | None = None) -> Decoding:
        """One variant's answer so far, growing; the returned Decoding holds its ECO plan and stats."""
        return self.answers.stream(prompt, [(variant, eco)], config, stop_event, preset, manual, negation,
                                   single=True)

    def stream_many(self, prompt: str, variants: list[tuple[str, ECOConfig | None]],
                    config: GenerationConfig | None = None, stop_event: threading.Event | None = None,
                    preset: str | None = None, manual: list[int] | None = None,
                    negation: float | None = None) -> Decoding:
        """Several variants of one prompt, token by token in turn: iterate for the list of texts."""
        return self.answers.stream(prompt, variants, config, stop_event, preset, manual, negation)

    def generate(self, prompt: str, config: GenerationConfig | None = None, variant: str = "original",
                 eco: ECOConfig | None = None, preset: str | None = None, negation: float | None = None) -> dict:
        """The whole answer with timing: {text, model, seconds, new_tokens, tokens_per_second}
        (plus the gate score and decision for variant "eco")."""
        run = self.stream(prompt, config, variant=variant, eco=eco, preset=preset, negation=negation)
        for _ in run:
            pass
        st = run.stats[0]
        out = {"text": st.text, "model": self.session.model().info.name, "variant": variant,
               "seconds": round(st.seconds, 3), "new_tokens": st.new_tokens,
               "tokens_per_second": round(st.tokens_per_second, 2)}
        if run.plans:
            plan = run.plans[0]
            out.update(run.gate(), selected_tokens=[plan.selection.tokens[i] for i in plan.selection.positions])
        return out

    def compare(self, prompt: str, variants=("original", "eco", "elm", "sku"), config: GenerationConfig | None = None,
                eco: ECOConfig | None = None, preset: str | None = None,
                stop_event: threading.Event | None = None, negation: float | None = None) -> Iterator[dict]:
        return self.answers.compare(prompt, variants, config, eco, preset, stop_event, negation)

    # ------------------------------------------------------------------ adapters: ELM and SKU
    def load_shipped_adapters(self) -> list[str]:
        return self.adapter_store.load_shipped()

    def adapters(self, preset: str | None = None) -> dict:
        return self.adapter_store.describe(preset)

    def load_adapter(self, source: str, key: str | None = None, method: str | None = None,
                     preset: str | None = None) -> dict:
        return self.adapter_store.load(source, key, method, preset)

    def set_negation(self, lam: float, preset: str | None = None) -> dict:
        return self.adapter_store.set_negation(lam, preset)

    def train(self, method: str, settings: dict | None = None, preset: str | None = None,
              on_step=None, stop_event: threading.Event | None = None, out_dir: str | None = None) -> dict:
        return self.adapter_store.train(method, settings, preset, on_step, stop_event, out_dir)

    def sweep_scale(self, method: str, scales, split: str = "test", preset: str | None = None, on_point=None,
                    stop_event: threading.Event | None = None, eco: ECOConfig | None = None,
                    batch_size: int = 32) -> dict:
        """The forget-retain front of the preset's ELM or SKU variant over its inference-time scale
        (SKU: lambda): forget/retain probe accuracy and retain perplexity at each scale, with
        Original and ECO (the preset's default unless `eco` is given) as references and the
        adapter's own scale marked `shipped` (engine/evaluation/scale_front.py). The adapter's
        scale is never written: the model is the same after a sweep, a stop or an error."""
        method, scales = scale_front.check_request(method, scales, split)
        batch_size = checks.integer("batch_size", batch_size, 1, 512)
        p = self.session.preset_for(preset)
        eco = (eco or self.eco_default(p.name)).validate(self.session.hidden_size())
        scale_front.adapter_of(self.session.switch(), method, p.name)  # before the gate is built
        clf = self.gate.classifier(p.name) if eco.gate == "classifier" else None
        with self.session.lock:
            return scale_front.sweep_scale(self.session.model(), p, self.session.switch(), method, scales, split,
                                           eco, clf, batch_size, on_point, stop_event)

    # ------------------------------------------------------------------ evaluation and capsules
    def evaluate(self, variants=("original", "eco"), metrics=None, split: str = "test",
                 eco: ECOConfig | None = None, preset: str | None = None, probes_file: str | None = None,
                 batch_size: int = 32, on_progress=None, stop_event: threading.Event | None = None):
        return self.evaluator.evaluate(variants, metrics, split, eco, preset, probes_file, batch_size,
                                       on_progress, stop_event)

    def attack(self, variants=("original", "eco"), attacks=("nameless",), split: str = "test",
               eco: ECOConfig | None = None, config=None, preset: str | None = None, batch_size: int = 32,
               on_progress=None, stop_event: threading.Event | None = None):
        """Variants x attacks (clean first): metrics under attack -> AttackResult (engine/attacks)."""
        return self.evaluator.attack(variants, attacks, split, eco, config, preset, batch_size, on_progress,
                                     stop_event)

    def capsule(self, result, preset: str | None = None) -> dict:
        return self.evaluator.capsule(result, preset)

    def replay(self, capsule: dict, names_only: bool = False) -> dict:
        return self.evaluator.replay(capsule, names_only)

    # ------------------------------------------------------------------ ECO's default per preset
    def eco_default(self, preset: str | None = None) -> ECOConfig:
        """The preset's ECO default (its preset.yaml `eco:` block, found by `calibrate_eco`), else
        ECOConfig's own defaults."""
        name = self.session.preset_name(preset)
        return ECOConfig.for_preset(self.session.preset_for(name) if name else None)

    def calibrate_eco(self, config: tuning.TuningConfig | None = None, candidates=None,
                      preset: str | None = None, stop_event: threading.Event | None = None) -> Iterator[dict]:
        """Search selection x corruption x dims x strength for a fluent forgetting default on the
        train split (engine.eco.tuning): yields the reference, every point, each candidate's
        summary and the result; `save_eco_default` writes a result into the preset."""
        p, config = self.session.preset_for(preset), (config or tuning.TuningConfig()).validate()
        clf = self.gate.classifier(p.name) if config.gate == "classifier" else None
        cands = tuning.parse_candidates(candidates) if candidates else tuning.CANDIDATES
        with self.session.lock:
            tuner = tuning.Tuner(self.session.model(), clf, p, config,
                                 self.eco_default(p.name))
            yield from tuner.run(cands, stop_event)

    def save_eco_default(self, result: dict, preset: str | None = None) -> str:
        """Write a calibration result's chosen setting into the preset's preset.yaml; returns the path."""
        return tuning.save_default(self.session.preset_for(preset), result, self.session.model().info.name)

    # ------------------------------------------------------------------ ECO's strength: probes, sweeps, ZO
    def probe_accuracy(self, side: str, split: str = "test", eco: ECOConfig | None = None,
                       preset: str | None = None) -> dict:
        """{accuracy, logprob, n} on a preset's cloze probes, Original (eco=None) or with ECO."""
        p = self.session.preset_for(preset)
        with self.session.lock:
            e = self.answers.eco(p.name, eco) if eco is not None else ECO(self.session.model())
            return probe_summary(e.probe_choice_logprobs(p.probes(side, split), eco))

    def sweep(self, strengths: list[float], eco: ECOConfig | None = None, dims: list[int] | None = None,
              split: str = "test", preset: str | None = None, on_point=None,
              stop_event: threading.Event | None = None) -> list[dict]:
        """Forget/retain probe accuracy and mean log-prob at each strength (x dims): a dose-response."""
        hidden = self.session.hidden_size()
        eco = (eco or self.eco_default(preset)).validate(hidden)
        strengths = checks.number_list("strengths", strengths, 0, 1e9)
        dims = checks.number_list("dims", dims, 0, hidden, whole=True) if dims else None
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
        (train by default, so the reported test split stays unseen). Both probes of a step share
        their noise seeds (common random numbers); each evaluation averages `draws` noise draws.
        Yields one record per step."""
        if metric not in ZO_METRICS:
            raise ValueError(f"Unknown ZO metric {metric!r}; known: {', '.join(ZO_METRICS)}.")
        eco, key = eco or self.eco_default(preset), ZO_METRICS[metric]
        zc = (zo_config or zo.ZOConfig()).validate()

        def objective(sigma: float, seed: int) -> float:
            values = [self.probe_accuracy("forget", split, replace(eco, strength=float(sigma), seed=seed * 64 + r),
                                          preset)[key] for r in range(int(zc.draws))]
            return abs(sum(values) / len(values) - target)

        for record in zo.search_strength(objective, zc, stop_event):
            yield record | {"metric": metric, "target": target, "split": split}
