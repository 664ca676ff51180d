"""Playground tab: a prompt, generation settings, and the streamed Original answer."""
from __future__ import annotations

import threading

import gradio as gr

from engine import GenerationConfig, GenerationStats

from .. import texts
from ..errors import ui_errors


def build(workbench, settings) -> dict:
    max_tokens = settings.get("max_new_tokens_cap", 512)
    with gr.Tab(texts.PLAYGROUND_TAB, id="playground"):
        tb_prompt = gr.Textbox(label=texts.PROMPT, placeholder=texts.PROMPT_PLACEHOLDER, lines=2,
                               elem_id="prompt")
        with gr.Row():
            btn_generate = gr.Button(texts.GENERATE, variant="primary", elem_id="btn-generate")
            btn_stop = gr.Button(texts.STOP, variant="stop", elem_id="btn-stop")
        with gr.Accordion(texts.SETTINGS, open=False):
            with gr.Row():
                sl_tokens = gr.Slider(1, max_tokens, value=min(96, max_tokens), step=1, label=texts.MAX_NEW_TOKENS)
                sl_temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label=texts.TEMPERATURE)
                sl_top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label=texts.TOP_P)
                nb_seed = gr.Number(value=0, precision=0, label=texts.SEED)
        with gr.Row():
            with gr.Column():
                tb_original = gr.Textbox(label=texts.ORIGINAL, lines=8, interactive=False,
                                         elem_id="out-original", elem_classes="lethe-output")
                md_speed = gr.Markdown("", elem_classes="lethe-speed")
        st_stop = gr.State(None)
    return dict(tb_prompt=tb_prompt, btn_generate=btn_generate, btn_stop=btn_stop, sl_tokens=sl_tokens,
                sl_temperature=sl_temperature, sl_top_p=sl_top_p, nb_seed=nb_seed,
                tb_original=tb_original, md_speed=md_speed, st_stop=st_stop)


def wire(ui: dict, workbench, settings) -> None:
    @ui_errors
    def generate(prompt, max_new_tokens, temperature, top_p, seed):
        config = GenerationConfig(max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                                  top_p=float(top_p), seed=int(seed or 0))
        stats, event = GenerationStats(), threading.Event()
        text = ""
        for text in workbench.stream(prompt, config, stop_event=event, stats=stats):
            yield text, ""
        speed = texts.SPEED.format(tokens=stats.new_tokens, seconds=stats.seconds, rate=stats.tokens_per_second)
        yield text, speed

    inputs = [ui["tb_prompt"], ui["sl_tokens"], ui["sl_temperature"], ui["sl_top_p"], ui["nb_seed"]]
    outputs = [ui["tb_original"], ui["md_speed"]]
    run = ui["btn_generate"].click(generate, inputs, outputs, api_name="generate", concurrency_id="model")
    sub = ui["tb_prompt"].submit(generate, inputs, outputs, api_name=False, concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[run, sub], api_name=False)
