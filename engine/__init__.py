"""Lethe's engine: the library behind the workbench, usable from notebooks, the CLI and tests.

Public API:
    Workbench(model="default", preset="harry_potter", device="auto", dtype="auto")
        .load_model(name) -> dict        model info record
        .load_preset(name) -> dict       preset summary
        .stream(prompt, GenerationConfig) -> iterator of the growing answer
        .generate(prompt, GenerationConfig) -> {text, model, seconds, new_tokens, tokens_per_second}
    load_model(name) -> LoadedModel      model + tokenizer + ModelInfo
    load_preset(name) -> Preset          validated forget/retain data
    list_presets() -> list[str]
The engine never imports gradio.
"""
from .generation import GenerationConfig, GenerationStats
from .models import LoadedModel, ModelInfo, ModelLoadError, format_chat, load_model
from .presets import Preset, PresetError, list_presets, load_preset
from .workbench import Workbench

__all__ = [
    "GenerationConfig", "GenerationStats", "LoadedModel", "ModelInfo", "ModelLoadError", "Preset",
    "PresetError", "Workbench", "format_chat", "list_presets", "load_model", "load_preset",
]
