"""Small HTML pieces the Compare and Showcase tabs draw: a word diff read inline (removed words
struck through, added ones highlighted) and the quick metrics as one table with the best value of
each row marked. Pure functions of plain data (the engine's diff spans and metric rows); every
piece of model text is escaped here. Styles: static/workbench.css (the report inlines its own)."""
from __future__ import annotations

import html
import math

from . import texts

# metric key -> (row title, "min" or "max": which value is best, formatter)
QUICK_ROWS = {
    "perplexity": (texts.METRIC_PERPLEXITY, "min", lambda v: f"{v:.3g}"),
    "unique_token_ratio": (texts.METRIC_UNIQUE, "max", lambda v: f"{v:.2f}"),
    "keywords": (texts.METRIC_KEYWORDS, "min", None),  # compared by count, shown with the names
}


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def _split_space(piece: str) -> tuple[str, str]:
    """Leading whitespace of a diff piece apart from its words (the marks cover words only)."""
    words = piece.lstrip()
    return piece[:len(piece) - len(words)], words


def diff_html(spans: list[tuple[str, str | None]]) -> str:
    """A word diff as one paragraph: unchanged words plain, removed ones <del>, added ones <ins>."""
    if not spans:
        return ""
    out, previous = [], None
    for piece, label in spans:
        space, words = _split_space(piece)
        if label == "added" and previous == "removed" and not space:
            space = " "  # a replaced opening word: keep the struck and the new words apart
        previous = label
        if label == "removed":
            out.append(f"{esc(space)}<del>{esc(words)}</del>")
        elif label == "added":
            out.append(f"{esc(space)}<ins>{esc(words)}</ins>")
        else:
            out.append(esc(piece))
    return f'<div class="lethe-diff">{"".join(out)}</div>'


def diff_legend() -> str:
    return (f'<div class="lethe-diff-legend">{esc(texts.DIFF_LEGEND_PREFIX)} <del>{esc(texts.DIFF_REMOVED)}</del> '
            f'<ins>{esc(texts.DIFF_ADDED)}</ins></div>')


def _number(value) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _score(key: str, row: dict | None) -> float | None:
    if row is None:
        return None
    if key == "keywords":
        return float(len(row.get("keywords") or []))
    return _number(row.get(key))


def best_of(values: list[float | None], direction: str) -> set[int]:
    """Indices holding the best value (all ties); none when every shown value is the same."""
    known = [v for v in values if v is not None]
    if len(set(known)) < 2:
        return set()
    best = min(known) if direction == "min" else max(known)
    return {i for i, v in enumerate(values) if v == best}


def _cell(key: str, row: dict | None, fmt) -> str:
    if row is None:
        return esc(texts.NO_ADAPTER_SHORT)
    if key == "keywords":
        names = row.get("keywords") or []
        return f"{len(names)}" + (f' <span class="lethe-names">({esc(", ".join(names))})</span>' if names else "")
    value = _number(row.get(key))
    return "–" if value is None else esc(fmt(value))


def metrics_table(rows: dict[str, dict], columns: list[str], titles: dict[str, str]) -> str:
    """One table: a column per variant (in `columns`; a variant absent from `rows` has no adapter),
    a row per quick metric, the best value of each row marked ★."""
    head = "".join(f"<th>{esc(titles.get(c, c))}</th>" for c in columns)
    body = []
    for key, (title, direction, fmt) in QUICK_ROWS.items():
        marked = best_of([_score(key, rows.get(c)) for c in columns], direction)
        cells = "".join(
            f'<td class="lethe-best" title="{esc(texts.BEST_IN_ROW)}">{_cell(key, rows.get(c), fmt)} ★</td>'
            if i in marked else f"<td>{_cell(key, rows.get(c), fmt)}</td>"
            for i, c in enumerate(columns))
        body.append(f'<tr><th scope="row">{esc(title)}</th>{cells}</tr>')
    return (f'<table class="lethe-metrics"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def note(text: str, kind: str = "empty") -> str:
    """A one-line placeholder or message in an HTML slot (kind: empty, or error)."""
    return f'<div class="lethe-{kind}">{esc(text)}</div>'
