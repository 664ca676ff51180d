"""Lethe's engine: the library behind the workbench, usable from notebooks, the CLI and tests.

Public API:
    Workbench(model="default", preset="harry_potter", device="auto", dtype="auto")
        .load_model(name) -> dict        model info record
        .load_preset(name) -> dict       preset summary
        .stream(prompt, GenerationConfig) -> iterator of the growing answer
        .generate(prompt, GenerationConfig, variant="original"|"eco"|"elm"|"sku"|"eco+elm"|...) -> dict
        .compare(prompt, variants) -> iterator of {texts, done, metrics, diffs}: side by side
        .train("elm"|"sku", settings) -> record   a LoRA adapter that becomes that variant
        .load_adapter(folder_or_hub_id, key) / .set_negation(lam) / .adapters()
        .evaluate(variants, metrics, split) -> EvalResult;  .capsule(result);  .replay(capsule)
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
