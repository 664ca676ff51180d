"""ECO overhead on the default model, on the path the UI takes: `Workbench.generate(variant="eco")`
(gate + selection + corruption + the one decoding routine) / `Workbench.generate()` (Original).

Both generate exactly 64 new tokens greedily (min_new_tokens = 64, so the counts match); the ratio
compares whole-request wall time, measured in one run: a warm-up of each, then REPEATS
alternating plain / ECO pairs, median of each.
"""
from __future__ import annotations

import statistics
import time

from common import timed, write

from engine import ECOConfig, GenerationConfig, Workbench

PROMPT = "Who is Harry Potter?"
REPEATS = 5


def main() -> None:
    t0 = time.perf_counter()
    wb = Workbench()
    load_s = time.perf_counter() - t0
    clf = wb.classifier()  # cached, or trained once here (not timed below)
    eco = ECOConfig()
    cfg = GenerationConfig(max_new_tokens=64, min_new_tokens=64)  # exactly 64 tokens on both paths

    def plain_request():
        return wb.generate(PROMPT, cfg)

    def eco_request():
        return wb.generate(PROMPT, cfg, variant="eco", eco=eco)

    plain_request(), eco_request()  # warm-up, not timed
    plain_times, eco_times = [], []
    for _ in range(REPEATS):  # alternate the two, so drift in the machine's speed hits both alike
        t, plain = timed(plain_request, repeats=1)
        plain_times.append(t)
        t, eco_out = timed(eco_request, repeats=1)
        eco_times.append(t)
    plain_s, eco_s = statistics.median(plain_times), statistics.median(eco_times)
    pre_s, plan = timed(lambda: wb.eco_plan(PROMPT, eco), repeats=5)
    write("eco_overhead", {
        "prompt": PROMPT, "path": "Workbench.generate", "new_tokens": [plain["new_tokens"], eco_out["new_tokens"]],
        "plain_seconds": round(plain_s, 3), "eco_seconds": round(eco_s, 3),
        "eco_overhead_ratio": round(eco_s / plain_s, 3), "target_ratio": 1.05,
        "gate_select_corrupt_seconds": round(pre_s, 4), "flagged": plan.flagged,
        "plain_tokens_per_second": round(plain["new_tokens"] / plain_s, 2),
        "model_load_seconds": round(load_s, 2), "classifier_threshold": clf.threshold,
    })


if __name__ == "__main__":
    main()
