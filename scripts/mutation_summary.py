"""Summarise a `mutmut run` (the mutants/ folder) per module: killed / survived / other, as Markdown.

    python scripts/mutation_summary.py > docs/mutation.md
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check"}


def main() -> int:
    metas = sorted((Path.cwd() / "mutants" / "engine").glob("*.py.meta"))
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
    cols = ("killed", "survived", "no tests", "timeout", "not checked")
    print("| module | mutants | " + " | ".join(cols) + " | other | killed % |")
    print("|---|---|" + "---|" * (len(cols) + 2))

    def line(name, n, c):
        other = n - sum(c[k] for k in cols)
        cells = " | ".join(str(c[k]) for k in cols)
        return f"| {name} | {n} | {cells} | {other} | {100 * c['killed'] / max(n, 1):.1f} |"

    for name, n, c in rows:
        total.update(c)
        print(line(name, n, c))
    print(line("**all**", sum(r[1] for r in rows), total))
    print(f"\n{len(survivors)} mutants not killed; `mutmut results` lists them and `mutmut show NAME` shows one.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
