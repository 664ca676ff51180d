"""ECO's settings in the UI and the API, built once from ECOConfig's fields.

`ECOControls(workbench, hidden_size)` draws the controls (the Playground's ECO accordion); every
tab that runs ECO takes its `.inputs` and turns their values into one ECOConfig with
`.config(*values)`. An API endpoint names the same settings as keyword parameters (the seed is
`eco_seed`) with the defaults in `DEFAULTS`, and builds its ECOConfig with `from_api(locals())`.
"""
from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import gradio as gr

from engine import ECOConfig, SELECTION_MODES, checks, embedding_std, list_corruptions

from . import texts
from .controls import field_control

FIELDS = {f.name: f for f in fields(ECOConfig)}
HIDDEN = ("fallback", "corrupt_answer", "token_model")  # left at their defaults in the UI and the API
NAMES = tuple(name for name in FIELDS if name not in HIDDEN)  # the order of ECOControls.inputs
API_NAMES = {name: "eco_seed" if name == "seed" else name for name in NAMES}
SELECTABLE = tuple(m for m in SELECTION_MODES if m != "manual")  # manual: clicking tokens
STRENGTH_SLIDER_MAX = 1000.0

PARSE = {  # the UI's value of a field -> the ECOConfig's, or ValueError with one sentence
    "entity_types": lambda v: tuple(t.strip().upper() for t in (v or "").split(",") if t.strip()),
    "dims": lambda v: checks.integer("dims", v, 0, 10**7),
    "strength": lambda v: checks.finite("strength", v),
    "threshold": lambda v: checks.threshold(v) if v else None,  # 0 = the calibrated threshold
    "seed": lambda v: checks.seed(v or 0, "ECO seed"),
}


def ui_value(name: str, value):
    """A field's value as its control shows it: entity types as text, the calibrated threshold as 0."""
    if name == "entity_types":
        return ", ".join(value)
    if name == "threshold":
        return 0.0 if value is None else value
    return value


DEFAULTS = SimpleNamespace(**{name: ui_value(name, getattr(ECOConfig(), name)) for name in NAMES})


def eco_config(values: dict) -> ECOConfig:
    """The ECO settings of one request from the UI's values by field name (the others keep their
    defaults), each checked; ValueError with one sentence when one is wrong."""
    return ECOConfig(**{name: PARSE.get(name, lambda v: v)(values[name]) for name in NAMES if name in values})


def from_api(params: dict) -> ECOConfig:
    """An API endpoint's ECO parameters (its locals(): named like the fields, the seed as eco_seed)."""
    return eco_config({name: params[api] for name, api in API_NAMES.items() if api in params})


def gate_threshold(value) -> float | None:
    """A threshold from the UI or the API: 0 is the calibrated one (None)."""
    return PARSE["threshold"](value)


def strength_line(workbench, strength, unit) -> str:
    """The strength in both units: absolute and in multiples of the embedding matrix's std."""
    if workbench.lm is None:
        return ""
    std = embedding_std(workbench.lm)
    s = float(strength or 0)
    absolute, relative = (s, s / std) if unit == "absolute" else (s * std, s)
    return texts.STRENGTH_BOTH.format(absolute=absolute, relative=relative, std=std)


def preset_defaults(workbench, preset: str | None = None) -> SimpleNamespace:
    """The controls' values for a preset's ECO default (its calibrated `eco:` block), else DEFAULTS."""
    try:
        cfg = workbench.eco_default(preset)
    except (RuntimeError, ValueError):
        return DEFAULTS
    return SimpleNamespace(**{name: ui_value(name, getattr(cfg, name)) for name in NAMES})


class ECOControls:
    """ECO's controls, one per setting in NAMES (the strength a slider with its number box, at most
    STRENGTH_SLIDER_MAX), and a line with the strength in both units. Build inside a Blocks layout."""

    def __init__(self, workbench, hidden_size: int):
        self.workbench = workbench
        d = preset_defaults(workbench)

        def control(name, **kwargs):
            return field_control(FIELDS[name], getattr(d, name), **kwargs)

        c = {"corruption": control("corruption", choices=list_corruptions(), label=texts.CORRUPTION,
                                   elem_id="dd-corruption"),
             "dims": control("dims", component=gr.Slider, maximum=hidden_size, step=1, label=texts.DIMS,
                             elem_id="sl-dims")}
        with gr.Row():  # one strength control: the slider carries its own number box
            c["strength"] = control("strength", component=gr.Slider, maximum=STRENGTH_SLIDER_MAX, step=0.5,
                                    label=texts.STRENGTH, elem_id="sl-strength", scale=3)
            c["strength_unit"] = control("strength_unit", label=texts.STRENGTH_UNIT, scale=1)
        self.strength_slider = c["strength"]  # the same control, by its older name
        self.strength_note = gr.Markdown(strength_line(workbench, d.strength, d.strength_unit),
                                         elem_classes="lethe-speed")
        with gr.Row():
            c["selection"] = control("selection", choices=list(SELECTABLE), label=texts.SELECTION)
            c["entity_types"] = control("entity_types", label=texts.ENTITY_TYPES, placeholder="PERSON, ORG")
        with gr.Row():
            c["gate"] = control("gate", label=texts.GATE)
            c["threshold"] = control("threshold", component=gr.Slider, minimum=0, maximum=1, step=0.001,
                                     label=texts.THRESHOLD)
            c["seed"] = control("seed", precision=None, step=1, label=texts.ECO_SEED)
        self.controls = c
        self.inputs = [c[name] for name in NAMES]

    def __getitem__(self, name: str):
        return self.controls[name]

    def preset_values(self, preset: str | None) -> list:
        """The inputs' values for a preset's ECO default (when the Model tab switches presets)."""
        d = preset_defaults(self.workbench, preset or None)
        return [getattr(d, name) for name in NAMES]

    def config(self, *values) -> ECOConfig:
        """The ECOConfig of the inputs' values (in the order of `.inputs`)."""
        return eco_config(dict(zip(NAMES, values)))

    def wire(self) -> None:
        """The line follows the strength and its unit."""
        strength, unit = self["strength"], self["strength_unit"]
        for comp in (strength, unit):
            comp.change(lambda v, u: strength_line(self.workbench, v, u), [strength, unit], self.strength_note,
                        api_visibility="private", queue=False)
