"""Showcase tab: the stakeholder view. One click runs Original, ECO, ELM and SKU on the preset's
showcase prompts (app/examples.py) with the Playground's ECO settings and SKU at λ = 1, streams
them into one page (app/report.py) and offers that page as a self-contained HTML report."""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from engine import GenerationConfig, checks

from .. import report, texts
from ..errors import in_place
from ..examples import showcase
from ..gpu import gpu
from .playground import check_tokens, gate_line

COLUMNS = report.COLUMNS
NEGATION = 1.0  # SKU as the paper applies it
REFRESH = 0.4  # seconds between page updates while the answers stream


def build(workbench, settings) -> dict:
    max_tokens = settings.get("max_new_tokens_cap", 512)
    with gr.Tab(texts.SHOWCASE_TAB, id="showcase"):
        gr.Markdown(texts.SHOWCASE_HELP)
        with gr.Row():
            btn_run = gr.Button(texts.RUN_SHOWCASE, variant="primary", elem_id="btn-showcase", scale=3)
            btn_stop = gr.Button(texts.STOP, variant="stop", scale=1)
            sl_tokens = gr.Slider(1, max_tokens, value=min(48, max_tokens), step=1, label=texts.MAX_NEW_TOKENS,
                                  elem_id="showcase-tokens", scale=2)
        md_status = gr.Markdown("", elem_id="showcase-status", elem_classes="lethe-status")
        ht_page = gr.HTML(report.empty_page(showcase(workbench.preset)), elem_id="showcase-page")
        fl_report = gr.File(label=texts.SHOWCASE_REPORT, interactive=False, elem_id="showcase-report", visible=False)
    return dict(btn_run=btn_run, btn_stop=btn_stop, sl_tokens=sl_tokens, md_status=md_status, ht_page=ht_page,
                fl_report=fl_report)


def eco_summary(cfg) -> str:
    return (f"{cfg.corruption}, dims {cfg.dims}, σ {cfg.strength:g} ({cfg.strength_unit}), "
            f"selection {cfg.selection}, gate {cfg.gate}")


def wire(ui: dict, workbench, settings, playground: dict) -> None:
    eco_controls = playground["eco"]
    outputs = [ui["ht_page"], ui["fl_report"], ui["md_status"]]

    @in_place(len(outputs))
    @gpu
    def run(max_new_tokens, *eco_values, progress=gr.Progress()):
        check_tokens(settings, max_new_tokens)
        preset = workbench.preset
        prompts = showcase(preset)
        if not prompts:
            raise ValueError(texts.SHOWCASE_NO_PROMPTS.format(preset=preset.name if preset else "(none)"))
        cfg = eco_controls.config(*eco_values)
        config = GenerationConfig(max_new_tokens=checks.integer("max_new_tokens", max_new_tokens, 1, 4096))
        meta = {"model": workbench.model_info()["name"], "preset": preset.name, "preset_title": preset.title,
                "eco": eco_summary(cfg), "negation": f"{NEGATION:g}", "when": time.strftime("%Y-%m-%d %H:%M")}
        words = lambda gate: gate_line(gate, cfg.gate)  # noqa: E731
        items = [dict(p, texts={}, metrics={}, missing=[], gate=None) for p in prompts]
        shown = 0.0
        yield report.page(items, meta, words), gr.File(value=None, visible=False), ""
        for i, item in enumerate(items):
            progress(i / len(items), desc=texts.SHOWCASE_PROGRESS.format(i=i + 1, n=len(items)))
            for rec in workbench.compare(item["prompt"], COLUMNS, config, cfg, stop_event=threading.Event(),
                                         negation=NEGATION):
                item.update(texts=dict(zip(rec["variants"], rec["texts"])), missing=rec["missing"])
                if rec["done"]:
                    item.update(metrics=dict(zip(rec["variants"], rec["metrics"])), gate=rec["gate"])
                if rec["done"] or time.monotonic() - shown > REFRESH:
                    shown = time.monotonic()
                    yield report.page(items, meta, words), gr.skip(), ""
        fragment = report.page(items, meta, words)
        path = Path(tempfile.mkdtemp(prefix="lethe-showcase-")) / f"lethe-showcase-{preset.name}.html"
        path.write_text(report.document(fragment, texts.SHOWCASE_TITLE.format(model=meta["model"],
                                                                              preset=meta["preset_title"])),
                        encoding="utf-8")
        yield fragment, gr.File(value=str(path), visible=True), ""

    ev = ui["btn_run"].click(run, [ui["sl_tokens"], *eco_controls.inputs], outputs, api_name="ui_showcase",
                             api_visibility="private", concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[ev], api_visibility="private")


def refreshed_page(workbench) -> str:
    """The empty page of the current preset (after the Model tab changes it)."""
    return report.empty_page(showcase(workbench.preset))
