"""ECO's shipped default per preset (the preset.yaml `eco:` block found by `calibrate-eco` on the train
split), measured once on the test split against the Original: forget/retain probe accuracy,
keyword leak rate, and the fluency of the answers to forget prompts (unique-token ratio, perplexity
under the base model). For harry_potter it also records "Who is Harry Potter?" answered by the
Original, the default and the reference demo setting (NER, dims 1, σ 100 absolute).
"""
from __future__ import annotations

import argparse
import json
import time

from common import RESULTS, write

from engine import ECOConfig, GenerationConfig, Workbench

METRICS = ("forget_probe_accuracy", "retain_probe_accuracy", "keyword_leak_rate", "forget_unique_token_ratio",
           "forget_output_perplexity")
TARGETS = {"forget_probe_accuracy": "≤ 0.35", "retain_probe_accuracy": "within 0.02 of Original",
           "keyword_leak_rate": "≤ 0.05", "forget_unique_token_ratio": "≥ 0.60",
           "forget_output_perplexity": "≤ 1.5 × Original"}
DEMO = "Who is Harry Potter?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="harry_potter,star_wars,chemistry")
    args = ap.parse_args()
    t0 = time.perf_counter()
    wb, out = Workbench(), {}
    for name in args.presets.split(","):
        wb.load_preset(name)
        eco = wb.eco_default()
        result = wb.evaluate(("original", "eco"), METRICS, split="test", eco=eco)
        rows = {(r["variant"], r["metric"]): (r["value"], r["n"]) for r in result.table.to_dict(orient="records")}
        table = {m: {v: {"value": rows[(v, m)][0], "n": rows[(v, m)][1]} for v in ("original", "eco")} for m in METRICS}
        o, e = table["forget_output_perplexity"]["original"]["value"], table["forget_output_perplexity"]["eco"]["value"]
        out[name] = {"eco": eco.to_dict(), "table": table, "perplexity_ratio": e / o,
                     "calibration": wb.preset.meta.get("eco_calibration")}
        if name == "harry_potter":
            g = GenerationConfig(max_new_tokens=64)
            ref = ECOConfig(gate="always", selection="ner", corruption="rand_noise_first_n", dims=1, strength=100.0)
            out[name]["demo"] = {"prompt": DEMO, "original": wb.generate(DEMO, g)["text"],
                                 "eco_default": wb.generate(DEMO, g, variant="eco", eco=eco)["text"],
                                 "reference_ner_dims1_sigma100": wb.generate(DEMO, g, variant="eco", eco=ref)["text"]}
        print(name, {m: (round(t["original"]["value"], 3), round(t["eco"]["value"], 3)) for m, t in table.items()},
              flush=True)
    # a run over some presets keeps the others' earlier figures
    earlier = json.loads(RESULTS.read_text()).get("eco_default", {}) if RESULTS.is_file() else {}
    out = {**earlier.get("presets", {}), **out}
    write("eco_default", {"presets": out, "targets": TARGETS, "split": "test",
                          "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
