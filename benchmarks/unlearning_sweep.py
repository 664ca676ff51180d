"""ELM / SKU settings sweep: train one adapter per grid entry, measure it on both probe splits.

    python benchmarks/unlearning_sweep.py --grid benchmarks/sweeps/harry_potter_grid.json \
        --preset harry_potter --device cuda --workers 8 --out benchmarks/sweeps/mine.jsonl

Each grid entry is {"key", "method": "elm"|"sku", "settings": {...}, "lambdas": [...]}; an SKU
adapter is measured at every lambda (negation is free). Every record carries forget- and
retain-probe accuracy on the train and the test split and the retain-corpus perplexity. Choose
settings by the TRAIN split (the adapters never train on probes) and report the test split.
The sweep is not part of `make bench`: on 2 CPU cores one entry takes 4-20 minutes.
`--summary FILE` prints, per method, the entries that no other entry beats on all three train-
split numbers (lower forget accuracy, higher retain accuracy, lower perplexity).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path, offline mode)

METRICS = ["forget_probe_accuracy", "retain_probe_accuracy", "retain_perplexity"]


def measure(wb, variant: str) -> dict:
    out = {}
    for split in ("train", "test"):
        for row in wb.evaluate(variants=(variant,), metrics=METRICS, split=split).rows():
            out[f"{row['metric']}_{split}"] = row["value"]
    return out


def emit(out: Path, record: dict) -> None:
    with out.open("a") as f:  # one line per write: workers append to the same file
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def worker(entries: list[dict], preset: str, device: str, out: Path) -> None:
    import torch

    from engine import Workbench

    torch.set_num_threads(2)
    wb = Workbench(model="default", preset=preset, device=device, dtype="float32")
    for e in entries:
        t0 = time.time()
        try:
            rec = wb.train(e["method"], e.get("settings", {}))
        except Exception as exc:  # one bad entry must not end the sweep
            emit(out, {**e, "error": repr(exc)[:300]})
            continue
        base = {"key": e["key"], "method": e["method"], "settings": e.get("settings", {}),
                "train_s": time.time() - t0, "final": rec.get("final")}
        if e["method"] == "sku":
            for lam in e.get("lambdas") or [1.0]:
                wb.set_negation(lam)
                emit(out, {**base, "lambda": lam, **measure(wb, "sku")})
        else:
            emit(out, {**base, **measure(wb, e["method"])})


def summary(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "error" not in r and "forget_probe_accuracy_train" in r]
    key = ("forget_probe_accuracy_train", "retain_probe_accuracy_train", "retain_perplexity_train")

    def beaten(r, by):
        a, b = [r[k] for k in key], [by[k] for k in key]
        at_least = b[0] <= a[0] and b[1] >= a[1] and b[2] <= a[2]
        return at_least and (b[0], -b[1], b[2]) != (a[0], -a[1], a[2])

    for r in (r for r in rows if r["method"] == "original"):
        print(f"original: forget {r[key[0]]:.3f} / retain {r[key[1]]:.3f} / ppl {r[key[2]]:.2f} (train)")
    for method in sorted({r["method"] for r in rows} - {"original"}):
        own = [r for r in rows if r["method"] == method]
        front = sorted((r for r in own if not any(beaten(r, o) for o in own)), key=lambda r: r[key[0]])
        print(f"{method}: {len(front)} of {len(own)} runs on the train-split front")
        for r in front:
            lam = f" lambda {r['lambda']:g}" if "lambda" in r else ""
            print(f"  {r['key']}{lam}: forget {r[key[0]]:.3f} / retain {r[key[1]]:.3f} / ppl {r[key[2]]:.2f} (train); "
                  f"test {r['forget_probe_accuracy_test']:.3f} / {r['retain_probe_accuracy_test']:.3f}; "
                  f"{json.dumps(r['settings'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=Path)
    ap.add_argument("--preset", default="harry_potter")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("unlearning_sweep.jsonl"))
    ap.add_argument("--summary", type=Path, help="summarise a finished sweep file and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.summary:
        return summary(args.summary)
    if args.worker:
        return worker(json.loads(args.worker), args.preset, args.device, args.out)
    if not args.grid:
        ap.error("--grid is required (or --summary FILE)")
    entries = json.loads(args.grid.read_text())
    n = max(1, min(args.workers, len(entries)))
    buckets = [entries[i::n] for i in range(n)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(b), "--preset", args.preset,
                               "--device", args.device, "--out", str(args.out)]) for b in buckets]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
