"""The ECO pipeline on the tiny model: seeded, gated, hook-free, aligned with the selection."""
import threading

import pytest
import torch

from engine import GenerationConfig, Workbench
from engine.eco.pipeline import ECO, ECOConfig, probe_summary
from engine.eco.zo import ZOConfig

ALWAYS = ECOConfig(gate="always", selection="prompt", strength=50.0, dims=8)


@pytest.fixture()
def wb(tiny_lm):
    return Workbench.from_loaded(tiny_lm, preset="harry_potter")


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_eco_output_is_reproducible_with_a_seed_and_differs_from_original(wb):
    g = GenerationConfig(max_new_tokens=12)
    original = wb.generate("Who is Hermione Granger?", g)["text"]
    a = wb.generate("Who is Hermione Granger?", g, variant="eco", eco=ALWAYS)
    b = wb.generate("Who is Hermione Granger?", g, variant="eco", eco=ALWAYS)
    assert a["flagged"] and a["text"] == b["text"]
    assert a["text"] != original
    other_seed = wb.generate("Who is Hermione Granger?", g, variant="eco",
                             eco=ECOConfig.from_dict({**ALWAYS.to_dict(), "seed": 5}))
    assert other_seed["text"] != a["text"] or other_seed["text"] != original


def test_a_closed_gate_leaves_the_answer_identical_to_original(wb):
    g = GenerationConfig(max_new_tokens=12)
    never = ECOConfig.from_dict({**ALWAYS.to_dict(), "gate": "never"})
    out = wb.generate("Who is Hermione Granger?", g, variant="eco", eco=never)
    assert not out["flagged"]
    assert out["text"] == wb.generate("Who is Hermione Granger?", g)["text"]


def test_only_selected_positions_are_corrupted_and_no_hook_is_left(tiny_lm):
    eco = ECO(tiny_lm)
    plan = eco.plan("Who is Barack Obama?", ECOConfig(gate="always", selection="ner", strength=10.0))
    clean = tiny_lm.model.get_input_embeddings()(plan.input_ids)
    changed = (plan.inputs_embeds != clean).any(-1)[0].tolist()
    assert changed == plan.selection.selected and any(changed)
    assert no_hooks(tiny_lm.model)


def test_original_output_is_unchanged_after_eco_requests(wb):
    g = GenerationConfig(max_new_tokens=10)
    before = wb.generate("Tell me about owls.", g)["text"]
    for corruption in ("rand_noise_first_n", "shuffle", "zero_out_top_k"):
        wb.generate("Tell me about owls.", g, variant="eco", eco=ECOConfig(gate="always", corruption=corruption))
    assert wb.generate("Tell me about owls.", g)["text"] == before


def test_relative_strength_scales_with_the_embedding_std(tiny_lm):
    from engine.eco.pipeline import absolute_strength, embedding_std

    cfg = ECOConfig(strength=3.0, strength_unit="std")
    assert absolute_strength(tiny_lm, cfg) == pytest.approx(3.0 * embedding_std(tiny_lm))


@pytest.mark.parametrize("bad, fragment", [
    (dict(dims=10_000), "hidden size"), (dict(strength=float("nan")), "finite"), (dict(strength=-1.0), "positive"),
    (dict(strength=1e12), "too large"), (dict(corruption="melt"), "known: add_value_first_n"),
    (dict(gate="maybe"), "Unknown gate"), (dict(threshold=2.0), "between 0 and 1")])
def test_bad_settings_get_one_clear_sentence(wb, bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        wb.generate("Who is Merlin?", variant="eco", eco=ECOConfig(**{**dict(gate="always"), **bad}))


def test_probe_scoring_original_and_closed_gate_agree(tiny_lm, wb):
    probes = wb.preset.probes("forget", "test")[:6]
    eco = ECO(tiny_lm)
    flat = lambda rows: [v for r in rows for v in r]  # noqa: E731
    base = eco.probe_choice_logprobs(probes, None)
    closed = eco.probe_choice_logprobs(probes, ECOConfig(gate="never"))
    assert flat(closed) == pytest.approx(flat(base), abs=1e-5)
    hit = eco.probe_choice_logprobs(probes, ECOConfig(gate="always", selection="prompt", strength=100.0))
    assert flat(hit) != pytest.approx(flat(base), abs=1e-3)
    ref = eco.probe_choice_logprobs(probes, ECOConfig(gate="always", selection="prompt", corrupt_answer=True))
    assert len(ref) == len(probes) and all(len(r) == 4 for r in ref)
    s = probe_summary(base)
    assert 0 <= s["accuracy"] <= 1 and s["n"] == 6


def test_sweep_returns_one_point_per_strength_and_dims(wb):
    points = wb.sweep([0.0, 100.0], ECOConfig(gate="always", selection="prompt"), dims=[1, 64], split="test")
    assert [(p["dims"], p["strength"]) for p in points] == [(1, 0.0), (1, 100.0), (64, 0.0), (64, 100.0)]
    zero = points[0]
    assert zero["forget_accuracy"] == zero["original_forget_accuracy"]
    assert {"retain_accuracy", "forget_logprob", "retain_logprob"} <= set(zero)


def test_optimize_yields_records_and_stops(wb):
    event = threading.Event()
    records = []
    for rec in wb.optimize(ECOConfig(gate="always", selection="prompt"), ZOConfig(steps=5, tolerance=0.0),
                           stop_event=event):
        records.append(rec)
        if len(records) == 2:
            event.set()
    assert len(records) == 2
    assert {"theta", "f_plus", "f_minus", "grad", "objective", "best_strength"} <= set(records[0])
    assert records[0]["split"] == "train"
