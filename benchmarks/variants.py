"""Four variants over one model: memory with Original + ECO + ELM + SKU ready ÷ base model alone,
and a four-way streamed compare ÷ one plain generation (64 new tokens each, greedy).

Memory is measured two ways, each in a fresh subprocess so peaks do not mix:
  - parameters: bytes of every tensor the variants need (model, LoRA adapters, gate classifier);
  - peak RSS of the process after one generation (base only) vs after one four-way compare.
Needs the preset's shipped ELM and SKU adapters.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys

from common import ROOT, timed, write

PROMPT = "Who is Harry Potter?"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def probe(mode: str) -> dict:
    """Run in a subprocess: load what `mode` needs, generate once, report memory."""
    from engine import GenerationConfig, Workbench

    cfg = GenerationConfig(max_new_tokens=16)
    if mode == "base":
        wb = Workbench(preset=None)
        wb.generate(PROMPT, cfg)
        return {"rss_mb": peak_rss_mb(), "param_bytes": wb.lm.info.memory_bytes}
    wb = Workbench()
    clf = wb.classifier()
    for _ in wb.compare(PROMPT, config=cfg):
        pass
    clf_bytes = sum(p.numel() * p.element_size() for p in clf.model.parameters())
    return {"rss_mb": peak_rss_mb(), "param_bytes": wb.lm.info.memory_bytes + wb.variants.adapter_bytes() + clf_bytes,
            "adapter_bytes": wb.variants.adapter_bytes(), "classifier_bytes": clf_bytes,
            "variants": wb.variants.names("harry_potter")}


def main() -> None:
    mem = {}
    for mode in ("base", "all"):
        out = subprocess.run([sys.executable, __file__, "--probe", mode], cwd=ROOT / "benchmarks",
                             capture_output=True, text=True, check=True)
        mem[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    from engine import GenerationConfig, Workbench

    wb = Workbench()
    wb.classifier()
    cfg = GenerationConfig(max_new_tokens=64, min_new_tokens=64)  # exactly 64 tokens everywhere
    one_s, one = timed(lambda: wb.generate(PROMPT, cfg))

    def four():
        last = None
        for last in wb.compare(PROMPT, config=cfg):
            pass
        return last

    four_s, rec = timed(four)
    write("variants", {
        "prompt": PROMPT, "variants": rec["variants"], "new_tokens": one["new_tokens"],
        "one_generation_seconds": round(one_s, 3), "four_way_compare_seconds": round(four_s, 3),
        "compare_ratio": round(four_s / one_s, 3),
        "memory_param_ratio": round(mem["all"]["param_bytes"] / mem["base"]["param_bytes"], 4),
        "memory_rss_ratio": round(mem["all"]["rss_mb"] / mem["base"]["rss_mb"], 4), "target_memory_ratio": 1.15,
        "memory": mem,
    })


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        print(json.dumps(probe(sys.argv[2])))
    else:
        main()
