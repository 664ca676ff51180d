"""Playground tab: a prompt (the preset's examples under it), the gate's score, the selected tokens,
ECO's knobs, and the Original and ECO answers streamed side by side. A refused prompt is explained
in the status line under the buttons; the answers stay as they were."""
from __future__ import annotations

import threading

import gradio as gr

from engine import ECOConfig, GenerationConfig, checks

from .. import texts
from ..eco_controls import DEFAULTS as D
from ..eco_controls import ECOControls, eco_config, from_api, gate_threshold
from ..errors import in_place, ui_errors
from ..examples import first_prompt, prompt_examples
from ..gpu import gpu


def build(workbench, settings) -> dict:
    max_tokens = settings.get("max_new_tokens_cap", 512)
    hidden = workbench.lm.model.config.hidden_size if workbench.lm is not None else 4096
    with gr.Tab(texts.PLAYGROUND_TAB, id="playground"):
        gr.Markdown(texts.PLAYGROUND_HELP)
        with gr.Row():
            with gr.Column(scale=3):
                tb_prompt = gr.Textbox(label=texts.PROMPT, placeholder=texts.PROMPT_PLACEHOLDER, lines=2,
                                       elem_id="prompt", value=first_prompt(workbench))
                ex_prompts = prompt_examples(workbench, tb_prompt, "play-examples")
                with gr.Row():
                    btn_generate = gr.Button(texts.GENERATE, variant="primary", elem_id="btn-generate")
                    btn_stop = gr.Button(texts.STOP, variant="stop", elem_id="btn-stop")
                md_status = gr.Markdown("", elem_id="play-status", elem_classes="lethe-status")
                md_gate = gr.Markdown("", elem_id="gate-status", elem_classes="lethe-gate")
                ht_tokens = gr.HighlightedText(label=texts.TOKENS, combine_adjacent=False, show_legend=True,
                                               elem_id="tokens", interactive=False)
            with gr.Column(scale=2):
                with gr.Accordion(texts.ECO_SETTINGS, open=True):
                    eco = ECOControls(workbench, hidden)
                with gr.Accordion(texts.SETTINGS, open=False):
                    sl_tokens = gr.Slider(1, max_tokens, value=min(96, max_tokens), step=1, label=texts.MAX_NEW_TOKENS)
                    sl_temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label=texts.TEMPERATURE)
                    sl_top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label=texts.TOP_P)
                    nb_seed = gr.Number(value=0, step=1, label=texts.SEED)
        with gr.Row():
            tb_original = gr.Textbox(label=texts.ORIGINAL, lines=8, interactive=False, elem_id="out-original",
                                     elem_classes="lethe-output")
            tb_eco = gr.Textbox(label=texts.ECO, lines=8, interactive=False, elem_id="out-eco",
                                elem_classes="lethe-output")
        md_speed = gr.Markdown("", elem_id="speed", elem_classes="lethe-speed")
        st_manual = gr.State(None)  # None = automatic selection, else the selected token indices
        st_shown = gr.State([])  # token index of each displayed HighlightedText entry
    return dict(tb_prompt=tb_prompt, ex_prompts=ex_prompts, md_status=md_status, btn_generate=btn_generate,
                btn_stop=btn_stop, md_gate=md_gate,
                ht_tokens=ht_tokens, eco=eco, sl_tokens=sl_tokens, sl_temperature=sl_temperature,
                sl_top_p=sl_top_p, nb_seed=nb_seed, tb_original=tb_original, tb_eco=tb_eco, md_speed=md_speed,
                st_manual=st_manual, st_shown=st_shown)


def check_tokens(settings: dict, max_new_tokens) -> None:
    """Refuse more new tokens than this server allows (Spaces mode sets a cap)."""
    cap = settings.get("max_new_tokens_cap")
    if cap and checks.integer("max_new_tokens", max_new_tokens, 1, 4096) > cap:
        raise ValueError(f"This server generates at most {cap} new tokens per answer.")


def generation_config(max_new_tokens, temperature, top_p, seed) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=checks.integer("max_new_tokens", max_new_tokens, 1, 4096),
                            temperature=checks.finite("temperature", temperature, 0, 5),
                            top_p=checks.finite("top_p", top_p, 0, 1), seed=checks.seed(seed or 0)).validate()


def gate_line(plan_or_result: dict, gate: str) -> str:
    decision = texts.CORRUPTS if plan_or_result["flagged"] else texts.PASSES
    if plan_or_result.get("score") is None:
        return texts.GATE_FIXED.format(gate=gate, decision=decision)
    line = texts.GATE_LINE.format(score=plan_or_result["score"], threshold=plan_or_result["threshold"],
                                  decision=decision)
    matched = plan_or_result.get("matched") or []
    if matched:
        return line + texts.GATE_MATCHED.format(names=", ".join(matched))
    return line + (texts.GATE_ABOVE if plan_or_result["flagged"] else texts.GATE_BELOW)


def manual_config(cfg: ECOConfig) -> ECOConfig:
    """The same settings with the tokens chosen by hand."""
    return ECOConfig.from_dict({**cfg.to_dict(), "selection": "manual"})


def wire(ui: dict, workbench, settings, demo: gr.Blocks | None = None) -> None:
    """Wire the tab; with `demo`, the first prompt's gate line and tokens show as the page loads."""
    eco_controls = ui["eco"]

    @ui_errors
    def inspect(prompt, manual, *eco_values):
        """Score the prompt and show its tokens (no generation)."""
        if not prompt or not prompt.strip():
            return "", [], []
        cfg = eco_controls.config(*eco_values)
        sel = workbench.select_tokens(prompt, cfg if manual is None else manual_config(cfg), manual=manual)
        a, b = sel["prompt_span"]
        shown = [i for i, (s, e) in enumerate(sel["offsets"]) if e > a and s < b and e > s]
        if cfg.gate == "classifier":
            out = workbench.classify([prompt], threshold=cfg.threshold)
            line = gate_line({**out["results"][0], "threshold": out["threshold"]}, cfg.gate)
        else:
            line = gate_line({"flagged": cfg.gate == "always", "score": None}, cfg.gate)
        return line, sel["highlighted"], shown

    @ui_errors
    def toggle(prompt, manual, shown, *eco_values, evt: gr.SelectData = None):
        """Clicking a token flips it in a manual selection that starts from the current one."""
        cfg = eco_controls.config(*eco_values)
        if manual is None:
            manual = workbench.select_tokens(prompt, cfg)["positions"]
        idx = shown[evt.index] if evt is not None and evt.index is not None and evt.index < len(shown) else None
        if idx is not None:
            manual = sorted(set(manual) ^ {idx})
        line, highlighted, shown = inspect(prompt, manual, *eco_values)
        return manual, line, highlighted, shown, texts.MANUAL_NOTE.format(n=len(manual))

    def reset_manual():
        return None

    @gpu
    def answers(prompt, manual, max_new_tokens, temperature, top_p, seed, cfg: ECOConfig):
        """Original and ECO streamed side by side: (original, eco, gate line, speed line)."""
        check_tokens(settings, max_new_tokens)
        config = generation_config(max_new_tokens, temperature, top_p, seed)
        if manual is not None:
            cfg = manual_config(cfg)
        run = workbench.stream_many(prompt, [("original", None), ("eco", cfg)], config,
                                    stop_event=threading.Event(), manual=manual)
        texts_ = ["", ""]
        gate = ""
        for texts_ in run:
            if run.plans and not gate:
                gate = gate_line(run.plans[0].to_dict(), cfg.gate)
            yield texts_[0], texts_[1], gate, ""
        speed = " · ".join(f"{name}: " + texts.SPEED.format(tokens=s.new_tokens, seconds=s.seconds,
                                                            rate=s.tokens_per_second)
                           for name, s in zip(("Original", "ECO"), run.stats))
        yield texts_[0], texts_[1], gate, speed

    @in_place(5)
    def generate(prompt, manual, max_new_tokens, temperature, top_p, seed, *eco_values):
        cfg = eco_controls.config(*eco_values)
        for out in answers(prompt, manual, max_new_tokens, temperature, top_p, seed, cfg):
            yield (*out, "")

    @ui_errors
    @gpu
    def generate_eco(prompt, manual, max_new_tokens, temperature, top_p, seed, *eco_values):
        """Slider released: regenerate the ECO column only."""
        if not prompt or not prompt.strip():
            return
        config = generation_config(max_new_tokens, temperature, top_p, seed)
        cfg = eco_controls.config(*eco_values)
        if manual is not None:
            cfg = manual_config(cfg)
        run = workbench.stream(prompt, config, variant="eco", eco=cfg, manual=manual)
        for text in run:
            yield text, gate_line(run.plans[0].to_dict(), cfg.gate)

    gen_inputs = [ui["tb_prompt"], ui["st_manual"], ui["sl_tokens"], ui["sl_temperature"], ui["sl_top_p"],
                  ui["nb_seed"], *eco_controls.inputs]
    outputs = [ui["tb_original"], ui["tb_eco"], ui["md_gate"], ui["md_speed"], ui["md_status"]]
    run = ui["btn_generate"].click(generate, gen_inputs, outputs, api_name="ui_generate", api_visibility="private",
                                   concurrency_id="model")
    sub = ui["tb_prompt"].submit(generate, gen_inputs, outputs, api_name="ui_generate_submit",
                                 api_visibility="private", concurrency_id="model")
    ui["btn_stop"].click(None, None, None, cancels=[run, sub], api_visibility="private")

    inspect_inputs = [ui["tb_prompt"], ui["st_manual"], *eco_controls.inputs]
    inspect_outputs = [ui["md_gate"], ui["ht_tokens"], ui["st_shown"]]
    ui["tb_prompt"].change(reset_manual, None, ui["st_manual"], api_visibility="private", queue=False).then(
        inspect, inspect_inputs, inspect_outputs, api_visibility="private", trigger_mode="always_last",
        show_progress="hidden", concurrency_id="light", concurrency_limit=2)
    if demo is not None:
        demo.load(inspect, inspect_inputs, inspect_outputs, api_visibility="private", show_progress="hidden",
                  concurrency_id="light", concurrency_limit=2)
    for comp in (eco_controls[name] for name in ("selection", "entity_types", "gate", "threshold")):
        comp.change(reset_manual, None, ui["st_manual"], api_visibility="private", queue=False).then(
            inspect, inspect_inputs, inspect_outputs, api_visibility="private", concurrency_id="light",
            concurrency_limit=2)
    ui["ht_tokens"].select(toggle, [ui["tb_prompt"], ui["st_manual"], ui["st_shown"], *eco_controls.inputs],
                           [ui["st_manual"], ui["md_gate"], ui["ht_tokens"], ui["st_shown"], ui["md_speed"]],
                           api_visibility="private", concurrency_id="light", concurrency_limit=2)
    eco_controls.wire()
    for knob in (eco_controls["strength"], eco_controls["dims"]):  # releasing a knob re-runs ECO
        knob.release(generate_eco, gen_inputs, [ui["tb_eco"], ui["md_gate"]], api_visibility="private",
                     concurrency_id="model", trigger_mode="always_last")
    eco_controls["corruption"].change(generate_eco, gen_inputs, [ui["tb_eco"], ui["md_gate"]],
                                      api_visibility="private", concurrency_id="model", trigger_mode="always_last")

    # API-only endpoints: /classify and /select_tokens
    @ui_errors
    def api_classify(prompt: str, threshold: float = 0.0) -> dict:
        """The gate's score for one prompt (threshold 0 = the calibrated one)."""
        return workbench.classify([prompt], threshold=gate_threshold(threshold))

    @ui_errors
    def api_select(prompt: str, selection: str = "ner", entities: str = "") -> dict:
        out = workbench.select_tokens(prompt, eco_config({"selection": selection, "entity_types": entities}))
        return {k: out[k] for k in ("tokens", "selected", "labels", "positions", "entities")}

    @ui_errors
    def api_generate(prompt: str, max_new_tokens: int = 96, temperature: float = 0.0, top_p: float = 1.0,
                     seed: int = 0, corruption: str = D.corruption, dims: int = D.dims, strength: float = D.strength,
                     strength_unit: str = D.strength_unit, selection: str = D.selection,
                     entity_types: str = D.entity_types, gate: str = D.gate, threshold: float = D.threshold,
                     eco_seed: int = D.seed) -> dict:
        """Original and ECO answers to one prompt, with the gate's decision (plain JSON)."""
        cfg = from_api(locals())
        texts_, gate_text, speed = ["", ""], "", ""
        for original, eco_text, gate_text, speed in answers(prompt, None, max_new_tokens, temperature, top_p, seed,
                                                            cfg):
            texts_ = [original, eco_text]
        return {"original": texts_[0], "eco": texts_[1], "gate": gate_text, "speed": speed}

    gr.api(api_generate, api_name="generate", concurrency_id="model")
    gr.api(api_classify, api_name="classify", concurrency_id="light")
    gr.api(api_select, api_name="select_tokens", concurrency_id="light")
