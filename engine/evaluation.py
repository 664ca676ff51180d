"""The evaluation runner: variants x metrics on a preset split, with progress and stop.

Returns a tidy pandas DataFrame (variant, metric, split, value, n) and a per-example table.
Variants available over the loaded model: "original" and "eco" (with its ECOConfig). Metrics
run batched (teacher-forced scoring in batches of `batch_size`); `batch_size=1` gives the
one-by-one baseline the benchmark compares against.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from .eco import ECOConfig
from .metrics import EvalContext, get_metric, list_metrics

VARIANTS = ("original", "eco")
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


def check_names(variants, metrics) -> None:
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"Unknown variant {v!r}; known: {', '.join(VARIANTS)}.")
    for m in metrics:
        get_metric(m)


def evaluate(lm, preset, variants=("original", "eco"), metrics=DEFAULT_METRICS, split: str = "test",
             eco: ECOConfig | None = None, classifier=None, batch_size: int = 32, probes=None,
             on_progress: Callable[[dict], None] | None = None,
             stop_event: threading.Event | None = None) -> EvalResult:
    """Run every metric for every variant; `on_progress` gets each finished row as it lands."""
    variants, metrics = list(variants), list(metrics)
    check_names(variants, metrics)
    if split not in ("train", "test", "all"):
        raise ValueError(f"Unknown split {split!r}; known: train, test, all.")
    eco = eco or ECOConfig()
    start = time.perf_counter()
    rows, examples, done, total = [], [], 0, len(variants) * len(metrics)
    for variant in variants:
        ctx = EvalContext(lm=lm, preset=preset, split=split, eco=eco if variant == "eco" else None,
                          classifier=classifier, batch_size=batch_size, probes=probes)
        for name in metrics:
            if stop_event is not None and stop_event.is_set():
                raise Stopped("Evaluation stopped; nothing was saved.")
            t0 = time.perf_counter()
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
