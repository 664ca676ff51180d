"""Does ZO reach its target? ECO's strength searched by `Workbench.optimize` on harry_potter's train
forget probes (log sigma, the adaptive sign rule, common random numbers, one noise draw per evaluation), from sigma 0.1
embedding-std to each target in turn, 10 steps at most. For each target: the steps taken until
both probes of a step were within 0.05 of it, the best strength, and the metric re-measured there
with the shipped noise seed, on train and (once, for the record) on test.
"""
from __future__ import annotations

import time

from common import write

from engine import ECOConfig, Workbench, ZOConfig

TARGETS = (0.7, 0.5, 0.4)
TOLERANCE = 0.05


def main() -> None:
    t0 = time.perf_counter()
    wb = Workbench(preset="harry_potter")
    eco = ECOConfig(selection="prompt", corruption="rand_noise_first_n", dims=0, strength_unit="std")
    runs = []
    for target in TARGETS:
        zc = ZOConfig(init=0.1, steps=10, tolerance=TOLERANCE)
        start = time.perf_counter()
        steps = list(wb.optimize(eco, zc, target=target))
        best = steps[-1]["best_strength"]
        train = wb.probe_accuracy("forget", "train", eco.with_strength(best))["accuracy"]
        test = wb.probe_accuracy("forget", "test", eco.with_strength(best))["accuracy"]
        reached = next((s["step"] for s in steps if max(s["f_plus"], s["f_minus"]) <= TOLERANCE), None)
        runs.append({"target": target, "steps_taken": len(steps), "reached_within_tolerance_at_step": reached,
                     "best_strength_std": round(best, 4), "best_objective": round(steps[-1]["best_objective"], 4),
                     "train_accuracy_at_best_seed0": train, "train_error_seed0": round(abs(train - target), 4),
                     "test_accuracy_at_best": test, "seconds": round(time.perf_counter() - start, 1),
                     "path": [(round(s["theta_before"], 4), round(s["objective"], 4)) for s in steps]})
        print(runs[-1])
    z = ZOConfig()
    write("zo_convergence", {"preset": "harry_potter", "split": "train", "tolerance": TOLERANCE, "max_steps": 10,
                             "rule": z.rule, "first_move": z.step, "max_step": z.max_step, "eps": z.eps,
                             "all_reached": all(r["reached_within_tolerance_at_step"] for r in runs), "runs": runs,
                             "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
