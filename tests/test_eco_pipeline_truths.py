"""ECO's settings, plans and token selection checked against hand-worked truths on the tiny model.

The checks use exact error sentences, exact records (ECOConfig, ECOPlan and Selection dicts),
character spans of entities that can be counted by hand, prompt embeddings rebuilt by hand from the
embedding table and a seeded generator, a stub prompt classifier with known scores, a stub
token-classification pipeline that returns Hugging Face's documented record format, and tokenizers
whose chat template or special-token rule is chosen so that each setting changes the result.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from engine.eco import selection as S
from engine.eco.pipeline import ECO, ECOConfig, ECOPlan, absolute_strength, embedding_std

TEMPLATE_HEAD = "<|im_start|>user\n"
TEMPLATE_TAIL = "<|im_end|>\n<|im_start|>assistant\n"

# "Who is Barack Obama?" in the tiny BPE vocabulary, raw text (no template):
OBAMA = "Who is Barack Obama?"
OBAMA_TOKENS = ["Who", " is", " B", "ar", "ack", " O", "b", "am", "a", "?"]
OBAMA_ENTITY = {"start": 7, "end": 19, "label": "PERSON", "text": "Barack Obama"}
# "Barack Obama" covers characters 7..19, i.e. tokens " B" (6..8) through "a" (18..19)
OBAMA_SELECTED = [False, False] + [True] * 7 + [False]


def templated(prompt: str) -> str:
    return TEMPLATE_HEAD + prompt + TEMPLATE_TAIL


@pytest.fixture(scope="module")
def tok(tiny_lm):
    return tiny_lm.tokenizer


def fresh_tokenizer(tiny_model_dir, chat_template=None, bos=False):
    """The tiny model's tokenizer with another chat template, or one that adds a BOS token."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    t = PreTrainedTokenizerFast.from_pretrained(str(tiny_model_dir))
    t.chat_template = chat_template
    if bos:
        bos_id = t.convert_tokens_to_ids("<|endoftext|>")
        t.backend_tokenizer.post_processor = TemplateProcessing(
            single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos_id)])
    return t


class StubGate:
    """A prompt classifier with fixed scores; it names the forget / retain entities a prompt contains."""

    def __init__(self, scores: dict, threshold: float = 0.5):
        self.scores, self.threshold, self.seen = scores, threshold, []

    def score(self, prompts):
        self.seen.append(list(prompts))
        return [self.scores[p] for p in prompts]

    def matches(self, prompt):
        return [n for n in ("Barack Obama",) if n in prompt]


# ---------------------------------------------------------------------------- ECOConfig.validate

@pytest.mark.parametrize("bad, sentence", [
    (dict(seed=-1), "ECO seed must be between 0 and 9,223,372,036,854,775,807, got -1."),
    (dict(seed=2**63), "ECO seed must be between 0 and 9,223,372,036,854,775,807, got 9,223,372,036,854,775,808."),
    (dict(dims=-1), "dims must be between 0 and 10,000,000, got -1."),
    (dict(dims=10**7 + 1), "dims must be between 0 and 10,000,000, got 10,000,001."),
    (dict(dims=65), "Dims must be between 1 and the hidden size (64) (0 = all), got 65."),
    (dict(threshold=2.0), "threshold must be between 0 and 1, got 2."),
    (dict(threshold=-0.5), "threshold must be between 0 and 1, got -0.5."),
    (dict(threshold=float("nan")), "threshold must be a finite number, got nan."),
    (dict(strength=float("nan")), "Strength must be a finite number."),
    (dict(strength=float("inf")), "Strength must be a finite number."),
    (dict(strength=float("-inf")), "Strength must be a finite number."),
    (dict(strength=-1.0), "Strength must be zero or positive, got -1.0."),
    (dict(strength=1.0000000005e9), "Strength 1e+09 is too large; use at most 1e9."),
    (dict(strength_unit="percent"), "Unknown strength_unit 'percent'; known: absolute, std."),
    (dict(gate="maybe"), "Unknown gate 'maybe'; known: classifier, always, never."),
    (dict(selection="everything"), "Unknown selection 'everything'; known: ner, token_model, prompt, "
                                   "all_but_last, manual."),
    (dict(fallback="random"), "Unknown fallback 'random'; known: prompt, all_but_last, none."),
])
def test_each_bad_setting_is_refused_with_its_own_sentence(bad, sentence):
    with pytest.raises(ValueError) as err:
        ECOConfig(**bad).validate(64)
    assert str(err.value) == sentence


def test_an_unknown_corruption_lists_every_known_one_alphabetically():
    with pytest.raises(ValueError) as err:
        ECOConfig(corruption="melt").validate(64)
    assert str(err.value) == (
        "Unknown corruption 'melt'; known: add_value_first_n, add_value_least_k, flip_sign_first_n, "
        "flip_sign_top_k, rand_noise_first_n, rand_noise_rand_n, rand_noise_top_k, reverse_order, "
        "set_rand_noise_first_n, shuffle, sub_value_first_n, sub_value_top_k, zero_out_first_n, zero_out_top_k.")


@pytest.mark.parametrize("good", [
    dict(threshold=0.0), dict(threshold=0.5), dict(threshold=1.0), dict(threshold=None),
    dict(strength=0.0), dict(strength=1e9), dict(dims=0), dict(dims=64), dict(seed=2**63 - 1),
    dict(corruption="shuffle", dims=65),  # permutations touch no coordinates: dims is not bounded by D
    dict(strength_unit="std", gate="never", selection="manual", fallback="none"),
])
def test_settings_at_the_edges_of_their_ranges_are_accepted(good):
    cfg = ECOConfig(**good)
    assert cfg.validate(64) is cfg


# ---------------------------------------------------------------------------- ECOConfig records

def test_config_record_lists_every_field_with_entity_types_as_a_list():
    d = ECOConfig(entity_types=("PERSON", "GPE")).to_dict()
    assert d == {"corruption": "rand_noise_first_n", "dims": 0, "strength": 30.0, "strength_unit": "std",
                 "selection": "prompt", "entity_types": ["PERSON", "GPE"], "fallback": "prompt",
                 "gate": "classifier", "threshold": None, "seed": 0, "corrupt_answer": False, "token_model": None}
    assert type(d["entity_types"]) is list


def test_config_read_from_a_record_drops_unknown_keys_and_keeps_entity_types_a_tuple():
    cfg = ECOConfig.from_dict({"gate": "always", "entity_types": ["ORG", "GPE"], "seed": 4, "colour": "red"})
    assert cfg == ECOConfig(gate="always", entity_types=("ORG", "GPE"), seed=4)
    assert cfg.entity_types == ("ORG", "GPE") and type(cfg.entity_types) is tuple
    assert ECOConfig.from_dict({"entity_types": None}).entity_types == ()
    assert ECOConfig.from_dict({"dims": 3}) == ECOConfig(dims=3)  # no entity_types key at all
    full = ECOConfig(corruption="shuffle", dims=2, strength=7.5, strength_unit="std", selection="ner",
                     entity_types=("PERSON",), fallback="none", gate="never", threshold=0.25, seed=9,
                     corrupt_answer=True, token_model="some/model")
    assert ECOConfig.from_dict(full.to_dict()) == full


def test_with_strength_returns_a_copy_with_only_the_strength_changed():
    base = ECOConfig(gate="always", dims=4, seed=2)
    moved = base.with_strength(7)
    assert moved == ECOConfig(gate="always", dims=4, seed=2, strength=7.0)
    assert type(moved.strength) is float and base.strength == 30.0


# ---------------------------------------------------------------------------- strength units

def fake_lm(weight):
    emb = torch.nn.Embedding.from_pretrained(torch.tensor(weight, dtype=torch.float32))
    return SimpleNamespace(model=SimpleNamespace(get_input_embeddings=lambda: emb), extras={}), emb


def test_embedding_std_is_computed_once_per_model_and_remembered():
    """Table [[1, 2], [3, 4]]: mean 2.5, sample variance (2.25 + .25 + .25 + 2.25) / 3 = 5/3."""
    lm, emb = fake_lm([[1.0, 2.0], [3.0, 4.0]])
    assert embedding_std(lm) == pytest.approx(math.sqrt(5 / 3), rel=1e-6)
    assert lm.extras["embedding_std"] == pytest.approx(math.sqrt(5 / 3), rel=1e-6)
    with torch.no_grad():
        emb.weight.mul_(10.0)
    assert embedding_std(lm) == pytest.approx(math.sqrt(5 / 3), rel=1e-6)


def test_absolute_strength_is_the_strength_itself_and_std_strength_is_scaled_by_the_table_std():
    lm, _ = fake_lm([[1.0, 2.0], [3.0, 4.0]])
    assert ECOConfig().strength_unit == "std"  # the default is harry_potter's calibrated setting, in std units
    assert absolute_strength(lm, ECOConfig(strength=3.0, strength_unit="absolute")) == 3.0
    assert absolute_strength(lm, ECOConfig(strength=3.0, strength_unit="std")) == pytest.approx(
        3.0 * math.sqrt(5 / 3), rel=1e-6)


# ---------------------------------------------------------------------------- the gate

def test_the_classifier_gate_without_a_classifier_says_what_to_do(tiny_lm):
    with pytest.raises(RuntimeError) as err:
        ECO(tiny_lm).gate(["Who is Merlin?"], ECOConfig(gate="classifier"))
    assert str(err.value) == ("ECO's gate needs a prompt classifier: train one for the preset, "
                              "or set gate=always.")


def test_the_gate_flags_scores_strictly_above_the_classifier_threshold(tiny_lm):
    gate = StubGate({"a": 0.9, "b": 0.2, "c": 0.5}, threshold=0.5)
    scores, flags, t = ECO(tiny_lm, gate).gate(["a", "b", "c"], ECOConfig(gate="classifier"))
    assert (scores, flags, t) == ([0.9, 0.2, 0.5], [True, False, False], 0.5)
    assert gate.seen == [["a", "b", "c"]]


def test_a_threshold_in_the_settings_overrides_the_classifier_threshold(tiny_lm):
    gate = StubGate({"a": 0.9, "b": 0.2, "c": 0.5}, threshold=0.5)
    scores, flags, t = ECO(tiny_lm, gate).gate(["a", "b", "c"], ECOConfig(gate="classifier", threshold=0.1))
    assert (scores, flags, t) == ([0.9, 0.2, 0.5], [True, True, True], 0.1)
    _, flags, t = ECO(tiny_lm, gate).gate(["a", "b", "c"], ECOConfig(gate="classifier", threshold=0.95))
    assert (flags, t) == ([False, False, False], 0.95)


def test_always_and_never_gates_ignore_the_classifier(tiny_lm):
    gate = StubGate({})
    eco = ECO(tiny_lm, gate)
    assert eco.gate(["x", "y"], ECOConfig(gate="always")) == ([None, None], [True, True], None)
    assert eco.gate(["x", "y"], ECOConfig(gate="never")) == ([None, None], [False, False], None)
    assert gate.seen == []


# ---------------------------------------------------------------------------- plan

def test_a_closed_gate_plan_keeps_token_ids_and_has_no_embeddings(tiny_lm, tok):
    plan = ECO(tiny_lm).plan(OBAMA, ECOConfig(gate="never", selection="ner"), chat=False)
    assert plan.input_ids.tolist() == [tok(OBAMA)["input_ids"]]
    assert plan.attention_mask.tolist() == [[1] * len(OBAMA_TOKENS)]
    assert plan.inputs_embeds is None
    assert plan.to_dict() == {"score": None, "threshold": None, "flagged": False, "matched": [],
                              "tokens": OBAMA_TOKENS, "selected": OBAMA_SELECTED,
                              "labels": [None, None] + ["PERSON"] * 7 + [None],
                              "positions": [2, 3, 4, 5, 6, 7, 8], "entities": [OBAMA_ENTITY],
                              "fallback_used": False}


def test_a_classifier_gated_plan_reports_score_threshold_and_named_entities(tiny_lm):
    prompt = "Did Barack Obama live in Chicago?"
    gate = StubGate({prompt: 0.75}, threshold=0.4)
    plan = ECO(tiny_lm, gate).plan(prompt, ECOConfig(gate="classifier", selection="all_but_last",
                                                     strength=1.0), chat=False)
    assert (plan.score, plan.threshold, plan.flagged) == (0.75, 0.4, True)
    assert plan.matched == ("Barack Obama",)
    d = plan.to_dict()
    assert list(d)[:4] == ["score", "threshold", "flagged", "matched"] and "kept" not in d
    assert {k: d[k] for k in list(d)[:4]} == {"score": 0.75, "threshold": 0.4, "flagged": True,
                                              "matched": ["Barack Obama"]}
    low = ECO(tiny_lm, StubGate({prompt: 0.3}, threshold=0.4)).plan(prompt, ECOConfig(gate="classifier"))
    assert (low.score, low.threshold, low.flagged, low.inputs_embeds) == (0.3, 0.4, False, None)
    assert low.matched == ("Barack Obama",)


def test_an_ecoplan_record_has_no_entities_named_by_default():
    sel = S.Selection(input_ids=[5], tokens=["x"], offsets=[(0, 1)], selected=[True], labels=[None], text="x",
                      prompt_span=(0, 1))
    plan = ECOPlan(score=0.5, threshold=0.2, flagged=True, selection=sel, input_ids=torch.tensor([[5]]),
                   attention_mask=torch.tensor([[1]]), inputs_embeds=None)
    assert plan.to_dict() == {"score": 0.5, "threshold": 0.2, "flagged": True, "matched": [],
                              "tokens": ["x"], "selected": [True], "labels": [None], "positions": [0],
                              "entities": [], "fallback_used": False}


def test_a_plan_uses_the_chat_template_unless_told_otherwise(tiny_lm, tok):
    cfg = ECOConfig(gate="never", selection="prompt")
    chat = ECO(tiny_lm).plan("Hello there", cfg)
    assert chat.selection.text == templated("Hello there")
    assert chat.input_ids.tolist() == [tok(templated("Hello there"))["input_ids"]]
    assert chat.selection.positions == [4, 5, 6, 7, 8]
    raw = ECO(tiny_lm).plan("Hello there", cfg, chat=False)
    assert raw.input_ids.tolist() == [tok("Hello there")["input_ids"]]
    assert raw.selection.positions == [0, 1, 2, 3, 4]


def noise_by_hand(tiny_lm, ids, positions, dims, sigma, seed):
    """rand_noise_first_n written out: clean rows, plus sigma * N(0, 1) on the first `dims`
    coordinates of the selected rows, the noise drawn for the whole (1, T, D) block from one seed."""
    table = tiny_lm.model.get_input_embeddings().weight.detach()
    clean = table[ids][None]
    z = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    out = clean.clone()
    for p in positions:
        out[0, p, :dims] = clean[0, p, :dims] + (z[0, p, :dims] * sigma)
    return clean, out


def test_an_open_gate_adds_seeded_noise_to_the_first_k_coordinates_of_selected_tokens(tiny_lm, tok):
    cfg = ECOConfig(gate="always", selection="prompt", corruption="rand_noise_first_n", dims=8,
                    strength=3.0, strength_unit="absolute", seed=11)
    plan = ECO(tiny_lm).plan("Hello there", cfg)
    ids = tok(templated("Hello there"))["input_ids"]
    clean, expected = noise_by_hand(tiny_lm, ids, [4, 5, 6, 7, 8], 8, 3.0, 11)
    assert plan.inputs_embeds.shape == (1, len(ids), 64)
    assert torch.allclose(plan.inputs_embeds, expected, atol=1e-6)
    changed = (plan.inputs_embeds[0] != clean[0]).any(-1).tolist()
    assert changed == [i in (4, 5, 6, 7, 8) for i in range(len(ids))]


def test_zero_dims_means_every_embedding_coordinate(tiny_lm, tok):
    cfg = ECOConfig(gate="always", selection="prompt", dims=0, strength=1.0, strength_unit="absolute", seed=3)
    plan = ECO(tiny_lm).plan("Hello there", cfg)
    ids = tok(templated("Hello there"))["input_ids"]
    clean, expected = noise_by_hand(tiny_lm, ids, [4, 5, 6, 7, 8], 64, 1.0, 3)
    assert torch.allclose(plan.inputs_embeds, expected, atol=1e-6)
    assert bool((plan.inputs_embeds[0, 4:9] != clean[0, 4:9]).all())


def test_std_strength_is_measured_in_embedding_table_standard_deviations(tiny_lm, tok):
    w = tiny_lm.model.get_input_embeddings().weight.detach().double()
    std = math.sqrt(((w - w.mean()) ** 2).sum().item() / (w.numel() - 1))
    cfg = ECOConfig(gate="always", selection="prompt", dims=8, strength=2.0, strength_unit="std", seed=5)
    plan = ECO(tiny_lm).plan("Hello there", cfg, chat=False)
    ids = tok("Hello there")["input_ids"]
    _, expected = noise_by_hand(tiny_lm, ids, range(len(ids)), 8, 2.0 * std, 5)
    assert torch.allclose(plan.inputs_embeds, expected, rtol=1e-5, atol=1e-6)


def test_the_seed_chooses_the_noise(tiny_lm, tok):
    base = ECOConfig(gate="always", selection="prompt", dims=8, strength=1.0, strength_unit="absolute")
    ids = tok("Hello there")["input_ids"]
    for seed in (0, 1):
        plan = ECO(tiny_lm).plan("Hello there", ECOConfig.from_dict({**base.to_dict(), "seed": seed}), chat=False)
        _, expected = noise_by_hand(tiny_lm, ids, range(len(ids)), 8, 1.0, seed)
        assert torch.allclose(plan.inputs_embeds, expected, atol=1e-6)


def test_manual_positions_reach_the_plan(tiny_lm, tok):
    cfg = ECOConfig(gate="always", selection="manual", dims=0, strength=1.0)
    plan = ECO(tiny_lm).plan(OBAMA, cfg, chat=False, manual=[1, 3])
    assert plan.selection.positions == [1, 3]
    clean = tiny_lm.model.get_input_embeddings().weight.detach()[tok(OBAMA)["input_ids"]]
    changed = (plan.inputs_embeds[0] != clean).any(-1).tolist()
    assert [i for i, c in enumerate(changed) if c] == [1, 3]


@pytest.mark.parametrize("settings, positions", [
    (dict(selection="all_but_last"), list(range(9))),
    (dict(selection="ner"), [2, 3, 4, 5, 6, 7, 8]),
    (dict(selection="prompt"), list(range(10))),
])
def test_the_selection_mode_in_the_settings_reaches_the_plan(tiny_lm, settings, positions):
    plan = ECO(tiny_lm).plan(OBAMA, ECOConfig(gate="never", **settings), chat=False)
    assert plan.selection.positions == positions


def test_entity_types_and_fallback_in_the_settings_reach_the_plan(tiny_lm):
    """"Did Barack Obama live in Chicago?": PERSON covers tokens 2..8, GPE "Chicago" tokens 12..15."""
    eco = ECO(tiny_lm)
    gpe = eco.plan("Did Barack Obama live in Chicago?",
                   ECOConfig(gate="never", selection="ner", entity_types=("GPE",)), chat=False)
    assert gpe.selection.positions == [12, 13, 14, 15]
    assert gpe.selection.entities == [{"start": 25, "end": 32, "label": "GPE", "text": "Chicago"}]
    sky = "what is the colour of the sky?"  # 13 tokens, no entity
    none = eco.plan(sky, ECOConfig(gate="never", selection="ner", fallback="none"), chat=False)
    assert (none.selection.positions, none.selection.fallback_used) == ([], False)
    abl = eco.plan(sky, ECOConfig(gate="never", selection="ner", fallback="all_but_last"))
    n = len(tiny_lm.tokenizer(templated(sky))["input_ids"])
    assert abl.selection.positions == list(range(n - 1)) and abl.selection.fallback_used
