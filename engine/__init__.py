"""Lethe's engine: the library behind the workbench, usable from notebooks, the CLI and tests.

Everything the app, the benchmarks and the scripts use is imported from here (a test checks it):

    Workbench(model="default", preset="harry_potter", device="auto", dtype="auto")
        .load_model(name) -> dict        model info record
        .load_preset(name) -> dict       preset summary
        .stream(prompt, GenerationConfig) -> iterator of the growing answer
        .generate(prompt, GenerationConfig, variant="original"|"eco"|"elm"|"sku"|"eco+elm"|...) -> dict
        .compare(prompt, variants) -> iterator of {texts, done, metrics, diffs}: side by side
        .train("elm"|"sku", settings) -> record   a LoRA adapter that becomes that variant
        .load_adapter(folder_or_hub_id, key) / .set_negation(lam) / .adapters()
        .sweep_scale("elm"|"sku", scales, split) -> {references, points}: the forget-retain front over
                                         the adapter's scale (SKU: lambda), the shipped point marked
        .evaluate(variants, metrics, split) -> EvalResult;  .capsule(result);  .replay(capsule)
        .attack(variants, attacks, split, config=AttackConfig) -> AttackResult: metrics under attack
    The settings as dataclasses whose field metadata (help, min, max, choices) the UI and the CLI
    build their controls from: GenerationConfig, ECOConfig, ClassifierConfig, ZOConfig and the
    methods' TrainConfigs (METHODS, make_config).
    load_model(name) -> LoadedModel; load_preset(name) -> Preset; list_presets(), list_metrics(),
    list_corruptions(); decode() / generate() / stream(): the one decoding routine.
The engine never imports gradio.
"""
from . import checks
from .attacks import ATTACKS, AttackConfig, AttackResult, list_attacks
from .eco.assess import assess_gate, compare_gate_designs
from .eco.calibration import gate_report
from .eco.classifier import ClassifierConfig
from .eco.corruptions import list_corruptions
from .eco.pipeline import GATES, UNITS, ECOConfig, embedding_std
from .errors import error_line
from .evaluation.runner import DEFAULT_METRICS, VARIANTS, EvalResult, evaluate
from .evaluation.scale_front import DEFAULT_SCALES, MAX_SCALES
from .lm.generation import GenerationConfig, GenerationStats, encode_prompt, generate, stream
from .methods import METHODS, TrainingStopped, get_method, make_config
from .evaluation.metrics import list_metrics
from .lm.models import LoadedModel, ModelInfo, ModelLoadError, cached_hub_models, format_chat, load_model
from .data.presets import Preset, PresetError, list_presets, load_preset, read_jsonl, resolve_preset_dir
from .evaluation.capsules import load_capsule, save_capsule
from .lm.scoring import rank_choices
from .eco.selection import MODES as SELECTION_MODES
from .workbench import Workbench
from .eco.zo import ZOConfig
from .eco.tuning import CANDIDATES as ECO_CANDIDATES, TuningConfig

__all__ = [
    "ATTACKS", "AttackConfig", "DEFAULT_SCALES", "ECO_CANDIDATES", "MAX_SCALES", "TuningConfig", "AttackResult", "DEFAULT_METRICS", "GATES", "METHODS", "SELECTION_MODES", "UNITS", "VARIANTS", "ClassifierConfig",
    "ECOConfig", "EvalResult", "GenerationConfig", "GenerationStats", "LoadedModel", "ModelInfo",
    "ModelLoadError", "Preset", "PresetError", "TrainingStopped", "Workbench", "ZOConfig", "assess_gate",
    "cached_hub_models", "compare_gate_designs",
    "checks", "embedding_std", "encode_prompt", "error_line", "evaluate", "format_chat", "gate_report",
    "generate", "get_method", "list_attacks", "list_corruptions", "list_metrics", "list_presets", "load_capsule", "load_model",
    "load_preset", "make_config", "rank_choices", "read_jsonl", "resolve_preset_dir", "save_capsule", "stream",
]
