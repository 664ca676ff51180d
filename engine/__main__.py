"""Headless CLI: `python -m engine VERB ...`. Every verb prints JSON with --json.

Errors end the process with exit code 2 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import (ATTACKS, AttackConfig, ECOConfig, GenerationConfig, Workbench, ZOConfig, error_line, get_method, list_presets,
               load_capsule, load_preset, make_config, save_capsule)
from .attacks import get_attack
from .cli_args import (SELECTABLE, _add_config_args, _add_eco_args, _add_model_args,  # noqa: F401
                       _eco_config, _numbers, _values, _workbench, json_text)
from .cli_eco import add_calibrate_parser, cmd_calibrate_eco
from .cli_scale import add_scale_parser, cmd_sweep_scale
from .eco.gate import check_prompt
from .evaluation.runner import VARIANTS, check_names

ZO_SKIP = ("tolerance", "seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Lethe, headless.")
    sub = parser.add_subparsers(dest="verb", required=True)
    gen = sub.add_parser("generate", help="generate an answer to one prompt")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=96)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--no-chat", action="store_true", help="continue the raw text, no chat template")
    gen.add_argument("--variant", default="original",
                     help="original, eco, elm, sku, eco+elm or eco+sku (elm/sku need the preset's adapter)")
    gen.add_argument("--negation", type=float, default=None, help="SKU's lambda (default: the adapter's own)")
    gen.add_argument("--preset", default="harry_potter")
    _add_eco_args(gen)
    _add_model_args(gen)

    cls = sub.add_parser("classify", help="score prompts with the preset's gate classifier")
    cls.add_argument("--preset", default="harry_potter")
    src = cls.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    src.add_argument("--file", help="a text file, one prompt per line")
    cls.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    cls.add_argument("--json", action="store_true")

    sel = sub.add_parser("select", help="show which LLM tokens ECO would corrupt")
    sel.add_argument("--prompt", required=True)
    sel.add_argument("--selection", default="ner", choices=SELECTABLE)
    sel.add_argument("--entity-types", default="", help="comma-separated NER labels (default: all)")
    sel.add_argument("--token-model", default=None)
    _add_model_args(sel)

    opt = sub.add_parser("optimize", help="zeroth-order search of ECO's strength on the train probes")
    opt.add_argument("--preset", default="harry_potter")
    opt.add_argument("--metric", default="forget_probe_accuracy", choices=["forget_probe_accuracy", "forget_probe_logprob"])
    opt.add_argument("--target", type=float, default=0.25)
    _add_config_args(opt, ZOConfig, skip=ZO_SKIP)
    _add_eco_args(opt)
    _add_model_args(opt)

    sw = sub.add_parser("sweep", help="forget/retain probe accuracy against ECO strength")
    sw.add_argument("--preset", default="harry_potter")
    sw.add_argument("--strengths", required=True, help="comma-separated, e.g. 1,10,100")
    sw.add_argument("--dims-list", default=None, help="comma-separated dims to sweep too")
    sw.add_argument("--split", default="test", choices=["train", "test"])
    _add_eco_args(sw)
    _add_model_args(sw)

    ev = sub.add_parser("evaluate", help="metrics for variants on a preset split; writes a run capsule")
    ev.add_argument("--preset", default="harry_potter")
    ev.add_argument("--variants", default="original,eco")
    ev.add_argument("--split", default="test", choices=["train", "test", "all"])
    ev.add_argument("--metrics", default=None, help="comma-separated metric names (default: the standard set)")
    ev.add_argument("--probes", default=None, help="a JSONL file of forget probes in the preset format")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--capsule", default=None, help="where to write the run capsule (default: runs/<time>.json)")
    _add_eco_args(ev)
    _add_model_args(ev)

    at = sub.add_parser("attack", help="metrics of variants under prompt and weight attacks; writes a capsule")
    at.add_argument("--preset", default="harry_potter")
    at.add_argument("--variants", default="original,eco")
    at.add_argument("--attacks", default="nameless,obfuscate,jailbreak,smuggle,translate,few_shot",
                    help=f"comma-separated, from: {', '.join(ATTACKS[1:])} (clean always runs first)")
    at.add_argument("--split", default="test", choices=["train", "test"])
    at.add_argument("--batch-size", type=int, default=32)
    at.add_argument("--capsule", default=None, help="where to write the run capsule (default: runs/<time>.json)")
    at.add_argument("--progress", action="store_true", help="print one JSON line per finished attack on stderr")
    _add_config_args(at, AttackConfig)
    _add_eco_args(at)
    _add_model_args(at)

    rp = sub.add_parser("replay", help="re-run a run capsule and compare its numbers")
    rp.add_argument("capsule")
    _add_model_args(rp)

    tr = sub.add_parser("train", help="train an ELM or SKU adapter on a preset (deterministic from --seed)")
    tr.add_argument("--method", required=True, help="elm or sku")
    tr.add_argument("--preset", default="harry_potter")
    tr.add_argument("--steps", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--rank", type=int, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="any other method setting, e.g. --set eta=100 (repeatable)")
    tr.add_argument("--out", default=None, help="adapter folder (default: presets/<preset>/adapters/<method>)")
    tr.add_argument("--progress", action="store_true", help="print one JSON line per step on stderr")
    _add_model_args(tr)

    add_calibrate_parser(sub, _add_model_args)
    add_scale_parser(sub, _add_model_args, _add_eco_args)

    presets = sub.add_parser("presets", help="list the presets and their sizes")
    presets.add_argument("--json", action="store_true")
    return parser


def cmd_generate(args) -> dict:
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
        seed=args.seed, stop=tuple(args.stop), chat=not args.no_chat,
    ).validate()
    check_prompt(args.prompt)  # before the model loads: a bad prompt costs nothing
    eco = _eco_config(args) if args.variant.startswith("eco") else None  # a bad option fails here
    wb = _workbench(args, preset=args.preset if args.variant != "original" else None)
    if eco is not None:
        eco = _eco_config(args, wb.eco_default()).validate(wb.lm.model.config.hidden_size)
    if args.negation is not None:
        wb.set_negation(args.negation)
    return wb.generate(args.prompt, config, variant=args.variant, eco=eco)


def cmd_classify(args) -> dict:
    from pathlib import Path

    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise ValueError(f"No such file: {args.file}.")
        prompts = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        if not prompts:
            raise ValueError(f"{args.file} has no prompts (one per line).")
    else:
        prompts = args.prompt
    wb = Workbench(model=None, preset=args.preset)
    return wb.classify(prompts, threshold=args.threshold)


def cmd_select(args) -> dict:
    wb = _workbench(args)
    types = tuple(t.strip() for t in args.entity_types.split(",") if t.strip())
    cfg = ECOConfig(selection=args.selection, entity_types=types, token_model=args.token_model)
    out = wb.select_tokens(args.prompt, cfg)
    return {k: out[k] for k in ("tokens", "selected", "labels", "positions", "entities")}


def cmd_optimize(args) -> dict:
    wb = _workbench(args, preset=args.preset)
    eco = _eco_config(args, wb.eco_default()).validate(wb.lm.model.config.hidden_size)
    zc = ZOConfig(**_values(args, ZOConfig, ZO_SKIP)).validate()
    steps = []
    for rec in wb.optimize(eco, zc, metric=args.metric, target=args.target):
        steps.append(rec)
        if not args.json:
            print(f"step {rec['step']}: sigma={rec['theta']:.4g} objective={rec['objective']:.3f}", file=sys.stderr)
    best = steps[-1] if steps else {}
    test = wb.probe_accuracy("forget", "test", eco.with_strength(best.get("best_strength", eco.strength)))
    return {"steps": steps, "best_strength": best.get("best_strength"), "best_objective": best.get("best_objective"),
            "test_forget_accuracy_at_best": test["accuracy"]}


def cmd_sweep(args) -> dict:
    strengths = _numbers(args.strengths, "strengths")
    dims = _numbers(args.dims_list, "dims", int) if args.dims_list else None
    wb = _workbench(args, preset=args.preset)
    eco = _eco_config(args, wb.eco_default()).validate(wb.lm.model.config.hidden_size)
    return {"points": wb.sweep(strengths, eco, dims=dims, split=args.split)}


def cmd_evaluate(args) -> dict:
    import time
    from pathlib import Path

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    extra = [spec.partition("=")[0].strip() for spec in args.adapter]  # checked before the model loads
    check_names(variants, metrics or [], known=(*VARIANTS, *extra, *(f"eco+{k}" for k in extra)))
    if args.probes and not Path(args.probes).is_file():
        raise ValueError(f"No such probes file: {args.probes}.")
    wb = _workbench(args, preset=args.preset)
    eco = _eco_config(args, wb.eco_default()).validate(wb.lm.model.config.hidden_size)
    result = wb.evaluate(variants, metrics, args.split, eco, probes_file=args.probes, batch_size=args.batch_size)
    path = Path(args.capsule or Path("runs") / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    save_capsule(wb.capsule(result), path)
    return {"rows": result.rows(), "capsule": str(path), "seconds": round(result.seconds, 2)}


def cmd_attack(args) -> dict:
    import time
    from pathlib import Path

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    for name in attacks:
        get_attack(name)  # an unknown attack fails before the model loads
    config = AttackConfig.from_dict(_values(args, AttackConfig))
    wb = _workbench(args, preset=args.preset)
    eco = _eco_config(args, wb.eco_default()).validate(wb.lm.model.config.hidden_size)
    progress = (lambda r: print(json_text(r), file=sys.stderr, flush=True)) if args.progress else None
    result = wb.attack(variants, attacks, args.split, eco, config, batch_size=args.batch_size, on_progress=progress)
    path = Path(args.capsule or Path("runs") / f"attack-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    save_capsule(wb.capsule(result), path)
    out = {"rows": result.table.to_dict(orient="records"), "capsule": str(path), "seconds": round(result.seconds, 2)}
    return out if args.json else {"text": attack_table(result) + f"\ncapsule: {path}"}


def attack_table(result) -> str:
    """One variants x attacks grid per metric, each cell value (n)."""
    blocks = []
    for metric in ("forget_probe_accuracy", "keyword_leak_rate", "forget_recall", "retain_probe_accuracy",
                   "retain_fpr"):
        t = result.table[result.table.metric == metric]
        if t.empty:
            continue
        cells = t.assign(cell=[f"{v:.3f} ({n})" for v, n in zip(t.value, t.n)])
        grid = cells.pivot(index="variant", columns="attack", values="cell")
        grid = grid.reindex(index=[v for v in result.settings["variants"] if v in grid.index],
                            columns=[a for a in result.settings["attacks"] if a in grid.columns]).fillna("")
        blocks.append(f"{metric}\n{grid.to_string()}")
    return "\n\n".join(blocks)


def cmd_replay(args) -> dict:
    cap = load_capsule(args.capsule)
    wb = _workbench(args, preset=cap["settings"].get("preset") or cap["preset"]["name"])
    return wb.replay(cap)


def _setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ValueError(f"--set takes NAME=VALUE, got {text!r}.")
    name, value = (x.strip() for x in text.split("=", 1))
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def cmd_train(args) -> dict:
    get_method(args.method)
    settings = dict(_setting(x) for x in args.set)
    for key in ("steps", "lr", "rank"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["seed"] = args.seed
    make_config(args.method, settings)  # fail on a bad setting before loading anything
    preset = load_preset(args.preset)
    out = args.out or str(preset.root / "adapters" / args.method.lower())
    wb = _workbench(args, preset=args.preset)

    def progress(rec):
        print(json_text(rec), file=sys.stderr, flush=True)

    return wb.train(args.method, settings, on_step=progress if args.progress else None, out_dir=out)


def cmd_presets(args) -> dict:
    return {"presets": [load_preset(n).summary() for n in list_presets()]}


COMMANDS = {"generate": cmd_generate, "classify": cmd_classify, "select": cmd_select,
            "optimize": cmd_optimize, "sweep": cmd_sweep, "evaluate": cmd_evaluate, "attack": cmd_attack, "replay": cmd_replay,
            "presets": cmd_presets, "train": cmd_train, "calibrate-eco": cmd_calibrate_eco,
            "sweep-scale": cmd_sweep_scale}


def _quiet() -> None:
    """Keep stdout for results: library progress bars and load reports stay off."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet()
    try:
        result = COMMANDS[args.verb](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback: the message is written for people
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json_text(result))
    elif "text" in result:
        print(result["text"])
    else:
        print(json_text(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
