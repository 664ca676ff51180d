"""Prompt attacks on a hand-written preset: seeded and row-independent, each changing exactly what
it says (names hidden, wrappers and frames of the split, shots of the train split), loud about
missing data and bad settings; the preset loader reads data/attacks.jsonl and names bad lines."""
from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import shutil

import pytest

from engine.attacks import ATTACKS, PROMPT_ATTACKS, AttackConfig, get_attack, list_attacks
from engine.attacks.base import AttackData, Context, find_names
from engine.attacks.jailbreak import TEMPLATES
from engine.attacks.obfuscate import hyphen, leet, obfuscate_word, spacing, typo
from engine.attacks.smuggle import FRAMES as SMUGGLE_FRAMES
from engine.attacks.translate import FRAMES as TRANSLATE_FRAMES
from engine.attacks.translate import QUESTIONS, Translate
from engine.data.presets import PRESETS_DIR, PresetError, load_preset
from engine.data.records import AttackRow, Probe, PromptRecord
from engine.eco.augment import attack_data

SIDES = ("forget", "retain")
DESCRIPTIONS = {  # (name, split) -> descriptions; Hagrid has none for the test split
    ("Harry Potter", "train"): ["an orphaned wizard"],
    ("Harry Potter", "test"): ["the boy who lived", "the orphaned son"],
    ("Hogwarts", "train"): ["a school of magic"],
    ("Hogwarts", "test"): ["a castle school in Scotland", "Scottish castle school"],
    ("Ron Weasley", "test"): ["a red-haired boy"],
    ("Hagrid", "train"): ["the gamekeeper"],
}
RETAIN_NAMES = {"train": ["Tolkien", "Euler"], "test": ["Tenzing Norgay", "Castle Rock"]}


def _prompt(id, text, split, answer="An answer."):
    return PromptRecord(id=id, prompt=text, answer=answer, split=split)


def _probe(id, prefix, answer, split):
    return Probe(id=id, prefix=prefix, answer=answer, distractors=(" Alpha", " Beta", " Gamma"), split=split)


def _attack_rows():
    rows = [AttackRow(id=f"d{k}", kind="description", name=name, text=text, split=split)
            for k, ((name, split), texts) in enumerate(DESCRIPTIONS.items()) for text in texts]
    rows += [AttackRow(id=f"n{split}{k}", kind="retain_name", text=t, split=split)
             for split, names in RETAIN_NAMES.items() for k, t in enumerate(names)]
    return [dataclasses.replace(r, id=f"a{k}") for k, r in enumerate(rows)]


@pytest.fixture(scope="module")
def preset():
    """harry_potter's keywords with a few hand-written rows of each kind, both splits."""
    base = load_preset("harry_potter")
    return dataclasses.replace(
        base, attacks=_attack_rows(),
        forget_prompts=[_prompt("f1", "Who is Harry Potter?", "train"),
                        _prompt("f2", "Where does Hagrid live?", "train"),
                        _prompt("f3", "What is Quidditch?", "train"), _prompt("t1", "Who is Ron Weasley?", "test"),
                        _prompt("t2", "Why did Harry Potter go to Hogwarts?", "test"),
                        _prompt("t3", "Tell me about the Hogwarts houses.", "test"),
                        _prompt("t4", "What is a wand made of?", "test"),
                        _prompt("t5", "Does Harry Potter trust Hagrid?", "test")],
        retain_prompts=[_prompt("r1", "Who wrote The Lord of the Rings?", "train"),
                        _prompt("r2", "What is the capital of Australia?", "train"),
                        _prompt("r3", "Who is Frodo Baggins?", "test"),
                        _prompt("r4", "What is the boiling point of water?", "test")],
        forget_probes=[_probe("fp1", "Harry Potter's best friend is Ron", " Weasley", "train"),
                       _probe("fp2", "The school Harry Potter attends is called", " Hogwarts", "train"),
                       _probe("fp3", "Harry Potter's owl is called", " Hedwig", "test"),
                       _probe("fp4", "The castle of Hogwarts stands in the Scottish", " Highlands", "test")],
        retain_probes=[_probe("rp1", "The capital of France is", " Paris", "train"),
                       _probe("rp2", "Water boils at one hundred degrees", " Celsius", "train"),
                       _probe("rp3", "Frodo Baggins carries the One", " Ring", "test"),
                       _probe("rp4", "The tallest mountain on Earth is Mount", " Everest", "test")])


def texts(attacked) -> dict:
    """id -> attacked text, every prompt and probe prefix of both sides."""
    return {**{r.id: r.prompt for r in attacked.forget_prompts + attacked.retain_prompts},
            **{p.id: p.prefix for p in attacked.forget_probes + attacked.retain_probes}}


# ---------------------------------------------------------------------------- seeds and rows


@pytest.mark.parametrize("name", list(PROMPT_ATTACKS))
def test_every_prompt_attack_is_a_function_of_its_seed(preset, name):
    attack = PROMPT_ATTACKS[name]
    for split in ("train", "test"):
        first = attack.attack_preset(preset, split, AttackConfig(seed=0, shots=2))
        assert first == attack.attack_preset(preset, split, AttackConfig(seed=0, shots=2))
        assert texts(first), f"{name} attacked nothing on {split}"
    seeded = texts(attack.attack_preset(preset, "test", AttackConfig(seed=0, shots=2)))
    others = [texts(attack.attack_preset(preset, "test", AttackConfig(seed=s, shots=2))) for s in range(1, 6)]
    assert any(o != seeded for o in others), f"{name} ignores its seed"


@pytest.mark.parametrize("name", list(PROMPT_ATTACKS))
def test_a_rows_attacked_text_does_not_depend_on_the_other_test_rows(preset, name):
    attack, config = PROMPT_ATTACKS[name], AttackConfig(shots=2)
    full = texts(attack.attack_preset(preset, "test", config))
    for dropped in ("t2", "fp3", "r3", "rp4"):
        cut = dataclasses.replace(preset, **{f: [r for r in getattr(preset, f) if r.id != dropped]
                                             for f in ("forget_prompts", "retain_prompts", "forget_probes",
                                                       "retain_probes")})
        assert texts(attack.attack_preset(cut, "test", config)) == {k: v for k, v in full.items() if k != dropped}


@pytest.mark.parametrize("name", list(PROMPT_ATTACKS))
def test_a_rows_attacked_text_does_not_depend_on_the_order_of_the_rows(preset, name):
    """base.py: "a row's attacked text does not depend on which other rows are attacked or in what order"."""
    attack, config = PROMPT_ATTACKS[name], AttackConfig(shots=2)
    reversed_rows = dataclasses.replace(preset, **{f: getattr(preset, f)[::-1] for f in (
        "forget_prompts", "retain_prompts", "forget_probes", "retain_probes")})
    for split in ("train", "test"):
        assert texts(attack.attack_preset(reversed_rows, split, config)) == \
            texts(attack.attack_preset(preset, split, config))


# ---------------------------------------------------------------------------- what each attack changes


def _replacements(text: str, split: str) -> set[str]:
    """Every text the described names of `text` can become with descriptions of `split` (an article
    before a name gives way to a description's own article)."""
    names = {n.lower(): d for (n, s), d in DESCRIPTIONS.items() if s == split}
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    parts = re.split(rf"(?:\b(a|an|the)\s+)?\b({alternatives})\b", text, flags=re.I)  # plain, article, name, ...
    choices = []
    for k in range(0, len(parts), 3):
        choices.append([parts[k]])
        if k + 2 < len(parts):
            article, name = parts[k + 1], parts[k + 2]
            choices.append([d if not article or re.match(r"(a|an|the)\s", d, re.I) else f"{article} {d}"
                            for d in names[name.lower()]])
    return {(s := "".join(c))[:1].upper() + s[1:] for c in itertools.product(*choices)}


def test_nameless_hides_every_forget_name_with_descriptions_of_the_same_split(preset):
    for split, kept in (("test", {"t1", "t2", "t3"}), ("train", {"f1", "f2"})):
        out = PROMPT_ATTACKS["nameless"].attack_preset(preset, split, AttackConfig())
        clean = {r.id: r.prompt for r in preset.forget_prompts}
        assert {r.id for r in out.forget_prompts} == kept  # no name, or one without a description: left out
        assert out.retain_prompts == [] and out.retain_probes == []
        for r in out.forget_prompts + out.forget_probes:
            text = getattr(r, "prompt", None) or r.prefix
            assert find_names(text, preset.forget_keywords) == [], text
            want = _replacements(clean[r.id] if r.id in clean else
                                 next(p.prefix for p in preset.forget_probes if p.id == r.id), split)
            assert text in want, (text, want)
    out = PROMPT_ATTACKS["nameless"].attack_preset(preset, "test", AttackConfig())
    got = {r.id: r.prompt for r in out.forget_prompts}
    assert got["t1"] == "Who is a red-haired boy?"
    assert got["t3"] in {"Tell me about a castle school in Scotland houses.",  # "the" gives way to "a"
                         "Tell me about the Scottish castle school houses."}


def test_obfuscate_leaves_no_forget_keyword_and_keeps_each_probes_last_word(preset):
    for split in ("train", "test"):
        out = PROMPT_ATTACKS["obfuscate"].attack_preset(preset, split, AttackConfig())
        assert out.forget_prompts
        for r in out.forget_prompts:
            assert find_names(r.prompt, preset.forget_keywords) == [], r.prompt
        clean = {p.id: p.prefix for p in preset.forget_probes + preset.retain_probes}
        for p in out.forget_probes + out.retain_probes:
            last = clean[p.id].split()[-1]
            assert p.prefix.endswith(" " + last) and p.prefix != clean[p.id]


def test_obfuscation_helpers_do_what_they_say():
    assert leet("Hogwarts", random.Random(0)) == "H0gw4rt5" and leet("Sirius", random.Random(0)) == "51r1u5"
    for seed in range(20):
        i = random.Random(seed).choice([0, 1, 3])  # "Harry": the neighbours that differ (not "rr")
        assert typo("Harry", random.Random(seed)) == "Harry"[:i] + "Harry"[i + 1] + "Harry"[i] + "Harry"[i + 2:]
        assert leet("Lynch", random.Random(seed)) == typo("Lynch", random.Random(seed))  # no leet letter: a typo
        j = random.Random(seed).randrange(2)
        assert typo("Mm", random.Random(seed)) == ["MMm", "Mmm"][j]  # no two letters differ: one doubled
        k = random.Random(seed).randrange(1, 5)
        assert hyphen("Snape", random.Random(seed)) == "Snape"[:k] + "-" + "Snape"[k:]
    assert spacing("Dobby", random.Random(0)) == "D o b b y"
    assert hyphen("X", random.Random(0)) == "X-"
    made = {obfuscate_word("Dumbledore", random.Random(s)) for s in range(40)}
    assert "D u m b l e d o r e" in made and "Dumbl3d0r3" in made and any("-" in m for m in made)
    assert "Dumbledore" not in made


def test_jailbreak_wraps_the_text_in_a_template_of_its_split(preset):
    assert [s for s, _ in TEMPLATES].count("train") == [s for s, _ in TEMPLATES].count("test") == 7
    clean = texts(preset)
    for split in ("train", "test"):
        mine = [t for s, t in TEMPLATES if s == split]
        out = texts(PROMPT_ATTACKS["jailbreak"].attack_preset(preset, split, AttackConfig()))
        assert set(out) == {k for k in clean if k in {r.id for r in preset.prompts("forget", split)
                                                      + preset.prompts("retain", split)
                                                      + preset.probes("forget", split)
                                                      + preset.probes("retain", split)}}
        for key, text in out.items():
            assert text.endswith(clean[key])
            assert text in {t.format(text=clean[key]) for t in mine}, text


def test_smuggle_adds_a_retain_name_of_the_split_to_the_clean_question(preset):
    clean = texts(preset)
    for split in ("train", "test"):
        out = texts(PROMPT_ATTACKS["smuggle"].attack_preset(preset, split, AttackConfig()))
        assert out
        for key, text in out.items():
            bodies = {clean[key], clean[key][:1].lower() + clean[key][1:]}
            want = {f.format(name=n, text=b) for f in SMUGGLE_FRAMES for n in RETAIN_NAMES[split] for b in bodies}
            assert text in want, text
            assert any(n in text for n in RETAIN_NAMES[split])
            other = "test" if split == "train" else "train"
            assert not any(n in text for n in RETAIN_NAMES[other])
        opens_with_name = [k for k in out if k in ("fp1", "fp3")]  # "Harry Potter's ...": its capital stays
        assert opens_with_name and all(clean[k] in out[k] for k in opens_with_name)


def test_translate_asks_about_the_name_in_a_frame_of_its_split(preset):
    out = PROMPT_ATTACKS["translate"].attack_preset(preset, "test", AttackConfig())
    questions = [q for s, _, q in QUESTIONS if s == "test"]
    frames = [f for s, _, f in TRANSLATE_FRAMES if s == "test"]
    got = {r.id: r.prompt for r in out.forget_prompts}
    assert got["t1"] in {q.format(name="Ron Weasley") for q in questions}
    assert got["t4"] in {f.format(text="What is a wand made of?") for f in frames}  # no name: a frame
    assert {r.id: r.prompt for r in out.retain_prompts}["r3"] in {q.format(name="Frodo Baggins") for q in questions}
    clean = {p.id: p.prefix for p in preset.forget_probes + preset.retain_probes}
    for p in out.forget_probes + out.retain_probes:
        assert p.prefix in {f.format(text=clean[p.id]) for f in frames} and p.prefix.endswith(clean[p.id])
    train = PROMPT_ATTACKS["translate"].attack_preset(preset, "train", AttackConfig())
    assert {r.id: r.prompt for r in train.forget_prompts}["f1"] in \
        {q.format(name="Harry Potter") for s, _, q in QUESTIONS if s == "train"}


def test_translate_keeps_a_sentence_opening_question_word_out_of_the_name(preset):
    ctx = Context(preset, "test", AttackConfig(), AttackData.of(preset, "test"), "forget")
    questions = [q for s, _, q in QUESTIONS if s == "test"]
    assert Translate().prompt("Did Dumbledore die in the tower?", "x1", ctx) in \
        {q.format(name="Dumbledore") for q in questions}


def test_few_shot_prepends_train_pairs_of_the_same_side_never_the_row_itself(preset):
    for split in ("train", "test"):
        out = PROMPT_ATTACKS["few_shot"].attack_preset(preset, split, AttackConfig(shots=2))
        for side in SIDES:
            pairs = {f"Q: {r.prompt}\nA: {r.answer}": r.id for r in preset.prompts(side, "train")}
            clean = {r.id: r.prompt for r in preset.prompts(side, split)}
            assert {r.id for r in getattr(out, f"{side}_prompts")} == set(clean)
            for r in getattr(out, f"{side}_prompts"):
                *shots, last = r.prompt.split("\n\n")
                want = min(2, len([x for x in pairs.values() if x != r.id]))
                assert last == f"Q: {clean[r.id]}" and len(shots) == len(set(shots)) == want
                assert all(s in pairs and pairs[s] != r.id for s in shots), r.prompt
            lines = {f"{p.prefix}{p.answer}.": p.id for p in preset.probes(side, "train")}
            probes = {p.id: p.prefix for p in preset.probes(side, split)}
            for p in getattr(out, f"{side}_probes"):
                *shots, last = p.prefix.split("\n")
                assert last == probes[p.id] and len(shots) == min(2, len([x for x in lines.values() if x != p.id]))
                assert all(s in lines and lines[s] != p.id for s in shots)


# ---------------------------------------------------------------------------- loud errors


@pytest.mark.parametrize("name,what", [("nameless", "descriptions"), ("smuggle", "retain names")])
def test_an_attack_without_its_data_names_the_script_that_makes_it(preset, name, what):
    bare = dataclasses.replace(preset, attacks=[])
    with pytest.raises(ValueError, match=rf"no {what} .*scripts/make_attack_data\.py harry_potter"):
        PROMPT_ATTACKS[name].attack_preset(bare, "test", AttackConfig())


def _one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and len(re.split(r"\.\s+[A-Z]", msg)) == 1


@pytest.mark.parametrize("settings,fragment", [
    ({"nope": 1}, "Unknown attack setting(s) nope; known: limit, probe_layer"),
    ({"shots": 0}, "shots must be a number between 1 and 16, got 0."),
    ({"quantize_bits": 9}, "quantize_bits must be a number between 2 and 8"),
    ({"limit": -1}, "limit must be a number between 0 and 100000"),
    ({"relearn_lr": 0.5}, "relearn_lr must be a number between"),
    ({"seed": "abc"}, "seed must be a number, got 'abc'."),
    ({"shots": 2.5}, "shots must be a whole number, got 2.5."),
    ({"relearn_steps": float("nan")}, "relearn_steps must be a number between"),
    ({"shots": True}, "shots must be a number"),
])
def test_attack_config_rejects_unknown_and_out_of_range_settings_in_one_sentence(settings, fragment):
    with pytest.raises(ValueError) as err:
        AttackConfig.from_dict(settings)
    assert fragment in str(err.value) and _one_sentence(str(err.value)), str(err.value)


def test_attack_config_reads_numbers_given_as_text_and_keeps_defaults():
    c = AttackConfig.from_dict({"shots": "4", "relearn_lr": "0.01", "limit": None})
    assert (c.shots, c.relearn_lr, c.limit) == (4, 0.01, AttackConfig().limit) and isinstance(c.shots, int)
    assert AttackConfig.from_dict(c.to_dict()) == c


def test_unknown_attack_lists_the_known_ones_and_clean_comes_first():
    with pytest.raises(ValueError) as err:
        get_attack("nope")
    assert str(err.value).startswith("Unknown attack 'nope'; known: clean, ")
    assert all(a in str(err.value) for a in ATTACKS)
    listed = list_attacks()
    assert list(listed)[0] == "clean" and list(listed) == list(ATTACKS) and get_attack("clean") is None
    assert {v["family"] for k, v in listed.items() if k in PROMPT_ATTACKS} == {"prompt"}
    weight = ("relearn", "relearn_retain", "quantize", "probe")
    assert {v["family"] for k, v in listed.items() if k in weight} == {"weight"}


# ---------------------------------------------------------------------------- the preset's attack data


def _preset_copy(tmp_path, attack_lines: list[str] | None):
    folder = tmp_path / "hp"
    (folder / "data").mkdir(parents=True)
    shutil.copy(PRESETS_DIR / "harry_potter" / "preset.yaml", folder / "preset.yaml")
    for f in (PRESETS_DIR / "harry_potter" / "data").glob("*.jsonl"):
        if f.name not in ("attacks.jsonl", "attacks_written.jsonl"):
            shutil.copy(f, folder / "data" / f.name)
    if attack_lines is not None:
        (folder / "data" / "attacks.jsonl").write_text("\n".join(attack_lines) + "\n", encoding="utf-8")
    return folder


def test_the_preset_loader_reads_data_attacks_jsonl_when_present(tmp_path):
    rows = [{"id": "a1", "kind": "description", "name": "Hogwarts", "text": "a castle school", "split": "test"},
            {"id": "a2", "kind": "retain_name", "text": "Narnia", "split": "train"}]
    p = load_preset(_preset_copy(tmp_path, [json.dumps(r) for r in rows]))
    assert p.attacks == [AttackRow("a1", "description", "a castle school", "test", "Hogwarts"),
                         AttackRow("a2", "retain_name", "Narnia", "train", "")]
    assert p.summary()["attack_rows"] == 2
    data = AttackData.of(p, "test")
    assert data.descriptions == {"hogwarts": ["a castle school"]} and data.retain_names == []
    assert AttackData.of(p, "train").retain_names == ["Narnia"]


def test_hand_written_descriptions_join_the_attack_data_marked_as_written(tmp_path):
    mined = {"id": "a1", "kind": "description", "name": "Hogwarts", "text": "a castle school", "split": "train"}
    written = [{"id": "w1", "kind": "description", "name": "Hogwarts", "text": "a school for wizards",
                "split": "train"},
               {"id": "w2", "kind": "retain_description", "name": "Gandalf", "text": "the grey wizard of the hobbits",
                "split": "train"}]
    folder = _preset_copy(tmp_path, [json.dumps(mined)])
    (folder / "data" / "attacks_written.jsonl").write_text("".join(json.dumps(r) + "\n" for r in written))
    p = load_preset(folder)
    assert [(r.id, r.written) for r in p.attacks] == [("a1", False), ("w1", True), ("w2", True)]
    data = AttackData.of(p, "train")
    assert data.descriptions == {"hogwarts": ["a castle school", "a school for wizards"]}
    assert data.retain_descriptions == {"gandalf": ["the grey wizard of the hobbits"]}
    assert "Gandalf" not in data.forget_names  # a retain description never makes its name a forget name
    assert [r.id for r in attack_data(p, written=False).attacks] == ["a1"] and attack_data(p) is p


def test_nameless_rewrites_retain_rows_only_where_retain_names_have_descriptions(preset):
    rows = [AttackRow("rd1", "retain_description", "the author of a famous ring saga", "train", "Tolkien"),
            AttackRow("rd2", "retain_description", "a ring-bearing hobbit", "test", "Frodo Baggins")]
    with_retain = dataclasses.replace(preset, attacks=preset.attacks + rows)
    out = PROMPT_ATTACKS["nameless"].attack_preset(with_retain, "train", AttackConfig())
    assert [(r.id, r.prompt) for r in out.retain_prompts] == []  # "Who wrote The Lord of the Rings?" names no one
    with_retain = dataclasses.replace(with_retain, retain_prompts=with_retain.retain_prompts + [
        _prompt("r5", "Which languages did Tolkien invent?", "train")])
    out = PROMPT_ATTACKS["nameless"].attack_preset(with_retain, "train", AttackConfig())
    assert [(r.id, r.prompt) for r in out.retain_prompts] == [
        ("r5", "Which languages did the author of a famous ring saga invent?")]
    test = PROMPT_ATTACKS["nameless"].attack_preset(with_retain, "test", AttackConfig())
    assert [r.prompt for r in test.retain_prompts] == ["Who is a ring-bearing hobbit?"]  # its split's own only
    assert {r.id for r in test.forget_prompts} == {"t1", "t2", "t3"}  # the forget side is unchanged


def test_a_preset_without_attack_data_loads_with_none(tmp_path):
    assert load_preset(_preset_copy(tmp_path, None)).attacks == []


@pytest.mark.parametrize("bad,fragment", [
    ({"id": "a2", "kind": "nickname", "text": "x", "split": "test"},
     "field 'kind' must be one of description, retain_description, retain_name"),
    ({"id": "a2", "kind": "description", "text": "a castle school", "split": "test"}, "missing field 'name'"),
    ({"id": "a2", "kind": "retain_name", "text": "Narnia", "split": "dev"}, "field 'split' must be one of"),
])
def test_a_malformed_attack_row_names_the_file_and_line(tmp_path, bad, fragment):
    good = {"id": "a1", "kind": "retain_name", "text": "Narnia", "split": "train"}
    with pytest.raises(PresetError) as err:
        load_preset(_preset_copy(tmp_path, [json.dumps(good), json.dumps(bad)]))
    assert str(err.value).startswith("hp/data/attacks.jsonl line 2: ") and fragment in str(err.value)
