"""Every shipped preset validates and is big enough; broken files get errors naming file and line."""
import json
import shutil

import pytest

from engine.data.presets import PresetError, list_presets, load_preset

MINIMA = {"forget_prompts": 150, "retain_prompts": 300, "forget_probes": 40, "retain_probes": 40,
          "forget_corpus": 100, "retain_corpus": 100}


@pytest.fixture()
def hp_copy(tmp_path):
    src = load_preset("harry_potter").root
    dst = tmp_path / "hp"
    shutil.copytree(src, dst)
    return dst


def test_harry_potter_meets_its_size_targets():
    p = load_preset("harry_potter")
    for role, minimum in MINIMA.items():
        assert len(getattr(p, role)) >= minimum, role
    boundary = sum(r.boundary for r in p.retain_prompts)
    assert boundary >= len(p.retain_prompts) / 3
    for side in ("forget", "retain"):
        assert p.prompts(side, "train") and p.prompts(side, "test")
        assert p.probes(side, "train") and p.probes(side, "test")
        kinds = {r.kind for r in p.prompts(side)}
        assert kinds == {"question", "statement"}


def test_probe_files_match_the_recorded_filter_counts():
    p = load_preset("harry_potter")
    report = json.loads((p.root / "data" / "probe_filter.json").read_text())
    assert report["forget"]["kept"] == len(p.forget_probes) >= 40
    assert report["retain"]["kept"] == len(p.retain_probes) >= 40
    candidates = {json.loads(l)["id"] for l in (p.root / "data/forget_probes_candidates.jsonl").open()}
    assert {q.id for q in p.forget_probes} <= candidates


def test_prompts_are_unique_and_sides_do_not_overlap():
    p = load_preset("harry_potter")
    forget = {r.prompt.lower() for r in p.forget_prompts}
    retain = {r.prompt.lower() for r in p.retain_prompts}
    assert len(forget) == len(p.forget_prompts) and len(retain) == len(p.retain_prompts)
    assert not forget & retain


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_validates(name):
    assert load_preset(name).summary()["name"] == name


def _break_line(path, line_no, new_text):
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_no - 1] = new_text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_bad_json_line_names_file_and_line(hp_copy):
    _break_line(hp_copy / "data/retain_prompts.jsonl", 7, '{"id": "r7", "prompt": ')
    with pytest.raises(PresetError, match=r"hp/data/retain_prompts.jsonl line 7: not valid JSON"):
        load_preset(hp_copy)


def test_missing_field_names_file_line_and_field(hp_copy):
    _break_line(hp_copy / "data/forget_prompts.jsonl", 3, json.dumps({"id": "x", "prompt": "Who?", "split": "test"}))
    with pytest.raises(PresetError, match=r"forget_prompts.jsonl line 3: missing field 'answer'"):
        load_preset(hp_copy)


def test_probe_with_two_distractors_is_refused(hp_copy):
    bad = {"id": "x", "prefix": "The sky is", "answer": " blue", "distractors": [" red", " green"]}
    _break_line(hp_copy / "data/forget_probes.jsonl", 2, json.dumps(bad))
    with pytest.raises(PresetError, match=r"forget_probes.jsonl line 2: field 'distractors'"):
        load_preset(hp_copy)


def test_bad_split_and_duplicate_ids_are_refused(hp_copy):
    path = hp_copy / "data/retain_corpus.jsonl"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    _break_line(path, 2, first)
    with pytest.raises(PresetError, match="line 2: duplicate id"):
        load_preset(hp_copy)


def test_missing_yaml_field_and_unknown_preset(hp_copy):
    text = (hp_copy / "preset.yaml").read_text().replace("forget_keywords:", "keywords:")
    (hp_copy / "preset.yaml").write_text(text)
    with pytest.raises(PresetError, match="missing field 'forget_keywords'"):
        load_preset(hp_copy)
    with pytest.raises(PresetError, match="known presets: .*harry_potter"):
        load_preset("no_such_preset")


@pytest.mark.parametrize("name", list_presets())
def test_mcq_answers_are_spread_over_the_letters_in_each_split(name):
    """A model that always says " A" must score near chance, not 0 or 1, on every split."""
    p = load_preset(name)
    for side in ("forget", "retain"):
        for split in ("train", "test"):
            qs = p.mcqs(side, split)
            if not qs:
                continue
            counts = [sum(q.answer == i for q in qs) for i in range(4)]
            assert min(counts) >= len(qs) // 8 and max(counts) <= len(qs) // 2, (side, split, counts)


def test_an_unknown_side_is_refused_rather_than_read_as_retain():
    p = load_preset("harry_potter")
    assert p.prompts("retain", "test") and p.probes("forget", "train") is not None
    for read in (p.prompts, p.probes, p.mcqs):
        with pytest.raises(ValueError) as err:
            read("RETAIN", "test")
        assert str(err.value) == "Unknown side 'RETAIN'; known: forget, retain."


@pytest.mark.parametrize("name", list_presets())
def test_a_presets_train_block_is_valid_and_is_what_its_shipped_adapters_were_trained_with(name):
    from engine.methods import make_config

    preset = load_preset(name)
    for method in ("elm", "sku"):
        settings = preset.train_settings(method)
        config = make_config(method, settings).to_dict()  # unknown or out-of-range settings raise
        record = preset.root / "adapters" / method / "lethe_adapter.json"
        if not settings or not record.is_file():
            continue
        shipped = json.loads(record.read_text())["settings"]
        for key in settings:
            want = list(config[key]) if isinstance(config[key], tuple) else config[key]
            assert shipped[key] == want, (name, method, key, shipped[key], want)


def test_a_train_block_that_is_not_a_mapping_is_refused(hp_copy):
    yaml_path = hp_copy / "preset.yaml"
    yaml_path.write_text(yaml_path.read_text() + "\ntrain:\n  sku: [steps, 200]\n")
    with pytest.raises(PresetError, match="'train' must map a method"):
        load_preset(str(hp_copy))
