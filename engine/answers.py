"""Answers: a prompt in, the variants' answers out, streamed token by token.

Each variant (original, eco, elm, sku, eco+elm, eco+sku) is a row of the one decoding routine
(`lm.generation.decode`): ECO rows carry the prompt's (maybe corrupted) embeddings, weight rows
the scope that switches their adapter on. `Decoding` is what a request gets back: iterate it for
the texts so far; its `plans` (ECO's decision per ECO row) and `stats` fill in as it runs.
"""
from __future__ import annotations

import threading
from typing import Iterator

from . import checks
from .eco.gate import Gate, check_prompt
from .eco.pipeline import ECO, ECOConfig, ECOPlan
from .evaluation.metrics import output_metrics, token_diff
from .lm import generation
from .lm.generation import GenerationConfig, GenerationStats
from .session import Session


class Decoding:
    """Iterate for the list of texts so far (or the one text, for a single variant); `plans` holds
    the ECO plan of each ECO row once decoding has started, `stats` each row's final statistics."""

    def __init__(self, rows: Iterator[list[str]], single: bool = False):
        self.plans: list[ECOPlan] = []
        self.stats: list[GenerationStats] = []
        self._rows, self._single = rows, single

    def __iter__(self):
        for texts in self._rows:
            yield texts[0] if self._single else texts

    def close(self) -> None:
        self._rows.close()

    def gate(self) -> dict | None:
        """The first ECO row's gate decision, as plain data (None when no row used ECO)."""
        if not self.plans:
            return None
        p = self.plans[0]
        return {"score": p.score, "flagged": p.flagged, "threshold": p.threshold, "matched": list(p.matched)}


class Answers:
    def __init__(self, session: Session, gate: Gate):
        self.session, self.gate = session, gate

    def _preset(self, preset: str | None):
        """The named or active preset, or None when none is loaded (ECO's class defaults then)."""
        return self.session.preset_for(preset) if preset or self.session.preset else None

    def eco(self, preset: str | None, config: ECOConfig) -> ECO:
        clf = self.gate.classifier(preset) if config.gate == "classifier" else None
        return ECO(self.session.model(), clf)

    def select_tokens(self, prompt: str, config: ECOConfig | None = None, manual: list[int] | None = None,
                      chat: bool = True) -> dict:
        """The prompt's LLM tokens with the selected ones and their entity labels."""
        check_prompt(prompt, self.session.max_prompt_chars)
        lm = self.session.model()
        config = (config or ECOConfig()).validate(lm.model.config.hidden_size)
        sel = ECO(lm).selector(config).select(lm.tokenizer, prompt, chat=chat, manual=manual)
        return {**sel.to_dict(), "highlighted": sel.highlighted(), "prompt_span": list(sel.prompt_span),
                "offsets": [list(o) for o in sel.offsets]}

    def eco_plan(self, prompt: str, config: ECOConfig, preset: str | None = None,
                 manual: list[int] | None = None, chat: bool = True) -> ECOPlan:
        check_prompt(prompt, self.session.max_prompt_chars)
        with self.session.lock:
            return self.eco(preset, config).plan(prompt, config, chat=chat, manual=manual)

    def stream(self, prompt: str, variants: list[tuple[str, ECOConfig | None]],
               config: GenerationConfig | None = None, stop_event: threading.Event | None = None,
               preset: str | None = None, manual: list[int] | None = None, negation: float | None = None,
               single: bool = False) -> Decoding:
        """Stream several variants of one prompt together, token by token in turn, each under its
        own adapter state (one shared model). The lock is taken per forward pass, never across a yield."""
        check_prompt(prompt, self.session.max_prompt_chars)
        config = (config or GenerationConfig()).validate()
        if negation is not None:
            checks.negation(negation)
        run = Decoding(iter(()), single)
        run._rows = self._rows(run, prompt, variants, config, stop_event, preset, manual, negation)
        return run

    def _rows(self, run: Decoding, prompt, variants, config, stop_event, preset, manual, negation):
        s = self.session
        run.stats = [GenerationStats() for _ in variants]
        inputs, scopes = [], []
        with s.lock:
            vs, lm = s.switch(), s.model()
            for name, eco in variants:
                use_eco, adapter, vlm = vs.resolve(name, s.preset_name(preset))
                if vlm is not lm:
                    if len(variants) > 1:
                        raise ValueError(f"{name!r} is a separate full model; stream it on its own.")
                    lm = vlm
                inputs.append(self._inputs(prompt, config, use_eco, eco, preset, manual, run, vlm))
                scopes.append(lambda a=adapter: vs.use(a, negation=negation))
        yield from generation.decode(lm.model, lm.tokenizer, config, inputs, scopes, lock=s.lock,
                                     stop_event=stop_event, stats=run.stats)

    def _inputs(self, prompt: str, config: GenerationConfig, use_eco: bool, eco: ECOConfig | None,
                preset: str | None, manual, run: Decoding, lm) -> dict:
        """The model inputs for one row: token ids, or ECO's (maybe corrupted) embeddings."""
        if not use_eco:
            return generation.encode_prompt(lm.tokenizer, prompt, chat=config.chat, device=lm.device)
        eco = eco or ECOConfig.for_preset(self._preset(preset), seed=config.seed)
        plan = self.eco(preset, eco).plan(prompt, eco, chat=config.chat, manual=manual)
        run.plans.append(plan)
        return ({"inputs_embeds": plan.inputs_embeds, "attention_mask": plan.attention_mask}
                if plan.flagged else {"input_ids": plan.input_ids, "attention_mask": plan.attention_mask})

    def compare(self, prompt: str, variants, config: GenerationConfig | None = None, eco: ECOConfig | None = None,
                preset: str | None = None, stop_event: threading.Event | None = None,
                negation: float | None = None) -> Iterator[dict]:
        """Stream the variants side by side; the last record adds quick metrics and a diff per column.

        Yields {"variants", "texts", "done": False} while decoding, then {"...", "done": True,
        "metrics": [...], "diffs": [...]}. Variants with no adapter yet are reported, not streamed."""
        s = self.session
        available = set(s.switch().names(s.preset_name(preset)))
        run_names = [v for v in variants if v in available]
        missing = [v for v in variants if v not in available]
        eco = eco or ECOConfig.for_preset(self._preset(preset), seed=(config.seed if config else 0))
        config = config or GenerationConfig()
        run = self.stream(prompt, [(v, eco) for v in run_names], config, stop_event, preset, negation=negation)
        texts = [""] * len(run_names)
        for texts in run:
            yield {"variants": run_names, "missing": missing, "texts": texts, "done": False}
        gate = run.gate()
        with s.lock, s.switch().use(None):
            quick = output_metrics(s.model(), prompt, texts, config.chat, s.preset_for(preset).forget_keywords)
        for name, row, st in zip(run_names, quick, run.stats):
            row.update(variant=name, new_tokens=st.new_tokens, gate_score=gate["score"] if gate else None,
                       gated=bool(gate and gate["flagged"] and name.startswith("eco")))
        diffs = [token_diff(texts[0], t) for t in texts] if run_names else []
        yield {"variants": run_names, "missing": missing, "texts": texts, "done": True, "metrics": quick,
               "diffs": diffs, "gate": gate, "seconds": run.stats[0].seconds if run.stats else 0.0}
