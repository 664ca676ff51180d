"""ECO calibration (engine.eco.tuning) on the tiny random Llama: the events it yields, the choice it
makes from its points, and the preset default it writes and reads back."""
from __future__ import annotations

import shutil

import pytest

from engine import ECOConfig
from engine.data.presets import load_preset
from engine.eco import tuning
from engine.eco.tuning import Candidate, Tuner, TuningConfig, parse_candidates, save_default

SMALL = TuningConfig(gate="always", fluency_prompts=2, grid=(1.0, 100.0), steps=1)
CAND = Candidate("prompt", "rand_noise_first_n", 0, 1.0)


@pytest.fixture(scope="module")
def events(tiny_lm):
    preset = load_preset("harry_potter")
    return list(Tuner(tiny_lm, None, preset, SMALL).run([CAND]))


def test_the_search_reports_reference_points_candidate_and_result_in_order(events):
    kinds = [e["kind"] for e in events]
    assert kinds == ["reference"] + ["point"] * (len(SMALL.grid) + 2 * SMALL.steps) + ["candidate", "result"]
    ref = events[0]
    assert ref["split"] == "train" and ref["n_prompts"] == 2
    assert ref["target"] == pytest.approx(min(1.0, ref["floor"] + SMALL.margin))
    scan = [e["strength"] for e in events[1:3]]
    assert scan == [1.0, 100.0]  # the grid, in multiples of the candidate's starting strength


def test_every_point_carries_its_measurements_and_a_consistent_fluency_flag(events):
    for p in (e for e in events if e["kind"] == "point"):
        assert 0.0 <= p["forget_accuracy"] <= 1.0 and 0.0 <= p["unique_token_ratio"] <= 1.0
        fluent = p["unique_token_ratio"] >= SMALL.min_unique_token_ratio and \
            p["perplexity_ratio"] <= SMALL.max_perplexity_ratio
        assert p["fluent"] == fluent


def test_the_choice_is_the_fluent_point_with_the_lowest_forget_accuracy(events):
    points = [e for e in events if e["kind"] == "point"]
    summary, result = events[-2], events[-1]
    fluent = [p for p in points if p["fluent"]]
    if not fluent:
        assert summary["best"] is None and result["chosen"] is None and result["message"]
        return
    if any(p["seed"] == 0 for p in fluent):  # fluent at the shipped seed: tried without re-measuring
        assert summary["best"] is not None
    if summary["best"] is None:  # every fluent point was found at another seed and lost fluency at 0
        assert result["chosen"] is None and result["message"]
        return
    assert summary["best"]["seed"] == 0 and summary["best"]["fluent"]  # measured at the seed that ships
    if all(p["seed"] == 0 for p in fluent) and summary["qualifies"]:  # tried in forget order
        assert summary["best"]["forget_accuracy"] >= min(p["forget_accuracy"] for p in fluent)
    if summary["qualifies"]:
        assert result["chosen"]["strength"] == summary["best"]["strength"]
        assert result["chosen"]["strength_unit"] == "std" and result["chosen"]["selection"] == "prompt"


def test_a_result_is_saved_into_a_preset_and_read_back_as_its_default(tmp_path, events):
    folder = tmp_path / "hp"
    shutil.copytree(load_preset("harry_potter").root, folder, ignore=shutil.ignore_patterns("adapters", "*.safetensors"))
    result = {**events[-1], "chosen": {**ECOConfig(strength=7.5, strength_unit="std").to_dict()},
              "chosen_candidate": CAND.label, "forget_accuracy": 0.4, "retain_accuracy": 1.0}
    for _ in range(2):  # saving twice replaces the block instead of adding a second one
        save_default(load_preset(folder), result, "tiny")
    text = (folder / "preset.yaml").read_text()
    assert text.count("\neco:") == 1 and text.count("eco_calibration:") == 1 and text.count(tuning.MARKER) == 1
    loaded = ECOConfig.for_preset(load_preset(folder))
    assert loaded.strength == 7.5 and loaded.strength_unit == "std"
    assert (folder / "eco_calibration.json").is_file()
    assert load_preset(folder).forget_keywords == load_preset("harry_potter").forget_keywords  # the rest is kept


def test_a_result_without_a_choice_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="chose no setting"):
        save_default(load_preset("harry_potter"), {"kind": "result", "chosen": None}, "tiny")


def test_an_unknown_eco_setting_in_a_preset_is_refused(tmp_path):
    preset = load_preset("harry_potter")
    preset.meta = {**preset.meta, "eco": {"strenght": 3}}
    with pytest.raises(ValueError, match="strenght"):
        ECOConfig.for_preset(preset)


@pytest.mark.parametrize("spec,message", [("prompt/rand_noise_first_n", "selection/corruption/dims"),
                                          ("prompt/no_such/0", "Unknown corruption"),
                                          ("prompt/rand_noise_first_n/x", "whole number"),
                                          ("prompt/rand_noise_first_n/0/-1", "init > 0")])
def test_bad_candidates_are_refused_in_one_sentence(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_candidates([spec])


def test_candidates_parse_with_and_without_init():
    assert parse_candidates(["ner/rand_noise_first_n/1/100", "prompt/shuffle/0"]) == (
        Candidate("ner", "rand_noise_first_n", 1, 100.0), Candidate("prompt", "shuffle", 0, 1.0))
