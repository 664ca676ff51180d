"""Batched vs one-by-one evaluation on the probe sets of the default model (Original and ECO).

The same metrics run twice in one process, batch_size=32 and batch_size=1; the ratio is
one-by-one seconds / batched seconds (target >= 3), and the values must agree.
"""
from __future__ import annotations

import time

from common import write

from engine import ECOConfig, Workbench, evaluate

METRICS = ["forget_probe_accuracy", "retain_probe_accuracy"]


def main() -> None:
    wb = Workbench()
    eco = ECOConfig(gate="always")  # no classifier needed: the gate is not what is timed here
    out = {}
    for batch in (32, 1):
        t0 = time.perf_counter()
        res = evaluate(wb.lm, wb.preset, ["original", "eco"], METRICS, "test", eco, batch_size=batch)
        out[batch] = (time.perf_counter() - t0, res.table.value.tolist())
    write("eval_batching", {
        "metrics": METRICS, "variants": ["original", "eco"], "batched_seconds": round(out[32][0], 2),
        "one_by_one_seconds": round(out[1][0], 2), "speedup": round(out[1][0] / out[32][0], 2),
        "target_speedup": 3.0, "values_agree": all(abs(a - b) < 1e-6 for a, b in zip(out[32][1], out[1][1])),
    })


if __name__ == "__main__":
    main()
