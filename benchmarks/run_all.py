"""Run every benchmark in turn; each merges its section into benchmarks/results.json."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["app_start.py", "eco_overhead.py", "eval_batching.py", "variants.py", "eco_quality.py", "full_table.py",
           "relearn.py", "gate.py", "zo_convergence.py"]

if __name__ == "__main__":
    failed = [s for s in SCRIPTS if subprocess.call([sys.executable, s], cwd=HERE) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1 if failed else 0)
