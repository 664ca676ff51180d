"""`python -m engine sweep-scale`: the forget-retain front of a preset's ELM or SKU adapter over its
inference-time scale (SKU: lambda), with Original and ECO as references (Workbench.sweep_scale);
prints a table, or JSON with --json."""
from __future__ import annotations

import sys

from .evaluation.scale_front import DEFAULT_SCALES, MAX_SCALES, check_request


def add_scale_parser(sub, add_model_args, add_eco_args) -> None:
    sc = sub.add_parser("sweep-scale", help="forget/retain front of the ELM or SKU adapter over its scale "
                                            "(SKU: lambda), with Original and ECO as references")
    sc.add_argument("--preset", default="harry_potter")
    sc.add_argument("--method", required=True, help="elm or sku")
    sc.add_argument("--scales", default=None,
                    help=f"comma-separated, at most {MAX_SCALES}, each 0-100 (SKU: lambda; the adapter's own scale "
                         f"is always added); default: " + "; ".join(
                             f"{m} {','.join(f'{s:g}' for s in v)}" for m, v in DEFAULT_SCALES.items()))
    sc.add_argument("--split", default="test", help="train or test")
    sc.add_argument("--batch-size", type=int, default=32)
    sc.add_argument("--progress", action="store_true", help="print one JSON line per measured point on stderr")
    add_eco_args(sc)  # the ECO reference: the preset's ECO default, overridden by the options given
    add_model_args(sc)


def cmd_sweep_scale(args) -> dict:
    from .cli_args import _eco_config, _workbench, json_text

    default = DEFAULT_SCALES.get(str(args.method).strip().lower(), ())
    method, scales = check_request(args.method, args.scales if args.scales is not None else list(default),
                                   args.split)  # a bad request fails before the model loads
    wb = _workbench(args, preset=args.preset)
    eco = _eco_config(args, wb.eco_default()).validate(wb.lm.model.config.hidden_size)
    progress = (lambda r: print(json_text(r), file=sys.stderr, flush=True)) if args.progress else None
    result = wb.sweep_scale(method, scales, args.split, on_point=progress, eco=eco, batch_size=args.batch_size)
    return result if args.json else {"text": front_table(result)}


def front_table(result: dict) -> str:
    """The front as text: the references, then one row per scale with the shipped one marked."""
    knob = result["knob"]
    head = (f"{result['method'].upper()} on {result['preset']}, {result['split']} split: {knob} "
            f"(shipped {result['shipped_scale']:g}) against Original and ECO")
    rows = [f"{'point':<14}{knob:>8}{'forget acc':>12}{'retain acc':>12}{'retain ppl':>12}"]
    for r in result["references"] + result["points"]:
        label = {"original": "Original", "eco": "ECO"}.get(r["name"], r["name"].upper())
        label += "  shipped" if r["shipped"] else ""
        scale = "-" if r["scale"] is None else f"{r['scale']:g}"
        rows.append(f"{label:<14}{scale:>8}{r['forget_accuracy']:>12.3f}{r['retain_accuracy']:>12.3f}"
                    f"{r['retain_perplexity']:>12.2f}")
    n = result["references"][0] if result["references"] else {}
    tail = (f"n: {n.get('n_forget')} forget probes, {n.get('n_retain')} retain probes, "
            f"{n.get('n_passages')} retain passages; {result['seconds']:g} s")
    e = result["eco"]
    eco = (f"ECO: {e['corruption']}, dims {e['dims'] or 'all'}, strength {e['strength']:g} {e['strength_unit']}, "
           f"selection {e['selection']}, gate {e['gate']}")
    stopped = "\nstopped before the last point" if result["stopped"] else ""
    return "\n".join([head, *rows, tail, eco]) + stopped
