"""Regenerate the shipped ELM and SKU adapters (presets/<preset>/adapters/<method>/) for the
embedded default model, deterministically from seed 0: each method's default settings, with the
preset's own where its preset.yaml has a `train:` block (`train: {sku: {steps: 200, ...}}`,
chosen on the train probes, which no method trains on).

    .venv/bin/python scripts/ship_adapters.py [--presets harry_potter,star_wars] [--methods elm,sku]

Each adapter is written atomically by `python -m engine train`; its lethe_adapter.json records
the exact settings, the loss history and the training time on this machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import load_preset  # noqa: E402


def preset_settings(preset: str, method: str) -> list[str]:
    """--set arguments for the method's block under `train:` in the preset's preset.yaml."""
    args = []
    for name, value in load_preset(preset).train_settings(method).items():
        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        args += ["--set", f"{name}={text}"]
    return args


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="harry_potter,star_wars,chemistry")
    p.add_argument("--methods", default="sku,elm")
    args = p.parse_args()
    failed = 0
    for preset in args.presets.split(","):
        for method in args.methods.split(","):
            out = ROOT / "presets" / preset / "adapters" / method
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "engine", "train", "--method", method, "--preset", preset,
                                  "--seed", "0", "--out", str(out), "--json", *preset_settings(preset, method)],
                                 cwd=ROOT, capture_output=True, text=True)
            if res.returncode != 0:
                failed += 1
                print(f"{preset}/{method}: {res.stderr.strip()}", file=sys.stderr)
                continue
            rec = json.loads(res.stdout)
            print(json.dumps({"preset": preset, "method": method, "train_seconds": rec["seconds"],
                              "wall_seconds": round(time.perf_counter() - t0, 1), "path": str(out.relative_to(ROOT))}),
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
