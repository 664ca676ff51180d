"""The real embedded default model, offline: GGUF -> cache -> reload, and it knows Harry Potter."""
import os
import time

import pytest

from engine.lm.generation import GenerationConfig, encode_prompt, generate
from engine.lm.models import cache_is_valid, default_cache_path, load_model

pytestmark = pytest.mark.integration
HP_WORDS = ("hogwarts", "wizard", "rowling", "magic", "witch", "fantasy", "hermione", "voldemort", "dumbledore")


def test_default_model_converts_from_the_package_then_loads_from_the_cache(tmp_path, monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    monkeypatch.setenv("LETHE_CACHE_DIR", str(tmp_path))
    t0 = time.perf_counter()
    first = load_model("default", device="cpu")
    first_s = time.perf_counter() - t0
    assert first.info.source == "gguf"
    assert cache_is_valid(default_cache_path())
    t0 = time.perf_counter()
    second = load_model("default", device="cpu")
    cached_s = time.perf_counter() - t0
    assert second.info.source == "cache"
    assert second.info.parameters == first.info.parameters > 100_000_000
    print(f"\nfirst load {first_s:.1f} s, cached load {cached_s:.1f} s")
    # a truncated cache is rebuilt from the package, never trusted
    weights = default_cache_path() / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 3)
    del first
    third = load_model("default", device="cpu")
    assert third.info.source == "gguf" and cache_is_valid(default_cache_path())


def test_default_model_answers_who_is_harry_potter(default_lm):
    inputs = encode_prompt(default_lm.tokenizer, "Who is Harry Potter?")
    out = generate(default_lm.model, default_lm.tokenizer, GenerationConfig(max_new_tokens=48), **inputs)
    print(f"\n{out.text!r} ({out.tokens_per_second:.1f} tokens/s)")
    assert "harry potter" in out.text.lower()
    assert any(w in out.text.lower() for w in HP_WORDS)
