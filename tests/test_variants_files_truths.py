"""Adapter files against hand-written peft folders: saving (files, record, dtype, atomic replace), loading
(every field of a round trip, SKU's scale from the record, outputs equal to hand-merged weights, external
folders, one-sentence refusals), the folder of a Hub id, and the weights hash against a second implementation."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from engine.methods.variants import AdapterError, Variants

from tests.test_variants_truths import (  # noqa: F401 (fixtures and helpers)
    PREFIX, Q, HIDDEN, lm, v, fixed_clock, lora, fill, own_params, own_params_live, logits, hand_tensors, write_adapter, merged_reference_logits,
)


# ---------------------------------------------------------------------------- saving

def test_save_writes_peft_layout_in_float16_with_the_record_text_exactly(v, lm, tmp_path):
    v.create("a", lora())
    fill(lm, "a", 3)
    v.register("sku", "a", "sku", {"method": "sku", "negation": 2.0, "data": Path("/d/forget.jsonl")})
    out = v.save("a", tmp_path / "not" / "yet" / "there" / "sku")
    assert out == tmp_path / "not" / "yet" / "there" / "sku"
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                     "lethe_adapter.json"]
    assert [p.name for p in out.parent.iterdir()] == ["sku"]
    assert (out / "lethe_adapter.json").read_text() == (
        '{\n  "method": "sku",\n  "negation": 2.0,\n  "data": "/d/forget.jsonl"\n}')
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert set(tensors) == {PREFIX + Q.format(i=i, ab=ab) for i in (0, 1) for ab in "AB"}
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    weights = own_params(lm, "a")
    for k, t in tensors.items():
        live = k[len(PREFIX):].replace(".weight", ".a.weight")
        assert torch.equal(t.float(), weights[live])
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (2, 4, ["q_proj"])


def test_save_writes_the_named_adapter_the_given_record_and_the_given_dtype(v, lm, tmp_path):
    v.create("a", lora())
    v.create("b", lora())
    fill(lm, "a", 1)
    fill(lm, "b", 2)
    v.register("elm", "a", "elm", {"from": "register"})
    for name in ("a", "b"):
        out = v.save(name, tmp_path / name, record={"from": "save"}, dtype=torch.float32)
        tensors = load_file(str(out / "adapter_model.safetensors"))
        weights = own_params(lm, name)
        assert {t.dtype for t in tensors.values()} == {torch.float32}
        assert all(torch.equal(t, weights[k[len(PREFIX):].replace(".weight", f".{name}.weight")])
                   for k, t in tensors.items())
        assert json.loads((out / "lethe_adapter.json").read_text()) == {"from": "save"}
    out = v.save("a", tmp_path / "default-record")
    assert json.loads((out / "lethe_adapter.json").read_text()) == {"from": "register"}


def test_saving_again_replaces_the_folder_and_leaves_no_temporary_or_old_folder(v, lm, tmp_path):
    v.create("a", lora())
    fill(lm, "a", 1)
    out = tmp_path / "adapters" / "elm"
    v.save("a", out, record={"round": 1})
    stale = out.parent / f".elm.tmp-{os.getpid()}"  # left by a crashed save in this process
    stale.mkdir()
    (stale / "junk").write_text("x")
    fill(lm, "a", 2)
    v.save("a", out, record={"round": 2})
    assert [p.name for p in out.parent.iterdir()] == ["elm"]
    assert json.loads((out / "lethe_adapter.json").read_text()) == {"round": 2}
    tensors = load_file(str(out / "adapter_model.safetensors"))
    weights = own_params(lm, "a")
    assert all(torch.equal(t.float(), weights[k[len(PREFIX):].replace(".weight", ".a.weight")])
               for k, t in tensors.items())


# ---------------------------------------------------------------------------- loading

def test_a_saved_sku_adapter_loads_into_a_fresh_model_with_every_field(tiny_model_dir, tmp_path, fixed_clock):
    from engine.lm.models import load_model

    first = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    v1 = Variants(first)
    v1.create("trained", lora())
    fill(first, "trained", 5)
    record = {"method": "sku", "negation": 2.5, "settings": {"lr": 0.01}}
    v1.register("sku", "trained", "sku", record, scale=-2.5, preset="harry_potter")
    out = v1.save("trained", tmp_path / "sku")
    with v1.use("trained"):
        want = logits(first)

    second = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    v2 = Variants(second)
    a = v2.load(str(out), preset="harry_potter")
    assert a.to_dict() == {"name": "sku-1-34567", "method": "sku", "scale": -2.5, "path": str(out),
                           "record": {**record, "loaded_from": str(out)}}
    assert v2.current == {"harry_potter": {"sku": "sku-1-34567"}}
    assert list(v2.adapters) == ["sku-1-34567"]
    loaded = own_params(second, "sku-1-34567")
    saved = own_params(first, "trained")
    assert {k.replace("sku-1-34567", "trained"): t for k, t in loaded.items()}.keys() == saved.keys()
    assert all(torch.equal(loaded[k.replace("trained", "sku-1-34567")], t) for k, t in saved.items())
    with v2.use(a.name):
        assert torch.allclose(logits(second), want, atol=1e-5)


def test_an_sku_record_sets_the_scale_to_minus_its_negation_and_outputs_match_hand_merged_weights(
        v, lm, tiny_model_dir, tmp_path):
    folder = write_adapter(tmp_path / "Saved", record={"method": "sku", "negation": 2.5})
    a = v.load(folder)
    assert (a.method, a.scale, v.current) == ("sku", -2.5, {"": {"sku": a.name}})
    with v.use(a.name):
        got = logits(lm)
    assert torch.allclose(got, merged_reference_logits(tiny_model_dir, hand_tensors(), -2.5), atol=1e-4)
    with v.use(a.name, negation=1.0):
        got = logits(lm)
    assert torch.allclose(got, merged_reference_logits(tiny_model_dir, hand_tensors(), -1.0), atol=1e-4)


def test_an_sku_record_without_a_negation_means_lambda_one(v, tmp_path):
    a = v.load(write_adapter(tmp_path / "sku", record={"method": "sku"}))
    assert (a.method, a.scale) == ("sku", -1.0)


def test_an_elm_record_loads_at_scale_one_under_the_key_elm(v, lm, tiny_model_dir, tmp_path):
    folder = write_adapter(tmp_path / "Some-Folder", record={"method": "elm", "negation": 4.0})
    a = v.load(folder, preset="star_wars")
    assert (a.method, a.scale, a.path) == ("elm", 1.0, str(folder))
    assert v.current == {"star_wars": {"elm": a.name}}
    with v.use(a.name):
        got = logits(lm)
    assert torch.allclose(got, merged_reference_logits(tiny_model_dir, hand_tensors(), 1.0), atol=1e-4)


def test_a_folder_without_a_record_is_an_external_adapter_keyed_by_its_folder_name(v, lm, tmp_path, fixed_clock):
    folder = write_adapter(tmp_path / "My-Adapter")
    a = v.load(folder)
    assert a.to_dict() == {"name": "external-1-34567", "method": "external", "scale": 1.0, "path": str(folder),
                           "record": {"loaded_from": str(folder)}}
    assert v.current == {"": {"my-adapter": "external-1-34567"}}
    assert v.names() == ["original", "eco", "my-adapter", "eco+my-adapter"]
    weights = own_params(lm, a.name)
    for k, t in hand_tensors().items():
        assert torch.equal(weights[k[len(PREFIX):].replace(".weight", f".{a.name}.weight")], t)


def test_an_explicit_key_and_method_override_the_record(v, tmp_path):
    folder = write_adapter(tmp_path / "x", record={"method": "elm"})
    a = v.load(folder, key="Mine", method="sku")
    assert (a.method, a.scale, v.current) == ("sku", -1.0, {"": {"mine": a.name}})
    b = v.load(write_adapter(tmp_path / "y"), method="elm")
    assert (b.method, b.scale, v.current[""]["elm"]) == ("elm", 1.0, b.name)


def test_plain_and_default_named_tensor_keys_load_too(v, lm, tmp_path):
    """Keys without peft's "base_model.model." prefix, and with the adapter name "default", are accepted."""
    tensors = {k[len(PREFIX):].replace(".weight", ".default.weight"): t for k, t in hand_tensors().items()}
    a = v.load(write_adapter(tmp_path / "plain", tensors=tensors))
    weights = own_params(lm, a.name)
    for k, t in hand_tensors().items():
        assert torch.equal(weights[k[len(PREFIX):].replace(".weight", f".{a.name}.weight")], t)


def test_a_folder_without_a_config_is_refused_in_one_sentence(v, tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    save_file(hand_tensors(), str(folder / "adapter_model.safetensors"))
    with pytest.raises(AdapterError) as err:
        v.load(folder)
    assert str(err.value) == f"{folder} has no readable LoRA adapter_config.json (ValueError)."
    assert v.adapters == {}


def test_a_folder_without_weights_is_refused_in_one_sentence(v, tmp_path):
    folder = tmp_path / "config-only"
    folder.mkdir()
    lora().save_pretrained(str(folder))
    with pytest.raises(AdapterError) as err:
        v.load(folder)
    assert str(err.value) == f"{folder}/adapter_model.safetensors is missing or not a safetensors file."
    assert v.adapters == {}


def test_an_adapter_whose_targets_do_not_fit_is_refused_with_the_first_line_of_the_reason(v, tmp_path):
    """peft's reason for targeting a whole block spans several lines (it prints the module)."""
    folder = write_adapter(tmp_path / "mlp", targets=("mlp",))
    with pytest.raises(AdapterError) as err:
        v.load(folder)
    assert str(err.value) == f"The adapter in {folder} does not fit this model: Target module LlamaMLP("
    assert v.adapters == {}


def test_missing_tensors_are_counted_and_the_first_named_without_the_adapter_name(v, lm, tmp_path):
    tensors = hand_tensors()
    del tensors[PREFIX + Q.format(i=1, ab="A")], tensors[PREFIX + Q.format(i=0, ab="B")]
    folder = write_adapter(tmp_path / "partial", tensors=tensors)
    with pytest.raises(AdapterError) as err:
        v.load(folder)
    assert str(err.value) == (f"The adapter in {folder} lacks 2 tensor(s) this model needs, "
                              "e.g. model.layers.0.self_attn.q_proj.lora_B.weight.")
    assert v.adapters == {} and not any("lora_" in n for n, _ in lm.model.named_parameters())


def test_a_tensor_of_the_wrong_shape_is_named_with_both_shapes(v, tmp_path):
    tensors = hand_tensors()
    tensors[PREFIX + Q.format(i=1, ab="B")] = torch.zeros(HIDDEN, 3)
    folder = write_adapter(tmp_path / "shape", tensors=tensors)
    with pytest.raises(AdapterError) as err:
        v.load(folder)
    assert str(err.value) == (f"The adapter in {folder} has the wrong shape for "
                              "model.layers.1.self_attn.q_proj.lora_B.weight: (64, 3) in the file, (64, 2) in this model.")
    assert v.adapters == {}


# ---------------------------------------------------------------------------- where adapters come from

@pytest.mark.parametrize("source", ["./lethe-no-such-adapter", "/lethe-no-such-adapter",
                                    "~/lethe-no-such-adapter", "a/b/c", "plain-name"])
def test_paths_that_are_not_folders_are_refused_without_asking_the_hub(v, source):
    with pytest.raises(AdapterError) as err:
        v.load(source)
    assert str(err.value) == f"No adapter folder at {source}."


def test_an_existing_file_is_not_an_adapter_folder_even_if_it_looks_like_a_hub_id(v, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "file").write_text("not a folder")
    with pytest.raises(AdapterError) as err:
        v.load("org/file")
    assert str(err.value) == "No adapter folder at org/file."


def test_a_hub_id_is_refused_offline(v, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdapterError) as err:
        v.load("org/name")
    assert str(err.value) == "org/name is not a local folder and the Hub is offline (HF_HUB_OFFLINE=1)."


def test_a_hub_id_downloads_only_json_and_safetensors_and_loads_the_snapshot(v, tmp_path, monkeypatch):
    import huggingface_hub

    folder = write_adapter(tmp_path / "snapshot", record={"method": "elm"})
    calls = []

    def fake_download(*args, **kwargs):
        calls.append((args, kwargs))
        return str(folder)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    a = v.load("org/name")
    assert calls == [(("org/name",), {"allow_patterns": ["*.json", "*.safetensors"]})]
    assert (a.method, a.path, a.record) == ("elm", str(folder), {"method": "elm", "loaded_from": str(folder)})


def test_a_failed_download_is_named_with_the_error_type(v, monkeypatch):
    import huggingface_hub

    def fail(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(AdapterError) as err:
        v.load("org/name")
    assert str(err.value) == "Could not download the adapter org/name: ConnectionError."


# ---------------------------------------------------------------------------- hashes

def reference_hash(folder: Path) -> str:
    """sha256 over (key, float32 bytes) in key order, read back from a float32 file."""
    h = hashlib.sha256()
    for k, t in sorted(load_file(str(folder / "adapter_model.safetensors")).items()):
        h.update(k[len(PREFIX):].encode())
        h.update(t.to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def test_adapter_hash_is_sha256_over_sorted_keys_and_float32_bytes(v, lm, tmp_path):
    v.create("a", lora())
    v.create("b", lora())
    fill(lm, "a", 1)
    fill(lm, "b", 2)
    for name in ("a", "b"):
        assert v.adapter_hash(name) == reference_hash(v.save(name, tmp_path / name, dtype=torch.float32))
    assert v.adapter_hash("a") != v.adapter_hash("b")


def test_adapter_hash_depends_on_the_weights_not_the_name(v, lm):
    v.create("a", lora())
    v.create("b", lora())
    fill(lm, "a", 7)
    fill(lm, "b", 7)
    assert v.adapter_hash("a") == v.adapter_hash("b")
    for n, p in lm.model.named_parameters():
        if n == "model.layers.1.self_attn.q_proj.lora_B.b.weight":
            with torch.no_grad():
                p[3, 1] += 0.5
    assert v.adapter_hash("a") != v.adapter_hash("b")


def test_adapter_hash_reads_half_precision_weights_as_float32(v, lm):
    v.create("a", lora())
    fill(lm, "a", 1)  # values exact in float16
    before = v.adapter_hash("a")
    for p in own_params_live(lm, "a"):
        p.data = p.data.half()
    assert {p.dtype for p in own_params_live(lm, "a")} == {torch.float16}
    assert v.adapter_hash("a") == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_adapter_hash_of_a_model_on_the_gpu_equals_its_hash_on_the_cpu(v, lm):
    v.create("a", lora())
    fill(lm, "a", 1)
    on_cpu = v.adapter_hash("a")
    lm.model.to("cuda")
    assert v.adapter_hash("a") == on_cpu
