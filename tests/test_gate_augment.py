"""The gate's training material (engine/eco/augment.py) on the real harry_potter preset: folds by a
hash of the record id, attacked copies from the train split's templates and names only, contrastive
pairs; and the lexicon's name matching (engine/eco/lexicon.py) at its edges. No model, no LLM."""
from __future__ import annotations

import dataclasses
import random
import re

import pytest

from engine.attacks import jailbreak, smuggle, translate
from engine.attacks.base import AttackData
from engine.data.presets import load_preset
from engine.eco import augment as A
from engine.eco.calibration import training_data
from engine.eco.lexicon import FUZZY_MIN, NameMatcher, canonical, number_forms, one_edit


@pytest.fixture(scope="module")
def hp():
    return load_preset("harry_potter")


@pytest.fixture(scope="module")
def train(hp):
    return A.folds(hp, 0.25).train


@pytest.fixture(scope="module")
def data(hp):
    """(training texts, calibration texts) at the default settings."""
    pairs, calib = training_data(hp, 0.25)
    return [t for t, _ in pairs], calib


def ids(rows):
    return {r.id for r in rows}


PARTS = ("retain_prompts", "retain_probes", "forget_prompts", "forget_probes", "retain_corpus", "forget_corpus")


# ---------------------------------------------------------------------------- folds

@pytest.mark.parametrize("c,d", [(0.25, 0.0), (0.25, 0.15), (0.5, 0.1), (0.0, 0.2)])
def test_folds_are_disjoint_cover_the_train_split_and_hold_no_test_record(hp, c, d):
    f = A.folds(hp, c, d)
    assert (f.dev is None) == (d == 0)
    folds = [f.train, f.calibration] + ([f.dev] if f.dev else [])
    for part in PARTS:
        rows = getattr(hp, part)
        train_rows = [r for r in rows if getattr(r, "split", "train") == "train"]
        got = [ids(getattr(fold, part)) for fold in folds]
        assert set().union(*got) == ids(train_rows), part  # every train record is in a fold...
        assert sum(map(len, got)) == len(train_rows), part  # ...exactly one
        assert all(getattr(r, "split", "train") == "train" for fold in folds for r in getattr(fold, part))
    for part in ("retain_prompts", "retain_probes", "retain_corpus"):
        want = {r.id for r in getattr(hp, part) if getattr(r, "split", "train") == "train" and A.bucket(r.id) < c}
        assert ids(getattr(f.calibration, part)) == want, part
    assert not (f.calibration.forget_prompts or f.calibration.forget_probes or f.calibration.forget_corpus)
    if f.dev:
        assert all(c <= A.bucket(r.id) < c + d for r in f.dev.prompts("forget") + f.dev.prompts("retain"))
        assert not (f.dev.retain_corpus or f.dev.forget_corpus)
    share = len(f.calibration.retain_prompts) / len(hp.prompts("retain", "train"))
    assert abs(share - c) < 0.08  # the hash spreads ids evenly


def test_folds_and_their_texts_do_not_depend_on_the_order_of_the_rows(hp):
    r = random.Random(3)
    shuffled = dataclasses.replace(hp, **{p: r.sample(getattr(hp, p), len(getattr(hp, p))) for p in PARTS})
    a, b = A.folds(hp, 0.25, 0.1), A.folds(shuffled, 0.25, 0.1)
    for name in ("train", "calibration", "dev"):
        for part in PARTS:
            assert ids(getattr(getattr(a, name), part)) == ids(getattr(getattr(b, name), part)), (name, part)
    for x, y in zip(A.gate_texts(a.train, 0), A.gate_texts(b.train, 0)):
        assert set(x) == set(y)
    assert set(A.gate_texts(a.calibration, 0)[1]) == set(A.gate_texts(b.calibration, 0)[1])


# ---------------------------------------------------------------------------- texts

def test_gate_texts_and_training_data_are_deterministic_in_the_seed(hp, train, data):
    assert A.gate_texts(train, 0) == A.gate_texts(train, 0)
    assert training_data(hp, 0.25) == training_data(hp, 0.25)
    pairs1, calib1 = training_data(hp, 0.25, seed=1)
    train1 = [t for t, _ in pairs1]
    clean = set(A.texts(train, "forget") + A.texts(train, "retain"))
    assert clean <= set(train1) and clean <= set(data[0])
    assert len(set(data[0]) - set(train1)) > 100 and len(set(data[1]) - set(calib1)) > 50  # attacks moved


def test_every_attack_family_adds_forget_texts(train):
    forget, retain = A.gate_texts(train, 0)
    clean = set(A.texts(train, "forget"))
    for family in A.FAMILIES:
        side = A.attacked(train, 0, (family,))
        new = set(side["forget"]) - clean
        assert len(new) >= 20 and new <= set(forget), family
        assert len(side["retain"]) >= 20, family  # nameless: retain names with (hand-written) descriptions
        assert set(side["retain"]) <= set(retain)
    assert not set(forget) & set(retain)


def pieces(template: str) -> list[str]:
    """A template's fixed text: the pieces around {text} and {name} long enough to mean it."""
    return [p for p in re.split(r"\{text\}|\{name\}", template) if len(p.strip()) >= 6]


def test_attacked_copies_use_only_train_split_templates(data):
    texts = data[0] + data[1]
    tables = [(s, t) for s, t in jailbreak.TEMPLATES] + [(s, t) for s, _, t in translate.QUESTIONS + translate.FRAMES]
    for split, template in tables:
        for piece in pieces(template):
            n = sum(piece in x for x in texts)
            assert (n > 0) == (split == "train"), (split, piece, n)


def test_smuggled_names_are_train_split_retain_names(hp, train):
    names, test_names = set(AttackData.of(hp, "train").retain_names), set(AttackData.of(hp, "test").retain_names)
    assert names and test_names and not names & test_names
    frames = [(f.split("{name}")[0], f.split("{name}")[1].split("{text}")[0]) for f in smuggle.FRAMES]
    side = A.attacked(train, 0, ("smuggle",))
    assert len(side["forget"]) > 100 and len(side["retain"]) > 100
    for text in side["forget"] + side["retain"]:
        leads = [(lead, mid) for lead, mid in frames if text.startswith(lead)]
        assert any(text.startswith(lead + n + mid) for lead, mid in leads for n in names), text


def test_nameless_copies_describe_names_with_train_descriptions(hp, train):
    descriptions = [d for ds in AttackData.of(hp, "train").descriptions.values() for d in ds]
    rewritten = A.attacked(train, 0, ("nameless",))["forget"]
    assert len(rewritten) >= 20
    assert all(any(d.lower() in x.lower() for d in descriptions) for x in rewritten)


def test_more_nameless_copies_draw_more_descriptions_and_stay_deterministic(train):
    one = A.attacked(train, 0, ("nameless",))["forget"]
    three = A.attacked(train, 0, ("nameless",), nameless_copies=3)["forget"]
    assert three == A.attacked(train, 0, ("nameless",), nameless_copies=3)["forget"]
    assert three[:len(one)] == one  # the first copy is the single copy
    assert len(set(three)) > 1.5 * len(set(one))  # names with several descriptions get other ones
    forget, _ = A.gate_texts(train, 0, nameless_copies=3)
    assert set(three) <= set(forget)


def test_the_shipped_gate_learns_from_the_mined_descriptions_only_unless_asked(hp):
    from engine.eco.classifier import ClassifierConfig

    config = ClassifierConfig()
    assert not config.written and not config.frames and config.nameless_copies == 1
    assert any(r.written for r in hp.attacks)  # harry_potter has hand-written descriptions...
    mined = training_data(A.attack_data(hp, written=False), 0.25)
    assert training_data(hp, 0.25) == mined  # ...which the default leaves out
    pairs, calib = training_data(hp, 0.25, written=True)
    written = {r.text for r in hp.attacks if r.written}
    assert any(d in t for t, _ in pairs for d in written) and not any(d in t for t, _ in mined[0] for d in written)


def test_frames_are_the_attack_clauses_both_sides_share_and_train_as_retain_only(hp, train):
    from engine.attacks.base import name_pattern

    extra = A.attacked(train, 0)
    frames = set(A.frame_clauses(extra["forget"], extra["retain"]))
    assert "My late grandmother used to tell me about this at bedtime." in frames  # a train-split jailbreak frame
    forget_clauses = {c for t in extra["forget"] for c in A.clauses(t)}
    retain_clauses = {c for t in extra["retain"] for c in A.clauses(t)}
    assert frames == forget_clauses & retain_clauses
    names = name_pattern(AttackData.of(hp, "train").forget_names)
    assert not [f for f in frames if names.search(f)]  # a frame names nothing of the forget topic
    pairs, calib = training_data(hp, 0.25, frames=True)
    labels = {}
    for t, label in pairs:
        labels.setdefault(t, set()).add(label)
    assert all(labels[f] == {0} for f in frames if f in labels)  # retain only, never forget too
    trained_frames = {f for f in frames if f in labels}
    assert len(trained_frames) >= 0.5 * len(frames)  # (a few are the calibration fold's, held out)
    assert calib == training_data(hp, 0.25, frames=False)[1]  # frames train the gate, never calibrate it


def test_the_dev_experiment_keeps_a_share_of_each_names_descriptions_out_of_training(hp):
    from engine.eco.assess import DEV_DESCRIPTIONS, split_descriptions, without_dev

    rows = [r for r in hp.attacks if r.split == "train"]
    held, dev = split_descriptions(rows)
    assert split_descriptions(list(reversed(rows)))[0] == list(reversed(held))  # order-free
    described = lambda rs: {(r.kind, r.name.lower()) for r in rs if r.kind != "retain_name"}  # noqa: E731
    assert described(held) == described(rows)  # every name keeps a description to learn from
    dev_desc = [r for r in dev if r.kind != "retain_name"]
    assert not {r.id for r in dev_desc} & {r.id for r in held}
    n = sum(r.kind != "retain_name" for r in rows)
    assert 0.5 * DEV_DESCRIPTIONS * n < len(dev_desc) < DEV_DESCRIPTIONS * n
    assert {r.id for r in held if r.kind == "retain_name"} == {r.id for r in dev if r.kind == "retain_name"}
    train_preset, dev_fold = without_dev(hp)
    assert [r.id for r in dev_fold.attacks] == [r.id for r in dev]
    unseen = {r.text for r in dev_desc} - {r.text for r in held}
    data = AttackData.of(train_preset, "train")  # what the gate's nameless rewrites draw from
    drawn = {d for side in (data.descriptions, data.retain_descriptions) for ds in side.values() for d in ds}
    assert unseen and drawn and not unseen & drawn and drawn <= {r.text for r in held}
    dev_data = AttackData.of(dev_fold, "train")  # and what the dev fold is attacked with
    assert {d for ds in dev_data.descriptions.values() for d in ds} == {r.text for r in dev_desc
                                                                          if r.kind == "description"}


def test_the_hand_written_nameless_dev_set_uses_written_descriptions_only(hp):
    from engine.eco.assess import written_nameless, without_dev

    _, dev_fold = without_dev(hp)
    sets = written_nameless(hp, dev_fold)
    written = {r.text for r in hp.attacks if r.written and r.kind == "description"}
    written_retain = {r.text for r in hp.attacks if r.written and r.kind == "retain_description"}
    mined = {r.text for r in hp.attacks if not r.written and r.kind == "description"}
    assert len(sets["forget"]) > 30 and len(set(sets["forget"])) == len(sets["forget"])
    has = lambda p, descriptions: any(d.lower() in p.lower() for d in descriptions)  # noqa: E731
    assert all(has(p, written) for p in sets["forget"]) and not [p for p in sets["forget"] if has(p, mined - written)]
    assert sets["retain"] and all(has(p, written_retain) for p in sets["retain"])
    dev_prompts = {r.prompt for r in dev_fold.prompts("forget", "train")}
    assert not set(sets["forget"]) & dev_prompts  # every one rewritten
    assert written_nameless(hp, dev_fold) == sets  # deterministic
    assert written_nameless(dataclasses.replace(hp, attacks=[r for r in hp.attacks if not r.written]),
                            dev_fold) is None


def test_contrastive_pairs_are_a_retain_train_prompt_then_a_forget_train_prompt(hp, train):
    pairs = A.contrastive(train, 0)
    retain = [r.prompt for r in train.prompts("retain", "train")]
    forget = {r.prompt for r in train.prompts("forget", "train")}
    assert len(pairs) == len(retain) > 100
    asked = [next((pair[len(r) + 1:] for r in retain if pair.startswith(r + " ") and pair[len(r) + 1:] in forget), None)
             for pair in pairs]
    assert None not in asked and len(set(asked)) > 50  # drawn per pair, not one forget question over and over
    assert A.contrastive(train, 0) == pairs and A.contrastive(train, 1) != pairs
    labels = dict(training_data(hp, 0.25)[0])
    assert all(labels[p] == 1 for p in pairs) and all(labels[r] == 0 for r in retain)
    assert A.contrastive(dataclasses.replace(train, forget_prompts=[]), 0) == []


def test_training_data_without_augment_has_only_the_folds_own_texts(hp, train):
    pairs, calib = training_data(hp, 0.25, augment=False)
    calibration = A.folds(hp, 0.25).calibration
    assert pairs == [(t, 1) for t in dict.fromkeys(A.texts(train, "forget"))] + \
        [(t, 0) for t in dict.fromkeys(A.texts(train, "retain"))]
    assert calib == list(dict.fromkeys(A.texts(calibration, "retain")))
    markers = [p for _, t in jailbreak.TEMPLATES for p in pieces(t)] + ["Q: "]
    assert not [t for t, _ in pairs for m in markers if m in t]


def test_no_test_prompt_or_probe_reaches_training_or_calibration(hp, data):
    texts = data[0] + data[1]
    test = [r.prompt for side in ("forget", "retain") for r in hp.prompts(side, "test")]
    test += [p.prefix for side in ("forget", "retain") for p in hp.probes(side, "test")]
    assert len(test) > 200 and not [x for x in test if any(x in t for t in texts)]


def test_calibration_texts_met_in_training_are_only_translates_name_questions(hp, data):
    """A calibration record and a train record about the same retain name (r059 and r055, "Percy
    Jackson") get the same translate question, which depends on the name alone: that text is both
    trained on and calibrated on. Nothing else is shared."""
    train, calib = data
    shared = set(calib) & set(train)
    questions = [re.compile(re.escape(t).replace(re.escape("{name}"), ".+"))
                 for s, _, t in translate.QUESTIONS if s == "train"]
    assert all(any(q.fullmatch(x) for q in questions) for x in shared), shared
    held = [r.prompt for r in A.folds(hp, 0.25).calibration.retain_prompts]
    assert not [t for t in set(train) for x in held if x in t]  # no held-out question inside a training text


# ---------------------------------------------------------------------------- lexicon matching

@pytest.mark.parametrize("text,want", [
    ("H a r r y", "harry"), ("Who is S n a p e?", "who is snape?"), ("Dumble-dore", "dumbledore"),
    ("H4rry P0tt3r", "harry potter"), ("5n4p3", "snape"), ("sn@pe", "snape"), ("D'Artagnan", "dartagnan"),
    ("Room 101", "room 101"), ("in 1984, 707 of them", "in 1984, 707 of them"), ("a b c", "abc"),
])
def test_canonical_reads_disguises_inside_words_only(text, want):
    assert canonical(text) == want


@pytest.mark.parametrize("a,b,want", [
    ("weasley", "weasley", True), ("weasley", "waesley", True), ("weasley", "weasly", True),
    ("weasley", "weasleys", True), ("weasley", "wexsley", True), ("ab", "ba", True), ("", "a", True),
    ("weasley", "wesaely", False), ("weasley", "weasleyss", False), ("weasley", "easle", False),
    ("abcd", "badc", False), ("abc", "acd", False),
])
def test_one_edit_is_one_change_addition_drop_or_neighbour_swap(a, b, want):
    assert one_edit(a, b) is want and one_edit(b, a) is want


def test_exact_matching_is_case_sensitive_whole_words_when_not_seeing_through():
    exact = NameMatcher(["Snape", "Sirius Black"], see_through=False)
    assert exact.find("Who is Snape? And Sirius Black's brother?") == ["Snape", "Sirius Black"]
    assert exact.find("who is snape?") == [] and exact.find("Snapes and Sirius-Black") == []
    assert NameMatcher(["Snape"]).find("who is snape?") == ["Snape"]
    assert NameMatcher([]).find("Snape") == [] and NameMatcher([], see_through=False).find("x") == []


def test_a_typo_is_seen_through_only_in_words_of_fuzzy_min_letters():
    m = NameMatcher(["Hagrid", "Weasley", "Dumbledore", "Sirius Black", "Snape"])
    assert len("Hagrid") == FUZZY_MIN - 1 and len("Weasley") == FUZZY_MIN
    for typo, name in [("Waesley", "Weasley"), ("weasly", "Weasley"), ("DUMBELDORE", "Dumbledore")]:
        assert m.find(f"Who is {typo}?") == [name], typo
    for miss in ["Hagird", "Hagri", "shape", "Snaep", "Dumbeldroe", "siriusblakc", "Sirus Blk"]:
        assert m.find(f"Who is {miss}?") == [], miss
    # inside a multi-word name, whose every word must match, words of FUZZY_MIN_IN_NAME letters may carry one
    for typo in ["Siruis Black", "Sirius Blakc", "Siruis Blakc"]:
        assert m.find(f"Who is {typo}?") == ["Sirius Black"], typo
    assert NameMatcher(["Ron Weasley"]).find("Who is Rno Weasley?") == []  # "Ron" is shorter than that


def test_a_name_is_seen_through_in_the_plural_and_the_singular():
    m = NameMatcher(["Jawa", "Horcruxes", "Death Star", "Rey"])
    for text, name in [("Where do Jawas live?", "Jawa"), ("What is a horcrux?", "Horcruxes"),
                       ("How many Death Stars were built?", "Death Star"), ("the reys", "Rey"),
                       ("J4WAS", "Jawa")]:
        assert m.find(text) == [name], text
    # a regular ending only, keeping a stem of three letters: no other word of the name's length
    for miss in ["Jaws", "Jawed", "Horcruxing", "Re", "Reyes", "Rays"]:
        assert m.find(f"Tell me about {miss}.") == [], miss
    assert NameMatcher(["Jawa"], see_through=False).find("Jawas") == []  # as written only
    assert number_forms("owls") >= {"owl", "owls"} and number_forms("gas") == {"gas", "gass", "gases"}
    assert number_forms("reyes") == {"reyes", "reyess", "reyeses", "reye"}  # "es" after a vowel is no ending


def test_leetspeak_digits_count_only_inside_words():
    m = NameMatcher(["Ioi", "Tot", "Snape"])
    assert m.find("Go to Room 101 at gate 707.") == []
    assert m.find("I0I and T0t and 5NAP3") == ["Ioi", "Tot", "Snape"]


def test_spaced_and_hyphenated_letters_are_joined():
    m = NameMatcher(["Snape", "Harry Potter", "Sirius Black"])
    assert m.find("Who is S n a p e?") == ["Snape"]
    assert m.find("H a r r y P o t t e r") == ["Harry Potter"]  # one run: the name's joined form
    assert m.find("Is Sirius-Black alive?") == ["Sirius Black"] and m.find("S-n-a-p-e") == ["Snape"]


@pytest.mark.parametrize("names,text,want", [
    (["Snape"], "WHAT IS SNAPE'S PATRONUS?", ["Snape"]),  # a possessive is not part of the name
    (["Harry Potter"], "who are harry potter's parents?", ["Harry Potter"]),
    (["Snape"], "WHO IS SNAPE!", ["Snape"]),  # "!" is punctuation, not leetspeak
    (["Malcolm X"], "Who was Malcolm Gladwell?", []),  # a joined run matches exactly, never with a typo
    (["O.W.L."], "Describe the snowy owl.", []),  # one-letter words have no joined form
    (["Snape", "Harry"], "snape and Harry", ["Harry", "Snape"]),  # names as written first, then disguised
])
def test_matching_cases_that_once_misfired(names, text, want):
    assert NameMatcher(names).find(text) == want


@pytest.mark.xfail(strict=True, reason="known gap: a one-letter word right after spaced-out letters joins their run")
def test_a_one_letter_word_after_spaced_letters():
    assert NameMatcher(["Hagrid"]).find("Is H a g r i d a giant?") == ["Hagrid"]


def test_coined_words_are_rare_mid_sentence_capitals_the_retain_side_never_uses():
    from transformers import AutoTokenizer

    from engine.eco.classifier import default_encoder_path
    from engine.eco.lexicon import coined_words

    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    forget = ["Summarize how the spell Expelliarmus works.", "He keeps a Niffler, said Professor Kettleburn.",
              "Then the Wizard duelled in London.", "They flew to Hogwarts on brooms.",
              "They drank at the Broomsticks inn.", "Pupils may not fly their own broomsticks."]
    retain = ["The museum in London is old.", "Kettleburn is a village in the hills."]
    words = coined_words(forget, retain, tok)
    assert "Expelliarmus" in words and "Niffler" in words and "Hogwarts" in words
    assert "Broomsticks" not in words and "Broomsticks" in coined_words(forget[:-1], retain, tok)  # an ordinary word
    assert "Summarize" not in words  # capitalised only where a sentence opens
    assert "Kettleburn" not in words  # the retain side uses it
    assert "London" not in words and "Wizard" not in words  # common words or retain words


def test_the_gate_assessment_counts_each_family_and_pools_the_attacks_by_hand():
    from engine.eco.assess import attacked_sets, measure

    sets = {"clean": {"forget": ["f1", "f2"], "retain": ["r1", "r2"], "boundary": ["r2"]},
            "jailbreak": {"forget": ["jf1", "jf2"], "retain": ["jr1"], "boundary": []},
            "nameless": {"forget": ["nf1"], "retain": [], "boundary": []}}
    score = {"f1": 0.9, "f2": 0.2, "r1": 0.1, "r2": 0.8, "jf1": 0.7, "jf2": 0.6, "jr1": 0.4, "nf1": 0.3}
    out = measure(lambda texts: [score[t] for t in texts], 0.5, sets)
    assert out["clean"] == {"recall": 0.5, "n_forget": 2, "fpr": 0.5, "n_retain": 2, "boundary_fpr": 1.0,
                            "n_boundary": 1}
    assert out["jailbreak"]["recall"] == 1.0 and out["nameless"]["fpr"] is None
    assert out["attacks_pooled"] == {"recall": 0.667, "n_forget": 3, "fpr": 0.0, "n_retain": 1,
                                     "boundary_fpr": None, "n_boundary": 0}
    assert out["worst_family_recall"] == 0.0  # nameless: 0 of 1
    real = attacked_sets(load_preset("harry_potter"), "test", seed=0)
    assert list(real)[0] == "clean" and set(real) == {"clean", *A.FAMILIES}
    assert real["nameless"]["retain"] == [] and all(len(v["forget"]) for v in real.values())
