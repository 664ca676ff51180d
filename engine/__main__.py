"""Headless CLI: `python -m engine VERB ...`. Every verb prints JSON with --json.

Errors end the process with exit code 2 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a Hub id or a local path")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


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
    _add_model_args(gen)
    presets = sub.add_parser("presets", help="list the presets and their sizes")
    presets.add_argument("--json", action="store_true")
    return parser


def cmd_generate(args) -> dict:
    from .generation import GenerationConfig
    from .workbench import Workbench

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
        seed=args.seed, stop=tuple(args.stop), chat=not args.no_chat,
    ).validate()
    wb = Workbench(model=None, preset=None, device=args.device, dtype=args.dtype,
                   trust_remote_code=args.trust_remote_code)
    from .workbench import check_prompt

    check_prompt(args.prompt)
    wb.load_model(args.model)
    return wb.generate(args.prompt, config)


def cmd_presets(args) -> dict:
    from .presets import list_presets, load_preset

    return {"presets": [load_preset(n).summary() for n in list_presets()]}


COMMANDS = {"generate": cmd_generate, "presets": cmd_presets}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = COMMANDS[args.verb](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback: the message is written for people
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, ensure_ascii=False))
    elif "text" in result:
        print(result["text"])
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
