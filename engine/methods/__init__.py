"""Weight-space unlearning methods, registered by name: each a Method (its losses) and a config.

`METHODS[name] = (method class taking a Preset, config dataclass)`. base.py owns the loop.
"""
from __future__ import annotations

from .base import Method, TrainConfig, Trainer, TrainingStopped
from .elm import ELM, ELMConfig
from .sku import SKU, SKUConfig

METHODS = {"elm": (ELM, ELMConfig), "sku": (SKU, SKUConfig)}


def get_method(name: str):
    key = (name or "").strip().lower()
    if key not in METHODS:
        raise ValueError(f"Unknown method {name!r}; known: {', '.join(METHODS)}.")
    return METHODS[key]


def make_config(name: str, settings: dict | None = None) -> TrainConfig:
    """The method's config with `settings` applied (unknown names are listed) and validated."""
    _, cls = get_method(name)
    return cls.from_dict({**cls().to_dict(), **(settings or {})}).validate()


__all__ = ["ELM", "ELMConfig", "METHODS", "Method", "SKU", "SKUConfig", "TrainConfig", "Trainer",
           "TrainingStopped", "get_method", "make_config"]
