"""Weight attacks and the attack runner on the tiny random Llama: frozen copies equal their
variant, relearning and quantising never touch the shared model, the linear probe ranks
answers, and the table, the CLI verb and the replay of an attack capsule."""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading

import pytest
import torch

from engine.attacks import AttackConfig
from engine.attacks import probe as probe_attack
from engine.attacks.runner import SAME_WEIGHTS
from engine.attacks.weights import frozen_copy, passages, quantize_, relearn_
from engine.data.presets import PRESETS_DIR, load_preset
from engine.data.records import Probe
from engine.eco.pipeline import ECOConfig
from engine.evaluation.runner import Stopped
from engine.workbench import Workbench

FAST_ELM = {"steps": 2, "grad_accumulation": 1, "consistency_samples": 2, "consistency_tokens": 4,
            "max_length": 24, "passage_chars": 120}
FAST_SKU = {"steps": 2, "max_length": 24, "lr": 5e-2}
ALWAYS = ECOConfig(gate="always")  # no classifier to train
TEXT = "Hermione Granger studies at Hogwarts with Ron Weasley."


def small_preset():
    """harry_potter cut to a few rows per side and split (the runner's cost is its rows)."""
    p = load_preset("harry_potter")
    def cut(rows, n):
        return [r for r in rows if r.split == "train"][:n] + [r for r in rows if r.split == "test"][:n]

    return dataclasses.replace(p, forget_prompts=cut(p.forget_prompts, 3), retain_prompts=cut(p.retain_prompts, 3),
                               forget_probes=cut(p.forget_probes, 4), retain_probes=cut(p.retain_probes, 4),
                               forget_corpus=p.forget_corpus[:5], retain_corpus=p.retain_corpus[:5], attacks=[])


@pytest.fixture(scope="module")
def wb(tiny_model_dir):
    """A workbench on its own copy of the tiny model with a tiny ELM and SKU adapter."""
    from engine.lm.models import load_model

    w = Workbench.from_loaded(load_model(str(tiny_model_dir), device="cpu", dtype="float32"), small_preset())
    w.train("sku", FAST_SKU)
    w.train("elm", FAST_ELM)
    return w


def logits_of(model, tokenizer, text=TEXT):
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits


def snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_tensors(before: dict, model) -> None:
    after = model.state_dict()
    assert set(after) == set(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []


# ---------------------------------------------------------------------------- frozen copies


@pytest.mark.parametrize("variant", ["original", "elm", "sku"])
def test_a_frozen_copy_is_a_plain_model_with_the_variants_logits(wb, variant):
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapter = None if variant == "original" else wb.variants.current["harry_potter"][variant]
    if variant == "sku":
        assert wb.variants.adapters[adapter].scale < 0  # SKU's negation: the adapter at scale -lambda
    before, state = snapshot(wb.lm.model), wb.variants._state
    with wb.variants.use(adapter):
        want = logits_of(wb.lm.model, wb.lm.tokenizer)
    frozen = frozen_copy(wb.lm, wb.variants, adapter)
    assert not any(isinstance(m, BaseTunerLayer) for m in frozen.model.modules())
    assert not any("lora" in k for k in frozen.model.state_dict())
    assert not any(p.requires_grad for p in frozen.model.parameters()) and not frozen.model.training
    assert torch.allclose(logits_of(frozen.model, frozen.tokenizer), want, atol=1e-4)  # merge rounding ~2e-5
    if variant != "original":
        with wb.variants.use(None):
            assert not torch.allclose(logits_of(wb.lm.model, wb.lm.tokenizer), want, atol=1e-4)
    assert_same_tensors(before, wb.lm.model)
    assert wb.variants._state == state


# ---------------------------------------------------------------------------- relearning


def test_relearning_lowers_the_loss_on_its_passages(wb):
    config = AttackConfig(relearn_steps=6, relearn_passages=2, relearn_lr=1e-2)
    frozen = frozen_copy(wb.lm, wb.variants, wb.variants.current["harry_potter"]["sku"])
    texts = passages(wb.preset, "forget", config)
    switch, name, history = relearn_(frozen, texts, config)
    losses = [h["loss"] for h in history]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.1, losses
    assert name in switch.adapters and name not in wb.variants.adapters


def test_relearning_passages_are_seeded_draws_from_the_right_corpus(wb):
    p, config = wb.preset, AttackConfig(relearn_passages=2)
    first = passages(p, "forget", config)
    assert first == passages(p, "forget", config) and len(first) == 2 and len(set(first)) == 2
    assert set(first) <= {x.text for x in p.forget_corpus}
    assert set(passages(p, "retain", config)) <= {x.text for x in p.retain_corpus}
    assert any(passages(p, "forget", AttackConfig(seed=s, relearn_passages=2)) != first for s in range(1, 6))
    reordered = dataclasses.replace(p, forget_corpus=p.forget_corpus[::-1])
    assert passages(reordered, "forget", config) == first


# ---------------------------------------------------------------------------- quantisation


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_rounds_every_linear_row_symmetrically_but_not_the_head(tiny_lm, bits):
    shared = snapshot(tiny_lm.model)
    model = frozen_copy(tiny_lm, None, None).model
    head = model.get_output_embeddings()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    clean = {n: m.weight.detach().clone() for n, m in linears.items()}
    head_before = head.weight.detach().clone()
    assert quantize_(model, bits) == len(linears) == 14  # 7 projections in each of 2 layers
    qmax = 2 ** (bits - 1) - 1
    for n, m in linears.items():
        w0, w = clean[n], m.weight.detach()
        scale = w0.abs().amax(dim=1, keepdim=True) / qmax  # (out, 1): one scale per output row
        steps = w / scale
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= qmax + 1e-3
        assert torch.allclose(w, torch.round(w0 / scale).clamp(-qmax, qmax) * scale, atol=1e-7)
        assert ((w - w0).abs() <= scale / 2 + 1e-7).all()
        assert max(len(torch.unique(row)) for row in w) <= 2 * qmax + 1
    assert torch.equal(head.weight, head_before)
    assert not torch.equal(linears["model.layers.0.self_attn.q_proj"].weight, clean["model.layers.0.self_attn.q_proj"])
    assert_same_tensors(shared, tiny_lm.model)


# ---------------------------------------------------------------------------- the linear probe


def test_the_probe_scores_every_test_probe_on_tiny_model_features(tiny_lm):
    p = small_preset()
    train, test = p.probes("forget", "train"), p.probes("forget", "test")
    feats = probe_attack.features(tiny_lm, test, probe_attack.layer_of(tiny_lm, -1))
    assert feats.shape == (4 * len(test), tiny_lm.model.config.hidden_size) and feats.dtype == torch.float32
    r = probe_attack.probe_accuracy(tiny_lm, train, test)
    assert r["n"] == len(test) == len(r["rows"]) and r["train_n"] == len(train) and 0 <= r["accuracy"] <= 1
    assert r["layer"] == 1 and probe_attack.layer_of(tiny_lm, 7) == 2
    assert r["accuracy"] == sum(x["correct"] for x in r["rows"]) / len(test)
    with pytest.raises(ValueError, match="at least 2 train-split probes"):
        probe_attack.probe_accuracy(tiny_lm, train[:1], test)


def _probes(prefix: str, n: int) -> list[Probe]:
    return [Probe(id=f"{prefix}{k}", prefix=f"Row {k} is", answer=" yes", distractors=(" no", " maybe", " never"))
            for k in range(n)]


def _separable(high: dict):
    """features(): +1 in coordinate 0 on the choice `high[id]` (default the answer), -1 on the others."""
    def features(lm, probes, layer, batch_size=16):
        gen = torch.Generator().manual_seed(len(probes))
        rows = [[1.0 if k == high.get(p.id, 0) else -1.0, float(torch.randn(1, generator=gen))]
                for p in probes for k in range(4)]
        return torch.tensor(rows)
    return features


def test_a_separable_answer_feature_is_ranked_first(monkeypatch, tiny_lm):
    monkeypatch.setattr(probe_attack, "features", _separable({}))
    r = probe_attack.probe_accuracy(tiny_lm, _probes("a", 6), _probes("b", 5))
    assert r["accuracy"] == 1.0 and r["n"] == 5 and all(x["correct"] for x in r["rows"])


def test_a_probe_whose_top_score_is_a_distractor_counts_wrong(monkeypatch, tiny_lm):
    monkeypatch.setattr(probe_attack, "features", _separable({"b0": 2, "b2": 3}))
    r = probe_attack.probe_accuracy(tiny_lm, _probes("a", 6), _probes("b", 4))
    assert [x["correct"] for x in r["rows"]] == [False, True, False, True] and r["accuracy"] == 0.5


# ---------------------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def run(wb):
    """One run of every weight attack (and clean, given twice and out of order) on three variants,
    with the shared model's tensors, switch state and adapters from before it."""
    before = (snapshot(wb.lm.model), wb.variants._state, dict(wb.variants.adapters),
              json.dumps(wb.variants.current, sort_keys=True))
    result = wb.attack(["original", "sku", "eco"], ["quantize", "clean", "relearn", "probe", "quantize"], eco=ALWAYS,
                       config={"limit": 1, "relearn_steps": 3, "relearn_passages": 2})
    return before, result


@pytest.fixture(scope="module")
def result(run):
    return run[1]


def test_weight_attacks_leave_the_shared_model_its_adapters_and_the_switch_as_they_were(wb, run):
    (tensors, state, adapters, current), result = run
    assert_same_tensors(tensors, wb.lm.model)  # base and adapter weights, bit for bit
    assert wb.variants._state == state and wb.variants.adapters == adapters  # no relearning adapter left behind
    assert json.dumps(wb.variants.current, sort_keys=True) == current
    relearned = result.table[result.table.attack == "relearn"]
    assert set(relearned.variant) == {"original", "sku", "eco"} and (relearned.family == "weight").all()


def test_the_table_has_one_row_per_variant_attack_and_metric(result):
    assert result.settings["attacks"] == ["clean", "quantize", "relearn", "probe"]
    probes, leak, gate = ["forget_probe_accuracy", "retain_probe_accuracy"], ["keyword_leak_rate"], \
        ["forget_recall", "retain_fpr"]
    want = set()
    for v in ("original", "sku", "eco"):
        for a, metrics in (("clean", probes + leak), ("quantize", probes + leak), ("relearn", probes + leak),
                           ("probe", probes)):
            gated = gate if v == "eco" and a == "clean" else []
            want |= {(v, a, m) for m in metrics + gated}
    keys = list(zip(result.table.variant, result.table.attack, result.table.metric))
    assert len(keys) == len(set(keys)) and set(keys) == want
    fam = dict(zip(result.table.attack, result.table.family))
    assert fam == {"clean": "clean", "quantize": "weight", "relearn": "weight", "probe": "weight"}
    leak_n = result.table[result.table.metric == "keyword_leak_rate"].n
    assert (leak_n == 1).all() and result.table.value.between(0, 1).all()


def test_eco_under_a_weight_attack_is_the_original_and_says_so(result):
    t = result.table
    for attack in ("quantize", "relearn", "probe"):
        rows = t[t.attack == attack]
        eco = rows[rows.variant == "eco"].set_index("metric")
        orig = rows[rows.variant == "original"].set_index("metric")
        assert eco.value.to_dict() == orig.value.to_dict() and eco.n.to_dict() == orig.n.to_dict()
        assert set(eco.note) == {SAME_WEIGHTS.format(base="Original")} and set(orig.note) == {""}
    assert set(t[t.family != "weight"].note) == {""}


def test_pivot_is_variants_by_attacks_in_run_order(result):
    wide = result.pivot()
    assert list(wide.index) == ["original", "sku", "eco"]
    assert list(wide.columns) == ["clean", "quantize", "relearn", "probe"] and wide.notna().all().all()
    assert wide.loc["eco", "quantize"] == wide.loc["original", "quantize"]
    gate = result.pivot("forget_recall")
    assert gate.shape == (1, 1) and list(gate.index) == ["eco"] and list(gate.columns) == ["clean"]


def test_a_stop_set_before_the_run_raises_stopped(wb):
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        wb.attack(["original"], ["quantize"], stop_event=stop)


def test_replaying_an_attack_capsule_gives_the_same_numbers(wb):
    small = wb.attack(["original"], ["jailbreak"], config={"limit": 1, "seed": 3})
    capsule = wb.capsule(small)
    assert capsule["kind"] == "lethe-attack" and capsule["settings"]["config"]["seed"] == 3
    out = wb.replay(capsule)
    assert out["same"] is True and out["warnings"] == [] and out["rows"]


# ---------------------------------------------------------------------------- the CLI verb


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    """The small preset written as a preset folder (the CLI takes a folder path)."""
    folder = tmp_path_factory.mktemp("preset")
    (folder / "data").mkdir()
    shutil.copy(PRESETS_DIR / "harry_potter" / "preset.yaml", folder / "preset.yaml")
    p = small_preset()
    for role in ("forget_prompts", "retain_prompts", "forget_probes", "retain_probes", "forget_corpus",
                 "retain_corpus"):
        lines = [json.dumps(dataclasses.asdict(r)) for r in getattr(p, role)]
        (folder / "data" / f"{role}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def cli_args(model_dir, preset_dir, *more):
    return ["attack", "--model", str(model_dir), "--device", "cpu", "--dtype", "float32", "--preset",
            str(preset_dir), "--variants", "original,eco", "--gate", "always", "--limit", "1", *more]


def test_the_attack_verb_prints_json_rows_and_writes_an_attack_capsule(tiny_model_dir, preset_dir, tmp_path, capsys):
    from engine.__main__ import main

    path = tmp_path / "c.json"
    assert main(cli_args(tiny_model_dir, preset_dir, "--attacks", "jailbreak", "--capsule", str(path), "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["attack"] for r in out["rows"]} == {"clean", "jailbreak"} and out["capsule"] == str(path)
    assert {r["variant"] for r in out["rows"]} == {"original", "eco"}
    capsule = json.loads(path.read_text())
    assert capsule["kind"] == "lethe-attack" and capsule["settings"]["attacks"] == ["clean", "jailbreak"]
    assert len(capsule["rows"]) == len(out["rows"])


def test_the_attack_verb_prints_one_block_per_metric(tiny_model_dir, preset_dir, tmp_path, capsys):
    from engine.__main__ import main

    path = tmp_path / "c.json"
    assert main(cli_args(tiny_model_dir, preset_dir, "--attacks", "quantize", "--capsule", str(path))) == 0
    text = capsys.readouterr().out
    metrics = ["forget_probe_accuracy", "keyword_leak_rate", "forget_recall", "retain_probe_accuracy", "retain_fpr"]
    starts = [text.index(m + "\n") for m in metrics]
    assert starts == sorted(starts) and f"capsule: {path}" in text
    assert "quantize" in text.split("forget_probe_accuracy\n")[1].split("\n")[0]


def test_an_unknown_attack_fails_in_one_line_before_any_model_loads(capsys):
    from engine.__main__ import main

    assert main(["attack", "--model", "/nonexistent/model-folder-xyz", "--attacks", "jailbreak,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: Unknown attack 'nope'; known: clean, ")
