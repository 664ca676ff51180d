"""Shared helpers for Lethe's benchmarks: timing and writing results JSON."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
RESULTS = ROOT / "benchmarks" / "results.json"


def timed(fn, repeats: int = 3):
    """Median seconds over `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def write(section: str, data: dict) -> None:
    """Merge one benchmark's results into benchmarks/results.json (atomic replace)."""
    current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    current[section] = {**data, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(json.dumps({section: current[section]}, indent=2))
