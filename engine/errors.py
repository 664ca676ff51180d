"""One sentence for any failure, shared by the CLI and the UI."""
from __future__ import annotations

OUT_OF_MEMORY = ("The model ran out of memory: try fewer new tokens, a shorter prompt, a smaller batch "
                 "or a smaller model.")


def error_line(exc: BaseException) -> str:
    """Out-of-memory gets its own advice; anything else its message's first line."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return OUT_OF_MEMORY
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
