"""Summarise a `mutmut run` (the mutants/ folder) per module: killed / survived / other, as Markdown.

    python scripts/mutation_summary.py > docs/mutation.md
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check"}


def main() -> int:
    metas = sorted((ROOT / "mutants" / "engine").glob("*.py.meta"))
    if not metas:
        print("No mutants/ results: run `make mutation` first.", file=sys.stderr)
        return 1
    rows, survivors = [], []
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count = Counter(STATUS.get(c, "suspicious") for c in codes.values())
        rows.append((meta.name[:-len(".py.meta")], len(codes), count))
        survivors += sorted(k for k, c in codes.items() if STATUS.get(c) != "killed")
    total = Counter()
    print("# Mutation testing\n")
    print("`make mutation` (mutmut, the fast tiny-model tests). A mutant counts as killed when a test fails;")
    print("timeouts, mutants no fast test reaches and survivors all count against the score.\n")
    print("| module | mutants | killed | survived | no tests | timeout | other | killed % |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, c in rows:
        total.update(c)
        other = n - c["killed"] - c["survived"] - c["no tests"] - c["timeout"]
        print(f"| {name} | {n} | {c['killed']} | {c['survived']} | {c['no tests']} | {c['timeout']} | {other} "
              f"| {100 * c['killed'] / max(n, 1):.1f} |")
    n = sum(r[1] for r in rows)
    print(f"| **all** | {n} | {total['killed']} | {total['survived']} | {total['no tests']} | {total['timeout']} | "
          f"{n - total['killed'] - total['survived'] - total['no tests'] - total['timeout']} | "
          f"{100 * total['killed'] / max(n, 1):.1f} |")
    print(f"\n{len(survivors)} mutants not killed; `mutmut results` lists them and `mutmut show NAME` shows one.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
