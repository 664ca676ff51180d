"""ECO calibration, inside the Optimize tab: search selection x corruption x dims x strength for a
default that forgets and keeps answers fluent (train split), draw the front as it fills, Stop, and
apply the chosen setting to the Playground."""
from __future__ import annotations

from contextlib import closing

import gradio as gr

from engine import ECO_CANDIDATES, TuningConfig, checks

from .. import plots, texts
from ..errors import ui_errors
from ..jobs import run_job

LABELS = [c.label for c in ECO_CANDIDATES]


def build(workbench, settings) -> dict:
    t = TuningConfig()
    gr.Markdown(f"### {texts.CALIBRATE}\n{texts.CALIBRATE_HELP}")
    with gr.Row():
        cg = gr.CheckboxGroup(LABELS, value=LABELS, label=texts.CALIBRATE_CANDIDATES, elem_id="cg-candidates")
        nb_steps = gr.Number(value=t.steps, precision=0, label=texts.CALIBRATE_STEPS, minimum=0,
                             maximum=settings.get("max_zo_steps", 100))
        nb_prompts = gr.Number(value=t.fluency_prompts, precision=0, label=texts.CALIBRATE_PROMPTS, minimum=1,
                               maximum=64)
    with gr.Row():
        btn_run = gr.Button(texts.RUN_CALIBRATE, variant="primary", elem_id="btn-calibrate")
        btn_stop = gr.Button(texts.STOP, variant="stop")
        btn_apply = gr.Button(texts.APPLY_CALIBRATED, elem_id="btn-apply-calibrated")
    md = gr.Markdown(texts.CALIBRATE_EMPTY, elem_id="calibrate-result")
    plot = gr.Plot(label="front", elem_id="plot-front")
    st = gr.State(None)
    return dict(cg=cg, nb_steps=nb_steps, nb_prompts=nb_prompts, btn_run=btn_run, btn_stop=btn_stop,
                btn_apply=btn_apply, md=md, plot=plot, st=st)


def summary(result: dict) -> str:
    if not result.get("chosen"):
        return texts.CALIBRATE_NONE.format(message=result["message"])
    c = result["chosen"]
    return texts.CALIBRATE_CHOSEN.format(candidate=result["chosen_candidate"], sigma=c["strength"],
                                         forget=result["forget_accuracy"], retain=result["retain_accuracy"],
                                         original=result["original"]["retain_accuracy"], target=result["target"],
                                         floor=result["floor"])


def wire(ui: dict, workbench, settings, eco_controls) -> None:
    @ui_errors
    def calibrate(labels, steps, prompts, progress=gr.Progress()):
        chosen = [c for c in ECO_CANDIDATES if c.label in (labels or [])]
        if not chosen:
            raise ValueError(texts.CALIBRATE_PICK)
        cap = settings.get("max_zo_steps", 100)
        config = TuningConfig(steps=min(checks.integer("steps", steps, 0, 100), cap),
                              fluency_prompts=checks.integer("fluency prompts", prompts, 1, 64)).validate()
        per = len(config.grid) + 2 * config.steps
        total, points, reference = per * len(chosen), [], None

        def work(on_step, stop_event):
            for event in workbench.calibrate_eco(config, chosen, stop_event=stop_event):
                on_step(event)

        with closing(run_job(work, name="lethe-calibrate")) as job:
            for kind, event in job:
                if kind == "tick":
                    yield gr.skip(), gr.skip(), gr.skip()
                if kind != "step":
                    continue
                if event["kind"] == "reference":
                    reference = event
                    line = texts.CALIBRATE_REFERENCE.format(target=event["target"], floor=event["floor"])
                    yield plots.calibration_front(points, reference, min_unique=config.min_unique_token_ratio), line, None
                elif event["kind"] == "point":
                    points.append(event)
                    progress(min(len(points) / total, 1.0), desc=f"point {len(points)}/{total}")
                    yield plots.calibration_front(points, reference, min_unique=config.min_unique_token_ratio), \
                        gr.skip(), None
                elif event["kind"] == "result":
                    best = next((s["best"] for s in event["candidates"]
                                 if s["candidate"] == event["chosen_candidate"]), None)
                    fig = plots.calibration_front(points, reference, best, config.min_unique_token_ratio)
                    yield fig, summary(event), event

    def apply(result, *current):
        if not result or not result.get("chosen"):
            return [gr.skip()] * len(current)
        c = result["chosen"]
        return [c[name] if name in c else gr.skip() for name in APPLIED]

    APPLIED = ("selection", "corruption", "dims", "strength", "strength_unit")
    run = ui["btn_run"].click(calibrate, [ui["cg"], ui["nb_steps"], ui["nb_prompts"]], [ui["plot"], ui["md"], ui["st"]],
                              api_name="calibrate_eco", concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[run], api_visibility="private")
    targets = [eco_controls[name] for name in APPLIED]
    ui["btn_apply"].click(apply, [ui["st"], *targets], targets, api_visibility="private", queue=False)
