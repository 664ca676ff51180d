"""Summarise a `mutmut run` (the mutants/ folder) per module: killed / survived / other, as Markdown,
then every mutant not killed with the reason recorded for it in docs/mutation_reasons.json.

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
    root = Path.cwd() / "mutants"
    metas = sorted(root.glob("engine/**/*.py.meta"))
    if not metas:
        print("No mutants/ results: run `make mutation` first.", file=sys.stderr)
        return 1
    rows, survivors = [], []
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count = Counter(STATUS.get(c, "suspicious") for c in codes.values())
        module = str(meta.relative_to(root))[:-len(".py.meta")]
        rows.append((module, len(codes), count))
        survivors += sorted((k, STATUS.get(c, "suspicious")) for k, c in codes.items() if STATUS.get(c) != "killed")
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
    reasons_file = Path(__file__).resolve().parent.parent / "docs" / "mutation_reasons.json"
    reasons = json.loads(reasons_file.read_text()) if reasons_file.is_file() else {}
    print(f"\n## The {len(survivors)} mutants not killed\n")
    print("`mutmut show NAME` shows one. Each has the reason it is equivalent (no test can tell it from the")
    print("original) or why it is left.\n")
    for name, status in survivors:
        print(f"- `{name}` ({status}): {reasons.get(name, 'not yet explained')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
