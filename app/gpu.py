"""ZeroGPU on Hugging Face Spaces: `gpu(fn)` wraps a handler with `spaces.GPU` when that package
is installed (it is on ZeroGPU Spaces) and returns it unchanged everywhere else."""
from __future__ import annotations

import functools
import importlib.util


def gpu(fn=None, *, duration: int = 120):
    if fn is None:
        return functools.partial(gpu, duration=duration)
    if importlib.util.find_spec("spaces") is None:
        return fn
    import spaces  # noqa: PLC0415 - only present on Spaces

    return spaces.GPU(duration=duration)(fn)
