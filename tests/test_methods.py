"""ELM and SKU on the tiny random Llama: each loss on hand-computed cases, the loop, stop,
the SKU negation identity, adapter files, and variants that never leak into each other."""
from __future__ import annotations

import json
import math
import threading

import pytest
import torch

from engine.lm.generation import GenerationConfig
from engine.methods import TrainingStopped, make_config
from engine.methods.elm import erase_target, soft_cross_entropy
from engine.methods.sku import answer_nll, masked_kl
from engine.methods.variants import AdapterError
from engine.workbench import Workbench

FAST_ELM = {"steps": 2, "grad_accumulation": 1, "consistency_samples": 2, "consistency_tokens": 4,
            "max_length": 32, "passage_chars": 120}
FAST_SKU = {"steps": 2, "max_length": 32}


@pytest.fixture()
def wb(tiny_model_dir, tmp_path, monkeypatch):
    """A fresh workbench on the tiny model (adapters are injected, so never share it)."""
    from engine.lm.models import load_model

    monkeypatch.setenv("LETHE_CACHE_DIR", str(tmp_path / "cache"))
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    return Workbench.from_loaded(lm, "harry_potter")


def greedy(wb, variant="original", prompt="Who is Harry Potter?"):
    from engine.eco.pipeline import ECOConfig

    return wb.generate(prompt, GenerationConfig(max_new_tokens=8), variant=variant,
                       eco=ECOConfig(gate="always"))["text"]


def logits(wb, text="Hermione Granger studies at Hogwarts."):
    ids = wb.lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return wb.lm.model(input_ids=ids).logits


# ---------------------------------------------------------------------------- losses by hand

def test_erase_target_is_base_plus_eta_times_novice_minus_expert():
    l0 = torch.log_softmax(torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]), -1)
    le = torch.log_softmax(torch.tensor([[0.0, 3.0, 0.0], [1.0, 0.0, 0.0]]), -1)
    ln = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), -1)
    got = erase_target(l0, le, ln, eta=3.0, topk=0)
    ramp = torch.tensor([1.0, 3.0])[:, None]  # eta ramps linearly from 1 to eta over the positions
    want = torch.softmax(l0 + ramp * (ln - le), -1)
    assert torch.allclose(got, want, atol=1e-6)
    top1 = erase_target(l0, le, ln, eta=3.0, topk=1)
    assert torch.equal(top1, torch.nn.functional.one_hot(want.argmax(-1), 3).float())


def test_erase_target_stays_on_the_rows_device():
    """The eta ramp is built where the rows live (a CPU ramp broke ELM on CUDA)."""
    rows = torch.empty(4, 7, device="meta")
    for topk in (0, 3):
        assert erase_target(rows, rows, rows, eta=30.0, topk=topk).device.type == "meta"


def test_soft_cross_entropy_of_uniform_target_is_log_vocab():
    assert soft_cross_entropy(torch.zeros(2, 5), torch.full((2, 5), 0.2)).item() == pytest.approx(math.log(5))


def test_answer_nll_averages_only_answer_tokens_per_example():
    ids = torch.tensor([[0, 1, 2, 0], [0, 2, 0, 0]])
    logits = torch.zeros(2, 4, 3)
    logits[0, 1, 2] = math.log(2)  # row 1 predicts token 2: p = 2/4
    # example 0 scores tokens 2..3 (ids 2, 0): -log(1/2) and -log(1/3); example 1 scores token 1 only
    got = answer_nll(logits, ids, starts=[2, 1], lengths=[4, 2])
    want = ((math.log(2) + math.log(3)) / 2 + math.log(3)) / 2
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_masked_kl_is_zero_for_identical_and_ignores_padding():
    a = torch.randn(1, 3, 5)
    b = a.clone()
    b[0, 2, 0] += 10.0  # only the padded position differs
    assert masked_kl(a, a, torch.ones(1, 3)).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_kl(a, b, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_kl(a, b, torch.ones(1, 3)).item() > 0.01


# ---------------------------------------------------------------------------- the loop

@pytest.mark.parametrize("method,settings", [("elm", FAST_ELM), ("sku", FAST_SKU)])
def test_training_changes_only_adapter_weights_and_yields_every_loss_term(wb, method, settings):
    before = {k: v.clone() for k, v in wb.lm.model.state_dict().items()}
    steps = []
    out = wb.train(method, settings, on_step=steps.append)
    assert [s["step"] for s in steps] == [1, 2] and out["steps_run"] == 2
    terms = {"elm": {"erase", "retain", "consistency"},
             "sku": {"guided_distortion", "random_disassociation", "preservation_divergence"}}[method]
    assert terms <= set(steps[0])
    after = {k.replace(".base_layer", ""): v for k, v in wb.lm.model.state_dict().items()}
    assert all(torch.equal(after[k], v) for k, v in before.items())  # base weights untouched
    assert any("lora_" in k for k in set(after) - set(before))
    assert method in wb.variants.names("harry_potter")


def test_a_few_steps_decrease_the_loss(wb):
    settings = {**FAST_SKU, "steps": 6, "lr": 2e-2, "random_weight": 0.0, "normal_weight": 0.0,
                "linear_decay": False, "dropout": 0.0}
    steps = []
    wb.train("sku", settings, on_step=steps.append)
    assert steps[-1]["guided_distortion"] < steps[0]["guided_distortion"]


def test_stop_mid_training_discards_the_new_adapter_and_keeps_the_old(wb):
    wb.train("elm", FAST_ELM)
    old = wb.variants.current["harry_potter"]["elm"]
    elm_out = greedy(wb, "elm")
    stop = threading.Event()
    with pytest.raises(TrainingStopped):
        wb.train("elm", {**FAST_ELM, "steps": 5}, on_step=lambda r: stop.set(), stop_event=stop)
    assert wb.variants.current["harry_potter"]["elm"] == old
    assert list(wb.variants.adapters) == [old]
    assert greedy(wb, "elm") == elm_out
    assert not wb.lm.model.training


def test_sku_negation_equals_full_weight_task_vector_arithmetic(wb, tiny_model_dir):
    """theta_0 - lambda (theta_ft - theta_0), built explicitly, gives the SKU variant's logits."""
    from transformers import LlamaForCausalLM

    wb.train("sku", {**FAST_SKU, "lr": 1e-2})
    lam = 1.7
    wb.set_negation(lam)
    name = wb.variants.current["harry_potter"]["sku"]
    with wb.variants.use(name):
        sku_logits = logits(wb)
    theta0 = LlamaForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    adapter = wb.lm.model.get_adapter_state_dict(adapter_name=name)
    cfg = wb.lm.model.peft_config[name]
    explicit = dict(theta0)
    for key in {k.rsplit(".lora_", 1)[0] for k in adapter}:
        delta = adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"] * (cfg.lora_alpha / cfg.r)
        theta_ft = theta0[f"{key}.weight"] + delta  # the stage-1 "harmful" model
        explicit[f"{key}.weight"] = theta0[f"{key}.weight"] - lam * (theta_ft - theta0[f"{key}.weight"])
    ref = LlamaForCausalLM.from_pretrained(tiny_model_dir).eval()
    ref.load_state_dict(explicit)
    ids = wb.lm.tokenizer("Hermione Granger studies at Hogwarts.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        want = ref(input_ids=ids).logits
    assert torch.allclose(sku_logits, want, atol=1e-4)
    assert not torch.allclose(sku_logits, logits(wb), atol=1e-3)  # and it differs from Original


def test_variants_switch_without_leaking_state(wb):
    original = greedy(wb)
    base_logits = logits(wb)
    wb.train("elm", {**FAST_ELM, "lr": 5e-2})
    wb.train("sku", {**FAST_SKU, "lr": 5e-2})
    with wb.variants.use(wb.variants.current["harry_potter"]["elm"]):
        assert not torch.allclose(logits(wb), base_logits)
    for v in ("elm", "sku", "eco+elm", "original"):
        greedy(wb, v)
    assert greedy(wb) == original
    assert torch.equal(logits(wb), base_logits)
    assert not wb.lm.model.training


def test_unknown_variant_names_the_known_ones(wb):
    with pytest.raises(ValueError, match="known: original, eco"):
        greedy(wb, "elm")


def test_unknown_method_and_setting_are_listed():
    with pytest.raises(ValueError, match="known: elm, sku"):
        make_config("rmu")
    with pytest.raises(ValueError, match="Unknown ELMConfig setting"):
        make_config("elm", {"etaa": 3})
    with pytest.raises(ValueError, match="lr must be between"):
        make_config("sku", {"lr": float("nan")})


# ---------------------------------------------------------------------------- files

def test_saved_adapter_round_trips_and_changes_outputs(wb, tmp_path):
    out = tmp_path / "adapters" / "sku"
    wb.train("sku", {**FAST_SKU, "lr": 5e-2}, out_dir=str(out))
    assert {p.name for p in out.iterdir()} == {"adapter_model.safetensors", "adapter_config.json", "lethe_adapter.json"}
    record = json.loads((out / "lethe_adapter.json").read_text())
    assert record["method"] == "sku" and record["settings"]["lr"] == 5e-2
    with wb.variants.use(wb.variants.current["harry_potter"]["sku"]):
        trained = logits(wb)
    fresh = Workbench.from_loaded(wb.lm.__class__(**{**wb.lm.__dict__}), "harry_potter")
    fresh.variants.lm.model.delete_adapter(wb.variants.current["harry_potter"]["sku"])
    fresh.variants._layers = None
    a = fresh.load_adapter(str(out))
    assert a["method"] == "sku" and a["scale"] == -1.0
    with fresh.variants.use(a["name"]):
        loaded = logits(fresh)
    assert torch.allclose(loaded, trained, atol=5e-2)  # saved in fp16
    assert not torch.allclose(loaded, logits(fresh), atol=1e-3)


def test_saving_is_atomic_and_keeps_the_previous_adapter_on_failure(wb, tmp_path, monkeypatch):
    out = tmp_path / "adapters" / "elm"
    wb.train("elm", FAST_ELM, out_dir=str(out))
    first = (out / "adapter_model.safetensors").read_bytes()
    name = wb.variants.current["harry_potter"]["elm"]

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError):
        wb.variants.save(name, out)
    assert (out / "adapter_model.safetensors").read_bytes() == first
    assert [p.name for p in out.parent.iterdir()] == ["elm"]  # no temporary folder left behind


def test_adapter_of_the_wrong_shape_is_refused_in_one_sentence(wb, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "sku"
    wb.train("sku", FAST_SKU, out_dir=str(out))
    tensors = load_file(str(out / "adapter_model.safetensors"))
    key = next(iter(tensors))
    tensors[key] = torch.zeros(3, 3, dtype=torch.float16)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    n = len(wb.variants.adapters)
    with pytest.raises(AdapterError, match="wrong shape"):
        wb.load_adapter(str(out), key="broken")
    assert len(wb.variants.adapters) == n
    with pytest.raises(AdapterError, match="No adapter folder"):
        wb.load_adapter(str(tmp_path / "nothing-here"))


# ---------------------------------------------------------------------------- compare

def test_compare_streams_four_columns_and_reports_quick_metrics(wb):
    wb.train("elm", FAST_ELM)
    wb.train("sku", FAST_SKU)
    from engine.eco.pipeline import ECOConfig

    records = list(wb.compare("Who is Harry Potter?", config=GenerationConfig(max_new_tokens=6),
                              eco=ECOConfig(gate="always")))
    assert len(records) > 2 and not records[0]["done"] and records[-1]["done"]
    last = records[-1]
    assert last["variants"] == ["original", "eco", "elm", "sku"] and len(last["texts"]) == 4
    assert {"perplexity", "unique_token_ratio", "keywords", "gate_score"} <= set(last["metrics"][0])
    assert all(kind is None for _, kind in last["diffs"][0])  # Original against itself
    alone = greedy(wb, "sku", "Who is Harry Potter?")
    assert last["texts"][3] == alone[: len(last["texts"][3])]


def test_an_adapter_that_does_not_fit_leaves_the_model_able_to_take_the_next_one(tiny_model_dir, tmp_path):
    """A LoRA whose target module the model lacks is refused, and leaves nothing half-registered."""
    from peft import LoraConfig

    from engine.lm.models import load_model
    from engine.methods.variants import AdapterError, Variants

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    vs = Variants(lm)
    with pytest.raises(Exception):
        vs.create("bad", LoraConfig(r=2, lora_alpha=4, target_modules=["no_such_module"]))
    assert "bad" not in getattr(lm.model, "peft_config", {})
    vs.create("good", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    assert list(lm.model.peft_config) == ["good"] and vs.parameters("good")


def test_a_lora_on_the_embeddings_is_trained_saved_and_loaded_like_the_others(tiny_model_dir, tmp_path):
    """peft names an embedding's LoRA tensors without `.weight` (`embed_tokens.lora_embedding_A`)."""
    from peft import LoraConfig

    from engine.lm.models import load_model
    from engine.methods.variants import Variants

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    vs = Variants(lm)
    vs.create("emb", LoraConfig(r=2, lora_alpha=4, target_modules=["embed_tokens", "q_proj"]))
    names = {n for n, p in lm.model.named_parameters() if p in set(vs.parameters("emb"))}
    assert any("lora_embedding_A" in n for n in names) and any("q_proj.lora_A" in n for n in names)
    with torch.no_grad():
        for n, p in lm.model.named_parameters():
            if "lora_" in n:
                p.fill_(0.25)
    vs.register("elm", "emb", "elm", {"method": "elm"})
    vs.save("emb", tmp_path / "emb", {"method": "elm"}, dtype=torch.float32)
    fresh = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    loaded = Variants(fresh).load(tmp_path / "emb", "elm")
    values = {n: p for n, p in fresh.model.named_parameters() if "lora_" in n and loaded.name in n}
    assert any("lora_embedding_B" in n for n in values)
    assert all(torch.all(p == 0.25) for p in values.values())


def test_a_failed_adapter_next_to_a_working_one_leaves_only_the_working_one(tiny_model_dir):
    from peft import LoraConfig

    from engine.lm.models import load_model
    from engine.methods.variants import Variants

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    vs = Variants(lm)
    vs.create("good", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    with pytest.raises(Exception):
        vs.create("bad", LoraConfig(r=2, lora_alpha=4, target_modules=["no_such_module"]))
    assert list(lm.model.peft_config) == ["good"]
    vs.create("next", LoraConfig(r=2, lora_alpha=4, target_modules=["v_proj"]))
    assert list(lm.model.peft_config) == ["good", "next"] and vs.parameters("next")


def test_after_deleting_the_last_adapter_the_base_model_still_runs_under_use(tiny_model_dir):
    from peft import LoraConfig

    from engine.lm.models import load_model
    from engine.methods.variants import Variants

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    ids = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
    vs = Variants(lm)
    vs.create("only", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    vs.delete("only")
    vs.delete("only")  # deleting twice is harmless
    with vs.use(None) as model, torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, before)


def test_an_elm_adapters_own_scale_is_recorded_and_applied_when_loaded(wb, tmp_path):
    out = tmp_path / "adapters" / "elm"
    wb.train("elm", {**FAST_ELM, "lr": 5e-2, "scale": 1.5}, out_dir=str(out))
    name = wb.variants.current["harry_potter"]["elm"]
    assert wb.variants.adapters[name].scale == 1.5
    assert json.loads((out / "lethe_adapter.json").read_text())["settings"]["scale"] == 1.5
    with wb.variants.use(name):
        at_own = logits(wb)
    with wb.variants.use(name, scale=1.0):
        at_one = logits(wb)
    assert not torch.allclose(at_own, at_one, atol=1e-4)  # the scale is applied, not just written down
    loaded = wb.load_adapter(str(out))
    assert loaded["method"] == "elm" and loaded["scale"] == 1.5


def test_compares_lambda_slider_starts_at_the_sku_adapters_own_lambda(wb):
    from app.tabs.compare import own_negation

    assert own_negation(wb) == 1.0  # no SKU adapter fits the tiny model yet
    wb.train("sku", {**FAST_SKU, "negation": 2.5})
    assert own_negation(wb) == 2.5
    wb.set_negation(0.5)
    assert own_negation(wb) == 0.5
    wb.set_negation(4.0)  # chemistry's shipped lambda sits inside the slider, not at a clamp
    assert own_negation(wb) == 4.0
    wb.set_negation(20.0)
    assert own_negation(wb) == 8.0
