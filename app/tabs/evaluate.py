"""Evaluate tab: variants x metrics on a preset split, a live table and charts, CSV and capsule
export, and capsule replay."""
from __future__ import annotations

import tempfile
from contextlib import closing
from pathlib import Path

import gradio as gr
import pandas as pd

from engine import DEFAULT_METRICS, VARIANTS, checks, list_metrics, load_capsule, save_capsule

from .. import plots, texts
from ..errors import ui_errors
from ..jobs import run_job
from . import scale_sweep


def build(workbench, settings) -> dict:
    with gr.Tab(texts.EVALUATE_TAB, id="evaluate"):
        gr.Markdown(texts.EVALUATE_HELP)
        with gr.Row():
            dd_preset = gr.Dropdown(workbench.presets(), value=workbench.preset.name if workbench.preset else None,
                                    label=texts.PRESET)
            dd_split = gr.Dropdown(["test", "train", "all"], value="test", label=texts.SPLIT)
            cg_variants = gr.CheckboxGroup(list(VARIANTS), value=list(VARIANTS), label=texts.VARIANTS)
        cg_metrics = gr.CheckboxGroup(list(list_metrics()), value=list(DEFAULT_METRICS), label=texts.METRICS,
                                      elem_id="cg-metrics")
        with gr.Row():
            btn_eval = gr.Button(texts.RUN_EVAL, variant="primary", elem_id="btn-eval")
            btn_stop = gr.Button(texts.STOP, variant="stop")
        df_results = gr.Dataframe(headers=[texts.RESULTS_EMPTY], label="results", interactive=False,
                                  elem_id="df-results")
        with gr.Row():
            pl_bars = gr.Plot(elem_id="plot-bars")
            pl_scatter = gr.Plot(elem_id="plot-scatter")
        with gr.Row():
            fl_csv = gr.File(label=texts.EXPORT_CSV, interactive=False)
            fl_capsule = gr.File(label=texts.EXPORT_CAPSULE, interactive=False)
            fl_import = gr.File(label=texts.IMPORT_CAPSULE, file_types=[".json"], type="binary")
        btn_export = gr.Button(texts.EXPORT_RUN)
        js_replay = gr.JSON(label=texts.REPLAY_RESULT)
        st_capsule = gr.State(None)
        scale = scale_sweep.build(workbench, settings)
    return dict(scale=scale, btn_export=btn_export, st_capsule=st_capsule, dd_preset=dd_preset, dd_split=dd_split, cg_variants=cg_variants, cg_metrics=cg_metrics,
                btn_eval=btn_eval, btn_stop=btn_stop, df_results=df_results, pl_bars=pl_bars,
                pl_scatter=pl_scatter, fl_csv=fl_csv, fl_capsule=fl_capsule, fl_import=fl_import,
                js_replay=js_replay)


def wire(ui: dict, workbench, settings, playground: dict) -> None:
    eco_controls = playground["eco"]

    @ui_errors
    def run(preset, split, variants, metrics, *eco_values, progress=gr.Progress()):
        if not variants or not metrics:
            raise ValueError("Choose at least one variant and one metric.")
        preset = checks.plain_name("preset", preset, workbench.presets())
        eco = eco_controls.config(*eco_values)

        def work(on_step, stop_event):
            return workbench.evaluate(variants, metrics, split, eco, preset, on_progress=on_step,
                                      stop_event=stop_event)

        rows, result = [], None
        with closing(run_job(work, name="lethe-evaluate")) as job:
            for kind, value in job:
                if kind == "tick":
                    yield (gr.skip(),) * 6
                elif kind == "step":
                    rows.append({k: value[k] for k in ("variant", "metric", "split", "value", "n")})
                    progress(value["done"] / value["total"], desc=f"{value['variant']}: {value['metric']}")
                    yield (pd.DataFrame(rows).round(4), plots.metric_bars(rows), plots.forget_retain_scatter(rows),
                           None, None, None)
                else:
                    result = value
        out = Path(tempfile.mkdtemp(prefix="lethe-run-"))
        csv = out / f"{preset}-{split}.csv"
        result.table.to_csv(csv, index=False)
        capsule = workbench.capsule(result)
        path = save_capsule(capsule, out / f"{preset}-{split}-capsule.json")
        rows = result.rows()
        yield (result.table.round(4), plots.metric_bars(rows), plots.forget_retain_scatter(rows), str(csv),
               str(path), capsule)

    def export(capsule):
        if not capsule:
            raise gr.Error("Run an evaluation first: there is no run to export yet.")
        return capsule

    @ui_errors
    def replay(data, progress=gr.Progress()):
        if data is None:
            return None
        cap = load_capsule(data)
        progress(0.1, desc="Replaying…")
        return workbench.replay(cap, names_only=True)  # a client's capsule names presets, never paths

    ev = ui["btn_eval"].click(run, [ui["dd_preset"], ui["dd_split"], ui["cg_variants"], ui["cg_metrics"],
                                    *eco_controls.inputs],
                              [ui["df_results"], ui["pl_bars"], ui["pl_scatter"], ui["fl_csv"], ui["fl_capsule"],
                               ui["st_capsule"]], api_name="evaluate", concurrency_id="model")
    ui["btn_export"].click(export, ui["st_capsule"], ui["js_replay"], api_name="export_run", queue=False)
    ui["btn_stop"].click(None, None, None, cancels=[ev], api_visibility="private")
    ui["fl_import"].upload(replay, ui["fl_import"], ui["js_replay"], api_name="replay_run", concurrency_id="model")
    scale_sweep.wire(ui["scale"], workbench, settings, eco_controls, ui["dd_preset"])
