"""The scale sweep, inside the Evaluate tab: an ELM or SKU adapter measured over its inference-time
scale (SKU: lambda) on a preset split, the front drawn point by point with the shipped value, Original
and ECO marked, a table beside it, and Stop."""
from __future__ import annotations

from contextlib import closing

import gradio as gr
import pandas as pd

from engine import DEFAULT_SCALES, checks

from .. import plots, texts
from ..errors import ui_errors
from ..jobs import run_job

COLUMNS = ("name", "scale", "forget_accuracy", "retain_accuracy", "retain_perplexity", "shipped", "seconds")


def _grid(method: str) -> str:
    return ", ".join(f"{s:g}" for s in DEFAULT_SCALES[method])


def build(workbench, settings) -> dict:
    gr.Markdown(f"### {texts.SCALE_SWEEP}\n{texts.SCALE_SWEEP_HELP}")
    with gr.Row():
        dd_method = gr.Dropdown(list(DEFAULT_SCALES), value="sku", label=texts.SCALE_METHOD, elem_id="dd-scale-method")
        tb_scales = gr.Textbox(_grid("sku"), label=texts.SCALE_VALUES, elem_id="tb-scales")
        dd_split = gr.Dropdown(["test", "train"], value="test", label=texts.SPLIT)
    with gr.Row():
        btn_run = gr.Button(texts.RUN_SCALE_SWEEP, variant="primary", elem_id="btn-scale-sweep")
        btn_stop = gr.Button(texts.STOP, variant="stop")
    plot = gr.Plot(label="front", elem_id="plot-scale-front")
    table = gr.Dataframe(headers=[texts.SCALE_EMPTY], label="points", interactive=False, elem_id="df-scale")
    return dict(dd_method=dd_method, tb_scales=tb_scales, dd_split=dd_split, btn_run=btn_run, btn_stop=btn_stop,
                plot=plot, table=table)


def _frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{k: r.get(k) for k in COLUMNS} for r in records]).round(4)


def wire(ui: dict, workbench, settings, eco_controls, preset_box) -> None:
    @ui_errors
    def sweep(method, scales, split, preset, *eco_values, progress=gr.Progress()):
        preset = checks.plain_name("preset", preset, workbench.presets())
        eco = eco_controls.config(*eco_values)
        total = len(checks.number_list("scales", scales, 0.0, 100.0)) + 3  # two references, maybe the shipped point

        def work(on_step, stop_event):
            return workbench.sweep_scale(method, scales, split, preset, on_point=on_step, stop_event=stop_event,
                                         eco=eco)

        result = {"method": method, "knob": "lambda" if method == "sku" else "scale", "references": [], "points": []}
        with closing(run_job(work, name="lethe-scale-sweep")) as job:
            for kind, value in job:
                if kind == "tick":
                    yield gr.skip(), gr.skip()
                elif kind == "step":
                    result["references" if value["kind"] == "reference" else "points"].append(value)
                    done = len(result["references"]) + len(result["points"])
                    progress(min(done / total, 1.0), desc=value["name"])
                    yield plots.scale_front(result), _frame(result["references"] + result["points"])
                else:
                    result = value
        yield plots.scale_front(result), _frame(result["references"] + result["points"])

    ui["dd_method"].change(_grid, ui["dd_method"], ui["tb_scales"], api_visibility="private", queue=False)
    run = ui["btn_run"].click(sweep, [ui["dd_method"], ui["tb_scales"], ui["dd_split"], preset_box,
                                      *eco_controls.inputs], [ui["plot"], ui["table"]], api_name="sweep_scale",
                              concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[run], api_visibility="private")
