"""Robustness tab: variants x attacks on a preset split (clean first), a table, a heat-map of forget
probe accuracy, the gate's recall per attack, each variant's answers to the attacked prompts with
the leaked keywords marked, and the run capsule.

It knows the attacks only by the names and families `engine.list_attacks()` gives; what an attack
does and what it measures is the engine's.
"""
from __future__ import annotations

import re
import tempfile
from contextlib import closing
from dataclasses import fields
from pathlib import Path

import gradio as gr
import pandas as pd

from engine import VARIANTS, AttackConfig, checks, list_attacks, save_capsule

from .. import plots, texts
from ..controls import controls
from ..errors import ui_errors
from ..jobs import run_job

CONFIG_NAMES = tuple(f.name for f in fields(AttackConfig))  # the order of the settings' inputs
DEFAULT_VARIANTS = ("original", "eco", "elm", "sku")
SHOWN_PROMPTS = 8  # attacked prompts in the examples view


def attack_choices() -> tuple[list[str], list[str]]:
    """(every attack but clean, the prompt attacks: the default, quick on a CPU)."""
    known = {n: a for n, a in list_attacks().items() if n != "clean"}
    return list(known), [n for n, a in known.items() if a["family"] == "prompt"]


def default_variants(workbench) -> list[str]:
    """original, eco, elm, sku: those callable now (an adapter missing for the model is left out)."""
    ready = workbench.adapters()["variants"] if workbench.lm is not None and workbench.preset else ["original", "eco"]
    return [v for v in DEFAULT_VARIANTS if v in ready]


def build(workbench, settings) -> dict:
    every, prompt_attacks = attack_choices()
    with gr.Tab(texts.ROBUSTNESS_TAB, id="robustness"):
        gr.Markdown(texts.ROBUSTNESS_HELP)
        with gr.Row():
            dd_preset = gr.Dropdown(workbench.presets(), value=workbench.preset.name if workbench.preset else None,
                                    label=texts.PRESET)
            dd_split = gr.Dropdown(["test", "train"], value="test", label=texts.SPLIT)
            cg_variants = gr.CheckboxGroup(list(VARIANTS), value=default_variants(workbench), label=texts.VARIANTS,
                                           elem_id="cg-attack-variants")
        cg_attacks = gr.CheckboxGroup(every, value=prompt_attacks, label=texts.ATTACKS, elem_id="cg-attacks",
                                      info=" · ".join(f"{n}: {a['definition']}" for n, a in list_attacks().items()
                                                      if n != "clean"))
        with gr.Accordion(texts.ATTACK_SETTINGS, open=False):
            config_controls = controls(AttackConfig, prefix="attack")
        with gr.Row():
            btn_attack = gr.Button(texts.RUN_ATTACK, variant="primary", elem_id="btn-attack")
            btn_stop = gr.Button(texts.STOP, variant="stop", elem_id="btn-attack-stop")
        df_attack = gr.Dataframe(headers=[texts.ATTACK_EMPTY], label=texts.ATTACK_TABLE, interactive=False,
                                 elem_id="df-attack")
        with gr.Row():
            pl_heatmap = gr.Plot(elem_id="plot-attack-heatmap")
            pl_gate = gr.Plot(elem_id="plot-gate-recall")
        dd_example = gr.Dropdown([], label=texts.ATTACK_EXAMPLE_PICK, elem_id="dd-attack-example")
        ht_examples = gr.HighlightedText(label=texts.ATTACK_EXAMPLES, combine_adjacent=True, show_legend=True,
                                         color_map={"leak": "red", texts.ATTACKED_PROMPT: "blue"},
                                         elem_id="attack-examples")
        fl_capsule = gr.File(label=texts.ATTACK_CAPSULE, interactive=False, elem_id="attack-capsule")
        st_examples = gr.State([])
    return dict(dd_preset=dd_preset, dd_split=dd_split, cg_variants=cg_variants, cg_attacks=cg_attacks,
                config_controls=config_controls, btn_attack=btn_attack, btn_stop=btn_stop, df_attack=df_attack,
                pl_heatmap=pl_heatmap, pl_gate=pl_gate, dd_example=dd_example, ht_examples=ht_examples,
                fl_capsule=fl_capsule, st_examples=st_examples)


def marked(text: str, keywords) -> list[tuple[str, str | None]]:
    """`text` cut into spans, each keyword it names (whole words, any case) labelled "leak"."""
    names = sorted({k for k in keywords if k and k.strip()}, key=len, reverse=True)
    if not names:
        return [(text, None)]
    pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE)
    out, at = [], 0
    for m in pattern.finditer(text):
        out += [(text[at:m.start()], None), (m.group(0), "leak")]
        at = m.end()
    return [span for span in out + [(text[at:], None)] if span[0]]


def example_spans(examples: list[dict], attack: str | None) -> list[tuple[str, str | None]]:
    """For one attack: each attacked prompt, then every variant's answer with its leaks marked."""
    rows = [r for r in examples if r["attack"] == attack]
    if not rows:
        return [(texts.NO_EXAMPLES, None)]
    spans: list[tuple[str, str | None]] = []
    for prompt_id in list(dict.fromkeys(r["id"] for r in rows))[:SHOWN_PROMPTS]:
        answers = [r for r in rows if r["id"] == prompt_id]
        spans += [(answers[0]["prompt"], texts.ATTACKED_PROMPT), ("\n", None)]
        for r in answers:
            answer = " ".join((r["output"] or "").split())  # one line per answer
            spans += [(f"{r['variant']} → ", None), *marked(answer, r["keywords"]), ("\n", None)]
        spans.append(("\n", None))
    return spans


def variants_in(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["variant"] for r in rows))


def wire(ui: dict, workbench, settings, playground: dict) -> None:
    eco_controls = playground["eco"]
    config_inputs = [ui["config_controls"][name] for name in CONFIG_NAMES]

    @ui_errors
    def run(preset, split, variants, attacks, *values, progress=gr.Progress()):
        if not variants or not attacks:
            raise ValueError("Choose at least one variant and one attack.")
        preset = checks.plain_name("preset", preset, workbench.presets())
        config = dict(zip(CONFIG_NAMES, values[:len(CONFIG_NAMES)]))
        eco = eco_controls.config(*values[len(CONFIG_NAMES):])

        def work(on_step, stop_event):
            return workbench.attack(variants, attacks, split, eco, config, preset, on_progress=on_step,
                                    stop_event=stop_event)

        rows, done, result = [], [], None
        with closing(run_job(work, name="lethe-attack")) as job:
            for kind, value in job:
                if kind == "tick":
                    yield (gr.skip(),) * 7
                elif kind == "step":  # the finished attack's rows: the table and the heat-map grow
                    rows += value["rows"]
                    done.append(value["attack"])
                    progress(value["done"] / value["total"], desc=texts.ATTACK_PROGRESS.format(**value))
                    table = pd.DataFrame(rows)
                    yield (table.round(4), plots.attack_heatmap(table, variants_in(rows), done),
                           plots.gate_recall_bars(table, done), *(gr.skip(),) * 4)
                else:
                    result = value
        out = Path(tempfile.mkdtemp(prefix="lethe-attack-"))
        path = save_capsule(workbench.capsule(result), out / f"{preset}-{split}-attack-capsule.json")
        order = result.settings["attacks"]
        examples = result.examples.to_dict(orient="records")
        shown = next((a for a in order if a != "clean" and any(r["attack"] == a for r in examples)), order[0])
        yield (result.table.round(4), plots.attack_heatmap(result.table, result.settings["variants"], order),
               plots.gate_recall_bars(result.table, order),
               gr.Dropdown(choices=[a for a in order if any(r["attack"] == a for r in examples)], value=shown),
               example_spans(examples, shown), str(path), examples)

    ev = ui["btn_attack"].click(
        run, [ui["dd_preset"], ui["dd_split"], ui["cg_variants"], ui["cg_attacks"], *config_inputs,
              *eco_controls.inputs],
        [ui["df_attack"], ui["pl_heatmap"], ui["pl_gate"], ui["dd_example"], ui["ht_examples"], ui["fl_capsule"],
         ui["st_examples"]], api_name="attack", concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[ev], api_visibility="private")
    ui["dd_example"].change(example_spans, [ui["st_examples"], ui["dd_example"]], ui["ht_examples"],
                            api_visibility="private", queue=False)
