"""build_app(workbench, settings) -> gr.Blocks: composes the tabs over one model queue."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from . import texts
from .examples import refreshed
from .tabs import compare as compare_tab
from .tabs import evaluate as evaluate_tab
from .tabs import model as model_tab
from .tabs import optimize as optimize_tab
from .tabs import playground as playground_tab
from .tabs import robustness as robustness_tab
from .tabs import showcase as showcase_tab
from .tabs import train as train_tab

STATIC = Path(__file__).resolve().parent.parent / "static"
CSS_PATH = STATIC / "workbench.css"
REPORT_CSS_PATH = STATIC / "report.css"  # the Showcase page, also inlined in its HTML report


def build_app(workbench, settings: dict | None = None) -> gr.Blocks:
    settings = dict(settings or {})
    settings["model_allowlist"] = model_allowlist(settings)
    # uploaded files (capsules) are removed an hour after upload, checked every 10 minutes
    with gr.Blocks(title=texts.TITLE, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# {texts.TITLE}\n{texts.TAGLINE}", elem_id="lethe-header")
        with gr.Tabs():
            play = playground_tab.build(workbench, settings)
            cmp = compare_tab.build(workbench, settings)
            show = showcase_tab.build(workbench, settings)
            opt = optimize_tab.build(workbench, settings)
            train = train_tab.build(workbench, settings)
            ev = evaluate_tab.build(workbench, settings)
            rob = robustness_tab.build(workbench, settings)
            model = model_tab.build(workbench, settings)
        playground_tab.wire(play, workbench, settings, demo=demo)
        compare_tab.wire(cmp, workbench, settings, playground=play)
        showcase_tab.wire(show, workbench, settings, playground=play)
        optimize_tab.wire(opt, workbench, settings, playground=play)
        train_tab.wire(train, workbench, settings)
        evaluate_tab.wire(ev, workbench, settings, playground=play)
        robustness_tab.wire(rob, workbench, settings, playground=play)
        model_tab.wire(model, workbench, settings)
        # a new preset brings its own calibrated ECO default into the Playground's controls
        model["dd_preset"].change(play["eco"].preset_values, model["dd_preset"], play["eco"].inputs,
                                  api_visibility="private", queue=False)
        follow_preset(model["ev_preset"], workbench, play, cmp, show)
    # model-bound events share concurrency_id="model": one at a time on the shared model
    demo.queue(default_concurrency_limit=1, max_size=settings.get("queue_size", 64))
    return demo


def follow_preset(event, workbench, play: dict, cmp: dict, show: dict) -> None:
    """After the Model tab loads another preset: its examples under both prompt boxes, its
    showcase prompts on the Showcase tab and its SKU adapter's own λ on Compare's slider."""
    examples = [ui["ex_prompts"].dataset for ui in (play, cmp) if ui["ex_prompts"] is not None]

    def update():
        return (*[refreshed(workbench.preset) for _ in examples], showcase_tab.refreshed_page(workbench),
                compare_tab.own_negation(workbench))

    event.then(update, None, [*examples, show["ht_page"], cmp["sl_negation"]], api_visibility="private", queue=False)


MAX_UPLOAD = "5mb"  # the largest file a client may upload (run capsules are at most 5 MB)


def launch_kwargs(settings: dict) -> dict:
    """Arguments for demo.launch() that belong to the app: styling and a minimal file surface."""
    return dict(css_paths=[CSS_PATH, REPORT_CSS_PATH], allowed_paths=[], ssr_mode=False, show_error=True,
                footer_links=["api", "settings"], max_file_size=settings.get("max_file_size", MAX_UPLOAD))


def model_allowlist(settings: dict) -> list[str]:
    """The models a client may load, by name: the operator's list when given, else the embedded
    default, the model the server started with and the models already in the Hugging Face cache."""
    if settings.get("model_allowlist"):
        return list(dict.fromkeys(settings["model_allowlist"]))
    from engine import cached_hub_models

    cached = cached_hub_models() if settings.get("allow_cached_models", True) else []
    return list(dict.fromkeys(["default", settings.get("model") or "default", *settings.get("allow_models", ()),
                               *cached]))
