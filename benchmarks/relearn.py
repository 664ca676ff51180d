"""The relearn attack on the harry_potter ELM and SKU adapters (default model, default settings).

Times the attack itself, from the progress record of the run: for each adapter, a frozen copy
of its weights, a fresh LoRA trained 20 steps on 8 forget passages, then forget/retain probe
accuracy and the keyword leak of 24 greedy answers on the test split. Target: <= 180 s in all.
"""
from __future__ import annotations

import time

from common import write

from engine import AttackConfig, Workbench


def main() -> None:
    wb = Workbench(preset="harry_potter")
    config = AttackConfig()
    seconds = {}
    result = wb.attack(["elm", "sku"], ["relearn"], config=config,
                       on_progress=lambda r: seconds.__setitem__(r["attack"], r["seconds"]))
    acc = result.pivot("forget_probe_accuracy")
    out = {"relearn_seconds": seconds["relearn"], "clean_seconds": seconds["clean"], "target_seconds": 180,
           "settings": config.to_dict(),
           "forget_probe_accuracy": {v: {"clean": round(float(acc.loc[v, "clean"]), 3),
                                         "relearn": round(float(acc.loc[v, "relearn"]), 3)} for v in acc.index}}
    print(f"relearn on ELM + SKU: {seconds['relearn']:.1f} s (target <= 180 s); "
          f"forget accuracy clean -> relearned: {out['forget_probe_accuracy']}")
    write("relearn", out)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
