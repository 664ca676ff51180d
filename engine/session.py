"""Session: what every part of the workbench shares, and nothing else.

The loaded model, the adapters switched on it (its variants), the active preset, and the one
re-entrant lock that serialises every use of the shared model. The workbench's parts (the gate,
answers, adapters, the evaluator) each hold the session and read it; only the workbench replaces
the model or the preset.
"""
from __future__ import annotations

import threading

from .data.presets import Preset, load_preset
from .lm.models import LoadedModel
from .methods.variants import Variants

MAX_PROMPT_CHARS = 8000


class Session:
    def __init__(self, preset: Preset | None = None, max_prompt_chars: int = MAX_PROMPT_CHARS):
        self.lock = threading.RLock()
        self.lm: LoadedModel | None = None
        self.variants: Variants | None = None
        self.preset = preset
        self.max_prompt_chars = max_prompt_chars

    def use_model(self, lm: LoadedModel) -> None:
        self.lm, self.variants = lm, Variants(lm)

    def model(self) -> LoadedModel:
        """The loaded model, or one sentence saying there is none."""
        if self.lm is None:
            raise RuntimeError("No model is loaded: load one first (Model tab or --model).")
        return self.lm

    def switch(self) -> Variants:
        """The model's variants (its adapters and their scales)."""
        self.model()
        return self.variants

    def preset_for(self, name: str | None = None) -> Preset:
        """The named preset (loaded on the fly when it is not the active one), else the active one."""
        if name and (self.preset is None or self.preset.name != name):
            return load_preset(name)
        if self.preset is None:
            raise RuntimeError("No preset is loaded: pick one (Model tab or --preset).")
        return self.preset

    def preset_name(self, name: str | None = None) -> str | None:
        return name or (self.preset.name if self.preset else None)

    def hidden_size(self) -> int:
        return self.model().model.config.hidden_size
