"""Keep only the cloze probes the default model knows (answer ranked first of four).

    python scripts/filter_probes.py --preset harry_potter

Reads data/{forget,retain}_probes_candidates.jsonl, scores every choice by mean token
log-prob under the embedded default model, writes the kept probes to
data/{forget,retain}_probes.jsonl (alternating train/test split, in candidate order) and the
counts to data/probe_filter.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import load_model, rank_choices, read_jsonl, resolve_preset_dir  # noqa: E402


def filter_side(lm, folder: Path, side: str) -> dict:
    src = folder / "data" / f"{side}_probes_candidates.jsonl"
    probes = read_jsonl(src, "probe", label=str(src.relative_to(folder.parent)))
    scores = rank_choices(lm.model, lm.tokenizer, [(p.prefix, p.choices) for p in probes])
    kept = [p for p, s in zip(probes, scores) if max(range(4), key=s.__getitem__) == 0]
    dst = folder / "data" / f"{side}_probes.jsonl"
    with open(dst, "w", encoding="utf-8") as fh:
        for i, p in enumerate(kept):
            rec = {"id": p.id, "prefix": p.prefix, "answer": p.answer, "distractors": list(p.distractors),
                   "split": "train" if i % 2 == 0 else "test"}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return {"candidates": len(probes), "kept": len(kept),
            "train": (len(kept) + 1) // 2, "test": len(kept) // 2}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="harry_potter")
    ap.add_argument("--model", default="default")
    args = ap.parse_args(argv)
    folder = resolve_preset_dir(args.preset)
    lm = load_model(args.model, device="cpu", dtype="float32")
    start = time.perf_counter()
    report = {"model": lm.info.name, "rule": "answer has the highest mean token log-prob of the 4 choices"}
    for side in ("forget", "retain"):
        report[side] = filter_side(lm, folder, side)
    report["seconds"] = round(time.perf_counter() - start, 1)
    (folder / "data" / "probe_filter.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
