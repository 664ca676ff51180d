"""The forget-retain front over an adapter's scale (Workbench.sweep_scale) on the tiny random Llama
with tiny hand-made LoRA adapters: the records' order and fields, scale 0 is Original exactly, a
point is what `evaluate` measures with the variant set to that scale, the shipped point is the
adapter's own scale, the shared model is bit-for-bit the same after a sweep, a stop or an error,
and bad requests are refused in one sentence before anything is scored."""
from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from peft import LoraConfig

from engine import DEFAULT_SCALES, MAX_SCALES
from engine.data.presets import load_preset
from engine.eco.pipeline import ECOConfig
from engine.evaluation import scale_front
from engine.workbench import Workbench

ALWAYS = ECOConfig(gate="always", strength=10.0)  # no classifier to build
SKU_LAMBDA = 1.5  # the SKU adapter's own lambda: not on the grids below, so the sweep adds it
FIELDS = {"kind", "name", "scale", "lora_scale", "forget_accuracy", "retain_accuracy", "retain_perplexity",
          "n_forget", "n_retain", "n_passages", "shipped", "seconds"}
METRICS = {"forget_accuracy": "forget_probe_accuracy", "retain_accuracy": "retain_probe_accuracy",
           "retain_perplexity": "retain_perplexity"}


def small_preset():
    """harry_potter cut to a few probes and passages per split (a point costs its rows)."""
    p = load_preset("harry_potter")

    def cut(rows, n):
        return [r for r in rows if r.split == "train"][:n] + [r for r in rows if r.split == "test"][:n]

    return dataclasses.replace(p, forget_probes=cut(p.forget_probes, 6), retain_probes=cut(p.retain_probes, 6),
                               retain_corpus=p.retain_corpus[:4])


def add_adapter(wb, method: str, scale: float, seed: int) -> str:
    """A rank-2 LoRA with random (non-zero) A and B, registered as the preset's `method` variant."""
    vs = wb.variants
    name = vs.new_name(method)
    vs.create(name, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"],
                               lora_dropout=0.0, init_lora_weights=False), method)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in wb.lm.model.named_parameters():
            if "lora_" in n and f".{name}." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)
    record = {"method": method, "negation": scale if method == "sku" else None}
    vs.register(method, name, method, record, scale=-scale if method == "sku" else scale, preset="harry_potter")
    return name


@pytest.fixture(scope="module")
def wb(tiny_model_dir):
    """A workbench on its own copy of the tiny model with a tiny ELM (scale 1) and SKU (lambda 1.5)."""
    from engine.lm.models import load_model

    w = Workbench.from_loaded(load_model(str(tiny_model_dir), device="cpu", dtype="float32"), small_preset())
    add_adapter(w, "elm", 1.0, seed=1)
    add_adapter(w, "sku", SKU_LAMBDA, seed=2)
    return w


def snapshot(wb) -> dict:
    """Everything a sweep could leave behind: tensors, the switch's state, the adapters' scales,
    every LoRA layer's live scaling, the train/eval mode."""
    model = wb.lm.model
    return {"tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "state": wb.variants._state, "scales": {n: a.scale for n, a in wb.variants.adapters.items()},
            "scaling": [dict(m.scaling) for m in wb.variants._lora_layers()], "training": model.training,
            "current": {k: dict(v) for k, v in wb.variants.current.items()}}


def assert_unchanged(before: dict, wb) -> None:
    after = snapshot(wb)
    assert set(after["tensors"]) == set(before["tensors"])
    assert [k for k, v in before["tensors"].items() if not torch.equal(v, after["tensors"][k])] == []
    assert {k: v for k, v in after.items() if k != "tensors"} == {k: v for k, v in before.items() if k != "tensors"}


def test_a_sweep_gives_original_and_eco_then_one_point_per_scale_in_ascending_order(wb):
    seen = []
    out = wb.sweep_scale("elm", [2, 0, 1, 1], split="test", on_point=seen.append, eco=ALWAYS)
    assert [r["name"] for r in out["references"]] == ["original", "eco"]
    assert [p["scale"] for p in out["points"]] == [0.0, 1.0, 2.0]
    assert seen == out["references"] + out["points"]
    assert all(set(r) == FIELDS for r in seen)
    assert {r["kind"] for r in out["references"]} == {"reference"} and {p["kind"] for p in out["points"]} == {"point"}
    assert all(r["scale"] is None and r["shipped"] is False for r in out["references"])
    assert all(p["name"] == "elm" and p["lora_scale"] == p["scale"] for p in out["points"])
    assert {r["n_forget"] for r in seen} == {6} and {r["n_retain"] for r in seen} == {6}
    assert (out["method"], out["knob"], out["split"], out["stopped"]) == ("elm", "scale", "test", False)
    assert out["eco"] == ALWAYS.to_dict()


@pytest.mark.parametrize("method", ["elm", "sku"])
def test_scale_zero_measures_exactly_what_original_does(wb, method):
    out = wb.sweep_scale(method, [0, 3], split="train", eco=ALWAYS)
    original, zero, three = out["references"][0], out["points"][0], out["points"][-1]
    assert zero["scale"] == 0.0 and zero["lora_scale"] == 0.0
    assert [zero[k] for k in METRICS] == [original[k] for k in METRICS]
    assert three["retain_perplexity"] != original["retain_perplexity"]  # the adapter does act at scale 3


@pytest.mark.parametrize("method,scale", [("sku", 2.0), ("elm", 2.5)])
def test_each_number_is_what_evaluate_measures_with_the_variant_at_that_scale(wb, method, scale):
    out = wb.sweep_scale(method, [scale], split="test", eco=ALWAYS)
    point = next(p for p in out["points"] if p["scale"] == scale)
    own = wb.variants.adapters[out["adapter"]].scale
    wb.variants.set_scale(method, -scale if method == "sku" else scale, "harry_potter")
    try:
        table = wb.evaluate(["original", "eco", method], list(METRICS.values()), "test", ALWAYS).table
    finally:
        wb.variants.set_scale(method, own, "harry_potter")
    value = {(r.variant, r.metric): r.value for r in table.itertuples()}
    for record, variant in [(out["references"][0], "original"), (out["references"][1], "eco"), (point, method)]:
        assert {k: record[k] for k in METRICS} == {k: value[(variant, m)] for k, m in METRICS.items()}


def test_the_shipped_point_is_the_adapters_own_scale_and_is_added_when_the_grid_lacks_it(wb):
    sku = wb.sweep_scale("sku", [0, 1, 2], eco=ALWAYS)
    assert [p["scale"] for p in sku["points"]] == [0.0, 1.0, SKU_LAMBDA, 2.0]
    assert [p["scale"] for p in sku["points"] if p["shipped"]] == [SKU_LAMBDA] == [sku["shipped_scale"]]
    assert [p["lora_scale"] for p in sku["points"]] == [0.0, -1.0, -SKU_LAMBDA, -2.0]  # SKU is negated
    elm = wb.sweep_scale("elm", [0, 1, 2], eco=ALWAYS)
    assert [p["shipped"] for p in elm["points"]] == [False, True, False] and elm["shipped_scale"] == 1.0


def test_the_eco_reference_is_the_presets_default_when_none_is_given(wb, monkeypatch):
    monkeypatch.setattr(wb, "eco_default", lambda preset=None: ECOConfig(gate="always", strength=7.0))
    assert wb.sweep_scale("elm", [1])["eco"]["strength"] == 7.0


@pytest.mark.parametrize("method", ["elm", "sku"])
def test_the_shared_model_is_bit_for_bit_the_same_after_a_sweep(wb, method):
    adapter = wb.variants.current["harry_potter"][method]
    with wb.variants.use(adapter):
        ids = wb.lm.tokenizer("Hermione Granger studies at Hogwarts.", return_tensors="pt")["input_ids"]
        want = wb.lm.model(input_ids=ids).logits
    before = snapshot(wb)
    wb.sweep_scale(method, [0, 0.5, 3], eco=ALWAYS)
    assert_unchanged(before, wb)
    with wb.variants.use(adapter):
        assert torch.equal(wb.lm.model(input_ids=ids).logits, want)


def test_a_stop_between_points_ends_the_sweep_and_leaves_the_model_as_it_was(wb):
    before, stop = snapshot(wb), threading.Event()
    out = wb.sweep_scale("sku", [0, 1, 2], eco=ALWAYS, stop_event=stop,
                         on_point=lambda r: stop.set() if r["kind"] == "point" else None)
    assert out["stopped"] is True and [p["scale"] for p in out["points"]] == [0.0]
    assert len(out["references"]) == 2
    assert_unchanged(before, wb)
    stop.clear()
    stop.set()
    assert wb.sweep_scale("sku", [1], eco=ALWAYS, stop_event=stop)["references"] == []


def test_an_error_inside_a_point_leaves_the_model_as_it_was(wb, monkeypatch):
    before, real, calls = snapshot(wb), scale_front.measure, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # inside the adapter's scope at the second scale
            raise RuntimeError("a metric failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(scale_front, "measure", failing)
    with pytest.raises(RuntimeError, match="a metric failed"):
        wb.sweep_scale("sku", [0, 2.5], eco=ALWAYS)
    assert_unchanged(before, wb)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"method": "rmu", "scales": [1]}, "Unknown method 'rmu' for a scale sweep; known: elm, sku."),
    ({"method": "sku", "scales": []}, "Give at least one value for lambda"),
    ({"method": "sku", "scales": [1, float("nan")]}, "lambda must be a finite number"),
    ({"method": "sku", "scales": [0, -0.5]}, "lambda must be between 0 and 100, got -0.5."),
    ({"method": "elm", "scales": [101]}, "scales must be between 0 and 100"),
    ({"method": "elm", "scales": list(range(MAX_SCALES + 1))}, f"scales has {MAX_SCALES + 1} values; the limit is 25."),
    ({"method": "elm", "scales": [1], "split": "dev"}, "Unknown split 'dev'; known: train, test."),
    ({"method": "elm", "scales": [1], "batch_size": 0}, "batch_size must be between 1 and 512"),
    ({"method": "sku", "scales": [1], "preset": "star_wars"}, "No SKU adapter is loaded for this model and preset "
                                                               "star_wars: train one"),
])
def test_bad_requests_are_refused_in_one_sentence_before_anything_is_scored(wb, monkeypatch, kwargs, fragment):
    monkeypatch.setattr(scale_front, "measure", lambda *a, **k: pytest.fail("a probe was scored"))
    before = snapshot(wb)
    with pytest.raises(ValueError) as err:
        wb.sweep_scale(eco=ALWAYS, **kwargs)
    message = str(err.value)
    assert fragment in message and "\n" not in message and message.endswith(".")
    assert_unchanged(before, wb)


def test_the_default_grids_fit_the_limits():
    for method, grid in DEFAULT_SCALES.items():
        assert scale_front.check_request(method, list(grid), "test") == (method, list(grid))


def test_a_scale_override_outside_the_bounds_is_refused_before_the_model_changes(wb):
    before, name = snapshot(wb), wb.variants.current["harry_potter"]["elm"]
    for bad, fragment in [(float("nan"), "must be a finite number"), (101, "must be between -100 and 100")]:
        with pytest.raises(ValueError, match=f"The adapter scale {fragment}"):
            with wb.variants.use(name, scale=bad):
                pytest.fail("the block ran")
    assert_unchanged(before, wb)
