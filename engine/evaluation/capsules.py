"""Run capsules: one JSON file with everything needed to reproduce an evaluation, and replay.

A capsule records the model (name, source, weights hash, dtype, device), the preset (name and
data hash), every ECO setting, the classifier and its threshold, seeds, library versions and
the metric rows. `replay()` re-runs the same evaluation and compares the numbers.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path

import torch

CAPSULE_FORMAT = 1
MAX_CAPSULE_BYTES = 5 * 1024 * 1024
LIBRARIES = ("torch", "transformers", "peft", "spacy", "gradio", "pandas", "scipy")


def weights_hash(model) -> str:
    """sha256 over every base parameter's name and bytes (float32 view), in name order; LoRA
    adapters are left out, so the hash names the base weights whatever adapters are loaded."""
    h = hashlib.sha256()
    base = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if "lora_" not in k}
    for name, p in sorted(base.items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def versions() -> dict:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    return out


def make_capsule(lm, preset, result, classifier=None) -> dict:
    info = lm.info.to_dict()
    if "weights_sha256" not in lm.extras:
        lm.extras["weights_sha256"] = weights_hash(lm.model)
    return {
        "format": CAPSULE_FORMAT, "kind": "lethe-evaluation", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": {"name": info["name"], "source": info["source"], "weights_sha256": lm.extras["weights_sha256"],
                  "dtype": info["dtype"], "devices": info["devices"], "parameters": info["parameters"]},
        "preset": {"name": preset.name, "data_sha256": preset.data_hash()},
        "classifier": ({"name": classifier.name, "threshold": classifier.threshold} if classifier else None),
        "settings": result.settings, "versions": versions(),
        "rows": result.rows(), "seconds": round(result.seconds, 2),
    }


def save_capsule(capsule: dict, path: str | Path) -> Path:
    """Write atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(capsule, indent=1, default=float))
    tmp.replace(path)
    return path


def load_capsule(path_or_text: str | Path | bytes) -> dict:
    """Parse and check a capsule; errors are one sentence."""
    if isinstance(path_or_text, (str, Path)) and Path(path_or_text).is_file():
        path = Path(path_or_text)
        if path.stat().st_size > MAX_CAPSULE_BYTES:
            raise ValueError(f"The capsule is {path.stat().st_size / 1e6:.1f} MB; the limit is "
                             f"{MAX_CAPSULE_BYTES / 1e6:.0f} MB.")
        text = path.read_bytes()
    else:
        text = path_or_text
    if len(text) > MAX_CAPSULE_BYTES:
        raise ValueError(f"The capsule is larger than {MAX_CAPSULE_BYTES / 1e6:.0f} MB.")
    try:
        cap = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("The capsule is not valid JSON.") from None
    return check_capsule(cap)


REQUIRED = {  # section -> {field: type} a replay reads
    "model": {"weights_sha256": str},
    "preset": {"name": str, "data_sha256": str},
    "settings": {"variants": list, "metrics": list, "split": str, "eco": dict},
}


def check_capsule(cap) -> dict:
    """The capsule, or ValueError naming every missing or mistyped field in one sentence."""
    if not isinstance(cap, dict) or cap.get("kind") not in ("lethe-evaluation", "lethe-attack"):
        raise ValueError("This JSON file is not a Lethe run capsule.")
    problems = []
    for section, wanted in REQUIRED.items():
        part = cap.get(section)
        if not isinstance(part, dict):
            problems.append(section)
            continue
        problems += [f"{section}.{k}" for k, t in wanted.items() if not isinstance(part.get(k), t)]
    if not isinstance(cap.get("rows"), list):
        problems.append("rows")
    if problems:
        raise ValueError(f"The capsule is missing or has a wrong type for: {', '.join(problems)}.")
    return cap


def compare_rows(old: list[dict], new: list[dict], tolerance: float = 1e-6) -> list[dict]:
    """Per (variant, metric): old value, new value, and whether they agree within tolerance; a row
    only one side has is a difference (its other value is None)."""
    index = {(r["variant"], r["metric"]): r["value"] for r in new}
    out = []
    for r in old:
        v = index.pop((r["variant"], r["metric"]), None)
        same = v is not None and (abs(v - r["value"]) <= tolerance or (v != v and r["value"] != r["value"]))
        out.append({"variant": r["variant"], "metric": r["metric"], "old": r["value"], "new": v, "same": same})
    out += [{"variant": k[0], "metric": k[1], "old": None, "new": v, "same": False} for k, v in index.items()]
    return out
