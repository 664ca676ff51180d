"""`python -m engine calibrate-eco`: search ECO's corruption space for a fluent forgetting default
on a preset's train split (engine.eco.tuning), print the front, and with --save write the chosen
setting into the preset's preset.yaml."""
from __future__ import annotations

import sys

from .eco.tuning import TuningConfig


def add_calibrate_parser(sub, add_model_args) -> None:
    t = TuningConfig()
    cal = sub.add_parser("calibrate-eco", help="find a fluent forgetting ECO default for a preset (train split)")
    cal.add_argument("--preset", default="harry_potter")
    cal.add_argument("--candidate", action="append", default=[], metavar="SELECTION/CORRUPTION/DIMS[/INIT]",
                     help="a setting to search (repeatable; default: the built-in candidates), e.g. "
                          "prompt/rand_noise_first_n/0/1 (dims 0 = all; INIT in embedding std)")
    cal.add_argument("--target", type=float, default=None, help="forget-accuracy target (default: the floor + margin)")
    cal.add_argument("--steps", type=int, default=t.steps, help="ZO steps per candidate after the grid scan")
    cal.add_argument("--grid", default=None, help="scan: multiples of each candidate's starting strength, "
                     "comma-separated (default: 0.1,0.3,1,3,10,30,100)")
    cal.add_argument("--fluency-prompts", type=int, default=t.fluency_prompts)
    cal.add_argument("--min-unique-token-ratio", type=float, default=t.min_unique_token_ratio)
    cal.add_argument("--max-perplexity-ratio", type=float, default=t.max_perplexity_ratio)
    cal.add_argument("--gate", default=t.gate, choices=["classifier", "always"],
                     help="classifier: the preset's gate as shipped; always: the corruption alone")
    cal.add_argument("--save", action="store_true", help="write the chosen setting into the preset's preset.yaml")
    cal.add_argument("--progress", action="store_true", help="print one JSON line per evaluated point on stderr")
    add_model_args(cal)


def cmd_calibrate_eco(args) -> dict:
    from .cli_args import _numbers, _workbench, json_text
    from .eco.tuning import parse_candidates

    grid = {"grid": tuple(_numbers(args.grid, "grid multiples"))} if args.grid else {}
    config = TuningConfig(**grid, target=args.target, steps=args.steps, fluency_prompts=args.fluency_prompts,
                          min_unique_token_ratio=args.min_unique_token_ratio,
                          max_perplexity_ratio=args.max_perplexity_ratio, gate=args.gate).validate()
    candidates = parse_candidates(args.candidate) if args.candidate else None  # fail before loading
    wb = _workbench(args, preset=args.preset)
    result, lines = None, []
    for event in wb.calibrate_eco(config, candidates):
        if args.progress:
            print(json_text({k: v for k, v in event.items() if k != "example"}), file=sys.stderr, flush=True)
        if event["kind"] == "point":
            lines.append(f"{event['candidate']:<42} sigma {event['strength']:>9.3g} std  forget {event['forget_accuracy']:.3f}"
                         f"  unique {event['unique_token_ratio']:.3f}  ppl x{event['perplexity_ratio']:.2f}"
                         f"  {'fluent' if event['fluent'] else '-'}")
        result = event
    if args.save:  # a search that chose nothing is still printed: it says why, and its points are the front
        result["saved"] = wb.save_eco_default(result) if result.get("chosen") else None
    if args.json:
        return result
    head = (f"forget target {result['target']:.3f} (floor {result['floor']:.3f}); Original forget "
            f"{result['original']['forget_accuracy']:.3f}, retain {result['original']['retain_accuracy']:.3f}")
    chosen = (f"chosen: {result['chosen_candidate']} at sigma {result['chosen']['strength']:.4g} std: forget "
              f"{result['forget_accuracy']:.3f}, retain {result['retain_accuracy']:.3f}"
              if result["chosen"] else f"chosen: none. {result['message']}")
    saved = (f"\nsaved: {result['saved']}" if result.get("saved") else "\nnothing saved: no setting qualified"
             if args.save else "")
    return {"text": "\n".join([head, *lines, chosen]) + saved}
