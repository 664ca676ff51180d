"""Evaluation metrics against independent truths.

Two kinds of checks. Scripted ones give a metric a hand-built preset and an engine that returns
fixed scores (log-probs, gate scores, generations), then assert the exact per-example rows, the
aggregate, and what the metric asked the engine for (which records, which split, which ECO
settings, which batch size). Model ones compare a metric on the tiny model with the same number
computed by hand from direct forward passes (log-softmax, KL, greedy decoding, perplexity).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import pytest
import torch

import engine.evaluation.metrics as M
from engine.data.presets import load_preset
from engine.data.records import MCQ, Passage, Probe, PromptRecord
from engine.eco.pipeline import ECO, ECOConfig
from engine.evaluation.metrics import EvalContext, get_metric
from engine.lm.models import LoadedModel, format_chat

ALWAYS = ECOConfig(gate="always", selection="prompt", strength=100.0, dims=16)
NEVER = ECOConfig(gate="never", selection="prompt", strength=100.0, dims=16)


# ---------------------------------------------------------------------------- scripted engine

class ScriptedEngine:
    """Stands in for ECO: fixed choice scores per probe prefix, fixed log-probs per (prefix,
    continuation) pair, fixed gate scores per prompt (flagged above 0.5); records every request."""

    def __init__(self, choices=None, pairs=None, gate_scores=None):
        self.choices, self.pairs, self.gate_scores = choices or {}, pairs or {}, gate_scores or {}
        self.calls = []

    def probe_choice_logprobs(self, probes, config, batch_size=32):
        self.calls.append(("choices", list(probes), config, batch_size))
        return [list(self.choices[p.prefix]) for p in probes]

    def pair_logprobs(self, prefixes, conts, config, batch_size=32):
        self.calls.append(("pairs", list(zip(prefixes, conts)), config, batch_size))
        return [self.pairs[(p, c)] for p, c in zip(prefixes, conts)]

    def gate(self, prompts, config):
        self.calls.append(("gate", list(prompts), config))
        scores = [self.gate_scores[p] for p in prompts]
        return scores, [s > 0.5 for s in scores], 0.5


@dataclasses.dataclass
class ScriptedContext(EvalContext):
    scripted: object = None

    @property
    def engine(self):
        return self.scripted


@pytest.fixture(scope="module")
def star_wars():
    return load_preset("star_wars")


def prompt(id_, split, answer="an answer", paraphrase=None, perturbed=()):
    return PromptRecord(id=id_, prompt=f"Question {id_}?", answer=answer, split=split,
                        paraphrase=paraphrase, perturbed=tuple(perturbed))


def probe(id_, split="test"):
    return Probe(id=id_, prefix=f"Cloze {id_}:", answer=" yes", distractors=(" no", " maybe", " never"), split=split)


def test_unknown_metric_message_lists_every_metric_by_name():
    with pytest.raises(ValueError) as err:
        get_metric("accuracy_of_everything")
    assert str(err.value) == ("Unknown metric 'accuracy_of_everything'; known: "
                              + ", ".join(sorted(M.list_metrics())) + ".")
    assert ", forget_output_perplexity, forget_probe_accuracy, " in str(err.value)


# ---------------------------------------------------------------------------- cloze probes

PROBE_SCORES = {
    "Cloze fp1:": [-0.5, -1.0, -2.0, -3.0],   # answer best: right
    "Cloze fp2:": [-2.0, -0.1, -3.0, -4.0],   # first distractor best: wrong
    "Cloze fp3:": [-0.3, -1.0, -1.0, -1.0],   # a train probe
    "Cloze rp1:": [-3.0, -1.0, -2.0, -4.0],   # wrong
    "Cloze rp2:": [-0.7, -1.0, -2.0, -3.0],   # right
    "Cloze rp3:": [-0.2, -5.0, -5.0, -5.0],   # a train probe
    "Cloze xp1:": [-4.0, -3.0, -2.0, -1.0],   # wrong
    "Cloze xp2:": [-1.5, -2.5, -3.5, -4.5],   # right
}


@pytest.fixture()
def probe_preset(star_wars):
    return dataclasses.replace(star_wars, forget_probes=[probe("fp1"), probe("fp2"), probe("fp3", "train")],
                               retain_probes=[probe("rp1"), probe("rp2"), probe("rp3", "train")])


def test_probe_metrics_give_exact_rows_for_the_split_and_side_asked(tiny_lm, probe_preset):
    """Row i: the probe's id, whether its answer (choice 0) scored highest, and the answer's score."""
    engine = ScriptedEngine(choices=PROBE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="test", eco=ALWAYS, batch_size=7, scripted=engine)
    acc = M.forget_probe_accuracy(ctx)
    assert (acc.value, acc.n) == (0.5, 2)
    assert acc.rows == [{"id": "fp1", "correct": True, "answer_logprob": -0.5},
                        {"id": "fp2", "correct": False, "answer_logprob": -2.0}]
    assert M.forget_probe_logprob(ctx).value == pytest.approx((-0.5 - 2.0) / 2)
    retain = M.retain_probe_accuracy(ctx)
    assert (retain.value, retain.n) == (0.5, 2)
    assert retain.rows == [{"id": "rp1", "correct": False, "answer_logprob": -3.0},
                           {"id": "rp2", "correct": True, "answer_logprob": -0.7}]
    assert M.retain_probe_logprob(ctx).value == pytest.approx((-3.0 - 0.7) / 2)
    # each side is scored once, with the variant's ECO settings and the context's batch size
    assert engine.calls == [("choices", [probe("fp1"), probe("fp2")], ALWAYS, 7),
                            ("choices", [probe("rp1"), probe("rp2")], ALWAYS, 7)]


def test_train_split_probes_are_scored_on_their_own(tiny_lm, probe_preset):
    ctx = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="train", eco=None,
                          scripted=ScriptedEngine(choices=PROBE_SCORES))
    assert M.forget_probe_accuracy(ctx).rows == [{"id": "fp3", "correct": True, "answer_logprob": -0.3}]
    assert M.retain_probe_logprob(ctx).rows == [{"id": "rp3", "correct": True, "answer_logprob": -0.2}]
    assert ctx.scripted.calls[0][2] is None  # Original: no ECO settings


def test_external_probes_replace_only_the_side_they_are_given_for(tiny_lm, probe_preset):
    engine = ScriptedEngine(choices=PROBE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="test", eco=None, scripted=engine,
                          probes={"retain": [probe("xp1"), probe("xp2")]})
    acc = M.retain_probe_accuracy(ctx)
    assert (acc.value, acc.n) == (0.5, 2)
    assert acc.rows == [{"id": "xp1", "correct": False, "answer_logprob": -4.0},
                        {"id": "xp2", "correct": True, "answer_logprob": -1.5}]
    assert M.forget_probe_accuracy(ctx).rows == [{"id": "fp1", "correct": True, "answer_logprob": -0.5},
                                                 {"id": "fp2", "correct": False, "answer_logprob": -2.0}]
    fresh = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="test", eco=None,
                            scripted=ScriptedEngine(choices=PROBE_SCORES),
                            probes={"retain": [probe("xp1"), probe("xp2")]})
    lp = M.retain_probe_logprob(fresh)
    assert lp.value == pytest.approx((-4.0 - 1.5) / 2) and [r["id"] for r in lp.rows] == ["xp1", "xp2"]


# ---------------------------------------------------------------------------- multiple choice

def mcq_probe(q: MCQ) -> Probe:
    letters = [" A", " B", " C", " D"]
    prefix = ("The following are multiple choice questions (with answers) about star wars.\n\n"
              f"{q.question}\n" + "\n".join(f"{l.strip()}. {c}" for l, c in zip(letters, q.choices)) + "\nAnswer:")
    return Probe(id=q.id, prefix=prefix, answer=letters[q.answer],
                 distractors=tuple(l for i, l in enumerate(letters) if i != q.answer))


MCQS = [MCQ(id="q1", question="Who trained Luke?", choices=("Han", "Leia", "Yoda", "Jabba"), answer=2),
        MCQ(id="q2", question="What is Tatooine?", choices=("A planet", "A ship", "A droid", "A moon"), answer=0),
        MCQ(id="q3", question="Who is Vader's son?", choices=("Luke", "Han", "Lando", "Ben"), answer=0, split="train")]


def mcq_engine():
    p1, p2, p3 = (mcq_probe(q) for q in MCQS)
    return ScriptedEngine(choices={p1.prefix: [-0.5, -1.0, -2.0, -3.0],    # right
                                   p2.prefix: [-2.0, -0.1, -3.0, -4.0],    # second choice best: wrong
                                   p3.prefix: [-0.1, -2.0, -2.0, -2.0]})


def test_mcq_accuracy_scores_the_reference_prompt_with_letter_choices(tiny_lm, star_wars):
    """Each test-split question becomes a probe: the reference MCQ prompt about the preset's title
    in lower case, the right letter first, the other three letters after it."""
    preset = dataclasses.replace(star_wars, forget_mcq=MCQS)
    engine = mcq_engine()
    eco = ECOConfig(gate="always", selection="prompt", strength=5.0)
    ctx = ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=eco, batch_size=3, scripted=engine)
    mv = M.forget_mcq_accuracy(ctx)
    assert (mv.value, mv.n) == (0.5, 2)
    assert mv.rows == [{"id": "q1", "correct": True}, {"id": "q2", "correct": False}]
    assert engine.calls == [("choices", [mcq_probe(MCQS[0]), mcq_probe(MCQS[1])], eco, 3)]
    assert engine.calls[0][1][0].answer == " C" and engine.calls[0][1][0].distractors == (" A", " B", " D")


def test_mcq_accuracy_on_the_retain_side_and_the_train_split(tiny_lm, star_wars):
    preset = dataclasses.replace(star_wars, retain_mcq=MCQS)
    ctx = ScriptedContext(lm=tiny_lm, preset=preset, split="train", eco=None, scripted=mcq_engine())
    mv = M.retain_mcq_accuracy(ctx)
    assert (mv.value, mv.n, mv.rows) == (1.0, 1, [{"id": "q3", "correct": True}])
    assert ctx.scripted.calls == [("choices", [mcq_probe(MCQS[2])], None, 32)]


def test_mcq_under_ner_selection_corrupts_all_but_the_last_token_instead(tiny_lm, star_wars):
    """The reference has no entities to find in an MCQ prompt: NER selection becomes all_but_last,
    every other ECO setting kept; other selections are passed on unchanged."""
    preset = dataclasses.replace(star_wars, forget_mcq=MCQS)
    ner = ECOConfig(gate="always", selection="ner", strength=7.0, seed=3, entity_types=("PER",))
    engine = mcq_engine()
    M.forget_mcq_accuracy(ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=ner, scripted=engine))
    assert engine.calls[0][2] == ECOConfig(gate="always", selection="all_but_last", strength=7.0, seed=3,
                                           entity_types=("PER",))
    for selection in ("prompt", "all_but_last"):
        eco = ECOConfig(gate="always", selection=selection, strength=7.0)
        engine = mcq_engine()
        M.forget_mcq_accuracy(ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=eco, scripted=engine))
        assert engine.calls[0][2] == eco


# ---------------------------------------------------------------------------- retain perplexity

def test_retain_perplexity_splits_each_passage_at_its_first_space(tiny_lm, star_wars):
    """The first space-separated piece is the context and the rest, with its space, the scored
    continuation: context + continuation is the whole passage. Perplexity = exp(-mean log-prob)."""
    texts = {"p1": "Alpha beta gamma delta", "p2": "One\ttwo three  four"}
    preset = dataclasses.replace(star_wars, retain_corpus=[Passage(k, v) for k, v in texts.items()])
    pairs = [("Alpha", " beta gamma delta"), ("One\ttwo", " three  four")]
    engine = ScriptedEngine(pairs={pairs[0]: -2.0, pairs[1]: -3.0})
    ctx = ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=ALWAYS, batch_size=5, scripted=engine)
    mv = M.retain_perplexity(ctx)
    assert engine.calls == [("pairs", pairs, ALWAYS, 5)]
    assert all(h + c == texts[k] for (h, c), k in zip(pairs, texts))
    assert mv.n == 2 and mv.rows == [{"id": "p1", "perplexity": pytest.approx(math.exp(2.0))},
                                     {"id": "p2", "perplexity": pytest.approx(math.exp(3.0))}]
    assert mv.value == pytest.approx(math.exp(2.5))


# ---------------------------------------------------------------------------- the gate

@pytest.fixture()
def gate_preset(star_wars):
    return dataclasses.replace(star_wars, forget_prompts=[prompt("f1", "test"), prompt("f2", "test"),
                                                          prompt("f3", "train")],
                               retain_prompts=[prompt("r1", "test"), prompt("r2", "test"), prompt("r3", "test"),
                                               prompt("r4", "train"), prompt("r5", "train")])


GATE_SCORES = {"Question f1?": 0.9, "Question f2?": 0.2, "Question f3?": 0.95, "Question r1?": 0.7,
               "Question r2?": 0.1, "Question r3?": 0.3, "Question r4?": 0.4, "Question r5?": 0.2}


def test_gate_metrics_report_each_prompts_score_and_decision(tiny_lm, gate_preset):
    engine = ScriptedEngine(gate_scores=GATE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=gate_preset, split="test", eco=ALWAYS, scripted=engine)
    recall = M.forget_recall(ctx)
    assert (recall.value, recall.n) == (0.5, 2)
    assert recall.rows == [{"id": "f1", "score": 0.9, "flagged": True}, {"id": "f2", "score": 0.2, "flagged": False}]
    fpr = M.retain_fpr(ctx)
    assert (fpr.value, fpr.n) == (pytest.approx(1 / 3), 3)
    assert fpr.rows == [{"id": "r1", "score": 0.7, "flagged": True}, {"id": "r2", "score": 0.1, "flagged": False},
                        {"id": "r3", "score": 0.3, "flagged": False}]
    assert engine.calls == [("gate", ["Question f1?", "Question f2?"], ALWAYS),
                            ("gate", ["Question r1?", "Question r2?", "Question r3?"], ALWAYS)]


def test_gate_rate_over_a_single_prompt_is_its_own_decision(tiny_lm, gate_preset):
    ctx = ScriptedContext(lm=tiny_lm, preset=gate_preset, split="train", eco=ALWAYS,
                          scripted=ScriptedEngine(gate_scores=GATE_SCORES))
    mv = M.forget_recall(ctx)
    assert (mv.value, mv.n, mv.rows) == (1.0, 1, [{"id": "f3", "score": 0.95, "flagged": True}])
    assert M.retain_fpr(ctx).rows == [{"id": "r4", "score": 0.4, "flagged": False},
                                      {"id": "r5", "score": 0.2, "flagged": False}]


def test_original_flags_nothing_and_asks_no_gate(tiny_lm, gate_preset):
    engine = ScriptedEngine(gate_scores=GATE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=gate_preset, split="test", eco=None, scripted=engine)
    mv = M.forget_recall(ctx)
    assert (mv.value, mv.n, mv.rows) == (0.0, 2, [{"id": "f1", "flagged": False}, {"id": "f2", "flagged": False}])
    assert M.retain_fpr(ctx).n == 3 and engine.calls == []


# ---------------------------------------------------------------------------- truth ratio

def truth_preset(star_wars):
    return dataclasses.replace(star_wars, forget_prompts=[
        prompt("f1", "test", paraphrase="para one", perturbed=["wrong a", "wrong b"]),
        prompt("f2", "test", paraphrase="para two", perturbed=["wrong c", "wrong d", "wrong e"]),
        prompt("f3", "test", paraphrase="para three"),  # no perturbed answers: skipped
        prompt("f4", "test", perturbed=["wrong f"]),  # no paraphrase: skipped
        prompt("f5", "train", paraphrase="para five", perturbed=["wrong g"]),
    ])


def test_truth_ratio_is_the_geometric_mean_perturbed_over_paraphrase_probability(tiny_lm, star_wars):
    """R = exp(mean log P(perturbed) - log P(paraphrase)), each answer scored after the chat-formatted
    question with a leading space; the metric is the mean of min(R, 1/R)."""
    q1, q2 = (format_chat(tiny_lm.tokenizer, f"Question {i}?") for i in ("f1", "f2"))
    lp = {(q1, " para one"): -2.0, (q1, " wrong a"): -1.0, (q1, " wrong b"): -1.5,
          (q2, " para two"): -0.5, (q2, " wrong c"): -1.0, (q2, " wrong d"): -2.0, (q2, " wrong e"): -3.0}
    engine = ScriptedEngine(pairs=lp)
    ctx = ScriptedContext(lm=tiny_lm, preset=truth_preset(star_wars), split="test", eco=ALWAYS, batch_size=4,
                          scripted=engine)
    mv = M.truth_ratio(ctx)
    r1, r2 = math.exp(-1.25 + 2.0), math.exp(-2.0 + 0.5)
    assert r1 > 1 > r2
    assert mv.n == 2 and mv.rows == [{"id": "f1", "truth_ratio": pytest.approx(r1)},
                                     {"id": "f2", "truth_ratio": pytest.approx(r2)}]
    assert mv.value == pytest.approx((1 / r1 + r2) / 2)
    assert engine.calls == [("pairs", list(lp), ALWAYS, 4)]


def test_truth_ratio_without_usable_questions_is_nan_and_scores_nothing(tiny_lm, star_wars):
    preset = dataclasses.replace(star_wars, forget_prompts=[prompt("f3", "test", paraphrase="para three"),
                                                            prompt("f4", "test", perturbed=["wrong f"])])
    engine = ScriptedEngine()
    mv = M.truth_ratio(ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=None, scripted=engine))
    assert math.isnan(mv.value) and mv.n == 0 and mv.rows == []
    assert engine.calls == []


def test_truth_ratio_on_the_train_split_uses_only_train_questions(tiny_lm, star_wars):
    q5 = format_chat(tiny_lm.tokenizer, "Question f5?")
    engine = ScriptedEngine(pairs={(q5, " para five"): -1.0, (q5, " wrong g"): -3.0})
    mv = M.truth_ratio(ScriptedContext(lm=tiny_lm, preset=truth_preset(star_wars), split="train", eco=None,
                                       scripted=engine))
    assert mv.rows == [{"id": "f5", "truth_ratio": pytest.approx(math.exp(-2.0))}]
    assert mv.value == pytest.approx(math.exp(-2.0))


def test_forget_quality_of_an_empty_sample_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(M.forget_quality([], [0.5, 0.6]))
        assert math.isnan(M.forget_quality([0.5, 0.6], []))


# ---------------------------------------------------------------------------- the tiny model by hand

@pytest.fixture(scope="module")
def bos_tokenizer(tiny_model_dir):
    """The tiny tokenizer with a BOS token added whenever special tokens are asked for."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    bos = tok.convert_tokens_to_ids("<|endoftext|>")
    tok._tokenizer.post_processor = TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A $B",
                                                      special_tokens=[("<|endoftext|>", bos)])
    assert tok("hi", add_special_tokens=True)["input_ids"][0] == bos
    assert bos not in tok("hi", add_special_tokens=False)["input_ids"]
    return tok


@pytest.fixture(scope="module")
def shifted_model(tiny_lm):
    """The tiny model with seeded noise added to its second layer: a different set of weights."""
    model = copy.deepcopy(tiny_lm.model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.model.layers[1].parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def last_logprobs(model, tokenizer, text):
    ids = tokenizer(format_chat(tokenizer, text), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)


def kl(p, q):
    return float((p.exp() * (p - q)).sum())


@pytest.fixture()
def kl_setup(tiny_lm, star_wars, bos_tokenizer, shifted_model):
    retain = [PromptRecord("t1", "Who founded Rome?", "Romulus.", "train"),
              PromptRecord("r1", "What is the capital of France?", "Paris.", "test"),
              PromptRecord("r2", "Name a prime number.", "Seven.", "test")]
    preset = dataclasses.replace(star_wars, retain_prompts=retain)
    base = LoadedModel(model=tiny_lm.model, tokenizer=bos_tokenizer, info=tiny_lm.info)
    variant = LoadedModel(model=shifted_model, tokenizer=bos_tokenizer, info=tiny_lm.info)
    want = {r.id: kl(last_logprobs(tiny_lm.model, bos_tokenizer, r.prompt),
                     last_logprobs(shifted_model, bos_tokenizer, r.prompt)) for r in retain}
    return preset, base, variant, want


def test_retain_kl_of_a_weight_variant_equals_the_kl_by_hand(kl_setup):
    """KL(base || variant) of the next-token distribution after the chat-formatted prompt (as the
    template renders it, no extra BOS), one row per retain prompt of the split."""
    preset, base, variant, want = kl_setup
    assert min(want.values()) > 1e-3
    ctx = EvalContext(lm=variant, preset=preset, split="test", eco=None, weights=True, base_lm=base)
    mv = M.retain_kl(ctx)
    assert mv.n == 2 and mv.rows == [{"id": "r1", "kl": pytest.approx(want["r1"], rel=1e-4)},
                                     {"id": "r2", "kl": pytest.approx(want["r2"], rel=1e-4)}]
    assert mv.value == pytest.approx((want["r1"] + want["r2"]) / 2, rel=1e-4)
    one = M.retain_kl(EvalContext(lm=variant, preset=preset, split="train", eco=None, weights=True, base_lm=base))
    assert one.n == 1 and one.value == pytest.approx(want["t1"], rel=1e-4)


def test_retain_kl_is_zero_when_neither_prompt_nor_weights_change(kl_setup):
    """No ECO and weights=False: the variant is the base model itself, KL exactly 0."""
    preset, base, variant, _ = kl_setup
    mv = M.retain_kl(EvalContext(lm=variant, preset=preset, split="test", eco=None, weights=False, base_lm=base))
    assert mv.value == 0.0 and mv.rows == [{"id": "r1", "kl": 0.0}, {"id": "r2", "kl": 0.0}]


def test_retain_kl_of_an_eco_variant_whose_gate_never_fires_is_zero(tiny_lm, kl_setup):
    preset, *_ = kl_setup
    mv = M.retain_kl(EvalContext(lm=tiny_lm, preset=preset, split="test", eco=NEVER))
    assert mv.n == 2 and all(abs(r["kl"]) < 1e-6 for r in mv.rows)


def test_unique_token_ratio_counts_only_the_texts_own_tokens(bos_tokenizer):
    ids = bos_tokenizer("the the the", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and len(set(ids)) == 3  # "t", "he", " the", " the"
    assert M.unique_token_ratio(bos_tokenizer, "the the the") == pytest.approx(3 / 4)


def mean_logprob(model, tokenizer, prefix, cont):
    """Mean log-prob of `cont`'s tokens after `prefix` (prefix with special tokens, as scoring does)."""
    p = tokenizer(prefix, add_special_tokens=True)["input_ids"]
    c = tokenizer(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
    return sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)) / len(c)


@pytest.fixture()
def scorer_spy(monkeypatch):
    """Records the batch size of every teacher-forced scoring call."""
    import engine.lm.scoring as scoring

    sizes, real = [], scoring.continuation_logprobs

    def spy(model, tokenizer, prefixes, conts, batch_size=32, *args, **kwargs):
        sizes.append(batch_size)
        return real(model, tokenizer, prefixes, conts, batch_size, *args, **kwargs)

    monkeypatch.setattr(scoring, "continuation_logprobs", spy)
    return sizes


def test_output_perplexity_by_hand_with_and_without_the_chat_template(tiny_lm, scorer_spy):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prompts = ["Who is Yoda?", "Name a planet.", "Who is Leia?"]
    outs = [" A small green Jedi master.", "  ", "A princess of Alderaan."]
    chat = M.output_perplexity(tiny_lm, prompts, outs, batch_size=2)
    assert chat[0] == pytest.approx(math.exp(-mean_logprob(model, tok, format_chat(tok, prompts[0]), outs[0])), rel=1e-4)
    assert chat[2] == pytest.approx(math.exp(-mean_logprob(model, tok, format_chat(tok, prompts[2]), outs[2])), rel=1e-4)
    assert math.isnan(chat[1])  # a blank answer has no perplexity
    raw = M.output_perplexity(tiny_lm, prompts, outs, batch_size=3, chat=False)
    assert raw[0] == pytest.approx(math.exp(-mean_logprob(model, tok, prompts[0], outs[0])), rel=1e-4)
    assert raw[2] == pytest.approx(math.exp(-mean_logprob(model, tok, prompts[2], outs[2])), rel=1e-4)
    assert raw[0] != pytest.approx(chat[0], rel=1e-3)
    assert scorer_spy == [2, 3]


def test_output_metrics_score_one_answer_at_a_time(tiny_lm, scorer_spy):
    """Per answer: perplexity (None for an empty answer), unique-token ratio (None when empty), and
    the forget keywords it names; answers are scored in batches of one."""
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    texts = ["Yoda is a Jedi master.", "", "the the the"]
    keywords = ["Yoda", "Jedi", "Sith"]
    for chat in (True, False):
        prefix = format_chat(tok, "Who is Yoda?") if chat else "Who is Yoda?"
        rows = M.output_metrics(tiny_lm, "Who is Yoda?", texts, chat, keywords)
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        assert rows == [
            {"perplexity": pytest.approx(math.exp(-mean_logprob(model, tok, prefix, texts[0])), rel=1e-4),
             "unique_token_ratio": pytest.approx(len(set(ids[0])) / len(ids[0])), "keywords": ["Yoda", "Jedi"]},
            {"perplexity": None, "unique_token_ratio": None, "keywords": []},
            {"perplexity": pytest.approx(math.exp(-mean_logprob(model, tok, prefix, texts[2])), rel=1e-4),
             "unique_token_ratio": pytest.approx(len(set(ids[2])) / len(ids[2])), "keywords": []},
        ]
    assert scorer_spy == [1, 1]


# ---------------------------------------------------------------------------- word diff

def test_token_diff_keeps_multi_word_pieces_whole():
    assert M.token_diff("a b c d", "a b x d") == [("a b", None), (" c", "removed"), (" x", "added"), (" d", None)]
    assert M.token_diff("a b c d e", "a d e") == [("a", None), (" b c", "removed"), (" d e", None)]
    assert M.token_diff("a e", "a b c e") == [("a", None), (" b c", "added"), (" e", None)]
    assert M.token_diff("one two", "one two three four") == [("one two", None), (" three four", "added")]


def test_token_diff_matches_frequent_words_in_long_texts():
    """A long answer repeating one word still lines up word by word with its reference."""
    ref, text = "one" + " the" * 250, "two" + " the" * 250
    assert M.token_diff(ref, text) == [("one", "removed"), ("two", "added"), (" the" * 250, None)]


# ---------------------------------------------------------------------------- greedy generation

def greedy_by_hand(model, tokenizer, embeds, n):
    """Greedy decoding by full forward passes from prompt embeddings (1, T, D): up to n new tokens,
    stopping at end-of-sequence; the decoded answer, stripped."""
    emb, eos, new = model.get_input_embeddings(), {tokenizer.eos_token_id, model.generation_config.eos_token_id}, []
    with torch.no_grad():
        for _ in range(n):
            x = torch.cat([embeds, emb(torch.tensor([new], dtype=torch.long))], 1) if new else embeds
            t = int(model(inputs_embeds=x).logits[0, -1].argmax())
            if t in eos:
                break
            new.append(t)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


GEN_PROMPTS = ["Who is Luke Skywalker?", "Tell me about Darth Vader.", "What is the Force?"]


def chat_embeds(lm, text):
    ids = lm.tokenizer(format_chat(lm.tokenizer, text), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return lm.model.get_input_embeddings()(torch.tensor([ids]))


def test_generate_batch_gives_the_greedy_chat_answer_of_every_prompt(tiny_lm, star_wars):
    want = [greedy_by_hand(tiny_lm.model, tiny_lm.tokenizer, chat_embeds(tiny_lm, p), 4) for p in GEN_PROMPTS]
    assert len(set(want)) > 1
    ctx = EvalContext(lm=tiny_lm, preset=star_wars, split="test", eco=None, batch_size=2)
    assert M.generate_batch(ctx, GEN_PROMPTS, max_new_tokens=4) == want
    never = EvalContext(lm=tiny_lm, preset=star_wars, split="test", eco=NEVER, batch_size=2)
    assert M.generate_batch(never, GEN_PROMPTS, max_new_tokens=4) == want


def test_generate_batch_under_eco_answers_the_corrupted_prompt(tiny_lm, star_wars):
    eco = ECOConfig(gate="always", selection="prompt", strength=100.0, dims=16, seed=2)
    ecoe = ECO(tiny_lm)
    want = [greedy_by_hand(tiny_lm.model, tiny_lm.tokenizer, ecoe.plan(p, eco).inputs_embeds, 4) for p in GEN_PROMPTS]
    clean = [greedy_by_hand(tiny_lm.model, tiny_lm.tokenizer, chat_embeds(tiny_lm, p), 4) for p in GEN_PROMPTS]
    assert want != clean
    ctx = EvalContext(lm=tiny_lm, preset=star_wars, split="test", eco=eco, batch_size=2)
    assert M.generate_batch(ctx, GEN_PROMPTS, max_new_tokens=4) == want


# ---------------------------------------------------------------------------- generation metrics

GEN_OUTPUTS = {"Question f1?": "the dog runs home", "Question f2?": "Skywalker was a Jedi", "Question f4?": "",
               "Question f3?": "Darth Vader returns", "Question r1?": "Kirk commands the ship",
               "Question r2?": "a train answer"}


@pytest.fixture()
def gen_preset(star_wars):
    return dataclasses.replace(
        star_wars, forget_keywords=["Skywalker", "Jedi", "Vader"],
        forget_prompts=[prompt("f1", "test", "The dogs were running home"), prompt("f2", "test", "Luke Skywalker is a Jedi"),
                        prompt("f4", "test", "Luke Skywalker is a Jedi"), prompt("f3", "train", "Vader")],
        retain_prompts=[prompt("r1", "test", "Captain Kirk commands the Enterprise"), prompt("r2", "train")])


@pytest.fixture()
def scripted_generations(monkeypatch):
    """generate_batch answering each prompt from GEN_OUTPUTS; the prompts of every call recorded."""
    calls = []

    def fake(ctx, prompts, max_new_tokens=M.GEN_TOKENS):
        calls.append(list(prompts))
        return [GEN_OUTPUTS[p] for p in prompts]

    monkeypatch.setattr(M, "generate_batch", fake)
    return calls


def test_rouge_l_recall_rows_use_stemmed_words(tiny_lm, gen_preset, scripted_generations):
    """Recall of the reference's longest common subsequence, words stemmed: 'dogs running' matches
    'dog runs' (4 of 5 words), 'Skywalker ... a Jedi' 3 of 5, an empty answer 0."""
    ctx = EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None)
    mv = M.forget_rouge_l_recall(ctx)
    assert mv.n == 3 and mv.rows == [
        {"id": "f1", "rouge_l_recall": pytest.approx(0.8), "output": "the dog runs home"},
        {"id": "f2", "rouge_l_recall": pytest.approx(0.6), "output": "Skywalker was a Jedi"},
        {"id": "f4", "rouge_l_recall": 0.0, "output": ""}]
    assert mv.value == pytest.approx(1.4 / 3)
    retain = M.retain_rouge_l_recall(ctx)
    assert (retain.value, retain.n) == (pytest.approx(0.6), 1)
    assert retain.rows == [{"id": "r1", "rouge_l_recall": pytest.approx(0.6), "output": "Kirk commands the ship"}]
    assert scripted_generations == [["Question f1?", "Question f2?", "Question f4?"], ["Question r1?"]]


def test_keyword_leak_rate_is_the_share_of_answers_naming_a_forget_keyword(tiny_lm, gen_preset, scripted_generations):
    mv = M.keyword_leak_rate(EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None))
    assert (mv.value, mv.n) == (pytest.approx(1 / 3), 3)
    assert mv.rows == [{"id": "f1", "keywords": []}, {"id": "f2", "keywords": ["Skywalker", "Jedi"]},
                       {"id": "f4", "keywords": []}]
    one = M.keyword_leak_rate(EvalContext(lm=tiny_lm, preset=gen_preset, split="train", eco=None))
    assert (one.value, one.n, one.rows) == (1.0, 1, [{"id": "f3", "keywords": ["Vader"]}])


def test_forget_unique_token_ratio_averages_over_non_empty_answers(tiny_lm, gen_preset, scripted_generations):
    tok = tiny_lm.tokenizer

    def ratio(text):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return len(set(ids)) / len(ids)

    mv = M.forget_unique_token_ratio(EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None))
    r1, r2 = ratio("the dog runs home"), ratio("Skywalker was a Jedi")
    assert mv.n == 2 and mv.value == pytest.approx((r1 + r2) / 2)
    assert [r["id"] for r in mv.rows] == ["f1", "f2", "f4"]
    assert mv.rows[:2] == [{"id": "f1", "unique_token_ratio": pytest.approx(r1)},
                           {"id": "f2", "unique_token_ratio": pytest.approx(r2)}]
    assert math.isnan(mv.rows[2]["unique_token_ratio"])
    one = M.forget_unique_token_ratio(EvalContext(lm=tiny_lm, preset=gen_preset, split="train", eco=None))
    assert one.n == 1 and one.value == pytest.approx(ratio("Darth Vader returns"))


def test_forget_output_perplexity_is_the_geometric_mean_under_the_base_model(tiny_lm, shifted_model, gen_preset,
                                                                             scripted_generations, scorer_spy):
    base = tiny_lm
    variant = LoadedModel(model=shifted_model, tokenizer=tiny_lm.tokenizer, info=tiny_lm.info)
    tok = base.tokenizer
    ppl = [math.exp(-mean_logprob(base.model, tok, format_chat(tok, f"Question {i}?"), GEN_OUTPUTS[f"Question {i}?"]))
           for i in ("f1", "f2")]
    ctx = EvalContext(lm=variant, preset=gen_preset, split="test", eco=None, batch_size=3, weights=True, base_lm=base)
    mv = M.forget_output_perplexity(ctx)
    assert mv.n == 2 and mv.value == pytest.approx(math.sqrt(ppl[0] * ppl[1]), rel=1e-4)
    assert mv.rows[:2] == [{"id": "f1", "perplexity": pytest.approx(ppl[0], rel=1e-4)},
                           {"id": "f2", "perplexity": pytest.approx(ppl[1], rel=1e-4)}]
    assert list(mv.rows[2]) == ["id", "perplexity"] and mv.rows[2]["id"] == "f4" and math.isnan(mv.rows[2]["perplexity"])
    assert scorer_spy == [3]


def test_forget_output_perplexity_of_only_empty_answers_is_nan(tiny_lm, gen_preset, monkeypatch):
    monkeypatch.setattr(M, "generate_batch", lambda ctx, prompts, max_new_tokens=M.GEN_TOKENS: [""] * len(prompts))
    mv = M.forget_output_perplexity(EvalContext(lm=tiny_lm, preset=gen_preset, split="test", eco=None))
    assert math.isnan(mv.value) and mv.n == 0 and len(mv.rows) == 3
