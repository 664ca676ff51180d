"""Metrics on hand-computed cases and on the tiny model; the evaluation runner; run capsules."""
import dataclasses
import json
import math

import pytest

from engine import Workbench
from engine.eco.pipeline import ECOConfig
from engine.evaluation.runner import DEFAULT_METRICS, evaluate
from engine.evaluation.metrics import METRICS, EvalContext, MetricValue, forget_quality, get_metric, list_metrics, mcq_prompt
from engine.data.presets import load_preset
from engine.evaluation.capsules import compare_rows, load_capsule, save_capsule
from tests.helpers import star_wars_subset

ALWAYS = ECOConfig(gate="always", selection="prompt", strength=100.0, dims=16)


@pytest.fixture(scope="module")
def star_wars_small():
    return star_wars_subset(6, 8, 5)


def test_every_metric_has_a_one_line_definition():
    defs = list_metrics()
    assert set(defs) == set(METRICS) and len(defs) >= 10
    assert all(d and "\n" not in d for d in defs.values())


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: forget_mcq_accuracy"):
        get_metric("accuracy_of_everything")


def test_forget_quality_is_a_ks_p_value():
    assert forget_quality([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    assert forget_quality([0.1] * 30, [0.9] * 30) < 1e-6
    assert math.isnan(forget_quality([], [0.5]))


def test_mcq_prompt_matches_the_reference_format():
    text = mcq_prompt("chemistry", "What is H2O?", ["water", "salt", "gold", "air"])
    assert text == ("The following are multiple choice questions (with answers) about chemistry.\n\n"
                    "What is H2O?\nA. water\nB. salt\nC. gold\nD. air\nAnswer:")


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_runs_for_original_and_eco_on_the_tiny_model(name, tiny_lm, star_wars_small):
    for eco in (None, ALWAYS):
        ctx = EvalContext(lm=tiny_lm, preset=star_wars_small, split="test", eco=eco)
        mv = get_metric(name)(ctx)
        assert isinstance(mv, MetricValue)
        if "mcq" in name:  # star_wars has no multiple-choice questions
            assert mv.n == 0 and math.isnan(mv.value)
        else:
            assert mv.n > 0 and math.isfinite(mv.value) and len(mv.rows) == mv.n


def test_hand_computed_values_on_the_tiny_model(tiny_lm, star_wars_small):
    orig = EvalContext(lm=tiny_lm, preset=star_wars_small, split="test", eco=None)
    assert get_metric("retain_kl")(orig).value == pytest.approx(0.0, abs=1e-6)  # KL(p || p) = 0
    assert get_metric("forget_recall")(orig).value == 0.0  # Original never flags
    eco = EvalContext(lm=tiny_lm, preset=star_wars_small, split="test", eco=ALWAYS)
    assert get_metric("forget_recall")(eco).value == 1.0 and get_metric("retain_fpr")(eco).value == 1.0
    assert get_metric("retain_kl")(eco).value > 0.0
    rows = get_metric("truth_ratio")(orig).rows
    assert all(r["truth_ratio"] > 0 for r in rows)


def test_mcq_accuracy_on_the_chemistry_preset(tiny_lm):
    p = load_preset("chemistry")
    p = dataclasses.replace(p, forget_mcq=p.mcqs("forget", "test")[:8])
    mv = get_metric("forget_mcq_accuracy")(EvalContext(lm=tiny_lm, preset=p, split="test", eco=None))
    assert mv.n == 8 and 0.0 <= mv.value <= 1.0


def test_runner_returns_a_tidy_dataframe_and_reports_progress(tiny_lm, star_wars_small):
    seen = []
    res = evaluate(tiny_lm, star_wars_small, ["original", "eco"], DEFAULT_METRICS, "test", ALWAYS,
                   on_progress=seen.append)
    assert list(res.table.columns) == ["variant", "metric", "split", "value", "n"]
    assert len(res.table) == 2 * len(DEFAULT_METRICS) == len(seen)
    assert set(res.table.variant) == {"original", "eco"} and (res.table.split == "test").all()
    assert {"variant", "metric", "id"} <= set(res.examples.columns)


def test_batched_and_one_by_one_scoring_agree(tiny_lm, star_wars_small):
    metrics = ["forget_probe_logprob", "retain_perplexity"]
    a = evaluate(tiny_lm, star_wars_small, ["original"], metrics, "test", batch_size=32).table.value.tolist()
    b = evaluate(tiny_lm, star_wars_small, ["original"], metrics, "test", batch_size=1).table.value.tolist()
    assert a == pytest.approx(b, rel=1e-4)


def test_capsule_round_trip_replays_to_the_same_numbers(tiny_lm, tmp_path):
    wb = Workbench.from_loaded(tiny_lm, preset="star_wars")
    res = wb.evaluate(["original", "eco"], ["forget_probe_accuracy", "retain_probe_logprob", "truth_ratio"],
                      "test", ALWAYS)
    path = save_capsule(wb.capsule(res), tmp_path / "run.json")
    cap = load_capsule(path)
    assert cap["model"]["weights_sha256"] and cap["preset"]["data_sha256"]
    assert cap["settings"]["eco"]["strength"] == 100.0 and cap["versions"]["torch"]
    replay = wb.replay(cap)
    assert replay["same"], replay


def test_bad_capsules_are_refused_in_one_sentence(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_capsule(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a Lethe run capsule"):
        load_capsule(bad)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (50 * 1024 * 1024))
    with pytest.raises(ValueError, match="limit"):
        load_capsule(big)


def test_compare_rows_flags_differences():
    old = [{"variant": "eco", "metric": "m", "value": 0.5}]
    assert compare_rows(old, [{"variant": "eco", "metric": "m", "value": 0.5}])[0]["same"]
    assert not compare_rows(old, [{"variant": "eco", "metric": "m", "value": 0.6}])[0]["same"]


def test_text_metrics_on_hand_computed_cases(tiny_lm):
    from engine.evaluation.metrics import keyword_mentions, token_diff, unique_token_ratio

    assert keyword_mentions("Harry met Hermione at hogwarts.", ["Hogwarts", "Hermione", "Ron"]) == ["Hogwarts", "Hermione"]
    assert keyword_mentions("Ronald is not Ron-like", ["Ron"]) == ["Ron"]  # whole words only: "Ronald" alone is no hit
    assert keyword_mentions("Ronaldo", ["Ron"]) == []
    ids = tiny_lm.tokenizer("the the the", add_special_tokens=False)["input_ids"]
    assert unique_token_ratio(tiny_lm.tokenizer, "the the the") == pytest.approx(len(set(ids)) / len(ids))
    assert math.isnan(unique_token_ratio(tiny_lm.tokenizer, ""))
    diff = token_diff("a b c", "a x c")
    assert diff == [("a", None), (" b", "removed"), (" x", "added"), (" c", None)]


def test_generation_metrics_do_not_depend_on_the_batch(tiny_lm, star_wars_small):
    from engine.evaluation.metrics import generate_batch

    prompts = [r.prompt for r in star_wars_small.forget_prompts[:4]]
    for eco in (None, ALWAYS):
        one = generate_batch(EvalContext(tiny_lm, star_wars_small, "test", eco, batch_size=1), prompts, 6)
        four = generate_batch(EvalContext(tiny_lm, star_wars_small, "test", eco, batch_size=4), prompts, 6)
        assert one == four and all(isinstance(t, str) for t in one)


def test_continuation_logprobs_equal_a_full_log_softmax_by_hand(tiny_lm):
    import torch

    from engine.lm.scoring import continuation_logprobs

    tok, model = tiny_lm.tokenizer, tiny_lm.model
    pairs = [("The sky is", " blue"), ("A much longer prefix that needs padding in the batch", " and more words")]
    got = continuation_logprobs(model, tok, [p for p, _ in pairs], [c for _, c in pairs], batch_size=2)
    for (prefix, cont), value in zip(pairs, got):
        p = tok(prefix, add_special_tokens=True)["input_ids"]
        c = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
        want = sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)) / len(c)
        assert value == pytest.approx(want, abs=1e-4)
