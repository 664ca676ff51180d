"""Run attacks on variants: one tidy table of metrics under attack, each with its n.

For a prompt attack the preset's split is rewritten (`PromptAttack.attack_preset`) and the usual
metrics run on it for every variant: forget and retain probe accuracy on the attacked prefixes,
the keyword leak rate of greedy answers to the first `limit` attacked forget prompts (a seeded
order), and for ECO variants the gate's recall on the attacked forget prompts and its
false-positive rate on the attacked retain prompts. "clean" (no attack) is always measured first.
A weight attack runs once per distinct set of weights (original, each adapter): the metrics of a
relearned or quantised copy, or the linear probe's accuracy; ECO variants share the weights of
the variant under them and their rows say so.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..eco.pipeline import ECOConfig
from ..evaluation.runner import Stopped, evaluate
from .base import AttackConfig, order
from . import probe as probe_attack
from . import weights

PROBE_METRICS = ("forget_probe_accuracy", "retain_probe_accuracy")
GATE_METRICS = ("forget_recall", "retain_fpr")
LEAK = "keyword_leak_rate"
COLUMNS = ["variant", "attack", "family", "metric", "value", "n", "note"]
SAME_WEIGHTS = "ECO's weights are the {base}'s: a weights holder has no gate"


@dataclass
class AttackResult:
    table: pd.DataFrame  # variant, attack, family, metric, value, n, note
    examples: pd.DataFrame  # attack, variant, id, prompt, output, keywords
    seconds: float
    settings: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """Capsule rows: the metric named "<attack>.<metric>"."""
        return [{"variant": r["variant"], "metric": f"{r['attack']}.{r['metric']}", "value": r["value"], "n": r["n"]}
                for r in self.table.to_dict(orient="records")]

    def pivot(self, metric: str = "forget_probe_accuracy") -> pd.DataFrame:
        """variants x attacks for one metric, attacks in run order (clean first)."""
        t = self.table[self.table.metric == metric]
        wide = t.pivot(index="variant", columns="attack", values="value")
        return wide.reindex(index=[v for v in self.settings["variants"] if v in wide.index],
                            columns=[a for a in self.settings["attacks"] if a in wide.columns])


def _limited(preset, split: str, limit: int, seed: int):
    rows = preset.prompts("forget", split)
    if limit:
        keep = set(order(seed, [r.id for r in rows])[:limit])
        rows = [r for r in rows if r.id in keep]
    return dataclasses.replace(preset, forget_prompts=rows)


def _split_only(preset, split: str):
    return dataclasses.replace(preset, forget_prompts=preset.prompts("forget", split),
                               retain_prompts=preset.prompts("retain", split),
                               forget_probes=preset.probes("forget", split),
                               retain_probes=preset.probes("retain", split))


class Run:
    """One call of `run_attacks`: the shared inputs, the rows so far, progress and stop."""

    def __init__(self, lm, preset, switch, variants, attacks, split, eco, classifier, config,
                 batch_size, on_progress, stop_event):
        self.lm, self.preset, self.switch, self.variants = lm, preset, switch, variants
        self.attacks, self.split, self.eco, self.classifier = attacks, split, eco, classifier
        self.config, self.batch_size = config, batch_size
        self.on_progress, self.stop_event = on_progress, stop_event
        self.rows: list[dict] = []
        self.examples: list[dict] = []
        self.done, self.total = 0, len(attacks)

    def check_stop(self) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            raise Stopped("The attack run was stopped; nothing was saved.")

    def add(self, variant, attack, family, metric, value, n, note="") -> None:
        self.rows.append({"variant": variant, "attack": attack, "family": family, "metric": metric,
                          "value": float(value), "n": int(n), "note": note})

    def evaluate(self, lm, preset, variants, metrics, switch):
        return evaluate(lm, preset, variants, metrics, self.split, self.eco, self.classifier, self.batch_size,
                        switch=switch, stop_event=self.stop_event)

    # ------------------------------------------------------------------ prompt attacks
    def prompt_attack(self, name: str, attack) -> None:
        attacked = _split_only(self.preset, self.split) if attack is None else \
            attack.attack_preset(self.preset, self.split, self.config)
        family = "clean" if attack is None else "prompt"
        gated = [v for v in self.variants if v.startswith("eco")]
        probes = self.evaluate(self.lm, attacked, self.variants, PROBE_METRICS, self.switch)
        gate = self.evaluate(self.lm, attacked, gated, GATE_METRICS, self.switch) if gated else None
        limited = _limited(attacked, self.split, self.config.limit, self.config.seed)
        leak = self.evaluate(self.lm, limited, self.variants, (LEAK,), self.switch)
        for result in (probes, gate, leak):
            for r in ([] if result is None else result.rows()):
                self.add(r["variant"], name, family, r["metric"], r["value"], r["n"])
        prompts = {r.id: r.prompt for r in limited.forget_prompts}
        for r in leak.examples.to_dict(orient="records"):
            self.examples.append({"attack": name, "variant": r["variant"], "id": r["id"], "prompt": prompts[r["id"]],
                                  "output": r.get("output", ""), "keywords": list(r.get("keywords", []))})

    # ------------------------------------------------------------------ weight attacks
    def bases(self) -> dict:
        """Distinct weights -> the variants that carry them: {(adapter, model id): [variants]}."""
        out: dict = {}
        for v in self.variants:
            if self.switch is not None:
                _, adapter, vlm = self.switch.resolve(v, self.preset.name)
            else:
                adapter, vlm = None, self.lm
            out.setdefault((adapter, id(vlm)), (vlm, []))[1].append(v)
        return out

    def weight_attack(self, name: str) -> None:
        split_preset = _split_only(self.preset, self.split)
        for (adapter, _), (vlm, carriers) in self.bases().items():
            self.check_stop()
            base = next((v for v in carriers if not v.startswith("eco")), None) or \
                (carriers[0][4:] if carriers[0].startswith("eco+") else "original")
            scope = self.switch if vlm is self.lm else None
            if name == "probe":
                values = self._probe(vlm, adapter if scope else None)
            else:
                values = self._copy_attack(name, vlm, scope, adapter, split_preset)
            for v in carriers:
                note = SAME_WEIGHTS.format(base=base.upper() if base != "original" else "Original") \
                    if v.startswith("eco") else ""
                for metric, (value, n) in values.items():
                    self.add(v, name, "weight", metric, value, n, note)

    def _probe(self, lm, adapter) -> dict:
        scope = self.switch.use(adapter) if self.switch is not None else contextlib.nullcontext()
        out = {}
        with scope:
            for side, metric in (("forget", "forget_probe_accuracy"), ("retain", "retain_probe_accuracy")):
                r = probe_attack.probe_accuracy(lm, self.preset.probes(side, "train"),
                                                self.preset.probes(side, self.split), self.config.probe_layer,
                                                self.config.seed)
                out[metric] = (r["accuracy"], r["n"])
        return out

    def _copy_attack(self, name: str, vlm, scope, adapter, split_preset) -> dict:
        frozen = weights.frozen_copy(vlm, scope, adapter if scope else None)
        try:
            if name == "quantize":
                weights.quantize_(frozen.model, self.config.quantize_bits)
                switch, active = None, None
            else:
                side = "forget" if name == "relearn" else "retain"
                switch, active, _ = weights.relearn_(frozen, weights.passages(self.preset, side, self.config),
                                                     self.config, stop_event=self.stop_event)
            with switch.use(active) if switch is not None else contextlib.nullcontext():
                probes = evaluate(frozen, split_preset, ["original"], PROBE_METRICS, self.split, None, None,
                                  self.batch_size, stop_event=self.stop_event)
                limited = _limited(split_preset, self.split, self.config.limit, self.config.seed)
                leak = evaluate(frozen, limited, ["original"], (LEAK,), self.split, None, None, self.batch_size,
                                stop_event=self.stop_event)
            return {r["metric"]: (r["value"], r["n"]) for r in probes.rows() + leak.rows()}
        finally:
            del frozen
            gc.collect()


def run_attacks(lm, preset, variants, attacks, split: str = "test", eco: ECOConfig | None = None,
                classifier=None, config: AttackConfig | None = None, switch=None, batch_size: int = 32,
                on_progress: Callable[[dict], None] | None = None,
                stop_event: threading.Event | None = None) -> AttackResult:
    """Every attack (clean first) on every variant -> AttackResult; `on_progress` gets
    {attack, done, total, seconds, rows} after each attack (rows: that attack's table rows)."""
    from . import get_attack

    config = (config or AttackConfig()).validate()
    attacks = ["clean"] + [a for a in dict.fromkeys(attacks) if a != "clean"]
    table = [(a, get_attack(a)) for a in attacks]
    eco = eco or ECOConfig.for_preset(preset)
    start = time.perf_counter()
    run = Run(lm, preset, switch, list(variants), attacks, split, eco, classifier, config, batch_size,
              on_progress, stop_event)
    for name, attack in table:
        run.check_stop()
        t0, first = time.perf_counter(), len(run.rows)
        if attack is None or attack.family == "prompt":
            run.prompt_attack(name, attack)
        else:
            run.weight_attack(name)
        run.done += 1
        if on_progress:
            on_progress({"attack": name, "done": run.done, "total": run.total,
                         "seconds": round(time.perf_counter() - t0, 2), "rows": run.rows[first:]})
    settings = {"variants": list(variants), "attacks": attacks, "split": split, "eco": eco.to_dict(),
                "config": config.to_dict(), "batch_size": batch_size,
                "metrics": list(PROBE_METRICS + GATE_METRICS + (LEAK,))}
    return AttackResult(table=pd.DataFrame(run.rows, columns=COLUMNS),
                        examples=pd.DataFrame(run.examples, columns=["attack", "variant", "id", "prompt", "output",
                                                                     "keywords"]),
                        seconds=time.perf_counter() - start, settings=settings)


__all__ = ["AttackResult", "run_attacks"]
