"""Compare tab: one prompt, Original / ECO / ELM / SKU streamed together from one shared model,
then the gate's decision, the quick metrics as one table (best per row marked) and each answer's
word diff against Original, read inline. A refused prompt is explained in place; the outputs stay."""
from __future__ import annotations

import threading

import gradio as gr

from engine import ECOConfig, GenerationConfig, checks

from .. import render, texts
from ..eco_controls import DEFAULTS as D
from ..eco_controls import from_api
from ..errors import in_place, ui_errors
from ..examples import first_prompt, prompt_examples
from ..gpu import gpu
from .playground import check_tokens, gate_line

COLUMNS = ("original", "eco", "elm", "sku")
DIFFED = COLUMNS[1:]  # each read against Original
MAX_NEGATION = 8.0  # the lambda slider's end: room past the largest shipped lambda (chemistry's 4)


def build(workbench, settings) -> dict:
    max_tokens = settings.get("max_new_tokens_cap", 512)
    with gr.Tab(texts.COMPARE_TAB, id="compare"):
        gr.Markdown(texts.COMPARE_HELP)
        with gr.Row():
            with gr.Column(scale=4):
                tb_prompt = gr.Textbox(label=texts.PROMPT, placeholder=texts.PROMPT_PLACEHOLDER, lines=2,
                                       elem_id="compare-prompt", value=first_prompt(workbench))
                ex_prompts = prompt_examples(workbench, tb_prompt, "compare-examples")
            with gr.Column(scale=1):
                sl_tokens = gr.Slider(1, max_tokens, value=min(64, max_tokens), step=1, label=texts.MAX_NEW_TOKENS)
                sl_negation = gr.Slider(0, MAX_NEGATION, value=own_negation(workbench), step=0.05, label=texts.NEGATION,
                                        elem_id="sl-negation")
        with gr.Row():
            btn_compare = gr.Button(texts.COMPARE, variant="primary", elem_id="btn-compare")
            btn_stop = gr.Button(texts.STOP, variant="stop")
        md_status = gr.Markdown("", elem_id="cmp-status", elem_classes="lethe-status")
        md_gate = gr.Markdown("", elem_id="cmp-gate", elem_classes="lethe-gate")
        outs = {}
        with gr.Row():
            for name in COLUMNS:
                outs[name] = gr.Textbox(label=texts.COLUMN_TITLES[name], lines=9, interactive=False,
                                        elem_id=f"cmp-{name}", elem_classes="lethe-output", min_width=200)
        ht_metrics = gr.HTML(render.note(texts.METRICS_EMPTY), elem_id="cmp-metrics")
        diffs = {}
        with gr.Row():
            for name in DIFFED:
                diffs[name] = gr.HTML(diff_panel(name, None), elem_id=f"cmp-{name}-diff", min_width=200)
    return dict(tb_prompt=tb_prompt, ex_prompts=ex_prompts, sl_tokens=sl_tokens, sl_negation=sl_negation,
                btn_compare=btn_compare, btn_stop=btn_stop, md_status=md_status, md_gate=md_gate, outs=outs,
                ht_metrics=ht_metrics, diffs=diffs)


def own_negation(workbench) -> float:
    """The λ the preset's SKU adapter ships with (its own scale), 1 when there is none."""
    if workbench.lm is None or workbench.preset is None:
        return 1.0
    for a in workbench.adapters()["adapters"]:
        if a.get("variant") == "sku" and a.get("scale") is not None:
            return min(max(-float(a["scale"]), 0.0), MAX_NEGATION)
    return 1.0


def diff_panel(name: str, spans) -> str:
    title = f'<div class="lethe-diff-title">{render.esc(texts.DIFF_TITLE.format(name=texts.COLUMN_TITLES[name]))}</div>'
    if spans is None:
        return title + render.note(texts.DIFF_EMPTY)
    if isinstance(spans, str):  # no adapter for this variant
        return title + render.note(spans)
    return title + render.diff_html(spans) + render.diff_legend()


def gate_text(gate: dict | None, mode: str) -> str:
    return texts.COMPARE_GATE.format(line=gate_line(gate, mode)) if gate else ""


def wire(ui: dict, workbench, settings, playground: dict) -> None:
    eco_controls = playground["eco"]

    def records(prompt, max_new_tokens, negation, cfg: ECOConfig):
        check_tokens(settings, max_new_tokens)
        config = GenerationConfig(max_new_tokens=checks.integer("max_new_tokens", max_new_tokens, 1, 4096))
        return workbench.compare(prompt, COLUMNS, config, cfg, stop_event=threading.Event(), negation=negation)

    outputs = [*ui["outs"].values(), ui["md_gate"], ui["ht_metrics"], *ui["diffs"].values(), ui["md_status"]]

    @in_place(len(outputs))
    @gpu
    def compare(prompt, max_new_tokens, negation, *eco_values):
        cfg = eco_controls.config(*eco_values)
        first = True
        for rec in records(prompt, max_new_tokens, negation, cfg):
            shown = dict(zip(rec["variants"], rec["texts"]))
            outs = [shown.get(n, texts.NO_ADAPTER.format(name=texts.COLUMN_TITLES[n])) for n in COLUMNS]
            if not rec["done"]:
                rest = ("", render.note(texts.METRICS_EMPTY), *[diff_panel(n, None) for n in DIFFED]) if first \
                    else (gr.skip(),) * (2 + len(DIFFED))
                first = False
                yield (*outs, *rest, "")
                continue
            rows = dict(zip(rec["variants"], rec["metrics"]))
            diffs = dict(zip(rec["variants"], rec["diffs"]))
            yield (*outs, gate_text(rec["gate"], cfg.gate),
                   render.metrics_table(rows, list(COLUMNS), texts.COLUMN_TITLES),
                   *[diff_panel(n, diffs.get(n, texts.NO_ADAPTER.format(name=texts.COLUMN_TITLES[n])))
                     for n in DIFFED], "")

    inputs = [ui["tb_prompt"], ui["sl_tokens"], ui["sl_negation"], *eco_controls.inputs]
    run = ui["btn_compare"].click(compare, inputs, outputs, api_name="ui_compare", api_visibility="private",
                                  concurrency_id="model")
    sub = ui["tb_prompt"].submit(compare, inputs, outputs, api_name="ui_compare_submit", api_visibility="private",
                                 concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[run, sub], api_visibility="private")

    @ui_errors
    def api_compare(prompt: str, max_new_tokens: int = 64, negation: float | None = None, corruption: str = D.corruption,
                    dims: int = D.dims, strength: float = D.strength, strength_unit: str = D.strength_unit,
                    selection: str = D.selection, entity_types: str = D.entity_types, gate: str = D.gate,
                    threshold: float = D.threshold, eco_seed: int = D.seed) -> dict:
        """Original, ECO, ELM and SKU answers to one prompt with their quick metrics (plain JSON);
        `negation` is SKU's λ for this call (default: the adapter's own)."""
        last = {}
        for last in records(prompt, max_new_tokens, negation, from_api(locals())):
            pass
        return {"variants": last["variants"], "missing": last["missing"],
                "texts": dict(zip(last["variants"], last["texts"])),
                "metrics": dict(zip(last["variants"], last["metrics"])), "gate": last["gate"]}

    gr.api(api_compare, api_name="compare", concurrency_id="model")
