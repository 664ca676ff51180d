"""ECO's numbers on the default model and a preset (test split unless noted), written to results.json:

- the gate classifier's forget recall / retain FPR at its calibrated threshold (prompts and probes);
- the reference demo setting on "Who is Harry Potter?";
- forget/retain probe accuracy for Original and ECO at its default setting, plus the
  prefix-destroyed floor (every prefix token corrupted), which shows the answer prior no
  prompt corruption can remove;
- a strength sweep, and a ZO run on the train split with its result checked on the test split.
"""
from __future__ import annotations

import argparse
import time

from common import write

from engine import ECOConfig, GenerationConfig, Workbench, ZOConfig

HP_WORDS = ("harry", "potter", "hogwarts", "rowling", "hermione", "wizard")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="harry_potter")
    ap.add_argument("--zo-steps", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="skip the sweep and the ZO run")
    args = ap.parse_args()
    t0 = time.perf_counter()
    wb = Workbench(preset=args.preset)
    clf = wb.classifier()
    p = wb.preset
    out = {"preset": p.name, "classifier": clf.info(),
           "gate_prompts_test": wb.gate_report(split="test")}
    from engine import gate_report

    out["gate_probes_test"] = gate_report(clf, [q.prefix for q in p.probes("forget", "test")],
                                          [q.prefix for q in p.probes("retain", "test")])
    if p.name == "harry_potter":
        demo = ECOConfig(gate="always", corruption="rand_noise_first_n", dims=1, strength=100.0)
        g = GenerationConfig(max_new_tokens=64)
        res = wb.generate("Who is Harry Potter?", g, variant="eco", eco=demo)
        orig = wb.generate("Who is Harry Potter?", g)
        out["demo"] = {"original": orig["text"], "eco": res["text"], "selected": res["selected_tokens"],
                       "eco_mentions_hp": any(w in res["text"].lower() for w in HP_WORDS)}
    default = ECOConfig()
    ner = ECOConfig(selection="ner", dims=1, strength=100.0)  # the reference's TOFU-style selection
    table = {}
    for name, cfg in (("original", None), ("eco_default", default), ("eco_ner_dims1", ner)):
        table[name] = {side: wb.probe_accuracy(side, "test", cfg) for side in ("forget", "retain")}
    out["probes_test"] = table
    out["eco_default_settings"] = default.to_dict()
    if args.quick:
        out["seconds"] = round(time.perf_counter() - t0, 1)
        write(f"eco_quality_{p.name}_quick", out)
        return
    out["sweep_test"] = wb.sweep([1, 10, 100, 1000], default, split="test")
    steps = list(wb.optimize(default.with_strength(1.0), ZOConfig(steps=args.zo_steps)))
    best = steps[-1]["best_strength"] if steps else None
    out["zo"] = {"steps": steps, "best_strength": best,
                 "test_forget_accuracy_at_best": wb.probe_accuracy("forget", "test", default.with_strength(best))["accuracy"]
                 if best else None}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write(f"eco_quality_{p.name}", out)


if __name__ == "__main__":
    main()
