"""Model loading on a tiny random Llama: local folders, dtypes, info, errors, cache checks."""
import json

import pytest
import torch

from engine.lm.models import (ModelLoadError, _write_cache, cache_is_valid, format_chat, load_model,
                           resolve_dtype)


def test_local_folder_loads_with_info(tiny_lm):
    info = tiny_lm.info
    assert info.source == "local"
    assert info.architecture == "LlamaForCausalLM"
    assert info.parameters == sum(p.numel() for p in tiny_lm.model.parameters())
    assert info.dtype == "float32" and info.devices == ["cpu"]
    assert info.memory_bytes >= info.parameters * 4
    assert info.chat_template is True
    assert not tiny_lm.model.training


def test_dtype_choice_is_honoured(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert lm.model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert lm.info.dtype == "bfloat16"


def test_auto_dtype_on_cpu_is_float32():
    assert resolve_dtype("auto", "cpu") == torch.float32


@pytest.mark.parametrize("bad, fragment", [("nope", "Unknown dtype"), ])
def test_unknown_dtype_is_refused(tiny_model_dir, bad, fragment):
    with pytest.raises(ModelLoadError, match=fragment):
        load_model(str(tiny_model_dir), device="cpu", dtype=bad)


def test_missing_hub_model_offline_says_so():
    with pytest.raises(ModelLoadError, match="offline"):
        load_model("lethe-tests/does-not-exist-anywhere", device="cpu")


def test_folder_without_weights_is_refused(tmp_path, tiny_model_dir):
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(str(tmp_path), device="cpu")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path), device="cpu")


def test_non_causal_model_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_model(str(tmp_path), device="cpu")


def test_cuda_without_gpu_is_refused(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model(str(tiny_model_dir), device="cuda")


def test_chat_template_wraps_a_single_user_turn(tiny_lm):
    text = format_chat(tiny_lm.tokenizer, "Who is Merlin?")
    assert text == "<|im_start|>user\nWho is Merlin?<|im_end|>\n<|im_start|>assistant\n"


def test_written_cache_is_valid_and_corruption_is_detected(tiny_lm, tmp_path):
    path = tmp_path / "cache"
    _write_cache(tiny_lm.model, tiny_lm.tokenizer, path, source="test")
    assert cache_is_valid(path)
    manifest = json.loads((path / "lethe_manifest.json").read_text())
    assert "model.safetensors" in manifest["files"]
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a crash mid-copy
    assert not cache_is_valid(path)


def test_cache_without_manifest_is_not_trusted(tiny_lm, tmp_path):
    path = tmp_path / "cache"
    _write_cache(tiny_lm.model, tiny_lm.tokenizer, path, source="test")
    (path / "lethe_manifest.json").unlink()
    assert not cache_is_valid(path)
    assert not cache_is_valid(tmp_path / "missing")
