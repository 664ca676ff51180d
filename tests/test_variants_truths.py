"""Variants on the tiny random Llama, checked against hand-built truths: exact records from
`describe`, `load`, `load_full` and `Adapter.to_dict`; the files `save` writes (names, dtypes,
metadata, the record's exact text, atomic replacement); peft-layout folders written by hand that
load with the right key, method, scale and weights, and whose outputs equal a reference model with
the LoRA delta merged by hand; the exact one-sentence errors; adapter hashes against a second
implementation; and the bookkeeping of register, delete, names, resolve and set_scale."""
from __future__ import annotations

import json
import types
import warnings
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import save_file

from engine.methods import variants as variants_module
from engine.methods.variants import Adapter, AdapterError, Variants

IDS = torch.tensor([[1, 17, 42, 99, 230, 7]])
PREFIX = "base_model.model."
Q = "model.layers.{i}.self_attn.q_proj.lora_{ab}.weight"  # peft's key for a q_proj LoRA tensor
HIDDEN = 64


@pytest.fixture()
def lm(tiny_model_dir):
    from engine.lm.models import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture()
def v(lm):
    return Variants(lm)


@pytest.fixture()
def fixed_clock(monkeypatch):
    """time.time() == 1234.56789 inside the module: the millisecond suffix is 1234567 % 100000 = 34567."""
    monkeypatch.setattr(variants_module, "time", types.SimpleNamespace(time=lambda: 1234.56789))


def lora(r=2, targets=("q_proj",)):
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0, bias="none",
                      init_lora_weights=False)


def fill(lm, name, seed):
    """Deterministic adapter weights that are exact in float16 (so a float16 file holds them exactly)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in lm.model.named_parameters():
            if "lora_" in n and f".{name}." in n:
                p.copy_((torch.randn(p.shape, generator=g) * 0.5).half().float())


def own_params(lm, name) -> dict:
    return {n: p.detach().clone() for n, p in lm.model.named_parameters() if "lora_" in n and f".{name}." in n}


def own_params_live(lm, name) -> list:
    return [p for n, p in lm.model.named_parameters() if "lora_" in n and f".{name}." in n]


def logits(lm):
    with torch.inference_mode():
        return lm.model(input_ids=IDS).logits


def hand_tensors(r=2, seed=0, prefix=PREFIX) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(2):
        out[prefix + Q.format(i=i, ab="A")] = (torch.randn(r, HIDDEN, generator=g) * 0.5).half().float()
        out[prefix + Q.format(i=i, ab="B")] = (torch.randn(HIDDEN, r, generator=g) * 0.5).half().float()
    return out


def write_adapter(folder: Path, tensors=None, record=None, r=2, targets=("q_proj",)) -> Path:
    """A peft-layout adapter folder written by hand (config, weights and optionally Lethe's record)."""
    folder.mkdir(parents=True)
    LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0).save_pretrained(str(folder))
    save_file(hand_tensors(r) if tensors is None else tensors, str(folder / "adapter_model.safetensors"))
    if record is not None:
        (folder / "lethe_adapter.json").write_text(json.dumps(record))
    return folder


def merged_reference_logits(tiny_model_dir, tensors, factor):
    """A plain model with q_proj.weight += factor * B @ A (alpha / r = 2), no peft involved."""
    from transformers import LlamaForCausalLM

    ref = LlamaForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        for i in range(2):
            a = tensors[PREFIX + Q.format(i=i, ab="A")]
            b = tensors[PREFIX + Q.format(i=i, ab="B")]
            ref.model.layers[i].self_attn.q_proj.weight.add_(factor * 2.0 * (b @ a))
        return ref(input_ids=IDS).logits


# ---------------------------------------------------------------------------- records

def test_adapter_to_dict_is_the_exact_record():
    a = Adapter(name="sku-1-5", method="sku", scale=-2.0, record={"negation": 2.0}, path="/a/b")
    assert a.to_dict() == {"name": "sku-1-5", "method": "sku", "scale": -2.0, "path": "/a/b",
                           "record": {"negation": 2.0}}


def test_new_names_count_up_from_one_and_end_in_the_clock_milliseconds(v, fixed_clock):
    assert v.new_name("elm") == "elm-1-34567"
    assert v.new_name("sku") == "sku-2-34567"
    assert v.new_name("elm") == "elm-3-34567"


def test_create_defaults_the_method_to_training_and_keeps_a_given_one(v):
    v.create("a", lora())
    v.create("b", lora(), "sku")
    assert (v.adapters["a"].method, v.adapters["b"].method) == ("training", "sku")


def test_create_hides_only_peft_s_several_adapters_warning(v, lm, monkeypatch):
    real = lm.model.add_adapter

    def noisy(*args, **kwargs):
        warnings.warn("Already found a `peft_config` attribute in the model. This will lead to several adapters.")
        warnings.warn("A different notice the user should still see.")
        return real(*args, **kwargs)

    monkeypatch.setattr(lm.model, "add_adapter", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v.create("a", lora())
    assert [str(w.message) for w in caught] == ["A different notice the user should still see."]


def test_adapter_bytes_counts_every_lora_tensor_in_float32(v):
    """r=2 on q_proj (64x64) in 2 layers: 2*(2*64 + 64*2) = 512 values; r=4: 1024; 4 bytes each."""
    assert v.adapter_bytes() == 0
    v.create("a", lora(r=2))
    v.create("b", lora(r=4))
    assert v.adapter_bytes() == (512 + 1024) * 4


def test_parameters_are_exactly_the_named_adapter_s_and_only_they_train(v, lm):
    v.create("a", lora())
    v.create("b", lora())
    params = v.parameters("a")
    names = {n for n, p in lm.model.named_parameters() if any(p is q for q in params)}
    assert names == {f"model.layers.{i}.self_attn.q_proj.lora_{ab}.a.weight" for i in (0, 1) for ab in "AB"}
    assert {n for n, p in lm.model.named_parameters() if p.requires_grad} == names
    with pytest.raises(AdapterError) as err:
        v.parameters("ghost")
    assert str(err.value) == "The adapter 'ghost' has no parameters: check its target modules."


# ---------------------------------------------------------------------------- the switch

def test_use_none_runs_the_base_weights_even_when_the_model_arrives_with_an_active_adapter(lm):
    base = logits(lm)
    lm.model.add_adapter(lora(), adapter_name="outside")  # injected without Variants: active
    assert not torch.allclose(logits(lm), base)
    v = Variants(lm)
    with v.use(None):
        assert torch.equal(logits(lm), base)


def test_an_adapter_is_frozen_while_used_for_inference_and_trainable_while_trained(v, lm):
    v.create("a", lora())
    with v.use("a"):
        assert not any(p.requires_grad for p in own_params_live(lm, "a"))
        assert not lm.model.training
    with v.use("a", train=True):
        assert all(p.requires_grad for p in own_params_live(lm, "a"))
        assert lm.model.training
    assert not lm.model.training


def test_deleting_another_adapter_keeps_the_active_one_active(v, lm):
    v.create("a", lora())
    v.create("b", lora())
    fill(lm, "a", 1)
    fill(lm, "b", 2)
    base = logits(lm)
    with v.use("a"):
        with_a = logits(lm)
        v.delete("b")
        assert torch.equal(logits(lm), with_a)
    assert not torch.allclose(with_a, base)
    assert list(v.adapters) == ["a"]


def test_deleting_the_active_adapter_falls_back_to_the_base_weights_in_eval_mode(v, lm):
    v.create("a", lora())
    v.create("b", lora())
    fill(lm, "a", 1)
    base = logits(lm)
    v.register("elm", "a", "elm")
    with v.use("a", train=True):
        assert lm.model.training
        v.delete("a")
        assert not lm.model.training
        assert torch.equal(logits(lm), base)
    assert list(v.adapters) == ["b"] and "a" not in lm.model.peft_config
    assert v.current == {"": {}}
    with v.use("b", train=True):
        v.delete("b")  # the last one
        assert not lm.model.training
    assert v.adapters == {} and not lm.model.training


# ---------------------------------------------------------------------------- register, names, resolve

def test_register_copies_the_record_and_defaults_the_scale_to_one(v):
    v.create("a", lora())
    record = {"settings": {"lr": 0.01}}
    a = v.register("elm", "a", "elm", record, path="/x/elm")
    record["settings"] = None
    assert a is v.adapters["a"]
    assert a.to_dict() == {"name": "a", "method": "elm", "scale": 1.0, "path": "/x/elm",
                           "record": {"settings": {"lr": 0.01}}}
    assert v.current == {"": {"elm": "a"}}


def test_a_newer_adapter_for_a_key_removes_the_one_it_replaces(v, lm):
    for n in "abc":
        v.create(n, lora())
    v.register("elm", "a", "elm")
    v.register("elm", "a", "elm")  # the same adapter again: kept
    assert set(v.adapters) == {"a", "b", "c"}
    v.register("elm", "b", "elm")
    assert set(v.adapters) == {"b", "c"} and "a" not in lm.model.peft_config
    assert v.current == {"": {"elm": "b"}}


def test_a_replaced_adapter_still_used_by_another_preset_is_kept(v):
    for n in "abc":
        v.create(n, lora())
    v.register("elm", "a", "elm", preset="harry_potter")
    v.register("elm", "a", "elm", preset="star_wars")
    v.register("elm", "b", "elm", preset="star_wars")
    assert set(v.adapters) == {"a", "b", "c"}
    v.register("elm", "c", "elm", preset="harry_potter")
    assert set(v.adapters) == {"b", "c"}
    assert v.current == {"harry_potter": {"elm": "c"}, "star_wars": {"elm": "b"}}


def test_names_and_resolve_without_a_preset_use_the_default_slot(v, lm):
    v.create("a", lora())
    v.register("elm", "a", "elm")
    assert v.names() == ["original", "eco", "elm", "eco+elm"]
    assert v.names("harry_potter") == ["original", "eco"]
    assert v.resolve("elm") == (False, "a", lm)
    assert v.resolve(" ECO+ELM ") == (True, "a", lm)
    assert v.resolve("eco") == (True, None, lm)
    assert v.resolve("Original") == (False, None, lm)
    assert v.resolve("") == (False, None, lm)
    assert v.resolve(None) == (False, None, lm)


def test_unknown_variants_are_refused_with_the_known_list_and_a_hint_for_weight_methods(v):
    v.create("a", lora())
    v.register("elm", "a", "elm", preset="harry_potter")
    with pytest.raises(ValueError) as err:
        v.resolve("sku", "harry_potter")
    assert str(err.value) == (
        "Unknown variant 'sku'; known: original, eco, elm, eco+elm. No SKU adapter is loaded for this model and "
        "preset yet: train one (Train tab or `python -m engine train --method sku`) or load one.")
    with pytest.raises(ValueError) as err:
        v.resolve("Bogus", "harry_potter")
    assert str(err.value) == "Unknown variant 'Bogus'; known: original, eco, elm, eco+elm."
    with pytest.raises(ValueError) as err:
        v.resolve("eco+elm")
    assert str(err.value) == (
        "Unknown variant 'eco+elm'; known: original, eco. No ELM adapter is loaded for this model and preset yet: "
        "train one (Train tab or `python -m engine train --method elm`) or load one.")
    with pytest.raises(ValueError) as err:
        v.resolve("full:nothing")
    assert str(err.value) == "Unknown variant 'full:nothing'; known: original, eco."


def test_set_scale_accepts_the_bounds_and_refuses_beyond_them(v):
    v.create("a", lora())
    v.register("sku", "a", "sku", scale=-1.0, preset="star_wars")
    for ok in (100, -100, 2.5):
        v.set_scale("sku", ok, "star_wars")
        assert v.adapters["a"].scale == float(ok)
    for bad, shown in ((100.5, "100.5"), (-150, "-150"), (float("nan"), "nan")):
        with pytest.raises(ValueError) as err:
            v.set_scale("sku", bad, "star_wars")
        assert str(err.value) == f"The adapter scale must be a number between -100 and 100, got {shown}."
    with pytest.raises(ValueError) as err:
        v.set_scale("eco", 1.0, "star_wars")
    assert str(err.value) == "'eco' is not an adapter variant."
    assert v.adapters["a"].scale == 2.5


def test_describe_lists_the_preset_s_adapters_then_the_full_models(v, lm, tiny_model_dir):
    v.create("a", lora())
    v.create("b", lora())
    v.register("elm", "a", "elm", {"steps": 2}, "/p/elm")
    v.register("sku", "b", "sku", {"negation": 3.0}, "/p/sku", -3.0, preset="harry_potter")
    assert v.describe() == [{"variant": "elm", "name": "a", "method": "elm", "scale": 1.0, "path": "/p/elm",
                             "record": {"steps": 2}}]
    v.load_full(str(tiny_model_dir), label="Mine", device="cpu", dtype="bfloat16")
    full = v.full["mine"]
    assert v.describe("harry_potter") == [
        {"variant": "sku", "name": "b", "method": "sku", "scale": -3.0, "path": "/p/sku", "record": {"negation": 3.0}},
        {"variant": "full:mine", "method": "full", "memory_bytes": full.info.memory_bytes,
         "path": str(tiny_model_dir)}]


# ---------------------------------------------------------------------------- full models

def test_load_full_adds_a_separate_model_under_its_folder_name_or_label(v, lm, tiny_model_dir):
    folder = Path(str(tiny_model_dir)).name
    assert folder == folder.lower()
    got = v.load_full(str(tiny_model_dir), device="cpu", dtype="float32")
    assert got == {"variant": f"full:{folder}", "memory_bytes": lm.info.memory_bytes,
                   "base_memory_bytes": lm.info.memory_bytes}
    got = v.load_full(str(tiny_model_dir), label="Half", device="cpu", dtype="bfloat16")
    half = v.full["half"]
    assert half.info.dtype == "bfloat16" and half.model is not lm.model
    assert got == {"variant": "full:half", "memory_bytes": half.info.memory_bytes,
                   "base_memory_bytes": lm.info.memory_bytes}
    assert half.info.memory_bytes < lm.info.memory_bytes
    assert list(v.full) == [folder, "half"]
    assert v.names() == ["original", "eco", f"full:{folder}", "full:half"]
    assert v.resolve("FULL:Half") == (False, None, half)
    assert v.resolve(f"full:{folder}") == (False, None, v.full[folder])


def test_a_full_label_that_looks_like_a_variant_s_tail_does_not_capture_it(v, lm, tiny_model_dir):
    """"eco+elm"[5:] == "lm": only names starting with "full:" reach the full models."""
    v.create("a", lora())
    v.register("elm", "a", "elm")
    v.load_full(str(tiny_model_dir), label="lm", device="cpu", dtype="float32")
    assert v.resolve("eco+elm") == (True, "a", lm)
    assert v.resolve("full:lm") == (False, None, v.full["lm"])
