"""Gradio controls built from a settings dataclass: a field's default is the control's value and
its metadata ("help", "min", "max", "choices") gives the label, the range and the choices."""
from __future__ import annotations

from dataclasses import Field, fields

import gradio as gr


def field_control(f: Field, value, component=None, **kwargs):
    """One control for one field: a dropdown of its choices, a checkbox, a number bounded by its
    range, or a textbox (a tuple as comma-separated text). `component` (gr.Slider, say) and the
    keyword arguments override what the metadata gives. None for a field with no such control."""
    meta = f.metadata
    kwargs.setdefault("label", f"{f.name} — {meta.get('help', '')}")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if component is None:
        if "choices" in kwargs or meta.get("choices"):
            component = gr.Dropdown
            kwargs.setdefault("choices", list(meta.get("choices", ())))
        elif isinstance(value, bool):
            component = gr.Checkbox
        elif numeric:
            component = gr.Number
            kwargs.setdefault("precision", 0 if isinstance(value, int) else None)
        elif isinstance(value, (str, tuple)):
            component = gr.Textbox
        else:
            return None
    if component in (gr.Number, gr.Slider):
        kwargs.setdefault("minimum", meta.get("min"))
        kwargs.setdefault("maximum", meta.get("max"))
    if isinstance(value, tuple):
        value = ", ".join(value)
    return component(value=value, **kwargs)


def controls(config_cls, skip=(), prefix: str | None = None) -> dict:
    """One control per field of `config_cls` (but those in `skip`), keyed by field name, labelled
    with its help text and bounded by its range; elem_id "<prefix>-<field>" when a prefix is given."""
    out = {}
    default = config_cls()
    for f in fields(config_cls):
        if f.name in skip:
            continue
        extra = {"elem_id": f"{prefix}-{f.name}"} if prefix else {}
        control = field_control(f, getattr(default, f.name), **extra)
        if control is not None:
            out[f.name] = control
    return out
