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

from . import checks
from .lm import generation
from .eco.classifier import ClassifierConfig, PromptClassifier, gate_report, preset_classifier
from .eco.pipeline import ECO, ECOConfig, ECOPlan
from .experiments import Experiments
from .lm.generation import GenerationConfig, GenerationStats
from .lm.models import DEFAULT_MODEL, LoadedModel, load_model
from .data.presets import Preset, list_presets, load_preset
from .methods.variants import Variants

MAX_PROMPT_CHARS = 8000


def check_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Return the prompt, or raise ValueError with one sentence saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("The prompt is empty: type a question or a sentence to continue.")
    return checks.text("The prompt", prompt, max_chars)


class Workbench(Experiments):
    """Load a model and a preset, then generate, corrupt, train and evaluate (engine/experiments.py
    holds the adapter, evaluation, sweep and ZO verbs)."""

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
        """{threshold, results: [{prompt, score, flagged, matched, kept}]} for each prompt (matched:
        the forget-lexicon entities it names, which score it 1; kept: the retain-lexicon entities
        it names instead, which score it 0)."""
        for p in prompts:
            check_prompt(p, self.max_prompt_chars)
        threshold = checks.threshold(threshold)
        clf = self.classifier(preset)
        t = clf.threshold if threshold is None else threshold
        scores = clf.score(prompts)
        return {"threshold": t, "classifier": clf.name,
                "results": [{"prompt": p, "score": s, "flagged": s > t, "matched": clf.matches(p),
                             "kept": clf.kept(p)}
                            for p, s in zip(prompts, scores)]}

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
                       matched=list(plans[0].matched), kept=list(plans[0].kept), selected_tokens=[plans[0].selection.tokens[i] for i in plans[0].selection.positions])
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
        from .evaluation.metrics import output_metrics, token_diff

        gate = {"score": plans[0].score, "flagged": plans[0].flagged, "threshold": plans[0].threshold,
                "matched": list(plans[0].matched), "kept": list(plans[0].kept)} if plans else None
        with self.lock:
            quick = output_metrics(self, prompt, texts, config or GenerationConfig(), self._preset(preset))
        for name, row, st in zip(run, quick, stats):
            row.update(variant=name, new_tokens=st.new_tokens, gate_score=gate["score"] if gate else None,
                       gated=bool(gate and gate["flagged"] and name.startswith("eco")))
        diffs = [token_diff(texts[0], t) for t in texts] if run else []
        yield {"variants": run, "missing": missing, "texts": texts, "done": True, "metrics": quick,
               "diffs": diffs, "gate": gate, "seconds": stats[0].seconds if stats else 0.0}
