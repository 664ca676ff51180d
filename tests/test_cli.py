"""The headless CLI: JSON output, and one-line errors with a non-zero exit."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=240):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_generate_prints_json(tiny_model_dir):
    res = cli("generate", "--prompt", "Who is Merlin?", "--model", str(tiny_model_dir), "--max-new-tokens", "5",
              "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) >= {"text", "model", "seconds"} and isinstance(out["text"], str)


def test_empty_prompt_fails_with_one_line(tiny_model_dir):
    res = cli("generate", "--prompt", "  ", "--model", str(tiny_model_dir), "--json")
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "empty" in res.stderr


def test_missing_model_fails_with_one_line():
    res = cli("generate", "--prompt", "hi", "--model", "/nonexistent/model/folder-xyz")
    assert res.returncode != 0
    lines = [l for l in res.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "No model folder" in lines[0]


def test_presets_lists_harry_potter():
    res = cli("presets", "--json")
    assert res.returncode == 0, res.stderr
    assert "harry_potter" in {p["name"] for p in json.loads(res.stdout)["presets"]}
