"""ECO overhead on the default model, on the paths the UI and the API take, with the preset's ECO
default (its calibrated `eco:` block):

- one variant: `Workbench.generate(variant="eco")`, which iterates `Workbench.stream` token by token
  as the Playground's ECO-only view and the API's /generate do (gate + selection + corruption + the
  one decoding routine), against `Workbench.generate()` (Original);
- side by side: `Workbench.stream_many([original, eco])`, the Playground's two columns, against
  `stream_many([original, original])`.

Every request generates exactly 64 new tokens greedily per row (min_new_tokens = 64, so the counts
match); each ratio compares whole-request wall time, measured in one run: a warm-up of each, then
REPEATS plain / ECO pairs, in turn plain first and ECO first (so a drift in the machine's speed
cannot favour either), and the median of the pairs' own ratios, next to the ratio of the medians.
The spread of the pair ratios is written too: on a shared or throttled machine it shows how far
one pair can stray.
"""
from __future__ import annotations

import statistics
import time

from common import timed, write

from engine import GenerationConfig, Workbench

PROMPT = "Who is Harry Potter?"
REPEATS = 8


def main() -> None:
    t0 = time.perf_counter()
    wb = Workbench()
    load_s = time.perf_counter() - t0
    clf = wb.classifier()  # cached, or trained once here (not timed below)
    eco = wb.eco_default()
    cfg = GenerationConfig(max_new_tokens=64, min_new_tokens=64)  # exactly 64 tokens on both paths

    def plain_request():
        return wb.generate(PROMPT, cfg)

    def eco_request():
        return wb.generate(PROMPT, cfg, variant="eco", eco=eco)

    def pair(rows):
        return lambda: list(wb.stream_many(PROMPT, rows, cfg))[-1]

    plain_pair, eco_pair = pair([("original", None), ("original", None)]), pair([("original", None), ("eco", eco)])
    plain_s, eco_s, ratios, plain, eco_out = alternate(plain_request, eco_request)
    pair_plain_s, pair_eco_s, pair_ratios, _, _ = alternate(plain_pair, eco_pair)
    pre_s, plan = timed(lambda: wb.eco_plan(PROMPT, eco), repeats=5)
    write("eco_overhead", {
        "prompt": PROMPT, "path": "Workbench.generate (iterates Workbench.stream)", "eco": eco.to_dict(),
        "side_by_side_path": "Workbench.stream_many([original, eco]) vs [original, original]",
        "side_by_side_plain_seconds": round(pair_plain_s, 3), "side_by_side_eco_seconds": round(pair_eco_s, 3),
        "side_by_side_overhead_ratio": round(statistics.median(pair_ratios), 3),
        "side_by_side_ratio_of_medians": round(pair_eco_s / pair_plain_s, 3),
        "side_by_side_pair_ratios": [round(r, 3) for r in pair_ratios],
        "new_tokens": [plain["new_tokens"], eco_out["new_tokens"]],
        "plain_seconds": round(plain_s, 3), "eco_seconds": round(eco_s, 3),
        "eco_overhead_ratio": round(statistics.median(ratios), 3), "ratio_of_medians": round(eco_s / plain_s, 3),
        "pair_ratios": [round(r, 3) for r in ratios], "repeats": REPEATS, "target_ratio": 1.05,
        "gate_select_corrupt_seconds": round(pre_s, 4), "flagged": plan.flagged,
        "plain_tokens_per_second": round(plain["new_tokens"] / plain_s, 2),
        "model_load_seconds": round(load_s, 2), "classifier_threshold": clf.threshold,
    })


def alternate(plain, eco):
    """A warm-up of each, then REPEATS pairs, plain first in even pairs and ECO first in odd ones:
    median seconds of each, each pair's ECO / plain ratio, and their last results."""
    plain(), eco()
    times, out, ratios = {plain: [], eco: []}, {}, []
    for i in range(REPEATS):
        for run in (plain, eco) if i % 2 == 0 else (eco, plain):
            t, out[run] = timed(run, repeats=1)
            times[run].append(t)
        ratios.append(times[eco][-1] / times[plain][-1])
    return statistics.median(times[plain]), statistics.median(times[eco]), ratios, out[plain], out[eco]


if __name__ == "__main__":
    main()
