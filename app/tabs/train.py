"""Train tab: ELM or SKU on the current preset, controls built from the config dataclasses, a
live per-term loss plot, Stop, and the new adapter ready as a variant at once."""
from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import gradio as gr

from engine import METHODS, TrainingStopped, get_method, make_config

from .. import plots, texts
from ..controls import controls
from ..errors import ui_errors
from ..gpu import gpu
from ..jobs import run_job

COMMON = ("steps", "lr", "rank")  # shown for both methods, above the per-method accordions
HIDDEN = ("layers", "seed", "batch_size", "max_length", "weight_decay", "linear_decay", "max_grad_norm",
          "grad_accumulation", "alpha", "dropout")  # left at their defaults in the UI (CLI: --set)
TERMS = {"elm": ["erase", "retain", "consistency"],
         "sku": ["guided_distortion", "random_disassociation", "preservation_divergence"]}


def build(workbench, settings) -> dict:
    cap = settings.get("max_train_steps")
    with gr.Tab(texts.TRAIN_TAB, id="train"):
        gr.Markdown(texts.TRAIN_HELP)
        with gr.Row():
            dd_method = gr.Dropdown(list(METHODS), value="elm", label=texts.METHOD, elem_id="dd-method")
            nb_steps = gr.Number(value=METHODS["elm"][1]().steps, precision=0, label=texts.STEPS, minimum=1,
                                 maximum=cap or 5000, elem_id="nb-train-steps")
            nb_lr = gr.Number(value=METHODS["elm"][1]().lr, label=texts.LEARNING_RATE, elem_id="nb-train-lr")
            nb_rank = gr.Number(value=METHODS["elm"][1]().rank, precision=0, label=texts.LORA_RANK, minimum=1,
                                maximum=512)
        with gr.Accordion(texts.ELM_SETTINGS, open=False):
            elm = controls(METHODS["elm"][1], skip=COMMON + HIDDEN, prefix="train-elm")
        with gr.Accordion(texts.SKU_SETTINGS, open=False):
            sku = controls(METHODS["sku"][1], skip=COMMON + HIDDEN, prefix="train-sku")
        cb_save = gr.Checkbox(value=False, label=texts.SAVE_ADAPTER, interactive=settings.get("allow_save", True))
        with gr.Row():
            btn_train = gr.Button(texts.TRAIN, variant="primary", elem_id="btn-train")
            btn_train_stop = gr.Button(texts.STOP, variant="stop", elem_id="btn-train-stop")
        md_train = gr.Markdown("", elem_id="train-status")
        pl_loss = gr.Plot(label="losses", elem_id="plot-loss")
        md_adapters = gr.Markdown(adapters_line(workbench), elem_id="adapters-ready")
    return dict(dd_method=dd_method, nb_steps=nb_steps, nb_lr=nb_lr, nb_rank=nb_rank, elm=elm, sku=sku,
                cb_save=cb_save, btn_train=btn_train, btn_train_stop=btn_train_stop, md_train=md_train,
                pl_loss=pl_loss, md_adapters=md_adapters)


def adapters_line(workbench) -> str:
    if workbench.lm is None or workbench.preset is None:
        return ""
    info = workbench.adapters()
    notes = "".join(f"\n\n{n}" for n in info["notes"])
    return texts.ADAPTERS_READY.format(names=", ".join(info["variants"])) + notes


def run_training(workbench, method: str, values: dict, out_dir: str | None):
    """Train in a worker thread (one training at a time); yield each step record, None while
    waiting, then the final record (key "done"). Closing the generator stops the training, and a
    stopped training never installs or saves its adapter."""
    def work(on_step, stop_event):
        return workbench.train(method, values, on_step=on_step, stop_event=stop_event, out_dir=out_dir)

    with closing(run_job(work, exclusive="train", name="lethe-train")) as job:
        for kind, value in job:
            yield {"done": True, **value} if kind == "done" else value


def out_folder(workbench, method: str, save: bool, settings: dict) -> str | None:
    if not (save and settings.get("allow_save", True)):
        return None
    return str(Path("runs") / "adapters" / f"{workbench.preset.name}-{method}-{time.strftime('%Y%m%d-%H%M%S')}")


def wire(ui: dict, workbench, settings) -> None:
    elm_keys, sku_keys = list(ui["elm"]), list(ui["sku"])

    def method_defaults(method):
        d = METHODS[method][1]()
        return d.steps, d.lr, d.rank

    @ui_errors
    @gpu
    def train(method, steps, lr, rank, save, *values, progress=gr.Progress()):
        cap = settings.get("max_train_steps")
        if cap and int(steps) > cap:
            raise ValueError(f"This server trains at most {cap} steps per adapter.")
        keys, vals = (elm_keys, values[:len(elm_keys)]) if method == "elm" else (sku_keys, values[len(elm_keys):])
        chosen = {k: v for k, v in zip(keys, vals) if v is not None}
        chosen.update(steps=int(steps), lr=float(lr), rank=int(rank))
        out_dir = out_folder(workbench, method, save, settings)
        records = []
        for rec in run_training(workbench, method, chosen, out_dir):
            if rec is None:  # nothing new yet: a heartbeat keeps Stop prompt
                yield gr.skip(), gr.skip(), gr.skip()
                continue
            if rec.get("done"):
                saved = f" Saved to `{out_dir}`." if out_dir else ""
                yield (texts.TRAINED.format(method=method.upper(), preset=rec["preset"], steps=rec["steps_run"],
                                            seconds=rec["seconds"], saved=saved),
                       plots.loss_figure(records, TERMS[method]), adapters_line(workbench))
                return
            records.append(rec)
            progress(rec["step"] / rec["steps"], desc=f"step {rec['step']}/{rec['steps']}")
            yield texts.TRAIN_STATUS.format(**rec), plots.loss_figure(records, TERMS[method]), gr.skip()

    inputs = [ui["dd_method"], ui["nb_steps"], ui["nb_lr"], ui["nb_rank"], ui["cb_save"],
              *ui["elm"].values(), *ui["sku"].values()]
    ui["dd_method"].change(method_defaults, ui["dd_method"], [ui["nb_steps"], ui["nb_lr"], ui["nb_rank"]],
                           api_visibility="private", queue=False)
    run = ui["btn_train"].click(train, inputs, [ui["md_train"], ui["pl_loss"], ui["md_adapters"]],
                                api_name="ui_train", api_visibility="private", concurrency_id="train")
    ui["btn_train_stop"].click(None, None, None, cancels=[run], api_visibility="private")

    @ui_errors
    def api_train(method: str = "elm", settings_json: str = "{}", save: bool = False) -> dict:  # streamed
        """Train an ELM or SKU adapter on the current preset. Streams one record per step and ends
        with the adapter's record (no history); cancelling the job stops the training and keeps the
        previous adapter."""
        import json

        try:
            values = json.loads(settings_json or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"settings_json is not valid JSON: {e.msg}.") from None
        if not isinstance(values, dict):
            raise ValueError("settings_json must be a JSON object, e.g. {\"steps\": 10}.")
        cap = settings.get("max_train_steps")
        if cap and int(values.get("steps", METHODS.get(method, METHODS["elm"])[1]().steps)) > cap:
            raise ValueError(f"This server trains at most {cap} steps per adapter.")
        get_method(method)
        make_config(method, values)  # a bad setting is refused before any work
        last = {}
        try:
            for rec in run_training(workbench, method, values, out_folder(workbench, method, save, settings)):
                if rec is not None:
                    last = rec
                yield {k: v for k, v in last.items() if k != "done"}
        except TrainingStopped as e:
            raise ValueError(str(e)) from None

    gr.api(api_train, api_name="train", concurrency_id="train")
