"""The headless CLI: JSON output, and one-line errors with a non-zero exit."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SESSION_CACHE

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


def test_select_prints_tokens_and_selection(tiny_model_dir):
    res = cli("select", "--prompt", "Who is Barack Obama?", "--model", str(tiny_model_dir), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["tokens"]) == len(out["selected"]) == len(out["labels"])
    assert "PERSON" in out["labels"]


def test_generate_eco_variant_reports_the_gate(tiny_model_dir):
    res = cli("generate", "--prompt", "Who is Barack Obama?", "--model", str(tiny_model_dir), "--variant", "eco",
              "--gate", "always", "--strength", "50", "--max-new-tokens", "4", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["flagged"] is True and out["variant"] == "eco" and out["selected_tokens"]


def test_sweep_prints_points(tiny_model_dir):
    res = cli("sweep", "--strengths", "0,100", "--gate", "always", "--selection", "prompt", "--model",
              str(tiny_model_dir), "--json")
    assert res.returncode == 0, res.stderr
    points = json.loads(res.stdout)["points"]
    assert [p["strength"] for p in points] == [0.0, 100.0]


def test_optimize_prints_steps(tiny_model_dir):
    res = cli("optimize", "--steps", "2", "--gate", "always", "--selection", "prompt", "--model",
              str(tiny_model_dir), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert 1 <= len(out["steps"]) <= 2 and out["best_strength"] is not None


def test_bad_eco_settings_fail_with_one_line(tiny_model_dir):
    for args, fragment in [(["--dims", "100000"], "hidden size"), (["--strength", "nan"], "finite"),
                           (["--corruption", "melt"], "known:")]:
        res = cli("generate", "--prompt", "hi", "--model", str(tiny_model_dir), "--variant", "eco", "--gate",
                  "always", *args)
        assert res.returncode == 2 and fragment in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_bad_strength_list_fails_before_loading_anything():
    res = cli("sweep", "--strengths", "1,x", "--model", "/nonexistent/x")
    assert res.returncode == 2 and "Could not read strengths" in res.stderr


def test_classify_missing_file_fails_with_one_line():
    res = cli("classify", "--file", "/nonexistent/prompts.txt")
    assert res.returncode == 2 and "No such file" in res.stderr


def test_train_writes_an_adapter_that_generate_and_evaluate_use(tiny_model_dir, tmp_path):
    out = tmp_path / "sku"
    env_cache = {"LETHE_CACHE_DIR": str(tmp_path / "cache")}
    os.environ.update(env_cache)
    try:
        res = cli("train", "--method", "sku", "--preset", "harry_potter", "--model", str(tiny_model_dir),
                  "--steps", "2", "--set", "max_length=32", "--out", str(out), "--json")
        assert res.returncode == 0, res.stderr
        rec = json.loads(res.stdout)
        assert rec["method"] == "sku" and rec["steps_run"] == 2 and (out / "adapter_model.safetensors").is_file()
        res = cli("generate", "--prompt", "Who is Harry Potter?", "--model", str(tiny_model_dir), "--variant", "sku",
                  "--adapter", f"sku={out}", "--negation", "2", "--max-new-tokens", "4", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["variant"] == "sku"
        res = cli("evaluate", "--preset", "harry_potter", "--model", str(tiny_model_dir), "--variants", "original,sku",
                  "--metrics", "forget_probe_accuracy,retain_kl", "--adapter", f"sku={out}",
                  "--capsule", str(tmp_path / "run.json"), "--json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)["rows"]
        assert {r["variant"] for r in rows} == {"original", "sku"}
        kl = {r["variant"]: r["value"] for r in rows if r["metric"] == "retain_kl"}
        assert kl["original"] == 0 and kl["sku"] > 0
        capsule = json.loads((tmp_path / "run.json").read_text())
        assert capsule["settings"]["adapters"]["sku"]["settings"]["steps"] == 2
    finally:
        os.environ["LETHE_CACHE_DIR"] = SESSION_CACHE


def test_train_rejects_bad_settings_in_one_line():
    res = cli("train", "--method", "elm", "--set", "eta=-5")
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and "eta must be between" in res.stderr
    res = cli("train", "--method", "rmu")
    assert res.returncode != 0 and "known: elm, sku" in res.stderr


def test_generate_with_a_missing_adapter_variant_says_how_to_get_one(tiny_model_dir):
    res = cli("generate", "--prompt", "Hello", "--model", str(tiny_model_dir), "--variant", "elm", "--json")
    assert res.returncode != 0 and "train one" in res.stderr and res.stderr.count("\n") == 1


def test_sweep_scale_prints_the_front_with_the_shipped_point_and_the_references(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig

    from engine.cli_scale import front_table
    from engine.lm.models import load_model
    from engine.methods.variants import Variants

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    vs = Variants(lm)  # a tiny SKU adapter with lambda 1.5, saved in peft's layout
    vs.create("sku-x", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False), "sku")
    record = {"method": "sku", "negation": 1.5}
    vs.register("sku", "sku-x", "sku", record, scale=-1.5, preset="harry_potter")
    vs.save("sku-x", tmp_path / "sku", record, dtype=torch.float32)
    res = cli("sweep-scale", "--method", "sku", "--scales", "1,0", "--gate", "always", "--model", str(tiny_model_dir),
              "--adapter", f"sku={tmp_path / 'sku'}", "--progress", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [r["name"] for r in out["references"]] == ["original", "eco"]
    assert [(p["scale"], p["shipped"]) for p in out["points"]] == [(0.0, False), (1.0, False), (1.5, True)]
    assert len([l for l in res.stderr.splitlines() if l.startswith("{")]) == 5  # --progress: one line per point
    table = front_table(out).splitlines()
    assert [l.split()[0] for l in table[2:7]] == ["Original", "ECO", "SKU", "SKU", "SKU"]
    assert "shipped" in table[6] and "shipped" not in table[5] and table[-1].endswith("gate always")
    res = cli("sweep-scale", "--method", "sku", "--scales", "0,1", "--model", str(tiny_model_dir), "--json")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "No SKU adapter is loaded" in res.stderr


def test_calibrate_eco_prints_its_front_and_saves_only_a_choice(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "hp"
    shutil.copytree(ROOT / "presets" / "harry_potter", folder, ignore=shutil.ignore_patterns("adapters", "eco_*.json"))
    before = (folder / "preset.yaml").read_text()
    common = ("calibrate-eco", "--preset", str(folder), "--model", str(tiny_model_dir), "--gate", "always",
              "--candidate", "prompt/rand_noise_first_n/0/1", "--grid", "1,100", "--steps", "0",
              "--fluency-prompts", "2", "--save", "--json")
    # nothing can be fluent at a perplexity ratio of 0.001: the search is printed, nothing is written
    res = cli(*common, "--max-perplexity-ratio", "0.001")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["chosen"] is None and out["saved"] is None and len(out["candidates"]) == 1
    assert (folder / "preset.yaml").read_text() == before and not (folder / "eco_calibration.json").exists()
    # anything is fluent at a unique-token ratio of 0 and a ratio of 1000: the choice lands in preset.yaml
    res = cli(*common, "--max-perplexity-ratio", "1000", "--min-unique-token-ratio", "0")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["chosen"] and out["saved"] == str(folder / "preset.yaml")
    text = (folder / "preset.yaml").read_text()
    assert text != before and text.count("\neco:") == 1 and (folder / "eco_calibration.json").is_file()
    assert f"strength: {out['chosen']['strength']}" in text
