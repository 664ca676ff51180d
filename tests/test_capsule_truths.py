"""Run capsules against independent truths: every field `make_capsule` writes, the weights hash recomputed by hand with hashlib,
the exact sentences `load_capsule`/`check_capsule` give for each kind of malformed input, the
file `save_capsule` writes (its exact text, atomic replacement) and `compare_rows` on hand-built
rows (tests/test_scoring_truths.py holds the scoring half).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import platform
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.data.presets import load_preset
from engine.eco.pipeline import ECOConfig
from engine.evaluation import capsules
from engine.evaluation.capsules import (MAX_CAPSULE_BYTES, check_capsule, compare_rows, load_capsule,
                                        make_capsule, save_capsule, versions, weights_hash)
from engine.evaluation.runner import evaluate
from tests.helpers import star_wars_subset


# ---------------------------------------------------------------------------- capsule fixtures

@pytest.fixture(scope="module")
def star_wars_small():
    return star_wars_subset(2, 4, 2)


@pytest.fixture(scope="module")
def small_result(tiny_lm, star_wars_small):
    return evaluate(tiny_lm, star_wars_small, ["original"], ["forget_probe_accuracy"], "test")


def fresh_lm(tiny_lm, extras=None):
    """The tiny model with its own (empty or given) extras, so the session's model is untouched."""
    return dataclasses.replace(tiny_lm, extras=dict(extras or {}))


def valid_capsule(**changes) -> dict:
    cap = {"kind": "lethe-evaluation",
           "model": {"weights_sha256": "abc"},
           "preset": {"name": "star_wars", "data_sha256": "def"},
           "settings": {"variants": ["original"], "metrics": ["m"], "split": "test", "eco": {}},
           "rows": []}
    cap.update(changes)
    return cap


# ---------------------------------------------------------------------------- weights_hash

def f32(*values) -> bytes:
    return np.array(values, dtype=np.float32).tobytes()


class LoraLinear(torch.nn.Module):
    """The layout peft gives an adapted layer: the base weight under `base_layer`, adapters beside it."""

    def __init__(self):
        super().__init__()
        self.base_layer = torch.nn.Linear(2, 1, bias=False)
        self.lora_A = torch.nn.Linear(2, 1, bias=False)


class HalfModel(torch.nn.Module):
    def __init__(self, lora: bool):
        super().__init__()
        self.norm = torch.nn.Parameter(torch.tensor([0.5, -1.25], dtype=torch.float16))
        if lora:
            self.proj = LoraLinear()
            with torch.no_grad():
                self.proj.base_layer.weight.copy_(torch.tensor([[2.0, 3.0]]))
                self.proj.lora_A.weight.copy_(torch.tensor([[7.0, 9.0]]))
        else:
            self.proj = torch.nn.Linear(2, 1, bias=False)
            with torch.no_grad():
                self.proj.weight.copy_(torch.tensor([[2.0, 3.0]]))


def test_weights_hash_is_sha256_over_sorted_names_and_float32_bytes():
    """A float16 parameter is hashed through its float32 view; names are hashed in sorted order."""
    want = hashlib.sha256(b"norm" + f32(0.5, -1.25) + b"proj.weight" + f32(2.0, 3.0)).hexdigest()
    assert weights_hash(HalfModel(lora=False)) == want


def test_weights_hash_names_the_base_weights_whatever_adapters_are_loaded():
    """`proj.base_layer.weight` is hashed as `proj.weight`; `lora_A` tensors are left out."""
    want = hashlib.sha256(b"norm" + f32(0.5, -1.25) + b"proj.weight" + f32(2.0, 3.0)).hexdigest()
    assert weights_hash(HalfModel(lora=True)) == want == weights_hash(HalfModel(lora=False))


def test_weights_hash_is_unchanged_by_a_lora_adapter_injected_into_the_tiny_model(tiny_lm):
    from peft import LoraConfig

    base = weights_hash(tiny_lm.model)
    adapted = copy.deepcopy(tiny_lm.model)
    adapted.add_adapter(LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
                        adapter_name="probe")
    assert any(".base_layer." in k for k in adapted.state_dict()) and any("lora_" in k for k in adapted.state_dict())
    assert weights_hash(adapted) == base


def test_weights_hash_is_equal_for_equal_weights_and_differs_when_one_value_changes(tiny_lm):
    twin = copy.deepcopy(tiny_lm.model)
    assert weights_hash(twin) == weights_hash(tiny_lm.model)
    with torch.no_grad():
        twin.model.layers[1].mlp.down_proj.weight[0, 0] += 1.0
    assert weights_hash(twin) != weights_hash(tiny_lm.model)


# ---------------------------------------------------------------------------- versions

def test_versions_names_python_and_each_library_and_none_for_a_missing_one(monkeypatch):
    monkeypatch.setattr(capsules, "LIBRARIES", ("torch", "pandas", "lethe-no-such-package"))
    assert versions() == {"python": platform.python_version(),
                          "torch": importlib.metadata.version("torch"),
                          "pandas": importlib.metadata.version("pandas"),
                          "lethe-no-such-package": None}


def test_versions_covers_the_documented_libraries():
    got = versions()
    assert set(got) == {"python", "torch", "transformers", "peft", "spacy", "gradio", "pandas", "scipy"}
    assert got["python"] == platform.python_version()


# ---------------------------------------------------------------------------- make_capsule

def test_make_capsule_writes_every_field(tiny_lm, star_wars_small, small_result):
    lm = fresh_lm(tiny_lm)
    cap = make_capsule(lm, star_wars_small, small_result)
    assert set(cap) == {"format", "kind", "created", "model", "preset", "classifier", "settings", "versions",
                        "rows", "seconds"}
    assert cap["format"] == 1 and cap["kind"] == "lethe-evaluation"
    assert cap["model"] == {"name": tiny_lm.info.name, "source": tiny_lm.info.source,
                            "weights_sha256": weights_hash(tiny_lm.model), "dtype": "float32", "devices": ["cpu"],
                            "parameters": sum(p.numel() for p in tiny_lm.model.parameters())}
    assert cap["preset"] == {"name": "star_wars", "data_sha256": load_preset("star_wars").data_hash()}
    assert cap["classifier"] is None
    assert cap["settings"] == {"variants": ["original"], "metrics": ["forget_probe_accuracy"], "split": "test",
                               "eco": ECOConfig.for_preset(star_wars_small).to_dict(), "batch_size": 32}
    value = small_result.table.value.iloc[0]
    assert cap["rows"] == [{"variant": "original", "metric": "forget_probe_accuracy", "split": "test",
                            "value": value, "n": 4}]
    assert cap["versions"] == versions()
    assert cap["seconds"] == round(small_result.seconds, 2)
    assert check_capsule(cap) is cap
    assert lm.extras == {"weights_sha256": weights_hash(tiny_lm.model)}


def test_make_capsule_reuses_the_weights_hash_already_recorded_for_the_model(tiny_lm, star_wars_small, small_result):
    cap = make_capsule(fresh_lm(tiny_lm, {"weights_sha256": "recorded"}), star_wars_small, small_result)
    assert cap["model"]["weights_sha256"] == "recorded"


def test_make_capsule_records_the_classifier_name_and_threshold(tiny_lm, star_wars_small, small_result):
    clf = SimpleNamespace(name="keyword-gate", threshold=0.25)
    cap = make_capsule(fresh_lm(tiny_lm), star_wars_small, small_result, classifier=clf)
    assert cap["classifier"] == {"name": "keyword-gate", "threshold": 0.25}


def test_make_capsule_rounds_seconds_to_two_decimals(tiny_lm, star_wars_small, small_result):
    result = dataclasses.replace(small_result, seconds=1.23456)
    assert make_capsule(fresh_lm(tiny_lm), star_wars_small, result)["seconds"] == 1.23


def test_make_capsule_stamps_the_local_time_in_iso_format(tiny_lm, star_wars_small, small_result):
    before = datetime.datetime.now().replace(microsecond=0)
    created = make_capsule(fresh_lm(tiny_lm), star_wars_small, small_result)["created"]
    after = datetime.datetime.now()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", created)
    assert before <= datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S") <= after


# ---------------------------------------------------------------------------- save_capsule

def test_save_capsule_writes_one_space_indented_json_and_creates_missing_folders(tmp_path):
    path = save_capsule({"kind": "x", "rows": [1]}, tmp_path / "a" / "b" / "run.json")
    assert path == tmp_path / "a" / "b" / "run.json"
    assert path.read_text() == '{\n "kind": "x",\n "rows": [\n  1\n ]\n}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_save_capsule_writes_numpy_and_tensor_numbers_as_floats(tmp_path):
    path = save_capsule({"a": np.float32(0.5), "b": torch.tensor(2.0)}, tmp_path / "run.json")
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 2.0}


def test_save_capsule_keeps_the_previous_file_when_writing_fails(tmp_path):
    path = save_capsule({"kind": "old"}, tmp_path / "run.json")
    before = path.read_text()
    with pytest.raises(TypeError):
        save_capsule({"kind": "new", "bad": object()}, path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_save_capsule_replaces_an_existing_file(tmp_path):
    save_capsule({"kind": "old"}, tmp_path / "run.json")
    path = save_capsule({"kind": "new"}, tmp_path / "run.json")
    assert json.loads(path.read_text()) == {"kind": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


# ---------------------------------------------------------------------------- load_capsule / check_capsule

def message(fn, arg) -> str:
    with pytest.raises(ValueError) as err:
        fn(arg)
    return str(err.value)


def padded(cap: dict, size: int) -> bytes:
    text = json.dumps(cap).encode()
    return text + b" " * (size - len(text))


def test_a_capsule_of_exactly_the_size_limit_loads(tmp_path):
    data = padded(valid_capsule(), MAX_CAPSULE_BYTES)
    assert len(data) == MAX_CAPSULE_BYTES == 5 * 1024 * 1024
    path = tmp_path / "run.json"
    path.write_bytes(data)
    assert load_capsule(path) == valid_capsule()
    assert load_capsule(data) == valid_capsule()


def test_a_capsule_file_over_the_limit_is_refused_with_its_size(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(padded(valid_capsule(), 5_250_001))  # 5.250001 MB
    assert message(load_capsule, path) == "The capsule is 5.3 MB; the limit is 5 MB."
    path.write_bytes(padded(valid_capsule(), MAX_CAPSULE_BYTES + 1))
    assert message(load_capsule, str(path)) == "The capsule is 5.2 MB; the limit is 5 MB."


def test_capsule_text_over_the_limit_is_refused():
    assert message(load_capsule, padded(valid_capsule(), MAX_CAPSULE_BYTES + 1)) == \
        "The capsule is larger than 5 MB."


def test_text_that_is_not_json_is_refused(tmp_path):
    assert message(load_capsule, b"{not json") == "The capsule is not valid JSON."
    assert message(load_capsule, b"\xff\xfe\xfa{") == "The capsule is not valid JSON."
    path = tmp_path / "run.json"
    path.write_text("[1, 2")
    assert message(load_capsule, path) == "The capsule is not valid JSON."


@pytest.mark.parametrize("cap", [[1, 2], "text", None, {"hello": 1}, {**valid_capsule(), "kind": "other"}])
def test_json_that_is_not_a_lethe_capsule_is_refused(cap):
    assert message(check_capsule, cap) == "This JSON file is not a Lethe run capsule."
    assert message(load_capsule, json.dumps(cap).encode()) == "This JSON file is not a Lethe run capsule."


def test_a_capsule_with_no_sections_names_all_of_them():
    assert message(check_capsule, {"kind": "lethe-evaluation"}) == \
        "The capsule is missing or has a wrong type for: model, preset, settings, rows."


def test_every_missing_or_mistyped_field_is_named_in_order():
    cap = valid_capsule(model={}, preset={"name": 3, "data_sha256": "def"},
                        settings={"variants": [], "metrics": (), "split": "test", "eco": []}, rows={"a": 1})
    assert message(check_capsule, cap) == ("The capsule is missing or has a wrong type for: model.weights_sha256, "
                                           "preset.name, settings.metrics, settings.eco, rows.")


def test_a_missing_section_does_not_hide_problems_in_later_sections():
    cap = valid_capsule(model=[], settings={"variants": [], "metrics": [], "split": 1, "eco": {}})
    assert message(check_capsule, cap) == "The capsule is missing or has a wrong type for: model, settings.split."


def test_problems_in_an_early_section_are_kept_when_a_later_section_is_fine():
    cap = valid_capsule(model={"weights_sha256": 1})
    assert message(check_capsule, cap) == "The capsule is missing or has a wrong type for: model.weights_sha256."


def test_only_missing_rows_is_named():
    cap = valid_capsule()
    del cap["rows"]
    assert message(load_capsule, json.dumps(cap)) == "The capsule is missing or has a wrong type for: rows."


# ---------------------------------------------------------------------------- compare_rows

def row(value, variant="eco", metric="m"):
    return {"variant": variant, "metric": metric, "value": value}


def test_compare_rows_gives_one_exact_record_per_row_of_either_run():
    old = [row(0.5), row(0.25, "original", "k"), row(1.0, "original", "gone")]
    new = [row(0.25 + 1e-7, "original", "k"), row(0.5), row(9.0, "original", "extra")]
    assert compare_rows(old, new) == [
        {"variant": "eco", "metric": "m", "old": 0.5, "new": 0.5, "same": True},
        {"variant": "original", "metric": "k", "old": 0.25, "new": 0.25 + 1e-7, "same": True},
        {"variant": "original", "metric": "gone", "old": 1.0, "new": None, "same": False},
        {"variant": "original", "metric": "extra", "old": None, "new": 9.0, "same": False},
    ]


def test_compare_rows_reports_a_row_only_the_new_run_has_as_a_difference():
    assert compare_rows([], [row(0.5)]) == [{"variant": "eco", "metric": "m", "old": None, "new": 0.5, "same": False}]


def test_a_difference_equal_to_the_tolerance_is_the_same_and_beyond_it_is_not():
    assert compare_rows([row(0.5)], [row(0.75)], tolerance=0.25)[0]["same"] is True
    assert compare_rows([row(0.5)], [row(0.8)], tolerance=0.25)[0]["same"] is False
    assert compare_rows([row(0.5)], [row(0.5 + 2e-6)])[0]["same"] is False


def test_nan_equals_nan_but_not_a_number():
    nan = float("nan")
    assert compare_rows([row(nan)], [row(nan)])[0]["same"] is True
    assert compare_rows([row(nan)], [row(0.5)])[0]["same"] is False
    assert compare_rows([row(0.5)], [row(nan)])[0]["same"] is False
