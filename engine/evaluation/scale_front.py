"""The forget-retain front of an ELM or SKU adapter over its inference-time scale.

SKU's lambda and ELM's adapter scale are knobs of the one shared model: the adapter's LoRA delta
is added at scale s (SKU: at -lambda, so the knob is lambda >= 0). For each scale of a grid the
adapter runs inside `Variants.use(adapter, scale=...)`, which puts the adapter, its per-layer
scaling and the train/eval mode back in `finally`; the adapter's own scale is never written, so
a sweep, a stop or an error leaves the model as it found it. At each scale three registered
metrics are measured on a preset split: forget-probe accuracy, retain-probe accuracy and retain
perplexity. Original (adapter off) and ECO (its setting, on the base model) are measured the
same way as reference points, and the point at the adapter's own scale is marked `shipped`.

Records are plain dicts, one per point, ready to plot (forget accuracy against retain accuracy,
the curve ordered by scale). This module knows nothing about the UI or the CLI.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from .. import checks
from ..eco.pipeline import ECOConfig
from ..methods.variants import WEIGHT_METHODS
from .metrics import EvalContext, get_metric

SCALE_METRICS = {"forget_accuracy": "forget_probe_accuracy", "retain_accuracy": "retain_probe_accuracy",
                 "retain_perplexity": "retain_perplexity"}
MAX_SCALES = 25  # scales in one sweep
MAX_SCALE = 100.0  # the largest adapter scale Variants accepts
SPLITS = ("train", "test")
DEFAULT_SCALES = {"sku": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0), "elm": (0.0, 0.5, 1.0, 1.5, 2.0)}
KNOB = {"sku": "lambda", "elm": "scale"}  # what the scale means to the method


def check_request(method: str, scales, split: str) -> tuple[str, list[float]]:
    """(method, the grid in ascending order without repeats), or one sentence saying what is wrong."""
    key = method.strip().lower() if isinstance(method, str) else None
    if key not in WEIGHT_METHODS:
        raise ValueError(f"Unknown method {method!r} for a scale sweep; known: {', '.join(WEIGHT_METHODS)}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; known: {', '.join(SPLITS)}.")
    name = "lambda" if key == "sku" else "scales"
    values = checks.number_list(name, scales, 0.0, MAX_SCALE, limit=MAX_SCALES)
    return key, sorted({v + 0.0 for v in values})  # + 0.0: no negative zero


def lora_scale(method: str, scale: float) -> float:
    """The LoRA scale that applies knob value `scale` (SKU's adapter is negated)."""
    return -scale + 0.0 if method == "sku" else float(scale)


def adapter_of(switch, method: str, preset: str) -> str:
    """The name of the preset's `method` adapter on the model, or one sentence saying there is none."""
    name = switch.current.get(preset, {}).get(method)
    if name is None:
        raise ValueError(f"No {method.upper()} adapter is loaded for this model and preset {preset}: train one "
                         f"(Train tab or `python -m engine train --method {method}`) or load one.")
    return name


def measure(lm, preset, split: str, eco: ECOConfig | None = None, classifier=None, batch_size: int = 32) -> dict:
    """The three front metrics of whatever the model is now (inside the caller's variant scope)."""
    ctx = EvalContext(lm=lm, preset=preset, split=split, eco=eco, classifier=classifier, batch_size=batch_size)
    values = {key: get_metric(name)(ctx) for key, name in SCALE_METRICS.items()}
    return {**{k: v.value for k, v in values.items()}, "n_forget": values["forget_accuracy"].n,
            "n_retain": values["retain_accuracy"].n, "n_passages": values["retain_perplexity"].n}


def sweep_scale(lm, preset, switch, method: str, scales, split: str = "test", eco: ECOConfig | None = None,
                classifier=None, batch_size: int = 32, on_point: Callable[[dict], None] | None = None,
                stop_event: threading.Event | None = None) -> dict:
    """Original, ECO, then the adapter at every scale of the grid (the adapter's own scale added
    when the grid lacks it); `on_point` gets each record as it lands and `stop_event` ends the
    sweep between points (the result then says `stopped`).

    Returns {method, knob, preset, split, adapter, shipped_scale, eco, references: [original, eco],
    points: [...ascending scale], stopped, seconds}. A point: {kind "point", name (the method),
    scale (SKU: lambda), lora_scale, forget_accuracy, retain_accuracy, retain_perplexity, n_forget,
    n_retain, n_passages, shipped, seconds}; a reference has kind "reference", name "original" or
    "eco", scale None and shipped False."""
    method, grid = check_request(method, scales, split)
    eco = eco or ECOConfig.for_preset(preset)
    adapter = adapter_of(switch, method, preset.name)
    own = switch.adapters[adapter].scale  # the LoRA scale the variant uses now
    shipped = -own + 0.0 if method == "sku" else own
    grid = sorted(set(grid) | {shipped})
    start = time.perf_counter()
    out = {"method": method, "knob": KNOB[method], "preset": preset.name, "split": split, "adapter": adapter,
           "shipped_scale": shipped, "eco": eco.to_dict(), "references": [], "points": [], "stopped": False}
    jobs = [("reference", "original", None), ("reference", "eco", None)] + [("point", method, s) for s in grid]
    for kind, name, scale in jobs:
        if stop_event is not None and stop_event.is_set():
            out["stopped"] = True
            break
        t0 = time.perf_counter()
        if kind == "reference":
            with switch.use(None):
                numbers = measure(lm, preset, split, eco if name == "eco" else None, classifier, batch_size)
            record = {"kind": kind, "name": name, "scale": None, "lora_scale": None}
        else:
            with switch.use(adapter, scale=lora_scale(method, scale)):
                numbers = measure(lm, preset, split, None, None, batch_size)
            record = {"kind": kind, "name": name, "scale": scale, "lora_scale": lora_scale(method, scale)}
        record.update(numbers, shipped=kind == "point" and scale == shipped,
                      seconds=round(time.perf_counter() - t0, 3))
        out["references" if kind == "reference" else "points"].append(record)
        if on_point:
            on_point(record)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


__all__ = ["DEFAULT_SCALES", "MAX_SCALES", "SCALE_METRICS", "adapter_of", "check_request", "lora_scale",
           "measure", "sweep_scale"]
