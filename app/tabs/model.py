"""Model tab: pick a model the operator allows and load it (with progress); pick the preset.

A client chooses models and presets by name only. Whether a model may run code from its
repository is decided by the operator on the command line, never here."""
from __future__ import annotations

import gradio as gr

from engine import checks

from .. import texts
from ..errors import ui_errors

DEVICES = ["auto", "cpu", "cuda"]
DTYPES = ["auto", "float32", "bfloat16", "float16"]


def build(workbench, settings) -> dict:
    info = workbench.model_info() if workbench.lm is not None else {}
    allowed = settings["model_allowlist"]
    with gr.Tab(texts.MODEL_TAB, id="model"):
        gr.Markdown(texts.MODEL_HELP)
        with gr.Row():
            current = settings.get("model", "default")
            dd_model = gr.Dropdown(allowed, value=current if current in allowed else allowed[0],
                                   label=texts.MODEL_NAME, scale=3, elem_id="dd-model")
            dd_device = gr.Dropdown(DEVICES, value=workbench.device, label=texts.DEVICE, scale=1)
            dd_dtype = gr.Dropdown(DTYPES, value=workbench.dtype, label=texts.DTYPE, scale=1)
        btn_load = gr.Button(texts.LOAD, variant="primary", interactive=settings.get("allow_model_choice", True))
        js_info = gr.JSON(value=info, label=texts.MODEL_INFO, elem_classes="lethe-info")
        with gr.Row():
            names = workbench.presets()
            current = workbench.preset.name if workbench.preset else None
            dd_preset = gr.Dropdown(names, value=current, label=texts.PRESET, scale=1)
            js_preset = gr.JSON(value=workbench.preset.summary() if workbench.preset else {},
                                label=texts.PRESET_INFO, scale=3)
    return dict(dd_model=dd_model, dd_device=dd_device, dd_dtype=dd_dtype, btn_load=btn_load, js_info=js_info,
                dd_preset=dd_preset, js_preset=js_preset)


def wire(ui: dict, workbench, settings) -> None:
    @ui_errors
    def load_model(name: str = "default", device: str = "auto", dtype: str = "auto") -> dict:
        """Load one of the models this server allows, by name; returns its info."""
        name = checks.plain_name("model", (name or "default").strip(), settings["model_allowlist"])
        device, dtype = checks.plain_name("device", device, DEVICES), checks.plain_name("dtype", dtype, DTYPES)
        return workbench.load_model(name, device=device, dtype=dtype)

    @ui_errors
    def load_preset(name: str) -> dict:
        """Make one of the server's presets (by name) the current one; returns its summary."""
        return workbench.load_preset(checks.plain_name("preset", name, workbench.presets()))

    def load_with_progress(name, device, dtype, progress=gr.Progress()):
        progress(0.05, desc=texts.LOADING.format(name=name))
        return load_model(name, device, dtype)

    ui["btn_load"].click(load_with_progress, [ui["dd_model"], ui["dd_device"], ui["dd_dtype"]], ui["js_info"],
                         api_name="ui_load_model", api_visibility="private", concurrency_id="model")
    # other tabs follow a new preset with .then on ui["ev_preset"] (their examples, the showcase)
    ui["ev_preset"] = ui["dd_preset"].change(load_preset, ui["dd_preset"], ui["js_preset"],
                                             api_name="ui_load_preset", api_visibility="private")
    # the API takes plain names, checked above with one sentence for anything else
    gr.api(load_model, api_name="load_model", concurrency_id="model")
    gr.api(load_preset, api_name="load_preset")
