"""Plotly figures from engine records: pure functions of plain data."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

LAYOUT = dict(template="plotly_white", height=340, margin=dict(l=50, r=20, t=40, b=40),
              legend=dict(orientation="h", y=-0.2))


def zo_figure(records: list[dict]) -> go.Figure:
    """Strength (left axis) and objective |metric - target| (right axis) per ZO step."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    steps = [r["step"] for r in records]
    fig.add_trace(go.Scatter(x=steps, y=[r["theta"] for r in records], name="strength σ", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=steps, y=[r["objective"] for r in records], name="objective", mode="lines+markers",
                             line=dict(dash="dot")), secondary_y=True)
    fig.update_layout(title="Zeroth-order optimisation", xaxis_title="step", **LAYOUT)
    fig.update_yaxes(title_text="σ", secondary_y=False)
    fig.update_yaxes(title_text="|metric − target|", secondary_y=True)
    return fig


def sweep_figure(points: list[dict]) -> go.Figure:
    """Forget and retain probe accuracy against strength (one line pair per dims value)."""
    fig = go.Figure()
    for d in sorted({p["dims"] for p in points}):
        pts = sorted((p for p in points if p["dims"] == d), key=lambda p: p["strength"])
        xs = [p["strength"] for p in pts]
        fig.add_trace(go.Scatter(x=xs, y=[p["forget_accuracy"] for p in pts], mode="lines+markers",
                                 name=f"forget (dims {d})"))
        fig.add_trace(go.Scatter(x=xs, y=[p["retain_accuracy"] for p in pts], mode="lines+markers",
                                 name=f"retain (dims {d})", line=dict(dash="dash")))
    if points:
        fig.add_hline(y=points[0]["original_forget_accuracy"], line=dict(color="gray", width=1),
                      annotation_text="Original forget")
    fig.add_hline(y=0.25, line=dict(color="red", width=1, dash="dot"), annotation_text="chance")
    fig.update_layout(title="Dose-response: probe accuracy vs strength", xaxis_title="strength σ",
                      yaxis_title="probe accuracy", yaxis_range=[0, 1.05], **LAYOUT)
    if points and min(p["strength"] for p in points) > 0:
        fig.update_xaxes(type="log")
    return fig


def metric_bars(rows: list[dict]) -> go.Figure:
    """Grouped bars of forget vs retain metrics per variant (one bar group per metric)."""
    fig = go.Figure()
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pts = [r for r in rows if r["variant"] == variant and r["value"] == r["value"]]
        fig.add_trace(go.Bar(name=variant, x=[r["metric"] for r in pts], y=[r["value"] for r in pts]))
    fig.update_layout(title="Metrics per variant", barmode="group", **LAYOUT)
    return fig


def forget_retain_scatter(rows: list[dict], forget: str = "forget_probe_accuracy",
                          retain: str = "retain_probe_accuracy") -> go.Figure:
    """Each variant at (forget metric, retain metric): lower-right (forgets, keeps) is better."""
    by = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["metric"]] = r["value"]
    fig = go.Figure()
    for variant, m in by.items():
        if forget in m and retain in m:
            fig.add_trace(go.Scatter(x=[1 - m[forget]], y=[m[retain]], mode="markers+text", text=[variant],
                                     textposition="top center", marker=dict(size=14), name=variant))
    fig.update_layout(title="Forgetting vs keeping (lower-right is better: forgets more, keeps more)",
                      xaxis_title=f"1 − {forget}", yaxis_title=retain, xaxis_range=[-0.05, 1.05],
                      yaxis_range=[1.05, -0.05], **LAYOUT)  # reversed: keeping more is lower
    return fig


def loss_figure(records: list[dict], terms: list[str]) -> go.Figure:
    """One line per loss term (and the total) against the optimiser step."""
    fig = go.Figure()
    steps = [r["step"] for r in records]
    for term in ["loss", *terms]:
        if records and term in records[0]:
            fig.add_trace(go.Scatter(x=steps, y=[r.get(term) for r in records], mode="lines",
                                     name="total" if term == "loss" else term.replace("_", " "),
                                     line=dict(width=3 if term == "loss" else 1.5)))
    fig.update_layout(title="Training losses (weighted)", xaxis_title="step", yaxis_title="loss", **LAYOUT)
    return fig


def _records(table) -> list[dict]:
    """Rows of an attack table given as a DataFrame or as a list of dicts."""
    return table.to_dict(orient="records") if hasattr(table, "to_dict") else list(table)


def attack_heatmap(table, variants: list[str], attacks: list[str],
                   metric: str = "forget_probe_accuracy") -> go.Figure:
    """Variants (rows) x attacks (columns, clean first) coloured by one metric: green is low, where
    the unlearning holds; each cell shows its value."""
    values = {(r["variant"], r["attack"]): r["value"] for r in _records(table) if r["metric"] == metric}
    cols = ["clean", *[a for a in attacks if a != "clean"]]
    cols = [a for a in cols if any((v, a) in values for v in variants)]
    rows = [v for v in variants if any((v, a) in values for a in cols)]
    z = [[values.get((v, a)) for a in cols] for v in rows]
    text = [["–" if x is None or x != x else f"{x:.2f}" for x in line] for line in z]
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, text=text, texttemplate="%{text}", zmin=0, zmax=1,
                               colorscale="RdYlGn_r", colorbar=dict(title=metric.replace("_", " "))))
    fig.update_layout(title=f"{metric.replace('_', ' ')} under attack (lower = the unlearning holds)",
                      xaxis_title="attack", **{**LAYOUT, "height": max(260, 60 * len(rows) + 140)})
    fig.update_yaxes(autorange="reversed")
    return fig


def gate_recall_bars(table, attacks: list[str] | None = None, metric: str = "forget_recall") -> go.Figure:
    """ECO's gate recall on the attacked forget prompts, one bar group per attack (clean first),
    one bar per ECO variant: a gate an attack slips past drops here."""
    rows = [r for r in _records(table) if r["metric"] == metric and r["value"] == r["value"]]
    order = ["clean", *[a for a in (attacks or dict.fromkeys(r["attack"] for r in rows)) if a != "clean"]]
    fig = go.Figure()
    for variant in dict.fromkeys(r["variant"] for r in rows):
        got = {r["attack"]: r["value"] for r in rows if r["variant"] == variant}
        xs = [a for a in order if a in got]
        fig.add_trace(go.Bar(name=variant, x=xs, y=[got[a] for a in xs]))
    fig.update_layout(title="Gate recall on attacked forget prompts (higher = the gate still fires)",
                      barmode="group", yaxis_title=metric.replace("_", " "), yaxis_range=[0, 1.05], **LAYOUT)
    return fig


def calibration_front(points: list[dict], reference: dict | None = None, chosen: dict | None = None,
                      min_unique: float | None = None) -> go.Figure:
    """ECO calibration's front: forget accuracy (x) against the answers' unique-token ratio (y), one
    colour per candidate, filled markers where the answers were fluent; Original and the chosen
    setting marked. Lower-left forgets; higher keeps answers varied."""
    fig = go.Figure()
    for cand in dict.fromkeys(p["candidate"] for p in points):
        pts = [p for p in points if p["candidate"] == cand]
        fig.add_trace(go.Scatter(
            x=[p["forget_accuracy"] for p in pts], y=[p["unique_token_ratio"] for p in pts], mode="markers",
            name=cand, marker=dict(size=9, symbol=["circle" if p["fluent"] else "circle-open" for p in pts]),
            text=[f"σ {p['strength']:.3g} std · perplexity ×{p['perplexity_ratio']:.2f}" for p in pts],
            hovertemplate="%{text}<br>forget %{x:.3f} · unique %{y:.3f}<extra></extra>"))
    if reference:
        o = reference["original"]
        fig.add_trace(go.Scatter(x=[o["forget_accuracy"]], y=[o["unique_token_ratio"]], mode="markers+text",
                                 name="Original", text=["Original"], textposition="top center",
                                 marker=dict(size=12, symbol="diamond", color="black")))
        fig.add_vline(x=reference["target"], line=dict(color="red", width=1, dash="dot"),
                      annotation_text="forget target")
    if chosen:
        fig.add_trace(go.Scatter(x=[chosen["forget_accuracy"]], y=[chosen["unique_token_ratio"]], mode="markers",
                                 name="chosen", marker=dict(size=18, symbol="star", color="gold",
                                                            line=dict(color="black", width=1))))
    if min_unique is not None:
        fig.add_hline(y=min_unique, line=dict(color="gray", width=1, dash="dash"), annotation_text="fluency floor")
    fig.update_layout(title="ECO calibration: forget accuracy vs fluency", xaxis_title="forget probe accuracy",
                      yaxis_title="unique-token ratio of answers", xaxis_range=[0, 1.05], **LAYOUT)
    return fig


def scale_front(result: dict) -> go.Figure:
    """An adapter's forget-retain front over its inference-time scale (SKU: λ): forget probe accuracy
    (x) against retain probe accuracy (y), the curve in scale order, the shipped scale starred,
    Original and ECO as reference points. Upper-left forgets and keeps."""
    knob = "λ" if result.get("knob") == "lambda" else "scale"
    pts = result.get("points", [])
    fig = go.Figure()
    if pts:
        fig.add_trace(go.Scatter(
            x=[p["forget_accuracy"] for p in pts], y=[p["retain_accuracy"] for p in pts], mode="lines+markers+text",
            name=result["method"].upper(), text=[f"{knob} {p['scale']:g}" for p in pts], textposition="bottom right",
            customdata=[p["retain_perplexity"] for p in pts],
            hovertemplate="%{text}<br>forget %{x:.3f} · retain %{y:.3f}<br>retain perplexity %{customdata:.2f}"
                          "<extra></extra>"))
    shipped = [p for p in pts if p.get("shipped")]
    if shipped:
        s = shipped[0]
        fig.add_trace(go.Scatter(x=[s["forget_accuracy"]], y=[s["retain_accuracy"]], mode="markers",
                                 name=f"shipped ({knob} {s['scale']:g})",
                                 marker=dict(size=18, symbol="star", color="gold", line=dict(color="black", width=1))))
    for ref, symbol in zip(result.get("references", []), ("diamond", "square")):
        fig.add_trace(go.Scatter(x=[ref["forget_accuracy"]], y=[ref["retain_accuracy"]], mode="markers+text",
                                 name=ref["name"].upper() if ref["name"] == "eco" else ref["name"].capitalize(),
                                 text=[ref["name"].upper() if ref["name"] == "eco" else "Original"],
                                 textposition="top center", marker=dict(size=12, symbol=symbol, color="black")))
    fig.add_vline(x=0.25, line=dict(color="red", width=1, dash="dot"), annotation_text="chance")
    fig.update_layout(title=f"{result.get('method', '').upper()} front over its {knob} "
                            "(upper-left: forgets and keeps)", xaxis_title="forget probe accuracy",
                      yaxis_title="retain probe accuracy", xaxis_range=[0, 1.05], yaxis_range=[0, 1.05], **LAYOUT)
    return fig
