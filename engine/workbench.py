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

from . import generation
from .generation import GenerationConfig, GenerationStats
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .presets import Preset, list_presets, load_preset

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
        self.preset: Preset | None = load_preset(preset) if preset else None
        if model:
            self.load_model(model)

    @classmethod
    def from_loaded(cls, lm: LoadedModel, preset: str | Preset | None = None) -> "Workbench":
        """Wrap an already loaded model (tests, notebooks)."""
        wb = cls(model=None, preset=None)
        wb.lm = lm
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
            self.lm = lm
        return lm.info.to_dict()

    def model_info(self) -> dict:
        return self._lm().info.to_dict()

    def presets(self) -> list[str]:
        return list_presets()

    def load_preset(self, name: str) -> dict:
        preset = load_preset(name)
        with self.lock:
            self.preset = preset
        return preset.summary()

    def _lm(self) -> LoadedModel:
        if self.lm is None:
            raise RuntimeError("No model is loaded: load one first (Model tab or --model).")
        return self.lm

    # ------------------------------------------------------------------ generation
    def stream(self, prompt: str, config: GenerationConfig | None = None,
               stop_event: threading.Event | None = None,
               stats: GenerationStats | None = None) -> Iterator[str]:
        """Yield the Original model's answer so far, growing, until it is complete."""
        check_prompt(prompt, self.max_prompt_chars)
        config = (config or GenerationConfig()).validate()
        lm = self._lm()
        with self.lock:
            inputs = generation.encode_prompt(lm.tokenizer, prompt, chat=config.chat, device=lm.device)
            yield from generation.stream(lm.model, lm.tokenizer, config, stop_event=stop_event,
                                         stats=stats, **inputs)

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> dict:
        """The whole answer with timing: {text, model, seconds, new_tokens, tokens_per_second}."""
        stats = GenerationStats()
        start = time.perf_counter()
        for _ in self.stream(prompt, config, stats=stats):
            pass
        return {
            "text": stats.text,
            "model": self._lm().info.name,
            "seconds": round(time.perf_counter() - start, 3),
            "new_tokens": stats.new_tokens,
            "tokens_per_second": round(stats.tokens_per_second, 2),
        }
