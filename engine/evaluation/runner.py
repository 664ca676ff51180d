"""The evaluation runner: variants x metrics on a preset split, with progress and stop.

Returns a tidy pandas DataFrame (variant, metric, split, value, n) and a per-example table.
Variants: "original" and "eco" (with its ECOConfig) always; "elm", "sku", "eco+elm", "eco+sku"
when a `Variants` switch holding those adapters is given (each metric runs inside its scope). Metrics
run batched (teacher-forced scoring in batches of `batch_size`); `batch_size=1` gives the
one-by-one baseline the benchmark compares against.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..eco.pipeline import ECOConfig
from .metrics import EvalContext, get_metric, list_metrics
from ..methods.variants import BASE_VARIANTS

VARIANTS = BASE_VARIANTS
DEFAULT_METRICS = ("forget_probe_accuracy", "retain_probe_accuracy", "forget_probe_logprob",
                   "retain_probe_logprob", "forget_recall", "retain_fpr", "retain_perplexity", "retain_kl")


class Stopped(RuntimeError):
    """The evaluation was stopped; partial results are discarded."""


@dataclass
class EvalResult:
    table: pd.DataFrame  # variant, metric, split, value, n
    examples: pd.DataFrame  # variant, metric, id, ... per example
    seconds: float
    settings: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        return self.table.to_dict(orient="records")


def check_names(variants, metrics, known=VARIANTS) -> None:
    for v in variants:
        if v not in known and not str(v).startswith("full:"):
            raise ValueError(f"Unknown variant {v!r}; known: {', '.join(known)}.")
    for m in metrics:
        get_metric(m)


def evaluate(lm, preset, variants=("original", "eco"), metrics=DEFAULT_METRICS, split: str = "test",
             eco: ECOConfig | None = None, classifier=None, batch_size: int = 32, probes=None,
             on_progress: Callable[[dict], None] | None = None,
             stop_event: threading.Event | None = None, switch=None) -> EvalResult:
    """Run every metric for every variant; `on_progress` gets each finished row as it lands.

    `switch` (a variants.Variants) resolves adapter variants and provides the base-model scope
    that reference terms (retain_kl) use."""
    variants, metrics = list(variants), list(metrics)
    check_names(variants, metrics, switch.names(preset.name) if switch is not None else ("original", "eco"))
    if split not in ("train", "test", "all"):
        raise ValueError(f"Unknown split {split!r}; known: train, test, all.")
    eco = eco or ECOConfig.for_preset(preset)
    start = time.perf_counter()
    rows, examples, done, total = [], [], 0, len(variants) * len(metrics)
    for variant in variants:
        use_eco, adapter, vlm = switch.resolve(variant, preset.name) if switch else (variant == "eco", None, lm)
        scope = (lambda a=adapter: switch.use(a)) if switch else contextlib.nullcontext
        ctx = EvalContext(lm=vlm, preset=preset, split=split, eco=eco if use_eco else None,
                          classifier=classifier, batch_size=batch_size, probes=probes,
                          weights=adapter is not None or vlm is not lm,
                          base=(lambda: switch.use(None)) if switch else contextlib.nullcontext,
                          base_lm=lm)
        for name in metrics:
            if stop_event is not None and stop_event.is_set():
                raise Stopped("Evaluation stopped; nothing was saved.")
            t0 = time.perf_counter()
            with scope():
                mv = get_metric(name)(ctx)
            row = {"variant": variant, "metric": name, "split": split, "value": mv.value, "n": mv.n}
            rows.append(row)
            examples += [{"variant": variant, "metric": name, **r} for r in mv.rows]
            done += 1
            if on_progress:
                on_progress({**row, "done": done, "total": total, "seconds": time.perf_counter() - t0})
    return EvalResult(table=pd.DataFrame(rows, columns=["variant", "metric", "split", "value", "n"]),
                      examples=pd.DataFrame(examples), seconds=time.perf_counter() - start,
                      settings={"variants": variants, "metrics": metrics, "split": split,
                                "eco": eco.to_dict(), "batch_size": batch_size})


__all__ = ["DEFAULT_METRICS", "EvalResult", "Stopped", "VARIANTS", "evaluate", "list_metrics"]
