"""Compare tab: one prompt, Original / ECO / ELM / SKU streamed together from one shared model,
quick metrics under each column and a word diff against Original."""
from __future__ import annotations

import math
import threading

import gradio as gr

from engine import ECOConfig, GenerationConfig, checks

from .. import texts
from ..eco_controls import DEFAULTS as D
from ..eco_controls import from_api
from ..errors import ui_errors
from ..gpu import gpu
from .playground import check_tokens

COLUMNS = ("original", "eco", "elm", "sku")


def build(workbench, settings) -> dict:
    max_tokens = settings.get("max_new_tokens_cap", 512)
    with gr.Tab(texts.COMPARE_TAB, id="compare"):
        gr.Markdown(texts.COMPARE_HELP)
        with gr.Row():
            tb_prompt = gr.Textbox(label=texts.PROMPT, placeholder=texts.PROMPT_PLACEHOLDER, lines=2, scale=4,
                                   elem_id="compare-prompt")
            with gr.Column(scale=1):
                sl_tokens = gr.Slider(1, max_tokens, value=min(64, max_tokens), step=1, label=texts.MAX_NEW_TOKENS)
                sl_negation = gr.Slider(0, 4, value=1.0, step=0.05, label=texts.NEGATION, elem_id="sl-negation")
        with gr.Row():
            btn_compare = gr.Button(texts.COMPARE, variant="primary", elem_id="btn-compare")
            btn_stop = gr.Button(texts.STOP, variant="stop")
        outs, quick, diffs = {}, {}, {}
        with gr.Row():
            for name in COLUMNS:
                with gr.Column(min_width=200):
                    outs[name] = gr.Textbox(label=texts.COLUMN_TITLES[name], lines=9, interactive=False,
                                            elem_id=f"cmp-{name}", elem_classes="lethe-output")
                    quick[name] = gr.Markdown("", elem_id=f"cmp-{name}-metrics", elem_classes="lethe-speed")
                    diffs[name] = gr.HighlightedText(label=f"{texts.COLUMN_TITLES[name]} vs Original",
                                                     combine_adjacent=True, show_legend=False,
                                                     color_map={"added": "green", "removed": "red"},
                                                     elem_id=f"cmp-{name}-diff")
    return dict(tb_prompt=tb_prompt, sl_tokens=sl_tokens, sl_negation=sl_negation, btn_compare=btn_compare,
                btn_stop=btn_stop, outs=outs, quick=quick, diffs=diffs)


def _fmt(x, spec=".3g") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def quick_line(row: dict) -> str:
    gate = ""
    if row.get("gate_score") is not None and row["variant"].startswith("eco"):
        gate = texts.GATE_SCORE.format(score=row["gate_score"], gated=" → corrupted" if row["gated"] else "") + " · "
    return gate + texts.QUICK_METRICS.format(ppl=_fmt(row["perplexity"]), utr=_fmt(row["unique_token_ratio"], ".2f"),
                                             kw=", ".join(row["keywords"]) or "none")


def wire(ui: dict, workbench, settings, playground: dict) -> None:
    eco_controls = playground["eco"]

    def records(prompt, max_new_tokens, negation, cfg: ECOConfig):
        check_tokens(settings, max_new_tokens)
        config = GenerationConfig(max_new_tokens=checks.integer("max_new_tokens", max_new_tokens, 1, 4096))
        return workbench.compare(prompt, COLUMNS, config, cfg, stop_event=threading.Event(), negation=negation)

    @ui_errors
    @gpu
    def compare(prompt, max_new_tokens, negation, *eco_values):
        for rec in records(prompt, max_new_tokens, negation, eco_controls.config(*eco_values)):
            shown = dict(zip(rec["variants"], rec["texts"]))
            outs = [shown.get(n, texts.NO_ADAPTER.format(name=texts.COLUMN_TITLES[n])) for n in COLUMNS]
            if not rec["done"]:
                yield (*outs, *[gr.skip()] * (2 * len(COLUMNS)))
                continue
            rows = dict(zip(rec["variants"], rec["metrics"]))
            diffs = dict(zip(rec["variants"], rec["diffs"]))
            yield (*outs, *[quick_line(rows[n]) if n in rows else "" for n in COLUMNS],
                   *[diffs.get(n, []) for n in COLUMNS])

    outputs = [*ui["outs"].values(), *ui["quick"].values(), *ui["diffs"].values()]
    inputs = [ui["tb_prompt"], ui["sl_tokens"], ui["sl_negation"], *eco_controls.inputs]
    run = ui["btn_compare"].click(compare, inputs, outputs, api_name="ui_compare", api_visibility="private",
                                  concurrency_id="model")
    sub = ui["tb_prompt"].submit(compare, inputs, outputs, api_name="ui_compare_submit", api_visibility="private",
                                 concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[run, sub], api_visibility="private")

    @ui_errors
    def api_compare(prompt: str, max_new_tokens: int = 64, negation: float = 1.0, corruption: str = D.corruption,
                    dims: int = D.dims, strength: float = D.strength, strength_unit: str = D.strength_unit,
                    selection: str = D.selection, entity_types: str = D.entity_types, gate: str = D.gate,
                    threshold: float = D.threshold, eco_seed: int = D.seed) -> dict:
        """Original, ECO, ELM and SKU answers to one prompt with their quick metrics (plain JSON)."""
        last = {}
        for last in records(prompt, max_new_tokens, negation, from_api(locals())):
            pass
        return {"variants": last["variants"], "missing": last["missing"],
                "texts": dict(zip(last["variants"], last["texts"])),
                "metrics": dict(zip(last["variants"], last["metrics"])), "gate": last["gate"]}

    gr.api(api_compare, api_name="compare", concurrency_id="model")
