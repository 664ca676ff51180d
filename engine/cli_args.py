"""The CLI's shared option builders: one option per settings-dataclass field, the model options,
and the ECO settings of a verb (the preset's ECO default, overridden by the options given)."""
from __future__ import annotations

import argparse
import json
import typing
from dataclasses import fields

from . import SELECTION_MODES, ECOConfig, Workbench

ECO_SKIP = ("entity_types", "fallback", "token_model", "seed")  # not ECO options (the seed is --eco-seed)
SELECTABLE = [m for m in SELECTION_MODES if m != "manual"]  # manual: the UI's clicked tokens


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a Hub id or a local path")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--adapter", action="append", default=[], metavar="VARIANT=DIR",
                   help="load a LoRA adapter folder as a variant, e.g. elm=path/to/adapter (repeatable)")


def _add_config_args(p: argparse.ArgumentParser, cls, skip=(), choices=None) -> None:
    """One option per field of the settings dataclass `cls` (but those in `skip`), with the field's
    default, help and choices (`choices` narrows them by field name); a bool field is a flag."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        option, text = "--" + f.name.replace("_", "-"), f.metadata.get("help", "").replace("%", "%%")
        if isinstance(f.default, bool):
            p.add_argument(option, action="store_true", help=text)
            continue
        allowed = (choices or {}).get(f.name, f.metadata.get("choices"))
        p.add_argument(option, type=_scalar(hints[f.name]), default=f.default, help=text,
                       choices=list(allowed) if allowed else None)


def _scalar(hint):
    """int for int, float for `float | None`."""
    return next((a for a in typing.get_args(hint) if a is not type(None)), hint)


def _values(args, cls, skip=()) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in skip}


def _add_eco_args(p: argparse.ArgumentParser) -> None:
    """The ECO options; left out, each takes the preset's ECO default (see `_eco_config`)."""
    _add_config_args(p, ECOConfig, skip=ECO_SKIP, choices={"selection": SELECTABLE})
    p.set_defaults(**{f.name: None for f in fields(ECOConfig) if f.name not in ECO_SKIP})
    seed = next(f for f in fields(ECOConfig) if f.name == "seed")
    p.add_argument("--eco-seed", type=_scalar(typing.get_type_hints(ECOConfig)["seed"]), default=None,
                   help=seed.metadata.get("help", "").rstrip(".") + " (default: --seed).")


def _eco_config(args, base: ECOConfig | None = None) -> ECOConfig:
    """The ECO settings of a verb: `base` (the preset's default; ECOConfig's own when None) with the
    options given on the command line over it; --eco-seed defaults to --seed."""
    seed = args.eco_seed if args.eco_seed is not None else getattr(args, "seed", 0)
    given = {k: v for k, v in _values(args, ECOConfig, ECO_SKIP).items() if v is not None}
    return ECOConfig.from_dict({**(base or ECOConfig()).to_dict(), **given, "seed": seed})


def _workbench(args, preset=None):
    wb = Workbench(model=None, preset=preset, device=args.device, dtype=args.dtype,
                   trust_remote_code=args.trust_remote_code)
    wb.load_model(args.model)
    for spec in getattr(args, "adapter", []):
        key, _, folder = spec.partition("=")
        if not folder:
            raise ValueError(f"--adapter takes VARIANT=DIR, got {spec!r}.")
        wb.load_adapter(folder, key=key.strip())
    return wb


def _numbers(text: str, what: str, cast=float) -> list:
    try:
        values = [cast(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"Could not read {what} {text!r}: give numbers separated by commas.") from None
    if not values:
        raise ValueError(f"No {what} given.")
    return values


def json_text(result, indent: int | None = None) -> str:
    """Strict JSON: a NaN or infinite number (an empty metric, say) is written as null."""
    def clean(x):
        if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(result), indent=indent, ensure_ascii=False, allow_nan=False, default=str)
