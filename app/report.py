"""The Showcase page: one card per showcase prompt (its kind, ECO's gate decision, the four answers
and the forget names each says), as an HTML fragment for the app and as a self-contained HTML
report to download. Pure functions of plain data; styles come from static/report.css."""
from __future__ import annotations

import re
from pathlib import Path

from . import texts
from .examples import kind_label
from .render import esc

CSS_PATH = Path(__file__).resolve().parent.parent / "static" / "report.css"
COLUMNS = ("original", "eco", "elm", "sku")
BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(markdown_line: str) -> str:
    """One Markdown line with **bold** (the gate line) as HTML."""
    return BOLD.sub(r"<strong>\1</strong>", esc(markdown_line))


def said(row: dict | None) -> str:
    """The one metric under an answer: the forget names it says."""
    if row is None:
        return f'<span class="lethe-said lethe-said-wait">{esc(texts.SHOWCASE_WAITING)}</span>'
    names = row.get("keywords") or []
    if names:
        return f'<span class="lethe-said lethe-said-leak">{esc(texts.SHOWCASE_LEAK.format(names=", ".join(names)))}</span>'
    return f'<span class="lethe-said lethe-said-clean">{esc(texts.SHOWCASE_CLEAN)}</span>'


def answer(name: str, item: dict) -> str:
    title = f"<h4>{esc(texts.COLUMN_TITLES[name])}</h4>"
    if name in item.get("missing", ()):
        missing = texts.NO_ADAPTER.format(name=texts.COLUMN_TITLES[name])
        return f'<div class="lethe-answer" data-variant="{name}">{title}<p class="lethe-missing">{esc(missing)}</p></div>'
    text = item.get("texts", {}).get(name, "")
    return (f'<div class="lethe-answer" data-variant="{name}">{title}<p>{esc(text)}</p>'
            f'{said(item.get("metrics", {}).get(name))}</div>')


def card(item: dict, gate_line) -> str:
    """One prompt: kind, prompt, the gate's decision (once known) and the four answers."""
    kind = item["kind"]
    head = (f'<div class="lethe-card-head"><span class="lethe-kind lethe-kind-{esc(kind)}">{esc(kind_label(item))}'
            f'</span><q>{esc(item["prompt"])}</q></div>')
    gate = f'<div class="lethe-card-gate">{_inline(gate_line(item["gate"]))}</div>' if item.get("gate") else ""
    answers = "".join(answer(n, item) for n in COLUMNS)
    return f'<section class="lethe-card">{head}{gate}<div class="lethe-answers">{answers}</div></section>'


def page(items: list[dict], meta: dict, gate_line) -> str:
    """The whole page: a title, a card per prompt, a footer naming the model and the settings.
    `gate_line(gate) -> str` words a gate decision (Markdown, **bold** allowed)."""
    title = texts.SHOWCASE_TITLE.format(model=meta["model"], preset=meta["preset_title"])
    footer = texts.SHOWCASE_FOOTER.format(model=meta["model"], preset=meta["preset"], eco=meta["eco"],
                                          negation=meta["negation"], when=meta["when"])
    cards = "".join(card(item, gate_line) for item in items)
    return (f'<div class="lethe-report" id="lethe-report"><h2>{esc(title)}</h2>{cards}'
            f"<footer>{esc(footer)}</footer></div>")


def empty_page(prompts: list[dict]) -> str:
    """Before the first run: what the button will do, and on which prompts."""
    items = "".join(f"<li><strong>{esc(kind_label(p))}</strong>: {esc(p['prompt'])}</li>" for p in prompts)
    return f'<div class="lethe-report"><p>{esc(texts.SHOWCASE_EMPTY)}</p><ul>{items}</ul></div>'


def document(fragment: str, title: str) -> str:
    """A self-contained HTML file around a page fragment (styles inlined, nothing fetched)."""
    css = CSS_PATH.read_text(encoding="utf-8")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>body {{ max-width: 1200px; margin: 2em auto; padding: 0 1em; }}\n{css}</style></head>"
            f"<body>{fragment}</body></html>\n")
