"""Checks for numbers and names where they enter Lethe (UI, API, CLI), before any model work.

Each check returns the clean value or raises ValueError with one sentence saying what is wrong
and what is allowed. This module knows nothing about models, presets or the UI.
"""
from __future__ import annotations

import math
import re

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
MAX_LIST = 64  # values in one sweep list


def finite(name: str, value, lo: float | None = None, hi: float | None = None) -> float:
    """A real number, not NaN or infinite, within [lo, hi] when given."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {x:g}.")
    return x


def integer(name: str, value, lo: int, hi: int) -> int:
    """A whole number within [lo, hi] (a float with a fraction is refused, not rounded)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}.")
        value = int(value)
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}.") from None
    if not lo <= n <= hi:
        raise ValueError(f"{name} must be between {lo:,} and {hi:,}, got {n:,}.")
    return n


def seed(value, name: str = "seed") -> int:
    return integer(name, value, 0, MAX_SEED)


def threshold(value) -> float | None:
    """A gate threshold in [0, 1], or None for the calibrated one."""
    return None if value is None else finite("threshold", value, 0.0, 1.0)


def number_list(name: str, values, lo: float, hi: float, whole: bool = False, limit: int = MAX_LIST) -> list:
    """A non-empty list of numbers (or "1,10,100" text), each checked, at most `limit` of them."""
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"Give at least one value for {name}, e.g. 1,10,100.")
    if len(values) > limit:
        raise ValueError(f"{name} has {len(values)} values; the limit is {limit}.")
    if whole:
        return [integer(name, v.strip() if isinstance(v, str) else v, int(lo), int(hi)) for v in values]
    return [finite(name, v.strip() if isinstance(v, str) else v, lo, hi) for v in values]


def text(name: str, value, max_chars: int) -> str:
    """A string that the tokenizer and JSON can carry: no NUL, no lone surrogate, not too long."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}.")
    if len(value) > max_chars:
        raise ValueError(f"{name} has {len(value):,} characters; the limit is {max_chars:,}.")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character; remove it and try again.")
    if re.search("[\ud800-\udfff]", value):
        raise ValueError(f"{name} contains an unpaired surrogate character, which is not valid text.")
    return value


def plain_name(kind: str, value, known: list[str]) -> str:
    """One of `known`, given by name. Anything else, a path included, gets the same sentence,
    which lists the known names and never says whether such a file or folder exists."""
    if isinstance(value, str) and value in known:
        return value
    shown = repr(value)[:80]
    raise ValueError(f"Unknown {kind} {shown}; choose one of: {', '.join(known) or 'none'}.")


def negation(value) -> float:
    """SKU's lambda: how much of the learned task vector is subtracted (0 = Original, 1 = the paper)."""
    return finite("lambda", value, 0, 100)
