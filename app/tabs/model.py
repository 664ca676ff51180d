"""Model tab: pick and load a model (with progress), show its info; pick the preset."""
from __future__ import annotations

import gradio as gr

from .. import texts
from ..errors import ui_errors


def build(workbench, settings) -> dict:
    info = workbench.model_info() if workbench.lm is not None else {}
    with gr.Tab(texts.MODEL_TAB, id="model"):
        gr.Markdown(texts.MODEL_HELP)
        with gr.Row():
            tb_model = gr.Textbox(value=settings.get("model", "default"), label=texts.MODEL_NAME, scale=3)
            dd_device = gr.Dropdown(["auto", "cpu", "cuda"], value=workbench.device, label=texts.DEVICE, scale=1)
            dd_dtype = gr.Dropdown(["auto", "float32", "bfloat16", "float16"], value=workbench.dtype,
                                   label=texts.DTYPE, scale=1)
        cb_trust = gr.Checkbox(value=workbench.trust_remote_code, label=texts.TRUST_REMOTE_CODE,
                               interactive=settings.get("allow_model_choice", True))
        btn_load = gr.Button(texts.LOAD, variant="primary", interactive=settings.get("allow_model_choice", True))
        js_info = gr.JSON(value=info, label=texts.MODEL_INFO, elem_classes="lethe-info")
        with gr.Row():
            names = workbench.presets()
            current = workbench.preset.name if workbench.preset else None
            dd_preset = gr.Dropdown(names, value=current, label=texts.PRESET, scale=1)
            js_preset = gr.JSON(value=workbench.preset.summary() if workbench.preset else {},
                                label=texts.PRESET_INFO, scale=3)
    return dict(tb_model=tb_model, dd_device=dd_device, dd_dtype=dd_dtype, cb_trust=cb_trust,
                btn_load=btn_load, js_info=js_info, dd_preset=dd_preset, js_preset=js_preset)


def wire(ui: dict, workbench, settings) -> None:
    @ui_errors
    def load(name, device, dtype, trust, progress=gr.Progress()):
        name = (name or "default").strip()
        allowed = settings.get("model_allowlist")
        if allowed and name not in allowed:
            raise ValueError(f"This server only serves these models: {', '.join(allowed)}.")
        progress(0.05, desc=texts.LOADING.format(name=name))
        info = workbench.load_model(name, device=device, dtype=dtype, trust_remote_code=bool(trust))
        progress(1.0)
        return info

    @ui_errors
    def pick_preset(name):
        return workbench.load_preset(name)

    ui["btn_load"].click(load, [ui["tb_model"], ui["dd_device"], ui["dd_dtype"], ui["cb_trust"]],
                         ui["js_info"], api_name="load_model", concurrency_id="model")
    ui["dd_preset"].change(pick_preset, ui["dd_preset"], ui["js_preset"], api_name="load_preset")
