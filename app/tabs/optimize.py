"""Optimize tab: zeroth-order search of ECO's strength with a live plot, Stop, "apply the best σ",
and a strength (x dims) sweep drawn as a dose-response plot."""
from __future__ import annotations

from contextlib import closing
from dataclasses import fields

import gradio as gr

from engine import ZOConfig, checks

from .. import plots, texts
from . import calibrate
from ..eco_controls import STRENGTH_SLIDER_MAX
from ..errors import ui_errors
from ..jobs import run_job


def build(workbench, settings) -> dict:
    z = ZOConfig()
    with gr.Tab(texts.OPTIMIZE_TAB, id="optimize"):
        gr.Markdown(texts.OPTIMIZE_HELP)
        with gr.Row():
            nb_init = gr.Number(value=z.init, label=texts.ZO_INIT)
            nb_lr = gr.Number(value=z.lr, label=texts.ZO_LR)
            nb_eps = gr.Number(value=z.eps, label=texts.ZO_EPS)
            nb_min = gr.Number(value=z.min, label=texts.ZO_MIN)
            nb_steps = gr.Number(value=z.steps, step=1, label=texts.ZO_STEPS,
                                 maximum=settings.get("max_zo_steps", 100))
            nb_target = gr.Number(value=0.25, label=texts.ZO_TARGET)
            dd_metric = gr.Dropdown(["forget_probe_accuracy", "forget_probe_logprob"],
                                    value="forget_probe_accuracy", label=texts.ZO_METRIC)
            rules = next(f for f in fields(ZOConfig) if f.name == "rule").metadata["choices"]
            dd_rule = gr.Dropdown(list(rules), value=z.rule, label=texts.ZO_RULE, info=texts.ZO_RULE_INFO)
            nb_step = gr.Number(value=z.step, label=texts.ZO_STEP)
        with gr.Row():
            btn_zo = gr.Button(texts.RUN_ZO, variant="primary", elem_id="btn-zo")
            btn_zo_stop = gr.Button(texts.STOP, variant="stop")
            btn_apply = gr.Button(texts.APPLY_BEST, elem_id="btn-apply")
        md_best = gr.Markdown("", elem_id="zo-best")
        pl_zo = gr.Plot(label="ZO", elem_id="plot-zo")
        js_zo = gr.JSON(label="steps", visible=False)
        st_best = gr.State(None)
        gr.Markdown(f"### {texts.SWEEP}")
        with gr.Row():
            tb_strengths = gr.Textbox(value="1, 10, 100, 1000", label=texts.SWEEP_STRENGTHS)
            tb_dims = gr.Textbox(value="1", label=texts.SWEEP_DIMS)
            dd_split = gr.Dropdown(["test", "train"], value="test", label=texts.SWEEP_SPLIT)
        with gr.Row():
            btn_sweep = gr.Button(texts.RUN_SWEEP, variant="primary", elem_id="btn-sweep")
            btn_sweep_stop = gr.Button(texts.STOP, variant="stop")
        pl_sweep = gr.Plot(label="sweep", elem_id="plot-sweep")
        df_sweep = gr.Dataframe(headers=[texts.SWEEP_EMPTY], label="points", interactive=False)
        cal = calibrate.build(workbench, settings)
    return dict(cal=cal, nb_init=nb_init, nb_lr=nb_lr, nb_eps=nb_eps, nb_min=nb_min, nb_steps=nb_steps,
                nb_target=nb_target, dd_metric=dd_metric, dd_rule=dd_rule, nb_step=nb_step, btn_zo=btn_zo,
                btn_zo_stop=btn_zo_stop, btn_apply=btn_apply, md_best=md_best, pl_zo=pl_zo, js_zo=js_zo,
                st_best=st_best, tb_strengths=tb_strengths, tb_dims=tb_dims, dd_split=dd_split, btn_sweep=btn_sweep,
                btn_sweep_stop=btn_sweep_stop, pl_sweep=pl_sweep, df_sweep=df_sweep)


def parse_numbers(text: str, what: str, cast=float) -> list:
    try:
        values = [cast(float(x)) for x in (text or "").replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError(texts.BAD_NUMBER_LIST.format(what=what)) from None
    if not values:
        raise ValueError(texts.BAD_NUMBER_LIST.format(what=what))
    return values


def wire(ui: dict, workbench, settings, playground: dict) -> None:
    eco_controls = playground["eco"]

    @ui_errors
    def optimize(init, lr, eps, min_, steps, target, metric, rule, step, *eco_values, progress=gr.Progress()):
        cap = settings.get("max_zo_steps", 100)
        zc = ZOConfig(init=checks.finite("init", init), lr=checks.finite("lr", lr), eps=checks.finite("eps", eps),
                      min=checks.finite("min", min_), rule=str(rule), step=checks.finite("step", step),
                      steps=min(checks.integer("steps", steps, 1, 10_000), cap)).validate()
        goal = checks.finite("target", target, -1e6, 1e6)
        eco, records = eco_controls.config(*eco_values).validate(workbench.model_info()["hidden_size"]), []

        def work(on_step, stop_event):
            for rec in workbench.optimize(eco, zc, metric=metric, target=goal, stop_event=stop_event):
                on_step(rec)

        with closing(run_job(work, name="lethe-optimize")) as job:
            for kind, rec in job:
                if kind != "step":
                    if kind == "tick":
                        yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
                    continue
                records.append(rec)
                progress(rec["step"] / zc.steps, desc=f"step {rec['step']}/{zc.steps}")
                best = {"strength": rec["best_strength"], "objective": rec["best_objective"]}
                line = texts.BEST.format(sigma=best["strength"], objective=best["objective"], steps=rec["step"])
                yield plots.zo_figure(records), records, best, line

    def apply_best(best, current):
        if not best:
            return current, current
        return best["strength"], min(best["strength"], STRENGTH_SLIDER_MAX)

    @ui_errors
    def sweep(strengths, dims, split, *eco_values, progress=gr.Progress()):
        s_values = parse_numbers(strengths, "the strengths")  # Workbench.sweep checks every number
        d_values = parse_numbers(dims, "the dims", int)
        eco = eco_controls.config(*eco_values)
        points = []
        total = len(s_values) * len(d_values)
        progress(0, desc="Original probes…")

        def work(on_step, stop_event):
            return workbench.sweep(s_values, eco, dims=d_values, split=split, on_point=on_step, stop_event=stop_event)

        with closing(run_job(work, name="lethe-sweep")) as job:
            for kind, point in job:
                if kind != "step":
                    if kind == "tick":
                        yield gr.skip(), gr.skip()
                    continue
                points.append(point)
                progress(len(points) / total, desc=f"point {len(points)}/{total}")
                yield plots.sweep_figure(points), _table(points)

    zo_inputs = [ui[k] for k in ("nb_init", "nb_lr", "nb_eps", "nb_min", "nb_steps", "nb_target", "dd_metric",
                                 "dd_rule", "nb_step")]
    run = ui["btn_zo"].click(optimize, [*zo_inputs, *eco_controls.inputs],
                             [ui["pl_zo"], ui["js_zo"], ui["st_best"], ui["md_best"]],
                             api_name="optimize", concurrency_id="model")
    ui["btn_zo_stop"].click(None, None, None, cancels=[run], api_visibility="private")
    strength = eco_controls["strength"]
    ui["btn_apply"].click(apply_best, [ui["st_best"], strength], [strength, eco_controls.strength_slider],
                          api_visibility="private", queue=False)
    sw = ui["btn_sweep"].click(sweep, [ui["tb_strengths"], ui["tb_dims"], ui["dd_split"], *eco_controls.inputs],
                               [ui["pl_sweep"], ui["df_sweep"]], api_name="sweep", concurrency_id="model")
    ui["btn_sweep_stop"].click(None, None, None, cancels=[sw], api_visibility="private")
    calibrate.wire(ui["cal"], workbench, settings, eco_controls)


def _table(points):
    import pandas as pd

    cols = ["dims", "strength", "forget_accuracy", "retain_accuracy", "forget_logprob", "retain_logprob"]
    return pd.DataFrame(points)[cols].round(4)
