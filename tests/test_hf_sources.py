"""Preset roles read from Hugging Face datasets (here local files through the real `datasets`
loaders): rows are mapped, filtered, split and validated like JSONL records."""
import json
import shutil

import pytest
import yaml

from engine.data.presets import PresetError, load_preset

MCQ_ROWS = [
    {"question": f"Which gas is number {i}?", "choices": ["argon", "neon", "xenon", "radon"], "answer": i % 4,
     "subject": "chem" if i % 3 else "physics"}
    for i in range(12)
]


@pytest.fixture()
def hp_copy(tmp_path):
    dst = tmp_path / "hp"
    shutil.copytree(load_preset("harry_potter").root, dst, ignore=shutil.ignore_patterns("adapters"))
    return dst


def write_yaml(folder, files):
    meta = yaml.safe_load((folder / "preset.yaml").read_text())
    meta["files"] = {**(meta.get("files") or {}), **files}
    (folder / "preset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_mcq_and_probes_from_a_dataset_with_column_mapping_filter_and_limit(hp_copy):
    write_jsonl(hp_copy / "mcq.jsonl", MCQ_ROWS)
    write_yaml(hp_copy, {
        "forget_mcq": {"dataset": "json", "data_files": "mcq.jsonl", "where": {"subject": "chem"},
                       "record_split": "test", "id_prefix": "chem"},
        "forget_probes": {"dataset": "json", "data_files": "mcq.jsonl", "limit": 5, "test_fraction": 0.5,
                          "prefix_template": "Q: {question}\nA:"},
    })
    p = load_preset(hp_copy)
    assert len(p.forget_mcq) == 8  # 12 rows, every third is physics
    first = p.forget_mcq[0]
    assert (first.id, first.choices, first.answer, first.split) == ("chem-1", ("argon", "neon", "xenon", "radon"), 1, "test")
    assert len(p.forget_probes) == 5
    probe = p.forget_probes[2]
    assert probe.prefix == "Q: Which gas is number 2?\nA:"
    assert probe.answer == "xenon" and set(probe.distractors) == {"argon", "neon", "radon"}
    splits = [q.split for q in p.forget_probes]
    assert splits == [q.split for q in load_preset(hp_copy).forget_probes]  # stable hash split
    assert set(splits) <= {"train", "test"}
    assert p.sources.keys() == {"forget_mcq", "forget_probes"}


def test_corpus_from_a_saved_dataset_folder_and_the_data_hash_follows_the_rows(hp_copy):
    import datasets

    rows = [{"body": f"Passage number {i} about something else entirely.", "uid": f"p{i}"} for i in range(4)]
    datasets.Dataset.from_list(rows).save_to_disk(str(hp_copy / "corpus_ds"))
    write_yaml(hp_copy, {"retain_corpus": {"dataset": "corpus_ds", "columns": {"text": "body", "id": "uid"}}})
    p = load_preset(hp_copy)
    assert [x.id for x in p.retain_corpus] == ["p0", "p1", "p2", "p3"]
    before = p.data_hash()
    rows[0]["body"] = "A changed passage."
    shutil.rmtree(hp_copy / "corpus_ds")
    datasets.Dataset.from_list(rows).save_to_disk(str(hp_copy / "corpus_ds"))
    assert load_preset(hp_copy).data_hash() != before


@pytest.mark.parametrize("source, needle", [
    ({"dataset": "json", "data_files": "mcq.jsonl", "columns": {"question": "nope"}}, "column 'nope'"),
    ({"dataset": "json", "data_files": "mcq.jsonl", "colums": {}}, "unknown key(s) colums"),
    ({"dataset": "json", "data_files": "mcq.jsonl", "where": {"subject": "biology"}}, "no rows left"),
    ({"dataset": "json", "data_files": "missing.jsonl"}, "could not load dataset 'json'"),
    ({"dataset": "lethe-nobody/no-such-dataset"}, "could not load dataset 'lethe-nobody/no-such-dataset'"),
    ({"dataset": "json", "data_files": "mcq.jsonl", "record_split": "dev"}, "'record_split' must be one of"),
])
def test_bad_dataset_sources_fail_with_one_sentence(hp_copy, source, needle):
    write_jsonl(hp_copy / "mcq.jsonl", MCQ_ROWS)
    write_yaml(hp_copy, {"forget_mcq": source})
    with pytest.raises(PresetError) as err:
        load_preset(hp_copy)
    msg = str(err.value)
    assert needle in msg and "files.forget_mcq" in msg and "\n" not in msg


def test_a_dataset_row_that_breaks_the_schema_names_the_row(hp_copy):
    rows = [dict(r) for r in MCQ_ROWS]
    rows[3]["choices"] = ["only", "three", "choices"]
    write_jsonl(hp_copy / "mcq.jsonl", rows)
    write_yaml(hp_copy, {"forget_mcq": {"dataset": "json", "data_files": "mcq.jsonl"}})
    with pytest.raises(PresetError, match=r"files.forget_mcq row 3: field 'choices' must be a list of 4"):
        load_preset(hp_copy)


def test_the_shipped_hub_example_is_well_formed_and_fails_offline_in_one_sentence():
    from engine.data.hf_sources import _check_spec
    from engine.data.presets import PRESETS_DIR, list_presets

    folder = PRESETS_DIR / "examples" / "wmdp_chemistry"
    meta = yaml.safe_load((folder / "preset.yaml").read_text())
    assert "wmdp_chemistry" not in list_presets() and "examples" not in list_presets()
    for role, source in meta["files"].items():
        if isinstance(source, dict):
            _check_spec(source, role)
        else:
            assert (folder / source).is_file(), role
    with pytest.raises(PresetError, match=r"files.forget_mcq: could not load dataset 'cais/wmdp'"):
        load_preset(folder)
