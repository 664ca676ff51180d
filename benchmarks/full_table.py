"""The full evaluation table: every preset x every available variant on the default model.

Original, ECO (default settings, the preset's gate classifier), and the preset's shipped ELM and
SKU adapters. Metrics: probe accuracy and log-prob, retain perplexity and KL, gate recall / FPR,
truth ratio and MCQ accuracy where the preset has them, and the forget-side generation metrics
(keyword leak rate, ROUGE-L recall, unique-token ratio, base-model perplexity of the answers).
Writes one section per preset and prints a Markdown table. `--presets` picks a subset.
"""
from __future__ import annotations

import argparse
import time

from common import write

from engine import Workbench

METRICS = ["forget_probe_accuracy", "retain_probe_accuracy", "forget_probe_logprob", "retain_probe_logprob",
           "retain_perplexity", "retain_kl", "forget_recall", "retain_fpr", "truth_ratio", "forget_mcq_accuracy",
           "retain_mcq_accuracy", "keyword_leak_rate", "forget_rouge_l_recall", "forget_unique_token_ratio",
           "forget_output_perplexity"]


def markdown(table) -> str:
    head = "| metric | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---|" * len(table.columns)
    rows = [f"| {m} | " + " | ".join(f"{v:.3f}" for v in table.loc[m]) + " |" for m in table.index]
    return "\n".join([head, rule, *rows])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--presets", default="harry_potter,star_wars,chemistry")
    args = p.parse_args()
    wb = Workbench(preset=None)
    total = time.perf_counter()
    for name in args.presets.split(","):
        wb.load_preset(name)
        variants = [v for v in ("original", "eco", "elm", "sku") if v in wb.variants.names(name)]
        metrics = [m for m in METRICS if not (("mcq" in m and not wb.preset.forget_mcq)
                                              or (m == "truth_ratio" and not any(r.perturbed for r in wb.preset.forget_prompts)))]
        t0 = time.perf_counter()
        result = wb.evaluate(variants, metrics, "test")
        seconds = time.perf_counter() - t0
        table = result.table.pivot(index="metric", columns="variant", values="value").reindex(metrics)[variants]
        print(f"\n### {name} (test split, {seconds:.0f} s)\n")
        print(markdown(table))
        write(f"full_table_{name}", {"variants": variants, "rows": result.rows(), "seconds": round(seconds, 1),
                                     "adapters": wb.adapters()["adapters"] and
                                     {a["variant"]: {"settings": a["record"].get("settings"), "seconds": a["record"].get("seconds")}
                                      for a in wb.adapters()["adapters"]}})
    print(f"\nfull evaluation wall time: {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
